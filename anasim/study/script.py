"""The command line every study script shares: run its sweeps, draw one figure.

A study script (``examples/study_*.py``) names one or more sweep files, the
reduced parameters of its ``--quick`` version, and a drawing function; this
module parses ``--quick``, ``--workers``, ``--out-dir`` and ``--png``, runs the
sweeps (resuming killed ones, :func:`anasim.study.run_sweep`) and saves the
figure the drawing function returns.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Mapping, Sequence

import xarray as xr

from anasim.study.runner import run_sweep
from anasim.study.spec import load_sweep


def run_study(description: str, name: str, sweeps: Mapping[str | Path, Mapping], quick_fixed: Mapping,
              draw: Callable[[dict[str, xr.Dataset]], object], argv: Sequence[str] | None = None
              ) -> dict[str, xr.Dataset]:
    """Run the study ``name`` from the command line ``argv``.

    Args:
        description: the ``--help`` text (the script's first docstring line).
        name: the figure is ``OUT-DIR/{name}[_quick].png``.
        sweeps: sweep TOML file → the ``parameters`` that replace its own in
            the ``--quick`` version.
        quick_fixed: ``fixed`` values added to every sweep in ``--quick``.
        draw: results (sweep file stem → Dataset) → a matplotlib Figure; it
            may print a summary table.

    Returns the results.
    """
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="a small version that runs in minutes")
    ap.add_argument("--workers", type=int, default=1, help="dask worker processes (1: in this process)")
    ap.add_argument("--out-dir", default="out", help="result files and the figure go here")
    ap.add_argument("--png", default=None, help=f"figure path (default: OUT-DIR/{name}[_quick].png)")
    args = ap.parse_args(argv)
    tag = "_quick" if args.quick else ""
    out = Path(args.out_dir)
    results = {}
    for path, quick_params in sweeps.items():
        path = Path(path)
        spec = (load_sweep(path, parameters=dict(quick_params), fixed=dict(quick_fixed)) if args.quick
                else load_sweep(path))
        res = run_sweep(spec, out / f"{path.stem}{tag}.nc", workers=args.workers)
        results[path.stem] = res.dataset
        print(f"{res.out}: {res.points} points ({res.computed} computed) in {res.wall_s:.0f} s")
    fig = draw(results)
    fig.tight_layout()
    png = Path(args.png or out / f"{name}{tag}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"figure: {png}")
    return results
