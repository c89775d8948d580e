"""Imperfect symmetry: accuracy, Lipschitz constant and gradient alignment
against the structure λ (ideal devices) and against gyrator mismatch ε.

    python examples/study_symmetry.py [--quick] [--workers N] [--out-dir out]

Runs the sweeps of ``examples/sweep_symmetry.toml`` (λ ∈ {0, ¼, ½, ¾, 1},
ideal devices) and ``examples/sweep_gyrator.toml`` (ε ∈ {0, 0.1, 0.2, 0.4} on
the gm-C gyrator profile) — in full: a 784-128-10 circuit, 10000 Fashion-MNIST
training images, 2 epochs, 2 seeds, 18 points (``--quick``: fewer values,
784-32-10, the shipped subset, one seed, one epoch) — and writes their netCDF
results and one PNG. Killed runs resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from anasim.study import load_sweep, run_sweep  # noqa: E402
from anasim.study.plots import plot_vs_parameter  # noqa: E402

HERE = Path(__file__).resolve().parent
QUICK_FIXED = {"train.epochs": 1, "training.train_size": 2000, "training.test_size": 500,
               "training.data": "subset",
               "network.sizes": [784, 32, 10], "alignment.batch": 8}
QUICK = {
    "sweep_symmetry.toml": {"circuit.lam": [0.0, 0.5, 1.0], "seed": [0]},
    "sweep_gyrator.toml": {"gyrator.epsilon": [0.0, 0.4], "seed": [0]},
}


def load(name: str, quick: bool):
    if quick:
        return load_sweep(HERE / name, parameters=QUICK[name], fixed=QUICK_FIXED)
    return load_sweep(HERE / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small version that runs in minutes")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out-dir", default="out")
    ap.add_argument("--png", default=None, help="figure path (default: OUT-DIR/study_symmetry[_quick].png)")
    args = ap.parse_args()
    tag = "_quick" if args.quick else ""
    out = Path(args.out_dir)
    results = {}
    for name in QUICK:
        spec = load(name, args.quick)
        res = run_sweep(spec, out / f"{Path(name).stem}{tag}.nc", workers=args.workers)
        results[name] = res.dataset
        print(f"{res.out}: {res.points} points ({res.computed} computed) in {res.wall_s:.0f} s")

    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for row, (name, x) in enumerate([("sweep_symmetry.toml", "circuit.lam"),
                                     ("sweep_gyrator.toml", "gyrator.epsilon")]):
        ds = results[name]
        plot_vs_parameter(ds, "test_accuracy", x=x, hue=None, ax=axes[row, 0])
        plot_vs_parameter(ds, "lipschitz", x=x, hue=None, ax=axes[row, 1])
        axes[row, 1].set_ylabel("hidden Lipschitz bound, trained chip")
        plot_vs_parameter(ds, "alignment_total", x=x, hue=None, ax=axes[row, 2])
        axes[row, 2].set_ylabel("cos(dyadic update, exact gradient)")
        axes[row, 0].set_title(ds.attrs.get("title", ""), fontsize=10, loc="left")
        for metric in ("test_accuracy", "lipschitz", "alignment_total"):
            final = ds[metric].isel(epoch=-1) if "epoch" in ds[metric].dims else ds[metric]
            mean = final.mean([d for d in final.dims if d != x])
            print(f"  {metric:<16} " + "  ".join(f"{x}={v:g}: {m:.4g}" for v, m in
                                                  zip(ds[x].values, mean.values)))
    fig.tight_layout()
    png = Path(args.png or out / f"study_symmetry{tag}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"figure: {png}")


if __name__ == "__main__":  # dask worker processes import this module
    main()
