"""On-device training: program → load input → relax each phase → read → rule → optimizer → write.

The controller drives a chip built by the circuit's relaxation engine
(:func:`anasim.circuits.engine.engine_for`) the way the instrument around a
physical circuit would (docs/design.md, “Learning”); one step is :mod:`anasim.learning.step`:

1. **program**: the couplings are written into the devices. In ``shadow`` mode
   a digital float copy of the parameters is the truth and is programmed into
   the devices before every step (an SLM is rewritten as a whole, with fresh
   programming errors); in ``in-situ`` mode the devices hold the only copy and
   receive the optimizer's increments through their write response
   (``apply_update`` of the coupling device: soft bounds, asymmetric
   potentiation/depression).
2. **load input**: x goes through the DAC (inside the relaxation engine).
3. **relax each phase**: the nudged dyadic equilibrium (one relaxation holding
   both compartments) or the EP/CL/CpL phases. ``phases = "sequential"`` runs
   every phase on one chip; ``"twin"`` runs the second phase on a twin chip
   (same design, its own fabricated fixed-pattern errors), as two physical
   circuits working in parallel would.
4. **read**: both compartments through the ADCs (what the rule sees).
5. **rule**: :mod:`anasim.learning.rules` (``rule = "hep"``: holomorphic EP,
   :mod:`anasim.learning.holomorphic`, with optional Jacobian homeostasis).
6. **optimizer**: one optax chain (:mod:`anasim.learning.optim`): decoupled
   weight decay, SGD momentum, cosine (or constant) learning-rate schedule,
   layer-wise learning-rate multipliers.
7. **write**: back into the devices (shadow or in-situ).

Physical cost per step (:mod:`anasim.learning.cost`): device iterations
(summed over phases); simulated hardware time (one example at a time through
the loop, as the optical and resistive circuits process one input vector per
relaxation; the iteration time from the devices' physics or the profile's
``loop_time_s`` override); energy from each part's physics, split into arrays,
converters and writes, and the energy of the same training on a digital
accelerator (``digital_energy_j``). Every step relaxes the free phase first (its output scores the running train
accuracy: a nudged state has seen the target) and starts the nudged or clamped
phase from it.

Reproducibility: every random draw comes from a key derived from
(seed, epoch, step) and the data order from (seed, epoch), so a run killed
at any step and resumed from its checkpoint (HDF5, written atomically at each
epoch's end and inside epochs, ``training.checkpoint_every_steps`` /
``checkpoint_every_s``) ends with the same weights and metrics, bit for bit, as
an uninterrupted run (:mod:`anasim.learning.checkpoint`).
"""


from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from anasim.analysis.lipschitz import linearized_bound
from anasim.circuits import CircuitSpec, Params, effective_matrices
from anasim.circuits.engine import Engine, engine_for
from anasim.circuits.precision import float64_scope, wants_float64
from anasim.data import Split
from anasim.devices.profile import DeviceProfile
from anasim.errors import AnasimError, TrainingDiverged, WriteFailed
from anasim.learning.checkpoint import (
    METRICS,
    Position,
    checkpoint_path,
    checkpoint_position,
    history_dataset,
    load_checkpoint,
    plan_resume,
    save_checkpoint,
    write_history,
)
from anasim.learning.config import TrainConfig, computation_repr
from anasim.learning.cost import PARTS, CostMeter
from anasim.learning.optim import learning_rate_schedule, optimizer, optimizer_settings
from anasim.learning.step import StepKind, check_compatible, eval_batch, phases_and_rule, train_step
from anasim.learning.watch import DivergenceWatch
from anasim.outputs import remove_stale_temporaries


def _init_body(engine, spec, key):
    return engine.init_params(spec, key)


def _build_body(engine, spec, profile, params, key):
    return engine.build(spec, profile, params, key)


# Fabrication and programming are hundreds of small array operations: compiled
# once they run in milliseconds, op by op they compile one kernel at a time.
_init_jit = jax.jit(_init_body, static_argnums=(0, 1))
_build_jit = jax.jit(_build_body, static_argnums=(0, 1, 2))


def _init(engine, spec, key):
    return (_init_jit if "jit" in engine.abilities else _init_body)(engine, spec, key)


def _build(engine, spec, profile, params, key):
    return (_build_jit if "jit" in engine.abilities else _build_body)(engine, spec, profile, params, key)


def initial_params(spec: CircuitSpec, cfg: TrainConfig, engine: Engine | None = None) -> Params:
    """The couplings a run of ``cfg`` starts from: the engine's random initial
    couplings for the run's seed, with the biases of ``cfg.bias_init``."""
    engine = engine_for(spec) if engine is None else engine
    with float64_scope(wants_float64(spec)):
        k_init = jax.random.split(jax.random.PRNGKey(cfg.seed), 4)[0]
        return _initial_params(spec.physics(), cfg, engine, k_init)


def _initial_params(spec: CircuitSpec, cfg: TrainConfig, engine: Engine, key) -> Params:
    params = _init(engine, spec, key)
    if cfg.bias_init:
        params = dataclasses.replace(params, biases=tuple(
            jnp.full_like(b, v) for b, v in zip(params.biases, cfg.bias_init)))
    return params


def local_update(spec: CircuitSpec, cfg: TrainConfig, hw, x, y, key, *, beta: float | None = None,
                 hw2=None, engine: Engine | None = None) -> dict:
    """The rule's gradient estimate for one batch on the chip ``hw`` (no write).

    Runs the phases of ``cfg.rule`` (relaxations with nudge/clamp) on ``engine``
    (default :func:`~anasim.circuits.engine.engine_for` of ``spec``), reads the
    states through the ADC and applies the rule: the measurement the controller
    turns into a weight update. ``x``: (batch, n_in); ``y``: one-hot (batch, n_L).
    """
    engine = engine_for(spec) if engine is None else engine
    check_compatible(spec, cfg, hw.profile, engine)
    dtype = jnp.dtype(spec.dtype)
    beta = cfg.beta if beta is None else beta
    with float64_scope(wants_float64(spec)):
        return phases_and_rule(spec, StepKind.of(cfg), engine, hw, hw if hw2 is None else hw2,
                               jnp.asarray(x, dtype), jnp.asarray(y, dtype), jnp.asarray(beta, dtype), key).update


def evaluate(spec: CircuitSpec, hw, split: Split, key, batch: int = 500, engine: Engine | None = None) -> dict:
    """Free relaxation on every example of ``split`` through the hardware (with its noise),
    on ``engine`` (default :func:`~anasim.circuits.engine.engine_for` of ``spec``).

    Returns accuracy, mean loss, fraction of saturated neurons (states at a rail
    of the nonlinearity), mean relaxation iterations and whether any diverged.
    """
    engine = engine_for(spec) if engine is None else engine
    n = len(split)
    correct = loss = sat = iters = 0.0
    diverged = False
    nb = 0
    for i, start in enumerate(range(0, n, batch)):
        x = jnp.asarray(split.x[start:start + batch])
        y = jax.nn.one_hot(split.y[start:start + batch], spec.n_out, dtype=jnp.dtype(spec.dtype))
        c, l_, s, it, dv = eval_batch(spec, engine, hw, x, y, jax.random.fold_in(key, i))
        correct += float(c)
        loss += float(l_)
        sat += float(s) * x.shape[0]
        iters += float(it)
        diverged |= bool(dv)
        nb += 1
    return {"accuracy": correct / n, "loss": loss / n, "saturated": sat / n,
            "iterations": iters / max(nb, 1), "diverged": diverged}


def _lipschitz(spec, hw) -> float:
    """Hidden-layer Lipschitz constant ‖(I − W)^{-1}‖₂ of the hardware as built
    (Høier et al. eq. 17 on ``effective()`` matrices)."""
    return float(linearized_bound(effective_matrices(spec, hw)).hidden)


# --- the run -----------------------------------------------------------------------

# fraction of examples left out by discard_unsettled above which a run is warned:
# most of the data then trains nothing
UNSETTLED_WARNING = 0.5


@dataclass
class TrainResult:
    """What a run produced: final parameters, the chip, per-epoch metrics (dict of lists)."""

    params: Params
    hardware: Any
    history: dict
    config: TrainConfig
    spec: CircuitSpec
    profile_name: str

    def dataset(self):
        return history_dataset(self.history, self.spec, self.config, self.profile_name)


def check_run(spec: CircuitSpec, profile: DeviceProfile, cfg: TrainConfig, train_set: Split,
              engine: Engine | None = None, test_set: Split | None = None) -> None:
    """Raise the error a run would hit (incompatible rule/structure/device/engine, data size,
    output units vs classes) before any work.

    The classes are the dataset's declared number (:attr:`~anasim.data.Split.classes`), else
    the largest label + 1 of the splits given; either way every label must have its output
    unit (a label beyond the last would be trained and scored against an all-zero target)."""
    check_compatible(spec, cfg, profile, engine_for(spec) if engine is None else engine)
    where = spec.source or spec.name
    if train_set.x.shape[1] != spec.n_in:
        raise AnasimError(f"{where}: network.sizes[0] = {spec.n_in} but the data "
                          f"have {train_set.x.shape[1]} inputs")
    splits = [s for s in (train_set, test_set) if s is not None and len(s)]
    top = max((int(np.max(s.y)) for s in splits), default=spec.n_out - 1)
    low = min((int(np.min(s.y)) for s in splits), default=0)
    declared = train_set.classes
    classes = declared if declared is not None else top + 1
    told = "as declared by" if declared is not None else "the largest label + 1 in"
    if classes != spec.n_out:
        raise AnasimError(f"{where}: network.sizes[-1] = {spec.n_out} output units but the data "
                          f"have {classes} classes ({told} {train_set.source})")
    if top >= spec.n_out or low < 0:
        raise AnasimError(f"{where}: the data ({train_set.source}) hold labels in {low}..{top}, the "
                          f"network's {spec.n_out} output units take 0..{spec.n_out - 1}")


def engine_identity(engine) -> str:
    """``repr`` of an engine with its sets sorted: a frozenset's order (of strings) changes from one
    process to the next (hash randomization), and a checkpoint must resume in another process."""
    if not dataclasses.is_dataclass(engine):
        return repr(engine)
    fields = ", ".join(f"{f.name}={sorted(v) if isinstance(v, (set, frozenset)) else v!r}"
                       for f in dataclasses.fields(engine) if f.repr for v in [getattr(engine, f.name)])
    return f"{type(engine).__qualname__}({fields})"


def _progress(total, desc, enabled):
    if not enabled:
        return None
    return tqdm(total=total, desc=desc, leave=False, unit="step", dynamic_ncols=True)


def train(spec: CircuitSpec, profile: DeviceProfile, cfg: TrainConfig, train_set: Split, test_set: Split,
          *, engine: Engine | None = None, out: str | os.PathLike | None = None, resume: bool = False,
          progress: bool = True, stop_after: int | None = None, stop_after_steps: int | None = None,
          on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``spec`` on ``profile`` with local rules; returns a :class:`TrainResult`.

    ``engine``: the relaxation engine (default
    :func:`~anasim.circuits.engine.engine_for` of ``spec``; pass
    ``engine_for(spec, tables)`` to configure it from the spec file's tables).
    ``out``: netCDF result path, rewritten after every epoch; the checkpoint
    sits next to it (:func:`checkpoint_path`), written after every epoch and
    inside one (``cfg.checkpoint_every_steps`` / ``checkpoint_every_s``).
    ``resume``: continue from that checkpoint, at the step it holds (it must
    match spec, profile and config). ``stop_after``: stop after this many
    epochs in total (as if killed; resumable; a checkpoint already past that
    point is returned as it stands, with a warning). ``stop_after_steps``: stop
    after this many steps in total (epochs × steps per epoch + steps), after
    writing the checkpoint there (as if killed right after it). ``on_epoch``:
    called with (epoch, metrics) after each epoch.
    """
    engine = engine_for(spec) if engine is None else engine
    check_run(spec, profile, cfg, train_set, engine, test_set)
    # The step programs the devices, whose errors are drawn in float64 (anasim.circuits.chip):
    # the whole compiled step is traced in the float64 scope; states keep the spec's dtype.
    with float64_scope(True):
        return _run(spec, profile, cfg, train_set, test_set, engine, out, resume, progress, stop_after,
                    stop_after_steps, on_epoch)


def _run(spec, profile, cfg, train_set, test_set, engine, out, resume, progress, stop_after, stop_after_steps,
         on_epoch):
    if cfg.train_size:
        train_set = train_set.head(cfg.train_size)
    if cfg.test_size:
        test_set = test_set.head(cfg.test_size)
    n = len(train_set)
    steps = n // cfg.batch_size
    if steps < 1:
        raise AnasimError(f"training.batch_size = {cfg.batch_size} exceeds the {n} training examples")
    dtype = jnp.dtype(spec.dtype)
    physics = spec.physics()
    root = jax.random.PRNGKey(cfg.seed)
    k_init, k_build, k_twin, k_run = jax.random.split(root, 4)
    params = _initial_params(physics, cfg, engine, k_init)
    hw = _build(engine, physics, profile, params, k_build)
    # the second chip of twin phases (None otherwise: every phase runs on hw)
    hw2 = _build(engine, physics, profile, params, k_twin) if cfg.phases == "twin" else None
    kind = StepKind.of(cfg)
    lam_homeo = jnp.asarray(cfg.homeostasis, dtype)
    history = {k: [] for k in METRICS}

    def identity(epochs: int) -> str:
        # keep_going and the checkpoint cadence change what is kept, not the run: a run may resume
        # with other values; epochs: the run's first schedule segment (a finished run may be extended)
        return json.dumps([repr(spec), repr(profile), computation_repr(cfg, epochs=epochs),
                           engine_identity(engine), n, len(test_set)], default=str)

    segments = [int(cfg.epochs)]
    fingerprint = identity(cfg.epochs)
    ckpt = checkpoint_path(out) if out else None
    if out:   # the torn files of a killed writer of this run (a live one's stay)
        remove_stale_temporaries(out, [ckpt])
    if resume:
        if ckpt is None or not ckpt.exists():
            raise AnasimError(f"--resume: no checkpoint {ckpt} to resume from")
        segments, fingerprint = plan_resume(ckpt, int(cfg.epochs), identity)
        cfg = dataclasses.replace(cfg, epochs=segments[-1])
    settings = optimizer_settings(spec, cfg, params, steps, segments)
    schedule = learning_rate_schedule(settings.rates)
    opt_state = optimizer(settings).init(params)
    pos = Position(0)
    if resume:
        start_epoch, history, st = load_checkpoint(
            ckpt, fingerprint, {"params": params, "opt_state": opt_state, "hw": hw, "hw2": hw2})
        params, opt_state, hw, hw2 = st["params"], st["opt_state"], st["hw"], st["hw2"]
        for k in METRICS:   # a checkpoint from before a metric existed
            history.setdefault(k, [float("nan")] * start_epoch)
        pos = checkpoint_position(ckpt)
        if not 0 <= pos.step < steps:
            raise AnasimError(f"{ckpt}: checkpoint at step {pos.step} of an epoch of {steps} steps")
    meter = CostMeter(spec, profile, cfg.rule, cfg.phases, int(cfg.hep_points))
    if pos.meter is not None:
        meter.resume(pos.meter["energy"], pos.meter["time_s"], int(pos.meter["examples"]))
    elif history["hardware_time_s"]:   # a checkpoint from before the meter's totals were kept
        meter.resume({k: history[f"energy_{k}_j"][-1] for k in PARTS}, history["hardware_time_s"][-1],
                     pos.epoch * steps * cfg.batch_size)
    watch = DivergenceWatch(unsettled_alone=float(spec.tol) > 0)
    if pos.watch is not None:
        watch.restore(pos.watch)
    kept = dict(out=out, ckpt=ckpt, fingerprint=fingerprint, spec=spec, cfg=cfg, profile=profile,
                segments=segments)
    if resume:   # the result file says what the checkpoint holds before any work (a kill between
        _write(**kept, state=None, history=history, position=pos)   # their renames)
    last = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    if resume and stop_after is not None and (pos.epoch, pos.step) > (last, 0):
        # a checkpoint keeps only its latest state: there is nothing earlier to return
        warnings.warn(f"{ckpt}: the checkpoint stands at {_where(pos)}, past stop_after = {stop_after}; "
                      f"the run returns the checkpoint's state as it is", stacklevel=3)
    every_steps, every_s = int(cfg.checkpoint_every_steps), float(cfg.checkpoint_every_s)
    last_save = time.monotonic()
    halt = False
    synced = resume   # whether the result file on disk is this run's
    for epoch in range(pos.epoch, last):
        first = pos.step if epoch == pos.epoch else 0
        sums = {"correct": 0.0, "loss": 0.0, "homeo": 0.0, "iterations": 0, "unsettled": 0, "tripped": 0}
        if first:
            sums.update(pos.sums)
        t0 = time.perf_counter() - (pos.wall_s if first else 0.0)
        beta = cfg.beta + cfg.beta_growth * epoch
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        k_epoch = jax.random.fold_in(k_run, epoch)
        bar = _progress(steps, f"epoch {epoch + 1}/{cfg.epochs}", progress)
        if bar is not None and first:
            bar.update(first)

        def position(step, watch_state=None):
            return Position(epoch, step, dict(sums), meter.state(), watch_state or watch.state(),
                            time.perf_counter() - t0)

        for step in range(first, steps):
            sel = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = jnp.asarray(train_set.x[sel], dtype)
            y = jax.nn.one_hot(train_set.y[sel], spec.n_out, dtype=dtype)
            good = (params, opt_state, hw, hw2)   # the state before this step
            watched = watch.state()
            params, opt_state, hw, hw2, it, c, l_, u, h, (sat, finite), ci = train_step(
                physics, kind, engine, params, opt_state, settings, hw, hw2, x, y,
                jnp.asarray(beta, dtype), lam_homeo, jax.random.fold_in(k_epoch, step))
            cause = watch.check(loss=float(l_) / cfg.batch_size, finite=bool(finite), saturated=float(sat),
                                unsettled=int(u) / cfg.batch_size)
            if cause is not None:
                if not cfg.keep_going:   # the sums and the meter do not hold this step yet
                    _stop(kept, good, history, position(step, watched), f"epoch {epoch + 1}, step {step + 1}: {cause}")
                sums["tripped"] += 1
                if sums["tripped"] == 1:
                    warnings.warn(f"epoch {epoch + 1}, step {step + 1}: {cause} (training.keep_going: "
                                  f"continuing)", RuntimeWarning, stacklevel=3)
            it = int(it)
            meter.step(good[2], hw, good[3], hw2, it, int(ci), cfg.batch_size)
            sums["iterations"] += it
            sums["correct"] += float(c)
            sums["unsettled"] += int(u)
            sums["loss"] += float(l_)
            sums["homeo"] += float(h)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(acc=f"{sums['correct'] / ((step + 1) * cfg.batch_size):.3f}", it=it)
            done = step + 1
            halt = stop_after_steps is not None and epoch * steps + done >= stop_after_steps
            if done < steps and out and (halt or (every_steps and done % every_steps == 0)
                                         or (every_s and time.monotonic() - last_save >= every_s)):
                if synced:
                    _save(kept, (params, opt_state, hw, hw2), history, position(done))
                else:   # the first file of a run that replaces another: the result file too
                    _write(**kept, state=(params, opt_state, hw, hw2), history=history, position=position(done))
                    synced = True
                last_save = time.monotonic()
            if halt and done < steps:
                if bar is not None:
                    bar.close()
                return TrainResult(params=params, hardware=hw, history=history, config=cfg, spec=spec,
                                   profile_name=profile.name)
        if bar is not None:
            bar.close()
        jax.block_until_ready(params)
        t_train = time.perf_counter() - t0
        if not cfg.keep_going and not all(bool(jnp.all(jnp.isfinite(leaf)))
                                          for leaf in jax.tree_util.tree_leaves(params)):
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: non-finite weights "
                              f"(lower training.learning_rate or training.beta)")
        ev = evaluate(physics, hw, test_set, jax.random.fold_in(k_epoch, steps + 1), cfg.eval_batch, engine)
        examples = steps * cfg.batch_size
        metrics = {
            "train_accuracy": sums["correct"] / examples,
            "train_loss": sums["loss"] / examples,
            "test_accuracy": ev["accuracy"], "test_loss": ev["loss"],
            "lipschitz": _lipschitz(spec, hw), "saturated": ev["saturated"],
            "iterations": sums["iterations"] / steps, "unsettled": sums["unsettled"] / examples,
            "homeostatic_loss": sums["homeo"] / steps,
            **meter.metrics(),
            "beta": beta, "learning_rate": float(schedule((epoch + 1) * steps - 1)),
            "wall_s": time.perf_counter() - t0, "train_wall_s": t_train, "diverged_steps": sums["tripped"],
        }
        for k in METRICS:
            history[k].append(float(metrics[k]))
        if cfg.discard_unsettled and metrics["unsettled"] > UNSETTLED_WARNING:
            warnings.warn(
                f"epoch {epoch + 1}: training.discard_unsettled left out {metrics['unsettled']:.0%} of the "
                f"training examples (relaxation did not settle to tol = {spec.tol:g} in max_iters = "
                f"{spec.max_iters}); raise relaxation.max_iters, or relaxation.tol above the device's "
                f"read-noise floor", RuntimeWarning, stacklevel=3)
        if out:
            _write(**kept, state=(params, opt_state, hw, hw2), history=history,
                   position=Position(epoch + 1, 0, {}, meter.state(), watch.state()))
            synced = True
            last_save = time.monotonic()
        if on_epoch is not None:
            on_epoch(epoch + 1, metrics)
        if halt:
            break
    return TrainResult(params=params, hardware=hw, history=history, config=cfg, spec=spec,
                       profile_name=profile.name)


def _write(out, ckpt, fingerprint, spec, cfg, profile, segments, state, history, position: Position) -> None:
    """The result file (the finished epochs), then the checkpoint at ``position`` (``state``: None,
    the result file only); a failed write is a :class:`WriteFailed` naming the file (both are
    written atomically: the files written before stay intact)."""
    target = out
    try:
        write_history(out, history, spec, cfg, profile.name, segments)
        if state is not None:
            target = ckpt
            save_checkpoint(ckpt, position.epoch, *state, history, fingerprint, segments, position)
    except OSError as err:
        raise WriteFailed(f"{target}: write failed at {_where(position)} ({err.strerror or err}); the files "
                          f"written before are intact (--resume continues from them)") from None


def _save(kept: dict, state, history, position: Position) -> None:
    """The checkpoint alone, inside an epoch (the result file holds finished epochs only)."""
    try:
        save_checkpoint(kept["ckpt"], position.epoch, *state, history, kept["fingerprint"], kept["segments"],
                        position)
    except OSError as err:
        raise WriteFailed(f"{kept['ckpt']}: write failed at step {position.step} of epoch {position.epoch + 1} "
                          f"({err.strerror or err}); the checkpoint before is intact (--resume continues "
                          f"from it)") from None


def _where(position: Position) -> str:
    return f"epoch {position.epoch}" + (f", step {position.step} of epoch {position.epoch + 1}"
                                        if position.step else "")


def _stop(kept: dict, good, history, position: Position, what: str):
    """Write the last good state (before the step that tripped the watch, at ``position``) and raise
    :class:`TrainingDiverged`."""
    where = ""
    if kept["out"]:
        _write(**kept, state=good, history=history, position=position)
        where = f" (last good checkpoint, {_where(position)}: {kept['ckpt']})"
    raise TrainingDiverged(f"training diverged in {what}{where}; training.keep_going records it and continues")


__all__ = ["TrainResult", "UNSETTLED_WARNING", "check_run", "evaluate", "initial_params", "local_update", "train"]
