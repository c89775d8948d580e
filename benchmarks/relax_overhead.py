"""Time per relaxation iteration ÷ time of its bare matrix products.

The 4×500 dyadic network (784-500-500-500-500-10, λ = 0, circuits/skew-4x500*.toml),
batch 256, both compartments (centered nudging β = 0.05), a fixed budget of
iterations, on the ideal and on the 10-bit SLM profile. The bare products are
the same matrix products one iteration of the engine performs (per coupling θ_k
one forward and one backward product on the 2 × 256 compartment rows), in a
jitted ``fori_loop`` of the same length, nothing else. Each time is the best of
several runs, measured in this one run. Run: ``python benchmarks/relax_overhead.py``.

Both circuits have ``eta_auto`` on: ``relax()`` without an ``eta`` computes the
damping (a power iteration on the realized couplings) inside its jitted
program. Two more rows time the earlier ways: "η from Python" computes it
eagerly before each call and passes it (what ``relax()`` did before), and the
SLM "(before)" row reads with ``noise_draw = "threefry"`` (``jax.random.normal``
and a second product for the photocurrent). The JSON records the JAX device.

``--all-profiles`` adds a second table (``profiles``): the same ratio for every
shipped profile with temporal noise, each on the skew network with the
backward realization its coupling supports (SLM: a programmed copy; resistive:
the transposed read; gyrator: its own −θᵀ).
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits import build, init_params, load_circuit, relax
from anasim.circuits.effective import relaxation_eta
from anasim.devices import load_profile

ROOT = Path(__file__).resolve().parent.parent
ITERS = 40
REPEATS = 5
BATCH = 256


def best_time(fn) -> float:
    jax.block_until_ready(fn())          # compile
    best = np.inf
    for _ in range(REPEATS):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best


def bare_products(thetas, rows: int):
    """The engine's products per iteration: θ_k s_k and θ_kᵀ s_{k+1} for every k."""
    @jax.jit
    def run(states):
        def body(_, s):
            s = list(s)
            new = list(s)
            for k, th in enumerate(thetas):
                new[k + 1] = new[k + 1] + 1e-6 * (s[k] @ th.T)
                new[k] = new[k] + 1e-6 * (s[k + 1] @ th)
            return tuple(new)
        return jax.lax.fori_loop(0, ITERS, body, states)
    states = tuple(jnp.full((rows, th.shape[1]), 0.5, jnp.float32) for th in thetas) + (
        jnp.full((rows, thetas[-1].shape[0]), 0.5, jnp.float32),)
    return lambda: run(states)


#: shipped profiles with temporal noise, and the backward realization each supports
NOISY = {"slm-10bit": "copy", "slm-10bit-500": "copy", "slm-10bit-adc8": "copy", "reram": "transpose",
         "pcm": "transpose", "gyrator-gmc": "gyrator", "adc-8bit": "transpose"}


def profile_rows(x, y) -> list:
    """Per iteration, relaxation ÷ bare products for every profile of :data:`NOISY`. The
    SLM profiles run with their specs' floor stop on (its statistic costs per iteration
    too); a relaxation that stops on its floor before the budget is timed per iteration
    it ran."""
    base = replace(load_circuit(ROOT / "circuits" / "skew-4x500.toml"), max_iters=ITERS, tol=0.0, stall_window=0)
    rows = []
    for name, backward in NOISY.items():
        spec = replace(base, backward=backward, floor_stop=backward == "copy")
        profile = load_profile(ROOT / "devices" / f"{name}.toml")
        params = init_params(spec, jax.random.key(0))
        hw = build(spec, profile, params, jax.random.key(1))
        t_bare = best_time(bare_products(params.thetas, 2 * BATCH)) / ITERS
        run = lambda: relax(spec, hw, x, jax.random.key(3), nudge=(0.05, 0.05), target=y)  # noqa: E731
        n = int(run().iterations)
        t_relax = best_time(run) / n
        print(f"{name:22s} ({backward:9s}) {n:3d} iterations, ratio per iteration {t_relax / t_bare:.2f}")
        rows.append([name, backward, n, 1e3 * t_relax, 1e3 * t_bare, t_relax / t_bare])
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="time per relaxation iteration ÷ its bare products")
    ap.add_argument("--all-profiles", action="store_true", help="also every shipped profile with temporal noise")
    ap.add_argument("--load-note", default="", help="a note on the machine's load, written to the results")
    args = ap.parse_args(argv)
    x = jax.random.uniform(jax.random.key(2), (BATCH, 784), jnp.float32)
    y = jax.nn.one_hot(jnp.arange(BATCH) % 10, 10, dtype=jnp.float32)
    dev = jax.devices()[0]
    device = f"{dev.platform}: {getattr(dev, 'device_kind', '') or dev}"
    cpu_note = "no GPU available: measured on the CPU" if dev.platform == "cpu" else ""
    print(f"784-500-500-500-500-10, lam = 0, batch {BATCH}, 2 compartments, {ITERS} iterations, "
          f"best of {REPEATS}; device {device}" + (f" ({cpu_note})" if cpu_note else ""))
    rows = []
    for name, circuit in (("ideal", "skew-4x500.toml"), ("slm-10bit", "skew-4x500-slm.toml")):
        spec = load_circuit(ROOT / "circuits" / circuit)
        spec = replace(spec, max_iters=ITERS, tol=0.0, stall_window=0, floor_stop=False)
        profile = load_profile(ROOT / "devices" / f"{name}.toml")
        params = init_params(spec, jax.random.key(0))
        hw = build(spec, profile, params, jax.random.key(1))
        t_bare = best_time(bare_products(params.thetas, 2 * BATCH))
        runs = [(name, lambda: relax(spec, hw, x, jax.random.key(3), nudge=(0.05, 0.05), target=y))]
        if name == "ideal":
            runs.append((f"{name}, η from Python", lambda: relax(spec, hw, x, jax.random.key(3), nudge=(0.05, 0.05),
                                                                  target=y, eta=relaxation_eta(spec, hw))))
        else:
            old = replace(profile, coupling=replace(profile.coupling, noise_draw="threefry"))
            hw_old = build(spec, old, params, jax.random.key(1))
            runs.append((f"{name} (before)", lambda: relax(spec, hw_old, x, jax.random.key(3), nudge=(0.05, 0.05),
                                                           target=y)))
        for label, fn in runs:
            t_relax = best_time(fn)
            print(f"{label:22s} relaxation {1e3 * t_relax / ITERS:7.2f} ms/iteration, bare products "
                  f"{1e3 * t_bare / ITERS:7.2f} ms/iteration, ratio {t_relax / t_bare:.2f}")
            rows.append([label, 1e3 * t_relax / ITERS, 1e3 * t_bare / ITERS, t_relax / t_bare])
    tables = {"main": {"columns": ["profile", "relaxation ms/iteration", "bare ms/iteration", "ratio"],
                       "rows": rows}}
    if args.all_profiles:
        tables["profiles"] = {"columns": ["profile", "backward", "iterations", "relaxation ms/iteration",
                                          "bare ms/iteration", "ratio"], "rows": profile_rows(x, y)}
    from _results import write_results
    notes = f"Best of {REPEATS}; device {device}." + (f" {cpu_note}." if cpu_note else "")
    if args.load_note:
        notes += f" {args.load_note}"
    write_results("relax_overhead", {}, {
        "title": "Time per relaxation iteration ÷ its bare matrix products, 4×500 dyadic network, batch 256",
        "command": "python benchmarks/relax_overhead.py" + (" --all-profiles" if args.all_profiles else ""),
        "device": device, "notes": notes}, tables=tables)


if __name__ == "__main__":
    main()
