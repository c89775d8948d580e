"""Device noise: test accuracy over SLM bit depth × detector noise, for
skew-symmetric, feedforward and symmetric circuits.

    python examples/study_noise.py [--quick] [--workers N] [--out-dir out]

Runs ``examples/sweep_noise.toml`` — the full study: a 784-128-10 circuit,
10000 Fashion-MNIST training images, 2 epochs, SLM bits ∈ {4, 6, 10} ×
detection band Δf ∈ {0 (noiseless), 10 GHz} × λ ∈ {0, ½, 1} × 2 seeds (36
points; ``--quick``: 4 and 10 bits, λ ∈ {0, 1}, 784-32-10, the shipped subset,
one seed, one epoch) — and writes the netCDF result and one PNG with a heat
map per structure. Killed runs resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from anasim.study import load_sweep, run_sweep  # noqa: E402
from anasim.study.plots import plot_heatmap  # noqa: E402

SPEC = Path(__file__).resolve().parent / "sweep_noise.toml"
QUICK_FIXED = {"train.epochs": 1, "training.train_size": 2000, "training.test_size": 500,
               "training.data": "subset",
               "network.sizes": [784, 32, 10]}
QUICK_PARAMS = {"slm.bits": [4, 10], "slm.bandwidth_hz": [0.0, 1e10], "circuit.lam": [0.0, 1.0], "seed": [0]}


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
    res = run_sweep(spec, Path(args.out_dir) / f"sweep_noise{tag}.nc", workers=args.workers)
    ds = res.dataset
    print(f"{res.out}: {res.points} points ({res.computed} computed) in {res.wall_s:.0f} s")

    lams = ds["circuit.lam"].values
    fig, axes = plt.subplots(1, len(lams), figsize=(5.2 * len(lams), 4.2), squeeze=False)
    names = {0.0: "skew-symmetric λ=0", 0.5: "feedforward λ=½", 1.0: "symmetric λ=1"}
    for ax, lam in zip(axes[0], lams):
        sub = ds.sel({"circuit.lam": lam})
        plot_heatmap(sub, "test_accuracy", x="slm.bits", y="slm.bandwidth_hz", ax=ax)
        ax.set_title(names.get(float(lam), f"λ = {lam:g}"))
    fig.tight_layout()
    png = Path(args.png or Path(args.out_dir) / f"study_noise{tag}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    acc = ds["test_accuracy"].isel(epoch=-1).mean("seed")
    print(acc.to_dataframe().unstack("circuit.lam")["test_accuracy"].round(3).to_string())
    print(f"figure: {png}")


if __name__ == "__main__":  # dask worker processes import this module
    main()
