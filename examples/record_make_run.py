"""Record what ``make run`` measured: ``out/run.nc`` → ``examples/results/make_run.json``.

``make run`` trains the skew-symmetric 784-128-10 circuit on the 10-bit SLM
profile and writes its per-epoch metrics to ``out/run.nc``. This script reads
that file (no training of its own) and writes the figures the manual's
getting-started page shows, so the page follows the code instead of a
transcription::

    make run
    python examples/record_make_run.py [--run out/run.nc]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="record make run's result file for the manual")
    ap.add_argument("--run", type=Path, default=ROOT / "out" / "run.nc", help="the result file of make run")
    args = ap.parse_args(argv)
    if not args.run.is_file():
        print(f"{args.run}: no result file; run `make run` first", file=sys.stderr)
        return 2
    d = xr.load_dataset(args.run, engine="h5netcdf")
    if d.attrs.get("anasim.kind") != "train":
        print(f"{args.run}: not the result file of a training run", file=sys.stderr)
        return 2
    epochs = [int(e) for e in d["epoch"].values]
    col = {k: [float(v) for v in d[k].values] for k in
           ("test_accuracy", "train_accuracy", "lipschitz", "iterations", "hardware_time_s", "energy_j",
            "wall_s")}
    examples = int(d.attrs["training.train_size"])
    # hardware time and energy are the run's running totals (result-file convention)
    rows = [[e, round(col["test_accuracy"][i], 4), round(col["train_accuracy"][i], 4),
             round(col["iterations"][i], 1), col["hardware_time_s"][i], col["energy_j"][i],
             round(col["wall_s"][i], 2)] for i, e in enumerate(epochs)]
    later = col["wall_s"][1:] or col["wall_s"]
    figures = {
        "test_accuracy": (col["test_accuracy"][-1], "1", f"test accuracy after epoch {epochs[-1]}"),
        "lipschitz": (col["lipschitz"][-1], "1", "hidden Lipschitz constant of the chip as built"),
        "iterations": (col["iterations"][-1], "1", "relaxation iterations per step (free + nudged)"),
        "hardware_time": (col["hardware_time_s"][-1], "s",
                          f"simulated hardware time for {len(epochs) * examples} examples"),
        "epoch_wall": (float(np.median(later)), "s", "wall time of an epoch after the first (compiled)"),
        "first_wall": (col["wall_s"][0], "s", "wall time of epoch 1 (compilation included, unless cached)"),
    }
    meta = {"title": f"make run: {d.attrs.get('circuit.name', 'skew-small')} on "
                     f"{d.attrs.get('device.profile', '?')}, {len(epochs)} epochs, "
                     f"{examples} / {int(d.attrs['training.test_size'])} images",
            "notes": f"read from {args.run.name} (written by make run); wall times on the machine that ran it"}
    _results.write("make_run", "record_make_run.py", figures, meta, tables={"per_epoch": {
        "columns": ["epoch", "test accuracy", "train accuracy", "iterations per step",
                    "hardware time, total (s)", "energy, total (J)", "wall (s)"], "rows": rows}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
