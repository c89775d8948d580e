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

from pathlib import Path

import matplotlib.pyplot as plt

from anasim.study.plots import plot_vs_parameter
from anasim.study.script import run_study

SPEC = Path(__file__).resolve().parent / "sweep_beta.toml"
QUICK_FIXED = {"train.epochs": 1, "training.train_size": 2000, "training.test_size": 500,
               "training.data": "subset",
               "network.sizes": [784, 32, 10]}
QUICK_PARAMS = {"rule.beta": [0.02, 0.1, 0.5], "circuit.lam": [0.0, 1.0], "slm.bandwidth_hz": [25e6, 1e10],
                "seed": [0]}


def draw(results):
    """Test accuracy against β, one line per structure, one panel per detection band."""
    ds = results["sweep_beta"]
    bands = ds["slm.bandwidth_hz"].values
    fig, axes = plt.subplots(1, len(bands), figsize=(5.2 * len(bands), 3.9), squeeze=False, sharey=True)
    for ax, bw in zip(axes[0], bands):
        plot_vs_parameter(ds.sel({"slm.bandwidth_hz": bw}), "test_accuracy", x="rule.beta",
                          hue="circuit.lam", ax=ax)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ds["rule.beta"].values, [f"{b:g}" for b in ds["rule.beta"].values])
        ax.set_title(f"detection bandwidth Δf = {bw:.3g} Hz")
    acc = ds["test_accuracy"].isel(epoch=-1).mean("seed")
    print(acc.to_dataframe()["test_accuracy"].unstack("rule.beta").round(3).to_string())
    return fig


def write_results(results, quick: bool) -> None:
    """The manual's table (``examples/results/study_beta[_quick].json``): final epoch, every seed."""
    from _results import band, write  # noqa: PLC0415  (examples/ is on sys.path)

    ds = results["sweep_beta"]
    acc = ds["test_accuracy"].isel(epoch=-1)

    def cell(a):
        seeds = [float(v) for v in a.values.ravel() if v == v]
        if not seeds:
            return None
        if max(seeds) < 0.15:
            return "chance"
        text = sorted({f"{100 * v:.0f}" for v in seeds}, key=float)
        return (text[0] if len(text) == 1 else " / ".join(f"{100 * v:.0f}" for v in seeds)) + " %"

    lams = [(0.0, "skew (λ = 0)"), (1.0, "symmetric (λ = 1)")]
    rows = [[band(float(bw)), float(b)] + [cell(acc.sel({"slm.bandwidth_hz": bw, "rule.beta": b, "circuit.lam": lam}))
                                          if lam in ds["circuit.lam"].values else None for lam, _ in lams]
            for bw in ds["slm.bandwidth_hz"].values for b in ds["rule.beta"].values]
    write("study_beta", "study_beta.py", {}, {
        "title": f"Study 3, nudging strength β under noise (test accuracy, {ds.sizes.get('seed', 1)} seed(s))",
        "notes": "A cell lists every seed's accuracy where they differ."},
        tables={"main": {"columns": ["band", "β"] + [name for _, name in lams], "rows": rows}}, quick=quick)


def main() -> None:
    from _results import quick_flag  # noqa: PLC0415  (examples/ is on sys.path)

    results = run_study(__doc__.splitlines()[0], "study_beta", {SPEC: QUICK_PARAMS}, QUICK_FIXED, draw)
    write_results(results, quick_flag())


if __name__ == "__main__":  # dask worker processes import this module
    main()
