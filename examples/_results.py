"""Write an example's measured figures to ``examples/results/<name>[_quick].json``.

The manual renders its tables of example results from these files
(``docs/hooks/tables.py``), so rerunning an example refreshes the manual. The
writer and the schema are those of ``benchmarks/_results.py``, loaded from
there (one copy of the code). A ``--quick`` run writes ``<name>_quick.json``
(git-ignored) and never touches the full run's file.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "examples" / "results"

_spec = importlib.util.spec_from_file_location("_benchmark_results", ROOT / "benchmarks" / "_results.py")
_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_writer)


def path(name: str, quick: bool) -> Path:
    return RESULTS / f"{name}{'_quick' if quick else ''}.json"


def command() -> str:
    """The command line this process was started with, the script relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return " ".join(["python", str(script), *sys.argv[1:]])


def previous_tables(name: str, quick: bool) -> dict:
    """The tables of the file a run would overwrite (empty if there is none): for
    examples whose file gathers the tables of several invocations."""
    p = path(name, quick)
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("tables") or {}
    except (OSError, ValueError):
        return {}


def write(name: str, script: str, figures: dict, meta: dict, *, tables: dict | None = None,
          quick: bool = False) -> Path:
    """``benchmarks/_results.write_results`` into ``examples/results``; the meta gets
    ``source`` (``written by examples/<script>``) and ``command`` unless given."""
    meta = {"source": f"written by examples/{script}" + (" --quick" if quick else ""),
            "command": command(), **meta}
    return _writer.write_results(f"{name}_quick" if quick else name, figures, meta, tables=tables,
                                 folder=RESULTS)


def quick_flag(argv=None) -> bool:
    """Whether the command line asks for ``--quick`` (for scripts whose parser lives elsewhere)."""
    import argparse  # noqa: PLC0415

    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--quick", action="store_true")
    return ap.parse_known_args(sys.argv[1:] if argv is None else argv)[0].quick


def span(values, fmt: str = "{:.1f}", sep: str = "–"):
    """``lo–hi`` of ``values`` as ``fmt`` writes them, one value where they agree; None if empty."""
    import numpy as np  # noqa: PLC0415

    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    lo, hi = fmt.format(v.min()), fmt.format(v.max())
    return lo if lo == hi else f"{lo}{sep}{hi}"


def band(hz: float) -> str:
    """A detection bandwidth as the manual writes it: 25 MHz, 10 GHz, none."""
    for unit, scale in (("GHz", 1e9), ("MHz", 1e6), ("kHz", 1e3)):
        if hz >= scale:
            return f"{hz / scale:g} {unit}"
    return "none" if hz == 0 else f"{hz:g} Hz"
