"""On-device training: program → load input → relax each phase → read → rule → optimizer → write.

The controller drives a chip built by :func:`anasim.circuits.build` the way the
instrument around a physical circuit would (DESIGN.md §5):

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
5. **rule**: :mod:`anasim.learning.rules`.
6. **optimizer**: optax SGD with momentum, decoupled weight decay, cosine (or
   constant) learning-rate schedule, layer-wise learning-rate multipliers.
7. **write**: back into the devices (shadow or in-situ).

Physical cost per step: device iterations (summed over phases), simulated
hardware time = Σ_phases iterations × batch × ``profile.loop_time_s`` (one
example at a time through the loop, as the optical and resistive circuits
process one input vector per relaxation) and energy = MACs per iteration ×
iterations × batch × ``profile.energy_per_mac_j``, with the MACs of a
two-compartment iteration (an upper bound for the one-compartment free phase).
Every step relaxes the free phase first (its output scores the running train
accuracy: a nudged state has seen the target) and starts the nudged or clamped
phase from it.

Reproducibility: every random draw comes from a key derived from
(seed, epoch, step) and the data order from (seed, epoch), so a run killed
after epoch e and resumed from its checkpoint (HDF5, written atomically) ends
with the same weights, bit for bit, as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import optax

from anasim import circuits
from anasim.circuits import CircuitSpec, Params
from anasim.data import Split
from anasim.devices.profile import DeviceProfile
from anasim.errors import AnasimError, ProfileError
from anasim.learning import rules

RULE_NAMES = ("dyadic", "ep-centered", "ep-positive", "ep-negative", "cl", "cpl-p", "cpl-n", "cpl-c")
WRITE_MODES = ("shadow", "in-situ")
PHASE_MODES = ("sequential", "twin")
SCHEDULES = ("cosine", "constant")
ENGINES = ("iterative", "nodal")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (hashable; the ``[training]`` table of a circuit spec).

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step.
        beta: nudge strength β (loss units per state unit); for CL the clamp is full.
        beta_growth: added to β after every epoch (strong-nudging experiment: 0.05).
        rule: one of :data:`RULE_NAMES`.
        learning_rate: peak learning rate of the schedule.
        layer_lr: multipliers per coupling (θ_0, θ_1, …, θ_{L−1}); biases follow
            their layer's incoming coupling. Empty: all 1.
        bias_init: initial biases b_1 … b_L, one value per layer (pre-activation
            units, the same for every neuron of the layer). Empty: all 0.
        momentum: SGD momentum (0 = plain SGD).
        weight_decay: decoupled weight decay per step (× learning rate).
        schedule: "cosine" (decay to 0 over the run) or "constant".
        write_mode: "shadow" or "in-situ".
        phases: "sequential" (one chip) or "twin" (second phase on a twin chip).
        seed: the run's seed.
        train_size, test_size: use the first n examples (0 = all).
        data: dataset source for :func:`anasim.data.load_fashion_mnist`
            ("" = Debian package, else the shipped subset).
        eval_batch: batch size of the evaluation relaxations.
        discard_unsettled: drop from the update the examples whose relaxation
            (any phase) did not settle: final per-example residual above
            ``relaxation.tol`` after ``max_iters``. The controller sees this on
            hardware as outputs still moving between two reads. A state that
            has not settled is no equilibrium, and the rule's (s⁺ − s⁻)/β
            read from it can be many times the true gradient (a symmetric
            circuit near a bifurcation): one such step, carried on by the
            momentum, can drive every neuron to a rail. The update is the
            mean over the settled examples; none settled: no update. With
            ``relaxation.stall_window`` (a noisy device, whose read noise
            holds the residual above ``tol``), a phase that stopped on that
            floor counts an example as settled when its residual is within
            :data:`FLOOR_SPREAD` (2×) of the batch median. Iterative engine only.
        engine: "iterative" (the opto-electronic loop engine, any device) or
            "nodal" (the node-level resistive (λ = 1) or gyrator (λ = 0) circuit,
            each phase a DC operating point: :mod:`anasim.nodal.hopfield`).
            On the resistive circuit every rule differentiates the passive
            network's co-content, leak term included (``leak`` in
            :func:`anasim.learning.rules.energy_gradient`; the Hopfield energy
            alone has cosine ≈ 0.99 with the circuit's exact gradient); the
            dyadic rule on the gyrator circuit is exact.
    """

    epochs: int = 3
    batch_size: int = 64
    beta: float = 0.1
    beta_growth: float = 0.0
    rule: str = "dyadic"
    learning_rate: float = 0.02
    layer_lr: tuple = ()
    bias_init: tuple = ()
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    write_mode: str = "shadow"
    phases: str = "sequential"
    seed: int = 0
    train_size: int = 0
    test_size: int = 0
    data: str = ""
    eval_batch: int = 500
    engine: str = "iterative"
    discard_unsettled: bool = False

    def __post_init__(self):
        self.validate("TrainConfig")

    def validate(self, where: str) -> None:
        def bad(key, expected, value):
            raise ProfileError(f"{where}: training.{key} must be {expected}, got {value!r}")

        if int(self.epochs) < 1:
            bad("epochs", "≥ 1", self.epochs)
        if int(self.batch_size) < 1:
            bad("batch_size", "≥ 1", self.batch_size)
        if not (float(self.beta) > 0 and math.isfinite(float(self.beta))):
            bad("beta", "a positive number", self.beta)
        if not (float(self.beta_growth) >= 0):
            bad("beta_growth", "≥ 0", self.beta_growth)
        if self.rule not in RULE_NAMES:
            bad("rule", f"one of {RULE_NAMES}", self.rule)
        if not (float(self.learning_rate) > 0):
            bad("learning_rate", "> 0", self.learning_rate)
        if not (0 <= float(self.momentum) < 1):
            bad("momentum", "in [0, 1)", self.momentum)
        if not (float(self.weight_decay) >= 0):
            bad("weight_decay", "≥ 0", self.weight_decay)
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {SCHEDULES}", self.schedule)
        if self.write_mode not in WRITE_MODES:
            bad("write_mode", f"one of {WRITE_MODES}", self.write_mode)
        if self.phases not in PHASE_MODES:
            bad("phases", f"one of {PHASE_MODES}", self.phases)
        if any(not math.isfinite(float(b)) for b in self.bias_init):
            bad("bias_init", "a list of finite numbers", self.bias_init)
        if any(not (float(m) >= 0) for m in self.layer_lr):
            bad("layer_lr", "a list of non-negative multipliers", self.layer_lr)
        if int(self.train_size) < 0 or int(self.test_size) < 0:
            bad("train_size", "≥ 0", (self.train_size, self.test_size))
        if int(self.eval_batch) < 1:
            bad("eval_batch", "≥ 1", self.eval_batch)
        if self.engine not in ENGINES:
            bad("engine", f"one of {ENGINES}", self.engine)
        if not isinstance(self.discard_unsettled, bool):
            bad("discard_unsettled", "true or false", self.discard_unsettled)
        if self.discard_unsettled and self.engine != "iterative":
            bad("discard_unsettled", "false with engine = \"nodal\" (a DC operating point has no settling)",
                self.discard_unsettled)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def config_from_spec(spec: CircuitSpec, **overrides) -> TrainConfig:
    """The spec's ``[training]`` table as a :class:`TrainConfig`, with ``overrides``
    (None values ignored). Unknown keys or wrong types raise ProfileError naming
    the file and the key."""
    where = spec.source or spec.name
    opts = dict(spec.training_options())
    opts.update({k: v for k, v in overrides.items() if v is not None})
    kwargs = {}
    for key, value in opts.items():
        if key not in _FIELDS:
            raise ProfileError(f"{where}: unknown key 'training.{key}' (allowed: {', '.join(_FIELDS)})")
        default = _FIELDS[key].default
        try:
            if isinstance(default, tuple):
                value = tuple(float(v) for v in value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError
            elif isinstance(default, int):
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            elif isinstance(default, str):
                if not isinstance(value, str):
                    raise ValueError
        except (TypeError, ValueError):
            raise ProfileError(
                f"{where}: key 'training.{key}' must be {type(default).__name__}, got {value!r}") from None
        kwargs[key] = value
    cfg = TrainConfig.__new__(TrainConfig)
    for name, f in _FIELDS.items():
        object.__setattr__(cfg, name, kwargs.get(name, f.default))
    cfg.validate(where)
    return cfg


# Fabrication and programming are hundreds of small array operations: compiled
# once they run in milliseconds, op by op they compile one kernel at a time.
_init_jit = jax.jit(circuits.init_params, static_argnums=(0,))
_build_jit = jax.jit(circuits.build, static_argnums=(0, 1))


def _physics(spec: CircuitSpec) -> CircuitSpec:
    """The spec without its labels and [training] table: what the compiled
    relaxation depends on (so runs that differ only in training options share
    one compilation)."""
    return dataclasses.replace(spec, training=(), name="circuit", source="", device="")


def _check_compatible(spec: CircuitSpec, cfg: TrainConfig, profile: DeviceProfile) -> None:
    where = spec.source or spec.name
    energy_based = cfg.rule != "dyadic"
    if energy_based and spec.lam != 1.0:
        raise ProfileError(
            f"{where}: training.rule = {cfg.rule!r} needs a symmetric circuit (network.lam = 1.0, an "
            f"energy to descend); lam = {spec.lam!r} trains with rule = \"dyadic\"")
    if cfg.phases == "twin" and cfg.rule == "dyadic" and spec.lam_mix != 1.0:
        raise ProfileError(
            f"{where}: training.phases = \"twin\" needs phases that do not interact; the dyadic "
            f"compartments at lam = {spec.lam!r} are coupled (use \"sequential\" or lam = 1)")
    if cfg.write_mode == "in-situ" and not hasattr(profile.coupling, "apply_update"):
        raise ProfileError(
            f"training.write_mode = \"in-situ\": profile {profile.name!r} "
            f"({type(profile.coupling).__name__}) has no in-situ write response (apply_update); "
            f"use write_mode = \"shadow\"")
    if cfg.engine == "nodal" and (spec.asymmetric or spec.lam not in (0.0, 1.0)):
        raise ProfileError(
            f"{where}: training.engine = \"nodal\" builds a resistive (lam = 1) or gyrator (lam = 0) "
            f"node-level circuit, got network.lam = {spec.lam!r}")
    if len(cfg.layer_lr) not in (0, spec.n_layers):
        raise ProfileError(
            f"{where}: training.layer_lr needs {spec.n_layers} multipliers (θ_0 … θ_{spec.n_layers - 1}), "
            f"got {len(cfg.layer_lr)}")
    if len(cfg.bias_init) not in (0, spec.n_layers):
        raise ProfileError(
            f"{where}: training.bias_init needs {spec.n_layers} values (b_1 … b_{spec.n_layers}), "
            f"got {len(cfg.bias_init)}")


# --- optimizer ---------------------------------------------------------------------

def make_optimizer() -> optax.GradientTransformation:
    """SGD with momentum after decoupled weight decay, hyper-parameters injected
    into the optimizer state (so one compiled step serves every learning rate,
    momentum and decay): ``u = −lr · trace``, ``trace ← μ trace + g + wd·θ``."""
    return _OPTIMIZER


_OPTIMIZER = optax.chain(
    optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=0.0),
    optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=0.0),
)


def _init_opt_state(cfg: TrainConfig, params: Params):
    st = _OPTIMIZER.init(params)
    wd, sgd = st
    wd.hyperparams["weight_decay"] = jnp.asarray(cfg.weight_decay, jnp.float32)
    sgd.hyperparams["momentum"] = jnp.asarray(cfg.momentum, jnp.float32)
    return st


def _with_lr(opt_state, lr):
    wd, sgd = opt_state
    return (wd, sgd._replace(hyperparams={**sgd.hyperparams, "learning_rate": lr}))


def _layer_multipliers(spec: CircuitSpec, cfg: TrainConfig, params: Params) -> Params:
    m = cfg.layer_lr or (1.0,) * spec.n_layers
    return Params(theta0=m[0], thetas=tuple(m[1:]), biases=tuple(m[:spec.n_layers]),
                  backward=tuple(m[1:]) if params.backward else ())


def _to_params(d: dict, asymmetric: bool, like: Params) -> Params:
    back = tuple(t.T for t in d["thetas"]) if asymmetric else ()
    p = Params(theta0=d["theta0"], thetas=tuple(d["thetas"]), biases=tuple(d["biases"]), backward=back)
    return jax.tree_util.tree_map(lambda u, q: u.astype(q.dtype), p, like)


def _initial_params(spec: CircuitSpec, cfg: TrainConfig, key) -> Params:
    """The circuit's random initial couplings, with the biases of ``cfg.bias_init``."""
    params = _init_jit(spec, key)
    if cfg.bias_init:
        params = dataclasses.replace(params, biases=tuple(
            jnp.full_like(b, v) for b, v in zip(params.biases, cfg.bias_init)))
    return params


# --- one step ----------------------------------------------------------------------

def local_update(spec: CircuitSpec, cfg: TrainConfig, hw, x, y, key, *, beta: float | None = None,
                 hw2=None) -> dict:
    """The rule's gradient estimate for one batch on the chip ``hw`` (no write).

    Runs the phases of ``cfg.rule`` (relaxations with nudge/clamp), reads the
    states through the ADC and applies the rule: the measurement the controller
    turns into a weight update. ``x``: (batch, n_in); ``y``: one-hot (batch, n_L).
    """
    _check_compatible(spec, cfg, hw.profile)
    dtype = jnp.dtype(spec.dtype)
    beta = cfg.beta if beta is None else beta
    upd, _, _, _ = _phases_and_rule(spec, cfg, hw, hw if hw2 is None else hw2, jnp.asarray(x, dtype),
                                 jnp.asarray(y, dtype), jnp.asarray(beta, dtype), key)
    return upd


def relaxation(engine: str) -> Callable:
    """The relax function of an engine (:data:`ENGINES`); both share
    :func:`anasim.circuits.layered.relax`'s signature and result."""
    if engine == "nodal":
        from anasim.nodal.hopfield import relax_in_jit  # noqa: PLC0415

        return relax_in_jit
    return circuits.relax


def _phases_and_rule(spec, cfg, hw, hw2, x, y, beta, key):
    """Relax every phase, read through the ADC, apply the rule.

    Returns (update dict, iterations summed over all relaxations, the free
    phase's output for the running train accuracy, the number of examples
    whose relaxation did not settle)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    lam = spec.lam_mix
    second = hw2 if cfg.phases == "twin" else hw
    relax = relaxation(cfg.engine)
    # Every phase relaxes the same couplings (no write between them), so each
    # chip's damping is computed once per step, not once per relaxation.
    iterative = cfg.engine == "iterative"
    eta1 = circuits.layered.relaxation_eta(spec, hw) if iterative else None
    eta2 = eta1 if second is hw or not iterative else circuits.layered.relaxation_eta(spec, second)
    # The free phase comes first on every chip: its output is the prediction the
    # running train accuracy is scored on (a nudged state has seen the target),
    # and the nudged relaxation starts from it, as EP's second phase does.
    eq_f = relax(spec, hw, x, k1, eta=eta1)
    leak = _passive_leak(spec, cfg, hw)
    if cfg.rule == "dyadic" or cfg.rule.startswith("ep"):
        nud = {"dyadic": (beta, beta), "ep-centered": (beta, beta),
               "ep-positive": (beta, 0.0), "ep-negative": (0.0, beta)}[cfg.rule]
        if cfg.phases == "twin":
            eq_f2 = relax(spec, second, x, jax.random.fold_in(k1, 1), eta=eta2)
            eq_a = relax(spec, hw, x, k2, nudge=(nud[0], 0.0), target=y, state0=eq_f, eta=eta1)
            eq_b = relax(spec, second, x, jax.random.fold_in(k2, 1), nudge=(0.0, nud[1]), target=y,
                         state0=eq_f2, eta=eta2)
            sp, _ = circuits.read_states(hw, eq_a, k3)
            _, sm = circuits.read_states(second, eq_b, k4)
            phases = (eq_f, eq_f2, eq_a, eq_b)
        else:
            eq = relax(spec, hw, x, k2, nudge=nud, target=y, state0=eq_f, eta=eta1)
            sp, sm = circuits.read_states(hw, eq, k3)
            phases = (eq_f, eq)
        rule = {"dyadic": lambda a, b: rules.dyadic(x, a, b, beta, lam, leak),
                "ep-centered": lambda a, b: rules.ep_centered(x, b, a, beta, leak),
                "ep-positive": lambda a, b: rules.ep_positive(x, b, a, beta, leak),   # s⁻ is the free phase
                "ep-negative": lambda a, b: rules.ep_negative(x, b, a, beta, leak),   # s⁺ is the free phase
                }[cfg.rule]
        a, b = sp, sm
    else:
        # Clamped rules: the free phase gives o*, then the clamped phase(s).
        s_free, _ = circuits.read_states(hw, eq_f, k3)
        o = s_free[-1]
        if cfg.rule == "cl":
            c = (y, None)
        else:
            c = {"cpl-p": (rules.coupled_clamp(o, y, beta), None),
                 "cpl-n": (None, rules.coupled_clamp(o, y, -beta)),
                 "cpl-c": (rules.coupled_clamp(o, y, beta), rules.coupled_clamp(o, y, -beta))}[cfg.rule]
        eq_c = relax(spec, second, x, k2, clamp=c, state0=eq_f, eta=eta2)
        cp, cm = circuits.read_states(second, eq_c, k4)
        phases = (eq_f, eq_c)
        # (a, b, rule): the rule's two phases, a the one made equal to b when unsettled
        a, b, rule = {"cl": (cp, s_free, lambda a, b: rules.contrastive(x, b, a, leak)),
                      "cpl-p": (cp, s_free, lambda a, b: rules.coupled(x, a, b, beta, "P", leak)),
                      "cpl-n": (cm, s_free, lambda a, b: rules.coupled(x, b, a, beta, "N", leak)),
                      "cpl-c": (cp, cm, lambda a, b: rules.coupled(x, a, b, beta, "C", leak))}[cfg.rule]
    iters = sum(eq.iterations for eq in phases)
    settled = _settled(spec, phases) if iterative else jnp.ones(x.shape[0], bool)
    if cfg.discard_unsettled:
        # every rule is a difference between its two phases: equal phases add nothing
        keep = lambda u, v: tuple(jnp.where(settled[:, None], ui, vi) for ui, vi in zip(u, v))  # noqa: E731
        n = jnp.sum(settled)
        scale = jnp.where(n > 0, x.shape[0] / jnp.maximum(n, 1), 0.0)
        upd = jax.tree_util.tree_map(lambda u: u * scale.astype(u.dtype), rule(keep(a, b), b))
    else:
        upd = rule(a, b)
    return upd, iters, eq_f.output, jnp.sum(~settled)


def _passive_leak(spec, cfg, hw):
    """The rules' ``leak`` where the phases are DC points of the passive resistive
    circuit (nodal engine, λ = 1): the signs of ``hw``'s realized couplings, which
    each differential pair knows locally. None elsewhere (active circuits)."""
    if cfg.engine != "nodal" or spec.lam != 1.0:
        return None
    dev = hw.profile.coupling
    return rules.coupling_signs(dev.effective(hw.input_state), tuple(dev.effective(f) for f in hw.forward))


# On a residual floor, how far above the batch's median residual an example may end and
# still count as settled. Measured on the photodetector-noise floor of slm-10bit
# (skew-small) and slm-10bit-500 (sym-4x500-slm), 256 test images, three seeds,
# free and nudged phases: the largest example ended at 1.33–1.70× the median.
FLOOR_SPREAD = 2.0


def _settled(spec, phases) -> jax.Array:
    """(batch,) bool: every phase's final residual is finite and either at most
    ``spec.tol`` or, where that phase stopped on a residual floor, within
    :data:`FLOOR_SPREAD` of the batch median.

    A floor stop (``stall_window`` > 0, the residual no longer falling: device
    read noise) ends the whole batch at the noise level, above ``tol``; what
    the floor cannot hide is an example left far above the others."""
    ok = []
    for eq in phases:
        r = eq.residual_per_sample
        limit = jnp.asarray(spec.tol, r.dtype)
        if spec.stall_window > 0:
            limit = jnp.maximum(limit, jnp.where(eq.oscillating, FLOOR_SPREAD * jnp.median(r), 0.0))
        ok.append(jnp.isfinite(r) & (r <= limit))
    return jnp.all(jnp.stack(ok), axis=0)


@dataclass(frozen=True)
class _StepKind:
    """The parts of a TrainConfig that change the compiled step (everything else is traced)."""

    rule: str
    write_mode: str
    phases: str
    engine: str = "iterative"
    discard_unsettled: bool = False
    beta: float = 0.0   # unused inside the step (β is traced); keeps the dataclass shape simple


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_step(spec, cfg, params, opt_state, hw, hw2, mult, x, y, beta, lr, key):
    k_prog, k_prog2, k_phase, k_write = jax.random.split(key, 4)
    upd, iters, pred, unsettled = _phases_and_rule(spec, cfg, hw, hw2, x, y, beta, k_phase)
    grads = _to_params(upd, spec.asymmetric, params)
    updates, opt_state = _OPTIMIZER.update(grads, _with_lr(opt_state, lr), params)
    updates = jax.tree_util.tree_map(lambda u, m, q: (u * m).astype(q.dtype), updates, mult, params)
    params = optax.apply_updates(params, updates)
    if cfg.write_mode == "shadow":
        # the digital copy is written whole into the chip, with fresh programming errors
        hw = circuits.reprogram(spec, hw, params, k_prog)
        if cfg.phases == "twin":
            hw2 = circuits.reprogram(spec, hw2, params, k_prog2)
    else:
        hw = _write_in_situ(spec, hw, updates, k_write)
        if cfg.phases == "twin":
            hw2 = _write_in_situ(spec, hw2, updates, jax.random.fold_in(k_write, 1))
    correct = jnp.sum(jnp.argmax(pred, -1) == jnp.argmax(y, -1))
    loss = jnp.sum(circuits.cost(spec, pred, y))
    return params, opt_state, hw, hw2, iters, correct, loss, unsettled


def _for_engine(jitted: Callable, engine: str) -> Callable:
    """``jitted`` for the iterative engine; its plain Python body for the nodal one.

    The nodal engine's DC solve is its own compiled Newton loop driven from the
    host: run inside an outer jit (through a host callback) it can wait forever
    on XLA's CPU client, so its steps run op by op around the solve instead.
    """
    return jitted if engine == "iterative" else jitted.__wrapped__


def _write_in_situ(spec, hw, updates: Params, key):
    """Increments through the device write response (coupling device's ``apply_update``)."""
    dev = hw.profile.coupling
    L = spec.n_layers
    keys = jax.random.split(key, 2 * L)
    input_state = dev.apply_update(hw.input_state, keys[0], updates.theta0)
    forward = tuple(dev.apply_update(hw.forward[k], keys[1 + k], updates.thetas[k]) for k in range(L - 1))
    if hw.backward_mode == "copy":
        back_upd = tuple(u.T for u in updates.thetas)
    else:
        back_upd = tuple(updates.backward)
    backward = tuple(dev.apply_update(hw.backward[k], keys[L + k], back_upd[k]) for k in range(len(hw.backward)))
    biases = tuple(b + u.astype(b.dtype) for b, u in zip(hw.biases, updates.biases))
    # keep the chip's dtype (the relaxation's loop carry must not change type)
    dtype = jnp.dtype(spec.dtype)
    input_state, forward, backward = jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, (input_state, forward, backward))
    return dataclasses.replace(hw, input_state=input_state, forward=forward, backward=backward, biases=biases)


# --- evaluation --------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=(0, 5))
def _eval_batch(spec, hw, x, y, key, engine="iterative"):
    eq = relaxation(engine)(spec, hw, x, key)
    out = eq.output
    correct = jnp.sum(jnp.argmax(out, -1) == jnp.argmax(y, -1))
    loss = jnp.sum(circuits.cost(spec, out, y))
    sat = 0.0
    count = 0
    for s, name in zip(eq.s_plus, spec.activations):
        lo = s <= 1e-6
        hi = (s >= 1.0 - 1e-6) if name in ("hard_sigmoid", "tempered_hard_sigmoid") else jnp.zeros_like(lo)
        sat = sat + jnp.sum(lo | hi)
        count += s.size
    return correct, loss, sat / count, eq.iterations, eq.diverged


def evaluate(spec: CircuitSpec, hw, split: Split, key, batch: int = 500, engine: str = "iterative") -> dict:
    """Free relaxation on every example of ``split`` through the hardware (with its noise),
    on the engine ``engine`` (:data:`ENGINES`).

    Returns accuracy, mean loss, fraction of saturated neurons (states at a rail
    of the nonlinearity), mean relaxation iterations and whether any diverged.
    """
    n = len(split)
    correct = loss = sat = iters = 0.0
    diverged = False
    nb = 0
    eval_batch = _for_engine(_eval_batch, engine)
    for i, start in enumerate(range(0, n, batch)):
        x = jnp.asarray(split.x[start:start + batch])
        y = jax.nn.one_hot(split.y[start:start + batch], spec.n_out, dtype=jnp.dtype(spec.dtype))
        c, l_, s, it, dv = eval_batch(spec, hw, x, y, jax.random.fold_in(key, i), engine)
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
    (Høier et al. eq. 17 on ``effective()`` matrices); NaN where unavailable."""
    try:
        from anasim.analysis.lipschitz import linearized_bound  # noqa: PLC0415
    except ImportError:
        return float("nan")
    return float(linearized_bound(circuits.effective_matrices(spec, hw)).hidden)


# --- the run -----------------------------------------------------------------------

# fraction of examples left out by discard_unsettled above which a run is warned:
# most of the data then trains nothing
UNSETTLED_WARNING = 0.5

METRICS = ("train_accuracy", "train_loss", "test_accuracy", "test_loss", "lipschitz", "saturated",
           "iterations", "unsettled", "hardware_time_s", "energy_j", "beta", "learning_rate", "wall_s", "train_wall_s")


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


def _macs_per_iteration(spec: CircuitSpec, compartments: int) -> int:
    s = spec.sizes
    fwd = sum(s[k + 1] * s[k] for k in range(1, len(s) - 1))
    return compartments * 2 * fwd


def history_dataset(history: dict, spec: CircuitSpec, cfg: TrainConfig, profile_name: str):
    """Per-epoch metrics as an xarray Dataset (dim ``epoch``) with every parameter in attrs."""
    import xarray as xr  # noqa: PLC0415

    epochs = np.arange(1, len(history.get("test_accuracy", [])) + 1)
    units = {"hardware_time_s": "s", "energy_j": "J", "wall_s": "s", "train_wall_s": "s", "iterations": "iterations",
             "saturated": "fraction", "unsettled": "fraction", "train_accuracy": "fraction",
             "test_accuracy": "fraction"}
    data = {k: ("epoch", np.asarray(history.get(k, [np.nan] * len(epochs)), np.float64),
                {"units": units.get(k, "")}) for k in METRICS}
    ds = xr.Dataset(data, coords={"epoch": epochs})
    attrs = {f"training.{k}": _attr(v) for k, v in dataclasses.asdict(cfg).items()}
    attrs.update({f"circuit.{f.name}": _attr(getattr(spec, f.name)) for f in dataclasses.fields(spec)
                  if f.name != "training"})
    attrs["device.profile"] = profile_name
    attrs["anasim.kind"] = "train"
    ds.attrs.update(attrs)
    return ds


def _attr(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, str)):
        return v
    return json.dumps(v, default=str)


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def checkpoint_path(out: str | os.PathLike) -> Path:
    """The checkpoint next to a result file: ``run.nc`` → ``run.ckpt.h5``."""
    out = Path(out)
    return out.with_name(out.stem + ".ckpt.h5")


def save_checkpoint(path, epoch: int, params, opt_state, hw, hw2, history: dict, fingerprint: str):
    """HDF5 checkpoint: every leaf of (params, optimizer state, chips), the history, written atomically."""
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["epoch"] = epoch
            f.attrs["fingerprint"] = fingerprint
            f.attrs["history"] = json.dumps(history)
            for name, tree in (("params", params), ("opt_state", opt_state), ("hw", hw), ("hw2", hw2)):
                g = f.create_group(name)
                for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
                    g.create_dataset(f"{i:05d}", data=np.asarray(leaf))
    _atomic(Path(path), write)


def _open_checkpoint(path: Path):
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise AnasimError(f"{path}: cannot read checkpoint ({err})") from None


def _pour(path: Path, group, name: str, template):
    """The leaves stored under ``group`` in the pytree structure of ``template``,
    each checked against the template's shape."""
    leaves, tree = jax.tree_util.tree_flatten(template)
    stored = sorted(group.keys())
    if len(stored) != len(leaves):
        raise AnasimError(f"{path}: checkpoint group '{name}' holds {len(stored)} arrays, the circuit "
                          f"built from this spec and profile has {len(leaves)}: not the same circuit/device")
    new = []
    for i, t in enumerate(leaves):
        data = group[f"{i:05d}"][()]
        if data.shape != np.shape(t):
            raise AnasimError(f"{path}: checkpoint array '{name}/{i:05d}' has shape {data.shape}, the "
                              f"circuit built from this spec and profile expects {np.shape(t)}")
        new.append(jnp.asarray(data, dtype=jnp.asarray(t).dtype))
    return jax.tree_util.tree_unflatten(tree, new)


def load_checkpoint(path, fingerprint: str, templates: dict):
    """Leaves from a checkpoint, poured into the pytree structure of ``templates``."""
    path = Path(path)
    with _open_checkpoint(path) as f:
        if f.attrs.get("fingerprint") != fingerprint:
            raise AnasimError(f"{path}: checkpoint was written for a different circuit/device/training "
                              f"configuration; delete it or drop --resume")
        out = {name: _pour(path, f[name], name, tmpl) for name, tmpl in templates.items()}
        return int(f.attrs["epoch"]), json.loads(f.attrs["history"]), out


def trained_chip(run: str | os.PathLike, spec: CircuitSpec, profile: DeviceProfile):
    """The chip a training run left behind, for analysis: ``(epoch, hw)``.

    ``run``: the run's result file (``run.nc``; its checkpoint ``run.ckpt.h5``
    is read, :func:`checkpoint_path`) or the checkpoint itself. ``spec`` and
    ``profile`` must describe the circuit and device it was trained on: they
    give the chip's structure, and every stored array's shape is checked
    against it. ``hw`` holds the devices as last programmed (fixed-pattern
    errors included), so ``effective_matrices(spec, hw)`` is the trained chip
    as built.
    """
    run = Path(run)
    path = run if run.name.endswith(".ckpt.h5") else checkpoint_path(run)
    if not path.exists():
        raise AnasimError(f"{run}: no checkpoint {path} (a run writes one next to its result file "
                          f"when trained with an output path)")
    physics = _physics(spec)
    key = jax.random.PRNGKey(0)
    template = _build_jit(physics, profile, _init_jit(physics, key), key)
    with _open_checkpoint(path) as f:
        if "hw" not in f:
            raise AnasimError(f"{path}: not a training checkpoint (no 'hw' group)")
        return int(f.attrs["epoch"]), _pour(path, f["hw"], "hw", template)


def check_run(spec: CircuitSpec, profile: DeviceProfile, cfg: TrainConfig, train_set: Split) -> None:
    """Raise the error a run would hit (incompatible rule/structure/device, data size) before any work."""
    _check_compatible(spec, cfg, profile)
    if train_set.x.shape[1] != spec.n_in:
        raise AnasimError(f"{spec.source or spec.name}: network.sizes[0] = {spec.n_in} but the data "
                          f"have {train_set.x.shape[1]} inputs")


def train(spec: CircuitSpec, profile: DeviceProfile, cfg: TrainConfig, train_set: Split, test_set: Split,
          *, out: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, on_epoch: Callable[[int, dict], None] | None = None
          ) -> TrainResult:
    """Train ``spec`` on ``profile`` with local rules; returns a :class:`TrainResult`.

    ``out``: netCDF result path, rewritten after every epoch; the checkpoint
    sits next to it (:func:`checkpoint_path`). ``resume``: continue from that
    checkpoint (it must match spec, profile and config). ``stop_after``: stop
    after this many epochs in total (as if killed; resumable). ``on_epoch``:
    called with (epoch, metrics) after each epoch.
    """
    check_run(spec, profile, cfg, train_set)
    if cfg.train_size:
        train_set = Split(train_set.x[:cfg.train_size], train_set.y[:cfg.train_size], train_set.source)
    if cfg.test_size:
        test_set = Split(test_set.x[:cfg.test_size], test_set.y[:cfg.test_size], test_set.source)
    n = len(train_set)
    steps = n // cfg.batch_size
    if steps < 1:
        raise AnasimError(f"training.batch_size = {cfg.batch_size} exceeds the {n} training examples")
    dtype = jnp.dtype(spec.dtype)
    physics = _physics(spec)
    root = jax.random.PRNGKey(cfg.seed)
    k_init, k_build, k_twin, k_run = jax.random.split(root, 4)
    params = _initial_params(physics, cfg, k_init)
    hw = _build_jit(physics, profile, params, k_build)
    hw2 = _build_jit(physics, profile, params, k_twin) if cfg.phases == "twin" else hw
    kind = _StepKind(cfg.rule, cfg.write_mode, cfg.phases, cfg.engine, cfg.discard_unsettled)
    schedule = make_lr(cfg, steps)
    opt_state = _init_opt_state(cfg, params)
    mult = _layer_multipliers(spec, cfg, params)
    history = {k: [] for k in METRICS}
    start_epoch = 0
    fingerprint = json.dumps([repr(spec), repr(profile), repr(cfg), n, len(test_set)], default=str)
    ckpt = checkpoint_path(out) if out else None
    if resume:
        if ckpt is None or not ckpt.exists():
            raise AnasimError(f"--resume: no checkpoint {ckpt} to resume from")
        start_epoch, history, st = load_checkpoint(
            ckpt, fingerprint, {"params": params, "opt_state": opt_state, "hw": hw, "hw2": hw2})
        params, opt_state, hw, hw2 = st["params"], st["opt_state"], st["hw"], st["hw2"]
    macs = _macs_per_iteration(spec, 2)
    hw_time = history["hardware_time_s"][-1] if history["hardware_time_s"] else 0.0
    energy = history["energy_j"][-1] if history["energy_j"] else 0.0
    last = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    train_step = _for_engine(_train_step, cfg.engine)
    for epoch in range(start_epoch, last):
        t0 = time.perf_counter()
        beta = cfg.beta + cfg.beta_growth * epoch
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        k_epoch = jax.random.fold_in(k_run, epoch)
        correct = loss = 0.0
        iters_total = unsettled = 0
        bar = _progress(steps, f"epoch {epoch + 1}/{cfg.epochs}", progress)
        for step in range(steps):
            sel = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = jnp.asarray(train_set.x[sel], dtype)
            y = jax.nn.one_hot(train_set.y[sel], spec.n_out, dtype=dtype)
            lr = jnp.asarray(schedule(epoch * steps + step), jnp.float32)
            params, opt_state, hw, hw2, it, c, l_, u = train_step(
                physics, kind, params, opt_state, hw, hw2, mult, x, y,
                jnp.asarray(beta, dtype), lr, jax.random.fold_in(k_epoch, step))
            it = int(it)
            iters_total += it
            correct += float(c)
            unsettled += int(u)
            loss += float(l_)
            hw_time += it * cfg.batch_size * profile.loop_time_s
            energy += it * cfg.batch_size * macs * profile.energy_per_mac_j
            if bar is not None:
                bar.update(1)
                bar.set_postfix(acc=f"{correct / ((step + 1) * cfg.batch_size):.3f}", it=it)
        if bar is not None:
            bar.close()
        jax.block_until_ready(params)
        t_train = time.perf_counter() - t0
        if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(params)):
            raise AnasimError(f"training diverged in epoch {epoch + 1}: non-finite weights "
                              f"(lower training.learning_rate or training.beta)")
        ev = evaluate(physics, hw, test_set, jax.random.fold_in(k_epoch, steps + 1), cfg.eval_batch, cfg.engine)
        lr = float(schedule((epoch + 1) * steps - 1))
        metrics = {
            "train_accuracy": correct / (steps * cfg.batch_size),
            "train_loss": loss / (steps * cfg.batch_size),
            "test_accuracy": ev["accuracy"], "test_loss": ev["loss"],
            "lipschitz": _lipschitz(spec, hw), "saturated": ev["saturated"],
            "iterations": iters_total / steps, "unsettled": unsettled / (steps * cfg.batch_size),
            "hardware_time_s": hw_time, "energy_j": energy,
            "beta": beta, "learning_rate": lr, "wall_s": time.perf_counter() - t0, "train_wall_s": t_train,
        }
        for k in METRICS:
            history[k].append(float(metrics[k]))
        if cfg.discard_unsettled and metrics["unsettled"] > UNSETTLED_WARNING:
            warnings.warn(
                f"epoch {epoch + 1}: training.discard_unsettled left out {metrics['unsettled']:.0%} of the "
                f"training examples (relaxation did not settle to tol = {spec.tol:g} in max_iters = "
                f"{spec.max_iters}); raise relaxation.max_iters, or relaxation.tol above the device's "
                f"read-noise floor", RuntimeWarning, stacklevel=2)
        if out:
            ds = history_dataset(history, spec, cfg, profile.name)
            _atomic(Path(out), lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
            save_checkpoint(ckpt, epoch + 1, params, opt_state, hw, hw2, history, fingerprint)
        if on_epoch is not None:
            on_epoch(epoch + 1, metrics)
    return TrainResult(params=params, hardware=hw, history=history, config=cfg, spec=spec,
                       profile_name=profile.name)


def make_lr(cfg: TrainConfig, steps_per_epoch: int):
    """The learning-rate schedule (step → rate) the optimizer uses."""
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.learning_rate, decay_steps=max(cfg.epochs * steps_per_epoch, 1))
    return optax.constant_schedule(cfg.learning_rate)


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415
    return tqdm(total=total, desc=desc, leave=False, unit="step", dynamic_ncols=True)


__all__ = [
    "METRICS", "PHASE_MODES", "RULE_NAMES", "TrainConfig", "TrainResult", "WRITE_MODES", "check_run", "checkpoint_path",
    "config_from_spec", "evaluate", "local_update", "history_dataset", "load_checkpoint", "make_lr", "make_optimizer",
    "save_checkpoint", "train",
]
