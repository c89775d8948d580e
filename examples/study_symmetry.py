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

import re
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


def write_results(results, quick: bool) -> None:
    """The manual's figures (``examples/results/study_symmetry[_quick].json``): final epoch, mean over seeds."""
    from _results import span, write  # noqa: PLC0415  (examples/ is on sys.path)

    def final(name, metric, x):
        da = results[name][metric]
        da = da.isel(epoch=-1) if "epoch" in da.dims else da
        da = da.mean([d for d in da.dims if d != x])
        return {float(v): float(m) for v, m in zip(da[x].values, da.values)}

    lam = {m: final("sweep_symmetry", m, "circuit.lam") for m in ("test_accuracy", "lipschitz", "iterations")}
    gyr = {m: final("sweep_gyrator", m, "gyrator.epsilon") for m in ("test_accuracy", "lipschitz", "alignment_total")}

    def at(d, *keys, fmt="{:.3g}", scale=1.0):
        return span([scale * v for k, v in d.items() if any(abs(k - x) < 1e-9 for x in keys)], fmt)

    e0, e1 = min(gyr["test_accuracy"]), max(gyr["test_accuracy"])
    high = [k for k in lam["lipschitz"] if k > 0.5]
    figures = {
        "lip_skew": (at(lam["lipschitz"], 0.0), "", "hidden Lipschitz bound, λ = 0 (ideal)"),
        "lip_quarter": (at(lam["lipschitz"], 0.25), "", "hidden Lipschitz bound, λ = ¼"),
        "lip_half": (at(lam["lipschitz"], 0.5), "", "hidden Lipschitz bound, λ = ½"),
        "lip_high": (at(lam["lipschitz"], *high, fmt="{:.0f}"), "",
                     "hidden Lipschitz bound, λ = " + " and ".join(f"{k:g}" for k in high)),
        "iters_low": (at(lam["iterations"], *[k for k in lam["iterations"] if k <= 0.25], fmt="{:.0f}"), "",
                      "free relaxation iterations, λ ≤ ¼"),
        "iters_sym": (at(lam["iterations"], 1.0, fmt="{:.0f}"), "", "free relaxation iterations, λ = 1"),
        "acc_skew": (at(lam["test_accuracy"], 0.0, fmt="{:.1f}", scale=100), "%", "test accuracy, λ = 0"),
        "acc_high": (at(lam["test_accuracy"], *[k for k in lam["test_accuracy"] if k >= 0.5], fmt="{:.1f}",
                        scale=100), "%", "test accuracy, λ ≥ ½"),
        "acc_gyr0": (at(gyr["test_accuracy"], e0, fmt="{:.1f}", scale=100), "%", f"gyrator profile, ε = {e0:g}"),
        "acc_gyr4": (at(gyr["test_accuracy"], e1, fmt="{:.1f}", scale=100), "%", f"gyrator profile, ε = {e1:g}"),
        "align_gyr": (f"{gyr['alignment_total'][e0]:.2f} → {gyr['alignment_total'][e1]:.2f}", "",
                      f"gyrator: alignment with the exact gradient, ε = {e0:g} → {e1:g}"),
        "lip_gyr": (f"{gyr['lipschitz'][e0]:.2f} → {gyr['lipschitz'][e1]:.2f}", "",
                    f"gyrator: Lipschitz bound, ε = {e0:g} → {e1:g}"),
    }
    # single numbers as numbers, ranges as text
    figures = {k: (float(v) if v is not None and re.fullmatch(r"-?[\d.]+(e-?\d+)?", v) else v, u, t)
               for k, (v, u, t) in figures.items()}
    ds = results["sweep_symmetry"]
    write("study_symmetry", "study_symmetry.py", figures, {
        "title": f"Study 1, imperfect symmetry ({ds.sizes.get('epoch', 1)} epoch(s), "
                 f"{ds.sizes.get('seed', 1)} seed(s))"},
        quick=quick)


def main() -> None:
    from _results import quick_flag  # noqa: PLC0415  (examples/ is on sys.path)

    results = run_study(__doc__.splitlines()[0], "study_symmetry", QUICK, QUICK_FIXED, draw)
    write_results(results, quick_flag())


if __name__ == "__main__":  # dask worker processes import this module
    main()
