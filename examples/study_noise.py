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

from pathlib import Path

import matplotlib.pyplot as plt

from anasim.study.plots import plot_heatmap
from anasim.study.script import run_study

SPEC = Path(__file__).resolve().parent / "sweep_noise.toml"
QUICK_FIXED = {"train.epochs": 1, "training.train_size": 2000, "training.test_size": 500,
               "training.data": "subset",
               "network.sizes": [784, 32, 10]}
QUICK_PARAMS = {"slm.bits": [4, 10], "slm.bandwidth_hz": [0.0, 1e10], "circuit.lam": [0.0, 1.0], "seed": [0]}


def draw(results):
    """A heat map of test accuracy over bits × detection band, one per structure."""
    ds = results["sweep_noise"]
    lams = ds["circuit.lam"].values
    fig, axes = plt.subplots(1, len(lams), figsize=(5.2 * len(lams), 4.2), squeeze=False)
    names = {0.0: "skew-symmetric λ=0", 0.5: "feedforward λ=½", 1.0: "symmetric λ=1"}
    for ax, lam in zip(axes[0], lams):
        sub = ds.sel({"circuit.lam": lam})
        plot_heatmap(sub, "test_accuracy", x="slm.bits", y="slm.bandwidth_hz", ax=ax)
        ax.set_title(names.get(float(lam), f"λ = {lam:g}"))
    acc = ds["test_accuracy"].isel(epoch=-1).mean("seed")
    print(acc.to_dataframe().unstack("circuit.lam")["test_accuracy"].round(3).to_string())
    return fig


def main() -> None:
    run_study(__doc__.splitlines()[0], "study_noise", {SPEC: QUICK_PARAMS}, QUICK_FIXED, draw)


if __name__ == "__main__":  # dask worker processes import this module
    main()
