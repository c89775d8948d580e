"""Speed of deep resistive networks on the block solver: one DC solve, and seconds per EP epoch.

Two figures the reference (Scellier, ICML 2024, its public implementation on
this machine: CPU, 2 threads) is compared on:

* a batched free-phase DC solve of 20 DRN-1H (784-1024-10, 480 V inputs)
  examples by block coordinate descent (:func:`anasim.nodal.blocks.solve`),
  float32 to 1e-4 V (the training tolerance) and float64 to 1e-9 V; the median
  of ``--repeat`` solves after a warm-up (compilation timed apart). Reference:
  9 ms;
* seconds per training epoch (centered EP, batch 4, β = 1, every phase solved
  to 1e-4 V; :func:`anasim.nodal.blocks.sgd_epoch`, compiled before timing)
  of DRN-XS (784-100-10) and DRN-1H on the first 2000 and 10000 Fashion-MNIST
  training images, with ideal and with Shockley diodes. Reference: 4.3–4.9,
  17–22 s (DRN-XS) and 28–30, 158–169 s (DRN-1H).

Prints the 1-minute load average (``os.getloadavg``) before and after each
measurement: the machine is shared, and the figures are wall-clock times.

    python benchmarks/drn_speed.py [--repeat 20] [--sizes 2000,10000]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits.precision import float64_scope
from anasim.data import load_fashion_mnist
from anasim.nodal import blocks as bl

REFERENCE = {"solve_ms": 9.0, ("DRN-XS", 2000): "4.3–4.9", ("DRN-1H", 2000): "28–30",
             ("DRN-XS", 10000): "17–22", ("DRN-1H", 10000): "158–169"}
MODELS = {"DRN-XS": (100, 100.0), "DRN-1H": (1024, 480.0)}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def time_solve(params, x, physics, repeat):
    """(median s, first call s, sweeps, max KCL residual A, largest coupling current A)."""
    vin = bl.input_voltages(jnp.asarray(x, params.w[0].dtype), physics)
    t0 = time.perf_counter()
    jax.block_until_ready(bl.solve(params, vin, physics))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(bl.solve(params, vin, physics))
        times.append(time.perf_counter() - t0)
    res = float(jnp.max(bl.kcl_residual(params, vin, out[0], physics)))
    scale = float(jnp.max(jnp.abs(vin) @ params.w[0])) * physics.g_unit_s
    return float(np.median(times)), first, int(out[1]), res, scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--sizes", default="2000,10000", help="training-set sizes of the epoch timings")
    args = ap.parse_args()
    tr, _ = load_fashion_mnist()
    figures, rows = {}, []
    # --- one batched DC solve of 20 DRN-1H examples ---
    p = bl.init_params((784, 1024, 10), jax.random.PRNGKey(0))
    # a trained-like network: a few hundred EP steps so that diodes and outputs are where training puts them
    ph = bl.DrnPhysics(diode="ideal", input_gain_v=480.0, tol_v=1e-4)
    xs = tr.x[:800].reshape(-1, 4, 784)
    ys = np.eye(10, dtype=np.float32)[tr.y[:800]].reshape(-1, 4, 10)
    p = bl.sgd_epoch(p, xs, ys, ph, 1.0, 0.006)
    x20 = tr.x[1000:1020]
    for diode in ("ideal", "shockley"):
        phd = bl.DrnPhysics(diode=diode, input_gain_v=480.0, tol_v=1e-4)
        l0 = load()
        med, first, sweeps, res, scale = time_solve(p, x20, phd, args.repeat)
        print(f"DRN-1H, 20 examples, {diode} diodes, float32 to 1e-4 V: {med * 1e3:.2f} ms "
              f"(first call {first:.2f} s, {sweeps} sweeps, KCL residual {res:.2e} A of {scale:.2e} A "
              f"input currents; load {l0} → {load()})")
        figures[f"solve20_{diode}_float32_residual"] = (res / scale, "", f"its largest KCL residual / largest "
                                                        f"input current into a node")
        figures[f"solve20_{diode}_float32_ms"] = (med * 1e3, "ms", f"DRN-1H DC solve of 20 examples, {diode} diodes, "
                                                  f"float32 to 1e-4 V ({sweeps} sweeps; reference 9 ms)")
        with float64_scope():
            p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), p)
            ph64 = bl.DrnPhysics(diode=diode, input_gain_v=480.0, tol_v=1e-9)
            med64, _, sweeps64, res64, scale64 = time_solve(p64, x20.astype(np.float64), ph64, args.repeat)
        print(f"   float64 to 1e-9 V: {med64 * 1e3:.2f} ms ({sweeps64} sweeps, KCL residual {res64:.2e} A; "
              f"load {load()})")
        figures[f"solve20_{diode}_float64_residual"] = (res64 / scale64, "", "the same in float64")
        figures[f"solve20_{diode}_float64_ms"] = (med64 * 1e3, "ms", f"the same in float64 to 1e-9 V "
                                                  f"({sweeps64} sweeps)")
    # --- seconds per epoch ---
    for n in [int(s) for s in args.sizes.split(",")]:
        xs = tr.x[:n].reshape(-1, 4, 784)
        ys = np.eye(10, dtype=np.float32)[tr.y[:n]].reshape(-1, 4, 10)
        for model, (hidden, gain) in MODELS.items():
            for diode in ("ideal", "shockley"):
                phd = bl.DrnPhysics(diode=diode, input_gain_v=gain, tol_v=1e-4)
                p0 = bl.init_params((784, hidden, 10), jax.random.PRNGKey(0))
                compiled = bl.sgd_epoch.lower(p0, xs, ys, phd, 1.0, 0.006).compile()
                l0 = load()
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(p0, xs, ys, 1.0, 0.006))
                dt = time.perf_counter() - t0
                l1 = load()
                print(f"{model} {diode}, {n} images: {dt:.2f} s per epoch (load {l0} → {l1}; "
                      f"reference {REFERENCE[(model, n)]} s)")
                rows.append([model, diode, n, round(dt, 2), REFERENCE[(model, n)], l0, l1])
    from _results import write_results
    write_results("drn_speed", figures, {
        "title": "Deep resistive networks: block-solver speed",
        "command": "python benchmarks/drn_speed.py",
        "notes": ("Wall-clock on a shared 2-core CPU (load averages in the table); JAX on the CPU. Epoch: "
                  "centered EP, batch 4, beta 1, SGD 0.006, every phase to 1e-4 V, training pass only "
                  "(compiled beforehand). Reference figures: the public implementation of Scellier (ICML 2024) "
                  "on this machine, as given by the project."),
    }, tables={"epochs": {"columns": ["model", "diodes", "training images", "s per epoch", "reference s per epoch",
                                      "load before", "load after"], "rows": rows}})


if __name__ == "__main__":
    main()
