"""Nudging strength β under detector noise, skew-symmetric vs symmetric.

    python examples/study_beta.py [--quick] [--workers N] [--out-dir out]

Runs ``examples/sweep_beta.toml`` — the full study: a 784-128-10 circuit on
the 10-bit SLM, 10000 Fashion-MNIST training images, 2 epochs, β ∈ {0.02,
0.1, 0.5, 1} × λ ∈ {0, 1} × Δf ∈ {25 MHz, 10 GHz} × 2 seeds (32 points;
``--quick``: three β values, 784-32-10, the shipped subset, one seed, one
epoch) — and writes the netCDF result and one PNG: test accuracy against β,
one line per structure, one panel per noise level. Killed runs resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from anasim.study import load_sweep, run_sweep  # noqa: E402
from anasim.study.plots import plot_vs_parameter  # noqa: E402

SPEC = Path(__file__).resolve().parent / "sweep_beta.toml"
QUICK_FIXED = {"train.epochs": 1, "training.train_size": 2000, "training.test_size": 500,
               "training.data": "subset",
               "network.sizes": [784, 32, 10]}
QUICK_PARAMS = {"rule.beta": [0.02, 0.1, 0.5], "circuit.lam": [0.0, 1.0], "slm.bandwidth_hz": [25e6, 1e10],
                "seed": [0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small version that runs in minutes")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out-dir", default="out")
    ap.add_argument("--png", default=None)
    args = ap.parse_args()
    tag = "_quick" if args.quick else ""
    spec = (load_sweep(SPEC, parameters=QUICK_PARAMS, fixed=QUICK_FIXED) if args.quick
            else load_sweep(SPEC))
    res = run_sweep(spec, Path(args.out_dir) / f"sweep_beta{tag}.nc", workers=args.workers)
    ds = res.dataset
    print(f"{res.out}: {res.points} points ({res.computed} computed) in {res.wall_s:.0f} s")

    bands = ds["slm.bandwidth_hz"].values
    fig, axes = plt.subplots(1, len(bands), figsize=(5.2 * len(bands), 3.9), squeeze=False, sharey=True)
    for ax, bw in zip(axes[0], bands):
        plot_vs_parameter(ds.sel({"slm.bandwidth_hz": bw}), "test_accuracy", x="rule.beta",
                          hue="circuit.lam", ax=ax)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ds["rule.beta"].values, [f"{b:g}" for b in ds["rule.beta"].values])
        ax.set_title(f"detection bandwidth Δf = {bw:.3g} Hz")
    fig.tight_layout()
    png = Path(args.png or Path(args.out_dir) / f"study_beta{tag}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    acc = ds["test_accuracy"].isel(epoch=-1).mean("seed")
    print(acc.to_dataframe()["test_accuracy"].unstack("rule.beta").round(3).to_string())
    print(f"figure: {png}")


if __name__ == "__main__":  # dask worker processes import this module
    main()
