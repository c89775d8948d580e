"""Where a training step's time goes: the 784-4×500-10 skew network (dyadic rule, batch 64)
on the ideal profile and on ``slm-10bit-500``, part by part, measured in one run.

Parts, each jitted on its own and timed as the best of several repeats on one
fixed chip and one batch of Fashion-MNIST images:

* ``step``: one whole training step (``anasim.learning.step.train_step``:
  relaxations, rule, optimizer, write), as the controller calls it;
* ``relaxations``: the free phase then the nudged phase from it, as a training
  step runs them (η computed once, inside, for both);
* ``η``: the ``eta_auto`` power iteration alone (included in ``relaxations``);
* ``write``: programming the whole chip (``reprogram``: the controller's shadow
  write on the SLM; every pixel quantized, gains and crosstalk folded in);
* ``program 500×500`` and ``program θᵀ``: one array, and the backward copy's
  transposed target, on the SLM device alone.

The iterations of each phase are printed with the times. The throughput of whole
epochs is ``benchmarks/train_throughput.py``'s. Run: ``python benchmarks/step_anatomy.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from anasim.circuits import init_params, layered, load_circuit
from anasim.circuits.effective import relaxation_eta
from anasim.circuits.engine import engine_for
from anasim.circuits.precision import float64_scope
from anasim.data import load_fashion_mnist
from anasim.devices import ideal_profile, load_profile
from anasim.learning import load_train_config
from anasim.learning.optim import optimizer, optimizer_settings
from anasim.learning.step import StepKind, train_step

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 5
BATCH = 64


def best_seconds(f, *args, repeats: int = REPEATS, inner: int = 5) -> tuple[float, object]:
    """Best over ``repeats`` of the mean time of ``inner`` calls of the compiled ``f``."""
    out = f(*args)
    jax.block_until_ready(out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            out = f(*args)
            jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / inner)
    return best, out


def anatomy(spec_file: Path, profile, x, y) -> dict:
    spec = load_circuit(spec_file).physics()
    cfg = load_train_config(spec_file, epochs=1, batch_size=BATCH, schedule="constant")
    key = jax.random.PRNGKey(0)
    params = init_params(spec, key)
    hw = layered.build(spec, profile, params, jax.random.PRNGKey(1))
    settings = optimizer_settings(spec, cfg, params, 1, [1])
    opt_state = optimizer(settings).init(params)
    engine, kind = engine_for(spec), StepKind.of(cfg)
    with float64_scope(True):   # as the controller traces a step (anasim.circuits.chip)
        t_step, _ = best_seconds(lambda k: train_step(spec, kind, engine, params, opt_state, settings, hw, None,
                                                      x, y, jnp.asarray(cfg.beta), jnp.asarray(0.0), k), key)

    @jax.jit
    def phases(hw, k):
        eta = relaxation_eta(spec, hw)
        free = layered.relax(spec, hw, x, k, eta=eta)
        nudged = layered.relax(spec, hw, x, jax.random.fold_in(k, 1), nudge=(0.05, 0.05), target=y,
                               state0=free, eta=eta)
        return free.iterations, nudged.iterations

    t_phases, (i_free, i_nudged) = best_seconds(phases, hw, key)
    t_eta, _ = best_seconds(jax.jit(lambda h: relaxation_eta(spec, h)), hw)
    t_write, _ = best_seconds(lambda p, k: layered.reprogram(spec, hw, p, k), params, key)
    return {"step": t_step, "relaxations": t_phases, "eta": t_eta, "write": t_write,
            "free iterations": int(i_free), "nudged iterations": int(i_nudged)}


def program_times(profile) -> tuple[float, float]:
    dev = profile.coupling
    w = jax.random.uniform(jax.random.PRNGKey(2), (500, 500), jnp.float32, -0.1, 0.1)
    inst = dev.fabricate(jax.random.PRNGKey(3), w.shape)
    key = jax.random.PRNGKey(4)
    plain, _ = best_seconds(jax.jit(lambda w: dev.program(inst, key, w)), w, inner=20)
    transposed, _ = best_seconds(jax.jit(lambda w: dev.program(inst, key, w.T)), w, inner=20)
    return plain, transposed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="where a training step's time goes, ideal vs SLM")
    ap.add_argument("--load-note", default="", help="a note on the machine's load, written to the results")
    args = ap.parse_args(argv)
    d = jax.devices()[0]
    device = f"{d.platform}: {getattr(d, 'device_kind', '') or d}"
    tr, _ = load_fashion_mnist()
    x = jnp.asarray(tr.x[:BATCH], jnp.float32)
    y = jax.nn.one_hot(jnp.asarray(tr.y[:BATCH]), 10, dtype=jnp.float32)
    slm = load_profile(ROOT / "devices" / "slm-10bit-500.toml")
    rows = []
    for name, spec_file, profile in (("ideal", "skew-4x500.toml", ideal_profile()),
                                     (slm.name, "skew-4x500-slm.toml", slm)):
        a = anatomy(ROOT / "circuits" / spec_file, profile, x, y)
        rows.append([name, a["step"] * 1e3, a["relaxations"] * 1e3, a["free iterations"], a["nudged iterations"],
                     a["eta"] * 1e3, a["write"] * 1e3])
        print(f"{name:16s} step {a['step'] * 1e3:7.2f} ms: relaxations {a['relaxations'] * 1e3:7.2f} ms ({a['free iterations']} free + "
              f"{a['nudged iterations']} nudged iterations), η {a['eta'] * 1e3:6.2f} ms, "
              f"write {a['write'] * 1e3:6.2f} ms")
    plain, transposed = program_times(slm)
    print(f"program one 500x500 SLM array: {plain * 1e3:.3f} ms; its transposed target: {transposed * 1e3:.3f} ms")
    from _results import write_results
    notes = f"batch {BATCH}, first training images, one chip; best of {REPEATS}; device {device}."
    if d.platform == "cpu":
        notes += " no GPU available: measured on the CPU."
    if args.load_note:
        notes += f" {args.load_note}"
    write_results("step_anatomy", {
        "slm_step_of_ideal": (rows[0][1] / rows[1][1], "1", "ideal step time ÷ SLM step time"),
        "slm_write_ms": (rows[1][6], "ms", f"writing the whole 4×500 chip on {slm.name}"),
        "program_ms": (plain * 1e3, "ms", "programming one 500×500 SLM array"),
        "program_transposed_ms": (transposed * 1e3, "ms", "the same, from a transposed target (θᵀ)"),
    }, {"title": "Where a training step's time goes, 4×500 skew network", "command":
        "python benchmarks/step_anatomy.py", "device": device, "notes": notes},
        tables={"main": {"columns": ["profile", "step (ms)", "relaxations (ms)", "free iterations", "nudged iterations",
                                     "η (ms, in the relaxations)", "write (ms)"], "rows": rows}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
