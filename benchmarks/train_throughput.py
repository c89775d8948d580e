"""Training throughput of the 784-4×500-10 skew-symmetric network (dyadic rule,
batch 64) on the ideal and the 10-bit SLM profiles, and its ratio to the bare
matrix products of the same relaxation schedule.

For each profile: one epoch to compile, then ``--epochs`` timed epochs over ``--examples``
training images (the training steps only: program, relax free and nudged, read, rule,
optimizer, write; the per-epoch evaluation is not counted). The fastest epoch is kept, the
one least disturbed by other work on a shared machine; the median one is recorded beside
it. "Bare" is a jitted
``fori_loop`` doing exactly the products one training step needs -- the input
projection once, then per iteration a forward and a backward product per coupling
for both compartments (2 × batch rows) -- for the mean iteration count the
training step used (free + nudged phase; all counted with two compartments
although the free phase runs one, so "bare" is generous and the ratio
understates the overhead). Ratios come from one run on one machine.

``--before`` adds a third row: the SLM run on the code path of earlier
versions (per-read noise from ``jax.random.normal`` and a second product for
the photocurrent, ``noise_draw = "threefry"``; no floor stop, only the
stall window), so the speed-up is measured side by side (docs/noise_speed.md).
The JSON records the JAX device the run used (``jax.devices()[0]``).

    python benchmarks/train_throughput.py [--examples 1920] [--epochs 3] [--before]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
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


def measure(spec_name: str, profile, examples: int, data, label: str | None = None, before: bool = False,
            epochs: int = 3) -> dict:
    """Train ``epochs + 1`` epochs (the first compiles) and keep the fastest timed one:
    on a shared machine the fastest is the one least disturbed by other work."""
    spec = load_circuit(ROOT / "circuits" / spec_name)
    if before:
        spec = dataclasses.replace(spec, floor_stop=False)
    cfg = load_train_config(ROOT / "circuits" / spec_name, epochs=epochs + 1, train_size=examples, test_size=64,
                            batch_size=64, schedule="constant")
    r = train(spec, profile, cfg, *data, progress=False)
    walls = list(r.history["train_wall_s"][1:])   # the training steps only (no evaluation)
    best = min(range(len(walls)), key=walls.__getitem__)
    wall, iters = walls[best], r.history["iterations"][1 + best]
    steps = examples // cfg.batch_size
    bare = bare_step_seconds(spec.sizes, cfg.batch_size, int(round(iters)))
    return {"profile": label or profile.name, "examples_per_s": steps * cfg.batch_size / wall,
            "step_s": wall / steps, "median_step_s": statistics.median(walls) / steps,
            "iterations": iters, "bare_step_s": bare, "ratio": wall / steps / bare}


def device_label() -> tuple[str, str]:
    """(platform, name) of the device JAX runs on, and a note when that is the CPU."""
    d = jax.devices()[0]
    name = f"{d.platform}: {getattr(d, 'device_kind', '') or d}"
    return name, ("no GPU available: measured on the CPU" if d.platform == "cpu" else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="training throughput of the 4x500 skew network")
    # 30 steps: in a 10-step epoch the first step after the evaluation weighs too much
    ap.add_argument("--examples", type=int, default=1920, help="training images in the timed epoch")
    ap.add_argument("--before", action="store_true",
                    help="also time the SLM on the earlier noise path (threefry draws, two products, stall window)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per profile (the fastest is kept)")
    ap.add_argument("--load-note", default="", help="a note on the machine's load, written to the results")
    args = ap.parse_args(argv)
    device, cpu_note = device_label()
    print(f"device: {device}" + (f" ({cpu_note})" if cpu_note else ""))
    data = load_fashion_mnist()
    slm = load_profile(ROOT / "devices" / "slm-10bit-500.toml")
    rows = [measure("skew-4x500.toml", ideal_profile(), args.examples, data, epochs=args.epochs),
            measure("skew-4x500-slm.toml", slm, args.examples, data, epochs=args.epochs)]
    if args.before:
        old = dataclasses.replace(slm, coupling=dataclasses.replace(slm.coupling, noise_draw="threefry"))
        rows.append(measure("skew-4x500-slm.toml", old, args.examples, data, label=f"{slm.name} (before)",
                            before=True, epochs=args.epochs))
    print(f"{'profile':24s} {'examples/s':>10s} {'s/step':>8s} {'median':>8s} {'iters/step':>10s} "
          f"{'bare s/step':>11s} {'step / bare':>11s} {'÷ ideal':>8s}")
    for r in rows:
        r["of_ideal"] = r["examples_per_s"] / rows[0]["examples_per_s"]
        print(f"{r['profile']:24s} {r['examples_per_s']:10.1f} {r['step_s']:8.3f} {r['median_step_s']:8.3f} "
              f"{r['iterations']:10.1f} "
              f"{r['bare_step_s']:11.4f} {r['ratio']:11.2f} {r['of_ideal']:8.2f}")
    from _results import write_results
    notes = (f"{args.examples} examples, batch 64; the fastest of {args.epochs} timed epochs per profile "
             f"(and the median epoch's s/step); device {device}.")
    if cpu_note:
        notes += f" {cpu_note}."
    if args.load_note:
        notes += f" {args.load_note}"
    figures = {"slm_of_ideal": (rows[1]["of_ideal"], "1", "SLM throughput ÷ ideal throughput")}
    if args.before:
        figures["slm_before_of_ideal"] = (rows[2]["of_ideal"], "1", "SLM throughput ÷ ideal, earlier noise path")
        figures["speedup"] = (rows[1]["examples_per_s"] / rows[2]["examples_per_s"], "1",
                              "SLM throughput, new ÷ earlier noise path")
    write_results("train_throughput", figures, {
        "title": "Training throughput, 4×500 skew-symmetric network, dyadic rule",
        "command": f"python benchmarks/train_throughput.py --examples {args.examples} --epochs {args.epochs}"
                   + (" --before" if args.before else ""),
        "device": device, "notes": notes},
        tables={"main": {"columns": ["profile", "examples/s", "s/step", "s/step (median epoch)", "iterations/step",
                                     "bare s/step", "step / bare", "throughput ÷ ideal"],
                         "rows": [[r["profile"], r["examples_per_s"], r["step_s"], r["median_step_s"], r["iterations"],
                                   r["bare_step_s"], r["ratio"], r["of_ideal"]] for r in rows]}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
