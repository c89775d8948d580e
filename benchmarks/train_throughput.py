"""Training throughput of the 784-4×500-10 skew-symmetric network (dyadic rule,
batch 64) on the ideal and the 10-bit SLM profiles, and its ratio to the bare
matrix products of the same relaxation schedule.

For each profile: one epoch to compile, then a timed epoch over ``--examples``
training images (the training steps only: program, relax free and nudged,
read, rule, optimizer, write; the per-epoch evaluation is not counted). "Bare" is a jitted
``fori_loop`` doing exactly the products one training step needs -- the input
projection once, then per iteration a forward and a backward product per coupling
for both compartments (2 × batch rows) -- for the mean iteration count the
training step used (free + nudged phase; all counted with two compartments
although the free phase runs one, so "bare" is generous and the ratio
understates the overhead). Ratios come from one run on one machine.

    python benchmarks/train_throughput.py [--examples 640]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from anasim.circuits import load_circuit
from anasim.data import load_fashion_mnist
from anasim.devices import ideal_profile, load_profile
from anasim.learning import load_train_config, train

ROOT = Path(__file__).resolve().parent.parent


def bare_step_seconds(sizes, batch: int, iterations: int, repeats: int = 5) -> float:
    """Seconds for the matrix products of one training step (float32)."""
    key = jax.random.PRNGKey(0)
    mats = [jax.random.normal(key, (sizes[k + 1], sizes[k]), jnp.float32) * 0.03 for k in range(len(sizes) - 1)]
    x = jax.random.uniform(key, (batch, sizes[0]), jnp.float32)
    states = [jnp.zeros((2 * batch, n), jnp.float32) for n in sizes[1:]]

    @jax.jit
    def step(x, states):
        inject = x @ mats[0].T

        def body(_, s):
            new = list(s)
            new[0] = s[0] * 0.5 + jnp.concatenate([inject, inject])
            for k in range(1, len(s)):
                new[k] = s[k - 1] @ mats[k].T                    # forward into layer k+1
                new[k - 1] = new[k - 1] + s[k] @ mats[k]         # backward into layer k
            return new

        return jax.lax.fori_loop(0, iterations, body, states)

    jax.block_until_ready(step(x, states))
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(step(x, states))
    return (time.perf_counter() - t0) / repeats


def measure(spec_name: str, profile, examples: int, data) -> dict:
    spec = load_circuit(ROOT / "circuits" / spec_name)
    cfg = load_train_config(ROOT / "circuits" / spec_name, epochs=2, train_size=examples, test_size=64, batch_size=64, schedule="constant")
    r = train(spec, profile, cfg, *data, progress=False)
    wall = r.history["train_wall_s"][1]   # the training steps only (no evaluation)
    iters = r.history["iterations"][1]
    steps = examples // cfg.batch_size
    bare = bare_step_seconds(spec.sizes, cfg.batch_size, int(round(iters)))
    return {"profile": profile.name, "examples_per_s": steps * cfg.batch_size / wall,
            "step_s": wall / steps, "iterations": iters, "bare_step_s": bare, "ratio": wall / steps / bare}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="training throughput of the 4x500 skew network")
    ap.add_argument("--examples", type=int, default=640, help="training images in the timed epoch")
    args = ap.parse_args(argv)
    data = load_fashion_mnist()
    rows = [measure("skew-4x500.toml", ideal_profile(), args.examples, data),
            measure("skew-4x500-slm.toml", load_profile(ROOT / "devices" / "slm-10bit-500.toml"), args.examples, data)]
    print(f"{'profile':10s} {'examples/s':>10s} {'s/step':>8s} {'iters/step':>10s} {'bare s/step':>11s} "
          f"{'step / bare':>11s}")
    for r in rows:
        print(f"{r['profile']:10s} {r['examples_per_s']:10.1f} {r['step_s']:8.3f} {r['iterations']:10.1f} "
              f"{r['bare_step_s']:11.4f} {r['ratio']:11.2f}")
    print(f"SLM / ideal throughput: {rows[1]['examples_per_s'] / rows[0]['examples_per_s']:.2f}")
    from _results import write_table
    write_table("train_throughput", ["profile", "examples/s", "s/step", "iterations/step", "bare s/step", "step / bare"],
                [[r["profile"], r["examples_per_s"], r["step_s"], r["iterations"], r["bare_step_s"], r["ratio"]]
                 for r in rows], {
        "title": "Training throughput, 4×500 skew-symmetric network, dyadic rule",
        "command": f"python benchmarks/train_throughput.py --examples {args.examples}",
        "notes": f"{args.examples} examples, batch 64."})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
