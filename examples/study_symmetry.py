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

from pathlib import Path

import matplotlib.pyplot as plt

from anasim.study.plots import plot_vs_parameter
from anasim.study.script import run_study

HERE = Path(__file__).resolve().parent
QUICK_FIXED = {"train.epochs": 1, "training.train_size": 2000, "training.test_size": 500,
               "training.data": "subset",
               "network.sizes": [784, 32, 10], "alignment.batch": 8}
QUICK = {
    HERE / "sweep_symmetry.toml": {"circuit.lam": [0.0, 0.5, 1.0], "seed": [0]},
    HERE / "sweep_gyrator.toml": {"gyrator.epsilon": [0.0, 0.4], "seed": [0]},
}


def draw(results):
    """Accuracy, Lipschitz bound and gradient alignment against λ (top) and gyrator mismatch ε (bottom)."""
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for row, (name, x) in enumerate([("sweep_symmetry", "circuit.lam"), ("sweep_gyrator", "gyrator.epsilon")]):
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
    return fig


def main() -> None:
    run_study(__doc__.splitlines()[0], "study_symmetry", QUICK, QUICK_FIXED, draw)


if __name__ == "__main__":  # dask worker processes import this module
    main()
