"""Relaxation in float32, bfloat16 and float16: time per iteration and what it costs in accuracy.

Speed: the 4×500 dyadic network (784-500-500-500-500-10, λ = 0,
circuits/skew-4x500.toml, ideal profile), batch 256, both compartments
(nudge β = 0.05), a fixed budget of iterations (tol = 0); time per iteration
for each format, best of several runs, and the ratio float32 / format measured
in this one run (> 1: the reduced format is faster). On every platform jax
sees (the CPU, and a GPU when there is one).

Accuracy: a short dyadic training run of the skew 784-128-10 circuit
(circuits/skew-small.toml on the ideal profile) on the shipped Fashion-MNIST
subset in each format (same seed; the shadow weights stay float32), and the
test-accuracy difference to float32.

Run: ``python benchmarks/relax_precision.py`` (``--quick``: one epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from anasim.circuits import build, init_params, load_circuit, relax
from anasim.data import load_fashion_mnist
from anasim.devices.profile import ideal_profile
from anasim.learning import load_train_config, train
# the same network, batch, budget and timing as the overhead benchmark, so the two compare
from relax_overhead import BATCH, ITERS, REPEATS, best_time

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("float32", "bfloat16", "float16")


def time_per_iteration(device) -> dict:
    base = load_circuit(ROOT / "circuits" / "skew-4x500.toml")
    out = {}
    with jax.default_device(device):
        x = jax.random.uniform(jax.random.key(2), (BATCH, 784), jnp.float32)
        y = jax.nn.one_hot(jnp.arange(BATCH) % 10, 10, dtype=jnp.float32)
        for fmt in FORMATS:
            spec = dataclasses.replace(base, dtype=fmt, tol=0.0, max_iters=ITERS, stall_window=0)
            params = init_params(spec, jax.random.key(0))
            hw = build(spec, ideal_profile(), params, jax.random.key(1))
            run = jax.jit(lambda hw, x, y, spec=spec: relax(spec, hw, x, jax.random.key(3), nudge=(0.05, 0.05),
                                                          target=y))
            iters = int(run(hw, x, y).iterations)
            out[fmt] = best_time(lambda run=run, hw=hw: run(hw, x, y)) / iters
    return out


def accuracy(epochs: int) -> dict:
    base = load_circuit(ROOT / "circuits" / "skew-small.toml")
    train_set, test_set = load_fashion_mnist("subset")
    out = {}
    for fmt in FORMATS:
        spec = dataclasses.replace(base, dtype=fmt, device="")
        cfg = load_train_config(ROOT / "circuits" / "skew-small.toml", epochs=epochs, train_size=0, test_size=0, data="subset")
        t = time.perf_counter()
        res = train(spec, ideal_profile(), cfg, train_set, test_set, progress=False)
        out[fmt] = (res.history["test_accuracy"][-1], time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one training epoch instead of three")
    args = ap.parse_args(argv)
    platforms = [jax.devices("cpu")[0]]
    try:
        platforms += jax.devices("gpu")[:1]
    except RuntimeError:
        pass
    print(f"relaxation: 784-500-500-500-500-10, lam = 0, ideal devices, batch {BATCH}, 2 compartments, "
          f"{ITERS} iterations, best of {REPEATS}")
    times = {}
    for dev in platforms:
        t = times[dev.platform] = time_per_iteration(dev)
        print(f"  {dev.platform} ({dev.device_kind}):")
        for fmt in FORMATS:
            print(f"    {fmt:9s} {1e3 * t[fmt]:8.3f} ms/iteration   float32/{fmt} = {t['float32'] / t[fmt]:.2f}")
    epochs = 1 if args.quick else 3
    print(f"training: skew 784-128-10 (circuits/skew-small.toml, ideal devices), dyadic, shipped subset "
          f"(2000 train / 500 test), {epochs} epoch(s), seed 0")
    acc = accuracy(epochs)
    for fmt in FORMATS:
        a, wall = acc[fmt]
        print(f"    {fmt:9s} test accuracy {a:.4f}   difference to float32 {a - acc['float32'][0]:+.4f}   "
              f"({wall:.0f} s)")
    from _results import write_table
    write_table("relax_precision", ["platform", "format", "ms/iteration", "float32 / format", "test accuracy",
                                    "difference to float32"],
                [[p, fmt, 1e3 * t[fmt], t["float32"] / t[fmt], acc[fmt][0], acc[fmt][0] - acc["float32"][0]]
                 for p, t in times.items() for fmt in FORMATS], {
        "title": "Relaxation time per iteration by number format (4×500, batch 256) and "
                 f"{epochs}-epoch accuracy (skew 784-128-10, shipped subset)",
        "command": "python benchmarks/relax_precision.py" + (" --quick" if args.quick else ""),
        "notes": f"One run, best of {REPEATS}."})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
