"""One training step on the chip: relax each phase → read → rule → optimizer → write.

:func:`phases_and_rule` runs the phases of a rule on the engine (free phase
first, then the nudged, clamped or complex-nudged ones), reads the states the
way the controller would (through the ADCs) and applies the rule of
:mod:`anasim.learning.rules` (or holomorphic EP, :mod:`anasim.learning.holomorphic`).
:func:`train_step` adds the optimizer (:mod:`anasim.learning.optim`) and the
write into the devices: the whole digital copy reprogrammed (``shadow``) or the
increments through the devices' write response (``in-situ``).

On an engine with the ``"jit"`` ability a step compiles as one program;
otherwise (the node-level engine, whose DC solve runs on the host) it runs op
by op around the engine's calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from anasim.analysis import homeostasis
from anasim.circuits import CircuitSpec, Params, cost
from anasim.circuits.chip import drop_forwarded, refill_forwarded
from anasim.circuits.engine import Engine
from anasim.devices.profile import DeviceProfile
from anasim.errors import ProfileError
from anasim.learning import holomorphic, rules
from anasim.learning.config import TrainConfig
from anasim.learning.optim import OptimizerSettings, optimizer


def check_compatible(spec: CircuitSpec, cfg: TrainConfig, profile: DeviceProfile, engine: Engine) -> None:
    """Raise the ProfileError a run of ``cfg`` on ``spec``/``profile``/``engine`` would hit."""
    where = spec.source or spec.name
    energy_based = cfg.rule not in ("dyadic", "hep")
    if energy_based and spec.lam != 1.0:
        raise ProfileError(
            f"{where}: training.rule = {cfg.rule!r} needs a symmetric circuit (network.lam = 1.0, an "
            f"energy to descend); lam = {spec.lam!r} trains with rule = \"dyadic\"")
    if cfg.phases == "twin" and cfg.rule == "dyadic" and spec.lam_mix != 1.0:
        raise ProfileError(
            f"{where}: training.phases = \"twin\" needs phases that do not interact; the dyadic "
            f"compartments at lam = {spec.lam!r} are coupled (use \"sequential\" or lam = 1)")
    if cfg.write_mode == "in-situ" and not profile.coupling.in_situ_write:
        raise ProfileError(
            f"training.write_mode = \"in-situ\": profile {profile.name!r} "
            f"({type(profile.coupling).__name__}) has no in-situ write response; "
            f"use write_mode = \"shadow\"")
    if cfg.discard_unsettled and "settling" not in engine.abilities:
        raise ProfileError(
            f"{where}: training.discard_unsettled must be false with relaxation.engine = {engine.name!r} "
            f"(its equilibria have no settling to check)")
    if cfg.rule == "hep":
        if "complex_nudge" not in engine.abilities:
            raise ProfileError(f"{where}: training.rule = \"hep\" needs complex nudges, which "
                               f"relaxation.engine = {engine.name!r} does not take")
        if spec.lam_mix != 1.0:
            raise ProfileError(f"{where}: training.rule = \"hep\" needs compartments that do not interact "
                               f"(network.lam = 1 or \"asymmetric\"), got lam = {spec.lam!r}")
        if cfg.phases == "twin" or cfg.discard_unsettled:
            raise ProfileError(f"{where}: training.rule = \"hep\" runs its nudges on one chip "
                               f"(phases = \"sequential\", discard_unsettled = false)")
    if len(cfg.layer_lr) not in (0, spec.n_layers):
        raise ProfileError(
            f"{where}: training.layer_lr needs {spec.n_layers} multipliers (θ_0 … θ_{spec.n_layers - 1}), "
            f"got {len(cfg.layer_lr)}")
    if len(cfg.bias_init) not in (0, spec.n_layers):
        raise ProfileError(
            f"{where}: training.bias_init needs {spec.n_layers} values (b_1 … b_{spec.n_layers}), "
            f"got {len(cfg.bias_init)}")


@dataclass(frozen=True)
class StepKind:
    """The parts of a TrainConfig that change the compiled step (everything else is traced)."""

    rule: str
    write_mode: str
    phases: str
    discard_unsettled: bool = False
    hep_points: int = 2
    homeostasis_probes: int = 0        # 0: no homeostatic loss
    homeostasis_backward_only: bool = False

    @classmethod
    def of(cls, cfg: TrainConfig) -> "StepKind":
        return cls(cfg.rule, cfg.write_mode, cfg.phases, cfg.discard_unsettled, int(cfg.hep_points),
                   int(cfg.homeostasis_probes) if cfg.homeostasis > 0 else 0, cfg.homeostasis_backward_only)


@dataclass(frozen=True)
class PhaseResult:
    """What the phases of one step measured.

    ``update``: the rule's gradient estimate (dict of :class:`Params` fields);
    ``iterations``: summed over all relaxations; ``prediction``: the free
    phase's output (scores the running train accuracy; a nudged state has
    seen the target); ``unsettled``: examples whose relaxation did not settle;
    ``free``: the free states as read; ``compartment_iterations``: iterations
    times the compartments each relaxation ran (1 for a free phase, 2 for a
    nudged or clamped one): the circuit copies that were powered
    (:mod:`anasim.learning.cost`).
    """

    update: dict
    iterations: jax.Array
    prediction: jax.Array
    unsettled: jax.Array
    free: tuple
    compartment_iterations: jax.Array = 0


def phases_and_rule(spec, kind: StepKind, engine: Engine, hw, hw2, x, y, beta, key) -> PhaseResult:
    """Relax every phase of ``kind.rule`` on ``engine``, read the states, apply the rule."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    lam = spec.lam_mix
    second = hw2 if kind.phases == "twin" else hw
    # a chip's damping is a function of the chip alone: worked out once per chip, not per phase
    eta = engine.damping(spec, hw)
    eta2 = engine.damping(spec, hw2) if kind.phases == "twin" else eta

    def relax(chip, *args, **kwargs):
        return engine.relax(spec, chip, *args, eta=eta if chip is hw else eta2, **kwargs)

    # The free phase comes first on every chip: its output is the prediction the
    # running train accuracy is scored on (a nudged state has seen the target),
    # and the nudged relaxation starts from it, as EP's second phase does.
    eq_f = relax(hw, x, k1)
    if kind.rule == "hep":
        est = holomorphic.error_vector(spec, hw, x, y, k2, beta=beta, n_points=kind.hep_points, free_eq=eq_f,
                                       engine=engine)
        # the free relaxation runs one compartment, every (complex) nudge two
        return PhaseResult(holomorphic.hep_update(spec, x, est.free, est.delta), est.iterations, eq_f.output,
                           jnp.zeros((), jnp.int32), est.free, 2 * est.iterations - eq_f.iterations)
    leak = passive_leak(spec, engine, hw)
    if kind.rule == "dyadic" or kind.rule.startswith("ep"):
        nud = {"dyadic": (beta, beta), "ep-centered": (beta, beta),
               "ep-positive": (beta, 0.0), "ep-negative": (0.0, beta)}[kind.rule]
        if kind.phases == "twin":
            eq_f2 = relax(second, x, jax.random.fold_in(k1, 1))
            eq_a = relax(hw, x, k2, nudge=(nud[0], 0.0), target=y, state0=eq_f)
            eq_b = relax(second, x, jax.random.fold_in(k2, 1), nudge=(0.0, nud[1]), target=y, state0=eq_f2)
            sp, _ = engine.read(hw, eq_a, k3)
            _, sm = engine.read(second, eq_b, k4)
            phases = (eq_f, eq_f2, eq_a, eq_b)
        else:
            eq = relax(hw, x, k2, nudge=nud, target=y, state0=eq_f)
            sp, sm = engine.read(hw, eq, k3)
            phases = (eq_f, eq)
        rule = {"dyadic": lambda a, b: rules.dyadic(x, a, b, beta, lam, leak),
                "ep-centered": lambda a, b: rules.ep_centered(x, b, a, beta, leak),
                "ep-positive": lambda a, b: rules.ep_positive(x, b, a, beta, leak),   # s⁻ is the free phase
                "ep-negative": lambda a, b: rules.ep_negative(x, b, a, beta, leak),   # s⁺ is the free phase
                }[kind.rule]
        a, b = sp, sm
    else:
        # Clamped rules: the free phase gives o*, then the clamped phase(s).
        s_free, _ = engine.read(hw, eq_f, k3)
        o = s_free[-1]
        if kind.rule == "cl":
            c = (y, None)
        else:
            c = {"cpl-p": (rules.coupled_clamp(o, y, beta), None),
                 "cpl-n": (None, rules.coupled_clamp(o, y, -beta)),
                 "cpl-c": (rules.coupled_clamp(o, y, beta), rules.coupled_clamp(o, y, -beta))}[kind.rule]
        eq_c = relax(second, x, k2, clamp=c, state0=eq_f)
        cp, cm = engine.read(second, eq_c, k4)
        phases = (eq_f, eq_c)
        # (a, b, rule): the rule's two phases, a the one made equal to b when unsettled
        a, b, rule = {"cl": (cp, s_free, lambda a, b: rules.contrastive(x, b, a, leak)),
                      "cpl-p": (cp, s_free, lambda a, b: rules.coupled(x, a, b, beta, "P", leak)),
                      "cpl-n": (cm, s_free, lambda a, b: rules.coupled(x, b, a, beta, "N", leak)),
                      "cpl-c": (cp, cm, lambda a, b: rules.coupled(x, a, b, beta, "C", leak))}[kind.rule]
    iters = sum(eq.iterations for eq in phases)
    # the free relaxations (eq_f, eq_f2) run one compartment, the others two
    n_free = 2 if kind.phases == "twin" and len(phases) == 4 else 1
    citers = sum(eq.iterations * (1 if i < n_free else 2) for i, eq in enumerate(phases))
    if "settling" in engine.abilities:
        settled = settled_examples(spec, phases)
    else:
        settled = jnp.ones(x.shape[0], bool)
    if kind.discard_unsettled:
        # every rule is a difference between its two phases: equal phases add nothing
        keep = lambda u, v: tuple(jnp.where(settled[:, None], ui, vi) for ui, vi in zip(u, v))  # noqa: E731
        n = jnp.sum(settled)
        scale = jnp.where(n > 0, x.shape[0] / jnp.maximum(n, 1), 0.0)
        upd = jax.tree_util.tree_map(lambda u: u * scale.astype(u.dtype), rule(keep(a, b), b))
    else:
        upd = rule(a, b)
    return PhaseResult(upd, iters, eq_f.output, jnp.sum(~settled), tuple(eq_f.s_plus), citers)


def passive_leak(spec, engine: Engine, hw):
    """The rules' ``leak`` where the phases are DC points of the passive resistive
    circuit (node-level engine, λ = 1): the signs of ``hw``'s realized couplings,
    which each differential pair knows locally. None elsewhere (active circuits)."""
    if engine.name != "nodal" or spec.lam != 1.0:
        return None
    dev = hw.profile.coupling
    return rules.coupling_signs(dev.effective(hw.input_state), tuple(dev.effective(f) for f in hw.forward))


# On a residual floor, how far above the batch's median residual an example may end and
# still count as settled. Measured on the photodetector-noise floor of slm-10bit
# (skew-small) and slm-10bit-500 (sym-4x500-slm), 256 test images, three seeds,
# free and nudged phases: the largest example ended at 1.33–1.70× the median.
FLOOR_SPREAD = 2.0


def settled_examples(spec, phases) -> jax.Array:
    """(batch,) bool: every phase's final residual is finite and either at most
    ``spec.tol`` or, where that phase stopped on a residual floor, within
    :data:`FLOOR_SPREAD` of the batch median.

    A floor stop (``stall_window`` > 0 or ``floor_stop``, the residual no longer falling: device
    read noise) ends the whole batch at the noise level, above ``tol``; what
    the floor cannot hide is an example left far above the others."""
    ok = []
    for eq in phases:
        r = eq.residual_per_sample
        limit = jnp.asarray(spec.tol, r.dtype)
        if spec.stall_window > 0 or getattr(spec, "floor_stop", False):
            limit = jnp.maximum(limit, jnp.where(eq.oscillating, FLOOR_SPREAD * jnp.median(r), 0.0))
        ok.append(jnp.isfinite(r) & (r <= limit))
    return jnp.all(jnp.stack(ok), axis=0)


def to_params(update: dict, asymmetric: bool, like: Params) -> Params:
    """A rule's update dict as :class:`Params` (dtypes of ``like``); without a
    "backward" entry an asymmetric circuit's ψ_k get θ_kᵀ's update."""
    if "backward" in update and update["backward"]:
        back = tuple(update["backward"])
    else:
        back = tuple(t.T for t in update["thetas"]) if asymmetric else ()
    p = Params(theta0=update["theta0"], thetas=tuple(update["thetas"]), biases=tuple(update["biases"]),
               backward=back)
    return jax.tree_util.tree_map(lambda u, q: u.astype(q.dtype), p, like)


def _homeostatic_gradient(spec, kind: StepKind, params, x, free, key):
    """(L_homeo, ∇L_homeo) at the free states; ψ_k only with ``homeostasis_backward_only``."""
    h, g = jax.value_and_grad(
        lambda p: homeostasis.circuit_homeostatic_loss(spec, p, x, free, key, kind.homeostasis_probes))(params)
    if kind.homeostasis_backward_only:
        g = dataclasses.replace(jax.tree_util.tree_map(jnp.zeros_like, g), backward=g.backward)
    return h, g


def _train_step(spec, kind: StepKind, engine: Engine, params, opt_state, settings: OptimizerSettings, hw, hw2,
                x, y, beta, lam_homeo, key):
    k_prog, k_prog2, k_phase, k_write = jax.random.split(key, 4)
    res = phases_and_rule(spec, kind, engine, hw, hw2, x, y, beta, k_phase)
    grads = to_params(res.update, spec.asymmetric, params)
    homeo = jnp.zeros((), jnp.float32)
    if kind.homeostasis_probes:
        homeo, hg = _homeostatic_gradient(spec, kind, params, x, res.free, jax.random.fold_in(key, 1))
        grads = jax.tree_util.tree_map(lambda g, h: g + (lam_homeo * h).astype(g.dtype), grads, hg)
    updates, opt_state = optimizer(settings).update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if kind.write_mode == "shadow":
        # the digital copy is written whole into the chip, with fresh programming errors
        hw = engine.reprogram(spec, hw, params, k_prog)
        if kind.phases == "twin":
            hw2 = engine.reprogram(spec, hw2, params, k_prog2)
    else:
        hw = write_in_situ(spec, hw, updates, k_write)
        if kind.phases == "twin":
            hw2 = write_in_situ(spec, hw2, updates, jax.random.fold_in(k_write, 1))
    correct = jnp.sum(jnp.argmax(res.prediction, -1) == jnp.argmax(y, -1))
    loss = jnp.sum(cost(spec, res.prediction, y))
    # health of the step, for the controller's divergence watch (reads only, changes nothing)
    sat, count = saturated_units(spec, res.free)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(params)]
                               + [jnp.all(jnp.isfinite(jnp.real(s))) for s in res.free]))
    return (params, opt_state, hw, hw2, res.iterations, correct, loss, res.unsettled, homeo,
            (sat / count, finite), res.compartment_iterations)


def _train_step_marked(spec, kind: StepKind, engine: Engine, params, opt_state, settings, hw, hw2, *rest):
    """:func:`_train_step` returning None for each array of the chips it left as it was
    (the fabricated parts; the whole second chip unless the phases are twin), so the
    compiled step does not copy them (:func:`~anasim.circuits.chip.drop_forwarded`)."""
    out = _train_step(spec, kind, engine, params, opt_state, settings, hw, hw2, *rest)
    return (*out[:2], drop_forwarded(out[2], hw), drop_forwarded(out[3], hw2), *out[4:])


_train_step_jit = jax.jit(_train_step_marked, static_argnums=(0, 1, 2))


def train_step(spec, kind: StepKind, engine: Engine, *args):
    """One step: ``(params, opt_state, hw, hw2, iterations, correct, loss, unsettled, homeostatic loss,
    (saturated fraction, finite), compartment iterations)``
    from ``(params, opt_state, settings, hw, hw2, x, y, beta, lam_homeo, key)``; compiled on an
    engine with the ``"jit"`` ability."""
    if "jit" not in engine.abilities:
        return _train_step(spec, kind, engine, *args)
    hw, hw2 = args[3], args[4]
    out = _train_step_jit(spec, kind, engine, *args)
    return (*out[:2], refill_forwarded(out[2], hw), refill_forwarded(out[3], hw2), *out[4:])


def write_in_situ(spec, hw, updates: Params, key):
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

def saturated_units(spec, states):
    """(units at a rail of their nonlinearity, all units) over the layers' ``states``."""
    sat = 0.0
    count = 0
    for s, name in zip(states, spec.activations):
        s = jnp.real(s)
        lo = s <= 1e-6
        hi = (s >= 1.0 - 1e-6) if name in ("hard_sigmoid", "tempered_hard_sigmoid") else jnp.zeros_like(lo)
        sat = sat + jnp.sum(lo | hi)
        count += s.size
    return sat, count


def _eval_batch(spec, engine: Engine, hw, x, y, key):
    eq = engine.relax(spec, hw, x, key)
    out = eq.output
    correct = jnp.sum(jnp.argmax(out, -1) == jnp.argmax(y, -1))
    loss = jnp.sum(cost(spec, out, y))
    sat, count = saturated_units(spec, eq.s_plus)
    return correct, loss, sat / count, eq.iterations, eq.diverged


_eval_batch_jit = jax.jit(_eval_batch, static_argnums=(0, 1))


def eval_batch(spec, engine: Engine, hw, x, y, key):
    """(correct, summed loss, saturated fraction, iterations, diverged) of a free relaxation."""
    step = _eval_batch_jit if "jit" in engine.abilities else _eval_batch
    return step(spec, engine, hw, x, y, key)


__all__ = ["FLOOR_SPREAD", "PhaseResult", "StepKind", "check_compatible", "eval_batch", "passive_leak",
           "phases_and_rule", "saturated_units", "settled_examples", "to_params", "train_step", "write_in_situ"]
