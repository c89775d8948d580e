"""mkdocs hook: tables of measured figures rendered from result files.

A page writes a placeholder on a line of its own::

    {{ table: benchmarks/results/relax_overhead.json }}
    {{ table: examples/results/dyadic_table1.json#per_epoch }}

and the hook replaces it, at build time, with a markdown table read from the
file (path relative to the repository root), followed by one line saying when,
where and how the figures were measured. A JSON results file (schema in
``benchmarks/_results.py``) gives its ``figures`` (figure, value, unit) or,
after ``#``, the named entry of its ``tables``; a netCDF file gives its
one-dimensional data variables against their dimension. A missing file, a
missing table or a file that cannot be read stops the build with the page
and the file named.

``{{ energy_sources }}`` renders the energy and time parameters of every
device model with their defaults, units and sources, read from the models'
field declarations (:func:`anasim.devices.params.energy_sources`), so the
manual's table of sources is the code's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

PLACEHOLDER = re.compile(r"\{\{\s*table:\s*([^}#\s]+)(?:#([\w-]+))?\s*\}\}")
SOURCES = re.compile(r"\{\{\s*energy_sources\s*\}\}")


class TableError(Exception):
    """A placeholder whose file or table cannot be rendered."""


def fmt(v) -> str:
    """A cell: strings as written, integral floats without '.0', None as '–'."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    return str(v).replace("|", "\\|")


def markdown_table(columns, rows) -> str:
    lines = ["| " + " | ".join(fmt(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        if len(row) != len(columns):
            raise TableError(f"a row has {len(row)} cells for {len(columns)} columns: {row!r}")
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def footer(doc: dict) -> str:
    parts = [f"{k}: {doc[k]}" for k in ("date", "machine") if doc.get(k)]
    if doc.get("source"):
        parts.append(str(doc["source"]))
    if doc.get("command"):
        parts.append(f"`{doc['command']}`")
    return ("*" + "; ".join(parts) + ".*") if parts else ""


def render_json(doc: dict, name: str | None) -> str:
    if name in (None, "figures") and doc.get("figures"):
        rows = [[f.get("label", k), f.get("value"), f.get("unit", "")] for k, f in doc["figures"].items()]
        body = markdown_table(["figure", "value", "unit"], rows)
    else:
        tables = doc.get("tables") or {}
        key = name or ("main" if "main" in tables else next(iter(tables), None))
        if key not in tables:
            raise TableError(f"no table {key!r} (has: {', '.join(tables) or 'none'})")
        body = markdown_table(tables[key]["columns"], tables[key]["rows"])
    note = footer(doc)
    if doc.get("notes"):
        note = (note + " " if note else "") + str(doc["notes"])
    return body + ("\n\n" + note if note else "")


def render_netcdf(path: Path) -> str:
    import xarray as xr

    with xr.open_dataset(path) as ds:
        dims = [d for d in ds.dims if any(v.dims == (d,) for v in ds.data_vars.values())]
        if not dims:
            raise TableError("no one-dimensional data variables")
        dim = dims[0]
        names = [n for n, v in ds.data_vars.items() if v.dims == (dim,)]
        index = ds[dim].values if dim in ds.coords else range(ds.sizes[dim])
        rows = [[i.item() if hasattr(i, "item") else i] + [ds[n].values[k].item() for n in names]
                for k, i in enumerate(index)]
        return markdown_table([dim] + names, rows)


def render(root: Path, source: str, name: str | None = None) -> str:
    """The markdown of one placeholder: file ``source`` relative to ``root``."""
    path = Path(root) / source
    if not path.is_file():
        raise TableError(f"{source}: results file not found")
    try:
        if path.suffix == ".json":
            return render_json(json.loads(path.read_text(encoding="utf-8")), name)
        if path.suffix in (".nc", ".h5"):
            return render_netcdf(path)
    except TableError as e:
        raise TableError(f"{source}: {e}") from None
    except Exception as e:  # a file that does not parse
        raise TableError(f"{source}: cannot read: {e}") from None
    raise TableError(f"{source}: unknown results format {path.suffix!r} (JSON or netCDF)")


def render_sources() -> str:
    """The energy and time parameters of the device models: default, unit, source."""
    from anasim.devices import ADC, GyratorArray, ResistiveCrossbar, SLMCrossbar
    from anasim.devices.params import energy_sources

    rows = [[f"{r['part']} `{r['name']}`", f"{r['default']:g}", r["unit"], r["source"]]
            for r in energy_sources({"SLM": SLMCrossbar, "resistive": ResistiveCrossbar,
                                     "gyrator": GyratorArray, "ADC and DAC": ADC})]
    return markdown_table(["parameter", "default", "unit", "source"], rows)


def replace_tables(markdown: str, root: Path) -> str:
    markdown = PLACEHOLDER.sub(lambda m: render(root, m.group(1), m.group(2)), markdown)
    if SOURCES.search(markdown):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        markdown = SOURCES.sub(lambda m: render_sources(), markdown)
    return markdown


def on_page_markdown(markdown, page, config, files, **kwargs):
    from mkdocs.exceptions import PluginError

    root = Path(config["config_file_path"]).resolve().parent
    try:
        return replace_tables(markdown, root)
    except TableError as e:
        raise PluginError(f"{page.file.src_path}: {e}") from None


def on_files(files, config, **kwargs):
    """Publish the examples' figures (``examples/figures/*.png``) under ``figures/``."""
    from mkdocs.structure.files import File

    root = Path(config["config_file_path"]).resolve().parent
    for png in sorted((root / "examples" / "figures").glob("*.png")):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files
