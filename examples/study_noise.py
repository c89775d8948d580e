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


def write_results(results, quick: bool) -> None:
    """The manual's figures (``examples/results/study_noise[_quick].json``): final epoch, mean over seeds."""
    from _results import band, span, write  # noqa: PLC0415  (examples/ is on sys.path)

    ds = results["sweep_noise"]
    acc = 100 * ds["test_accuracy"].isel(epoch=-1).mean("seed")
    bits = [int(b) for b in ds["slm.bits"].values]
    lo, hi = min(bits), max(bits)
    quiet, loud = float(ds["slm.bandwidth_hz"].min()), float(ds["slm.bandwidth_hz"].max())
    figures = {}
    for key, lam, name in (("skew", 0.0, "skew"), ("ff", 0.5, "feedforward"), ("sym", 1.0, "symmetric")):
        if lam in ds["circuit.lam"].values:
            a = acc.sel({"circuit.lam": lam, "slm.bandwidth_hz": quiet})
            value = f"{float(a.sel({'slm.bits': lo})):.1f} / {float(a.sel({'slm.bits': hi})):.1f}"
        else:
            value = None
        figures[key] = (value, "%", f"{name}, {lo} / {hi} bits, no detector noise")
    figures["noisy"] = (span(acc.sel({"slm.bandwidth_hz": loud}).values, "{:.0f}"), "%",
                        f"every structure and bit depth, {band(loud)} band")
    write("study_noise", "study_noise.py", figures, {
        "title": f"Study 2, device noise (SLM bits × detection band × λ; mean of {ds.sizes.get('seed', 1)} "
                 f"seed(s), {ds.sizes.get('epoch', 1)} epoch(s))"},
        quick=quick)


def main() -> None:
    from _results import quick_flag  # noqa: PLC0415  (examples/ is on sys.path)

    results = run_study(__doc__.splitlines()[0], "study_noise", {SPEC: QUICK_PARAMS}, QUICK_FIXED, draw)
    write_results(results, quick_flag())


if __name__ == "__main__":  # dask worker processes import this module
    main()
