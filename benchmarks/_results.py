"""Write a benchmark's measured figures to ``benchmarks/results/<name>.json``.

The manual's tables are rendered from these files at build time
(``docs/hooks/tables.py``), so rerunning a benchmark refreshes its table.
Schema (shared with ``examples/results/*.json``)::

    {"name", "title", "date", "machine", "source", "command", "notes",
     "figures": {key: {"value": v, "unit": u, "label": text}},
     "tables": {key: {"columns": [...], "rows": [[...], ...]}}}
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _round(v, digits: int = 4):
    """Measured floats keep ``digits`` significant digits; everything else as is."""
    if isinstance(v, float):
        return float(f"{v:.{digits}g}")
    return v


def _figure(key: str, v) -> dict:
    if isinstance(v, dict):
        out = dict(v)
    elif isinstance(v, (tuple, list)):
        out = dict(zip(("value", "unit", "label"), v))
    else:
        out = {"value": v}
    out["value"] = _round(out.get("value"))
    out.setdefault("unit", "")
    out.setdefault("label", key.replace("_", " "))
    return out


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def write_results(name: str, figures: dict, meta: dict, *, tables: dict | None = None,
                  folder: Path | str = RESULTS) -> Path:
    """Write ``folder/<name>.json``; ``figures`` maps a key to a value, a
    ``(value, unit, label)`` tuple or a ``{"value", "unit", "label"}`` dict."""
    doc = {
        "name": name,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine(),
        "source": f"measured by benchmarks/{name}.py",
        **meta,
        "figures": {k: _figure(k, v) for k, v in figures.items()},
    }
    if tables:
        doc["tables"] = {k: {"columns": list(t["columns"]),
                             "rows": [[_round(v) for v in row] for row in t["rows"]]}
                         for k, t in tables.items()}
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"results: {path}")
    return path


def write_table(name: str, columns, rows, meta: dict, *, folder: Path | str = RESULTS) -> Path:
    """A results file holding one table (``tables.main``) and no figures."""
    return write_results(name, {}, meta, tables={"main": {"columns": columns, "rows": rows}}, folder=folder)
