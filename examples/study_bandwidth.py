"""Energy against accuracy: the SLM detection bandwidth trade-off on skew-small.

    python examples/study_bandwidth.py [--quick] [--workers N] [--out-dir out]

Runs ``examples/sweep_bandwidth.toml``: skew-small (784-128-10, λ = 0) on the
10-bit SLM profile at detection bandwidths Δf from 250 kHz to 25 GHz (all 60000
training images, 3 epochs, test on 10000; ``--quick``: 3 bands, 640 / 500
images of the shipped subset, 1 epoch). One read integrates the photocurrents
for t = 1/(2Δf): the noise variance (shot 2qIΔf, thermal 4kTΔf/R_f) falls ∝ 1/t
while the sources' and receivers' energy per read grows ∝ t. Writes the netCDF
result, examples/figures/study_bandwidth.png (test accuracy against energy per
training example, log x, the digital references as vertical lines) and
examples/results/study_bandwidth.json. Killed runs resume.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from anasim.study.script import run_study

HERE = Path(__file__).resolve().parent
SPEC = HERE / "sweep_bandwidth.toml"
QUICK_FIXED = {"train.epochs": 1, "training.train_size": 640, "training.test_size": 500,
               "training.data": "subset"}
QUICK_PARAMS = {"slm.bandwidth_hz": [2.5e5, 2.5e7, 2.5e9], "seed": [0]}


def noise_per_read(bandwidth_hz: float, key: int = 0) -> float:
    """Mean noise std of one read (normalized units) of a 784→128 layer of the
    slm-10bit profile at ``bandwidth_hz``, weights U(±1/√784), inputs U(0, 1)
    (the reference layer of devices/slm-10bit.toml's noise budget)."""
    import dataclasses  # noqa: PLC0415

    import jax  # noqa: PLC0415

    from anasim.devices import load_profile  # noqa: PLC0415

    slm = dataclasses.replace(load_profile(HERE.parent / "devices" / "slm-10bit.toml").coupling,
                              bandwidth_hz=float(bandwidth_hz))
    kw, kx, kf = jax.random.split(jax.random.key(key), 3)
    w = jax.random.uniform(kw, (128, 784), minval=-1 / 28, maxval=1 / 28)
    x = jax.random.uniform(kx, (256, 784))
    state = slm.program(slm.fabricate(kf, (128, 784)), kw, w)
    return float(np.mean(np.asarray(slm.noise_std(state, x))))


def per_example(ds):
    """Energies per training example (J) at the last epoch: a run's totals ÷ the examples
    it trained, read off ``digital_energy_j`` (examples × FLOPs × J per FLOP of the A100)."""
    from anasim.circuits import load_circuit  # noqa: PLC0415
    from anasim.learning.cost import DIGITAL_J_PER_FLOP, DIGITAL_REFERENCES, digital_flops_per_example  # noqa: PLC0415

    last = ds.isel(epoch=-1).isel(seed=0) if "seed" in ds.dims else ds.isel(epoch=-1)
    flops = digital_flops_per_example(load_circuit(HERE.parent / "circuits" / "skew-small.toml"))
    examples = last["digital_energy_j"] / (flops * DIGITAL_J_PER_FLOP)
    out = {k: (last[k] / examples).values for k in ("energy_j", "energy_arrays_j", "energy_writes_j",
                                                     "hardware_time_s")}
    out["digital_a100"] = flops * DIGITAL_J_PER_FLOP
    out["digital_h100"] = flops * DIGITAL_REFERENCES["H100"][1]
    out["accuracy"] = last["test_accuracy"].values
    out["iterations"] = last["iterations"].values
    out["bandwidth_hz"] = ds["slm.bandwidth_hz"].values
    return out


def draw(results):
    """Test accuracy against energy per example: total (filled) and the arrays' reads (hollow)."""
    e = per_example(results["sweep_bandwidth"])
    from _results import band  # noqa: PLC0415  (examples/ is on sys.path)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    acc = 100 * e["accuracy"]
    ax.plot(e["energy_j"], acc, "o-", label="total (arrays + SLM frame writes)")
    ax.plot(e["energy_arrays_j"], acc, "o--", mfc="none", label="arrays' reads only (∝ 1/Δf)")
    for x, y, f in zip(e["energy_arrays_j"], acc, e["bandwidth_hz"]):   # the totals crowd at the write floor
        ax.annotate(band(float(f)), (x, y), textcoords="offset points", xytext=(-4, 6), fontsize=8, ha="right")
    for val, label, style in ((e["digital_a100"], "A100 FP32", "--"), (e["digital_h100"], "H100 FP32", ":")):
        ax.axvline(val, color="k", ls=style, lw=1)
        ax.annotate(f"digital {label}", (val, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                    fontsize=8, ha="right", va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("energy per training example (J)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("skew-small on slm-10bit: detection bandwidth Δf (labels; read time 1/(2Δf))", fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return fig


def write_results(results, quick: bool) -> None:
    """examples/results/study_bandwidth[_quick].json: one row per bandwidth."""
    from _results import band, write  # noqa: PLC0415

    ds = results["sweep_bandwidth"]
    e = per_example(ds)
    rows = []
    for i, f in enumerate(e["bandwidth_hz"]):
        rows.append([band(float(f)), 1e9 / (2 * float(f)), noise_per_read(float(f)), float(e["iterations"][i]),
                     float(e["accuracy"][i]), float(e["energy_j"][i]), float(e["energy_arrays_j"][i]),
                     float(e["energy_writes_j"][i]), float(e["hardware_time_s"][i])])
    columns = ["Δf", "read time (ns)", "noise std per read (784→128 layer)", "iterations per step",
               "test accuracy", "energy per example (J)", "arrays (J)", "writes (J)",
               "hardware time per example (s)"]
    epochs = ds.sizes.get("epoch", 1)
    write("study_bandwidth", "study_bandwidth.py", {
        "digital_a100": (float(e["digital_a100"]), "J", "digital A100 FP32 energy per example"),
        "digital_h100": (float(e["digital_h100"]), "J", "digital H100 FP32 energy per example"),
    }, {"title": f"SLM detection bandwidth on skew-small (slm-10bit), {epochs} epoch(s), seed 0",
        "notes": ("Energies per training example (J), cumulative over the run ÷ examples trained. Noise std: "
                  "mean over outputs of one read of a 784→128 layer, weights U(±1/28), inputs U(0, 1), "
                  "normalized units (anasim.devices.SLMCrossbar.noise_std).")},
        tables={"main": {"columns": columns, "rows": rows}}, quick=quick)


def main() -> None:
    from _results import quick_flag  # noqa: PLC0415  (examples/ is on sys.path)

    results = run_study(__doc__.splitlines()[0], "study_bandwidth", {SPEC: QUICK_PARAMS}, QUICK_FIXED, draw)
    write_results(results, quick_flag())


if __name__ == "__main__":  # dask worker processes import this module
    main()
