"""The relaxation every circuit engine shares: the damped fixed-point loop and its result.

Both the layered engine (:mod:`anasim.circuits.layered`) and the
convolutional one (:mod:`anasim.circuits.conv`) relax through
:func:`relaxation_loop` and return an :class:`Equilibrium`; how the two
compartments of a dyad are mixed before a coupling is read
(:func:`mix_compartments_forward`, :func:`mix_compartments_backward`) is
also common (docs/design.md, “Circuits and relaxation”).

Convergence is measured, not assumed: every iteration measures the
fixed-point residual r = max |f(target_k) − s_k| (target_k the undamped
pre-activation a layer is driven towards). The loop stops when r ≤ tol and
returns the state r was measured on. :class:`Equilibrium` carries the
iterations used, the final residual, its trace, and the flags ``converged``
(residual ≤ tol), ``diverged`` (non-finite or |a| > :data:`DIVERGENCE_LIMIT`
pre-activation) and ``oscillating`` (budget spent while the residual stopped
decaying: a limit cycle, or a noise floor above ``tol``). With a stall window
W > 0 the loop also stops at such a floor (no 10 % gain over W iterations);
with a floor quantile z > 0 (``relaxation.floor_stop``) it stops as soon as
every unit's residual is within z standard deviations of the fluctuation its
devices' read noise predicts (:func:`floor_quantile`, docs/noise_speed.md).
:func:`check` raises :class:`~anasim.errors.ConvergenceError` on a bad one.

Schedules: ``sync`` updates all layers from the previous states; ``async``
updates the even layers, then the odd layers from the fresh even ones.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from scipy.special import ndtri

from anasim.circuits.precision import float64_scope, holds_float64
from anasim.errors import ConvergenceError

Array = jax.Array

#: |pre-activation| above which a relaxation is declared diverged (normalized units;
#: states live in [0, 1] and weights are O(0.1), so healthy values are O(10)).
DIVERGENCE_LIMIT = 1e6


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Equilibrium:
    """The result of one relaxation (a pytree).

    Attributes:
        s_plus, s_minus: compartment states per layer 1 … L, shapes (batch, n_k).
        a_plus, a_minus: the pre-activations (pass the Equilibrium as
            ``state0`` to warm-start a later relaxation).
        iterations: iterations used (int32 scalar).
        residual: final fixed-point residual max |f(target) − s| over layers,
            compartments and batch (module docstring), normalized state units.
        residual_per_sample: the same per sample, shape (batch,).
        trace: residual after each iteration, shape (max_iters,); entries from
            index ``iterations`` on are −1 (not run).
        converged, diverged, oscillating: status flags (bool scalars).
    """

    s_plus: tuple
    s_minus: tuple
    a_plus: tuple
    a_minus: tuple
    iterations: Array
    residual: Array
    residual_per_sample: Array
    trace: Array
    converged: Array
    diverged: Array
    oscillating: Array

    @property
    def mean(self) -> tuple:
        """(s⁺ + s⁻)/2 per layer: the dyad's prediction (in the states' format)."""
        with float64_scope(holds_float64(self.s_plus)):
            return tuple(0.5 * (p + m) for p, m in zip(self.s_plus, self.s_minus))

    @property
    def output(self) -> Array:
        """The output layer's mean state, shape (batch, n_L), in the states' format."""
        with float64_scope(holds_float64(self.s_plus[-1])):
            return 0.5 * (self.s_plus[-1] + self.s_minus[-1])

    def status(self) -> str:
        """'converged', 'diverged', 'oscillating' or 'budget' (concrete values only)."""
        if bool(self.diverged):
            return "diverged"
        if bool(self.converged):
            return "converged"
        if bool(self.oscillating):
            return "oscillating"
        return "budget"


def check(eq: Equilibrium, what: str = "relaxation", require_convergence: bool = False) -> Equilibrium:
    """Raise :class:`ConvergenceError` if ``eq`` diverged (or, if asked, did not converge)."""
    if bool(eq.diverged):
        raise ConvergenceError(f"{what}: diverged after {int(eq.iterations)} iterations "
                               f"(non-finite or |a| > {DIVERGENCE_LIMIT:g})")
    if require_convergence and not bool(eq.converged):
        raise ConvergenceError(f"{what}: not converged in {int(eq.iterations)} iterations "
                               f"(residual {float(eq.residual):.3g}, status {eq.status()})")
    return eq


def read_states(hw, eq: Equilibrium, key: Array) -> tuple[tuple, tuple]:
    """Read both compartments through the ADCs: what a learning rule may see.

    ``hw`` is a layered :class:`Hardware` or a convolutional chip: anything with
    a ``profile`` and one ADC tile per layer in ``hw.adc``."""
    adc = hw.profile.adc
    L = len(eq.s_plus)
    with float64_scope(holds_float64(eq.s_plus)):      # a float64 relaxation reads in float64
        keys = jax.random.split(key, 2 * L)
        sp = tuple(adc.convert(hw.adc[k], eq.s_plus[k], keys[k]) for k in range(L))
        sm = tuple(adc.convert(hw.adc[k], eq.s_minus[k], keys[L + k]) for k in range(L))
    return sp, sm


# --- shared by the engines ---------------------------------------------------------------

def is_static_zero(b) -> bool:
    """True for a literal Python 0 (a nudge known to be off when the call is traced)."""
    return isinstance(b, (int, float)) and not isinstance(b, bool) and b == 0


def is_complex(b) -> bool:
    """True for a complex nudge (Python complex or complex array): a holomorphic run."""
    return isinstance(b, complex) or (hasattr(b, "dtype") and jnp.iscomplexobj(b))



#: the floor stop's level: the largest normalized residual of a relaxation on its
#: noise floor stays below :func:`floor_quantile` with this probability (units taken
#: independent; the coupling between layers raises the real floor a little above
#: that estimate, measured on the 4×500 SLM networks: docs/noise_speed.md).
FLOOR_PROBABILITY = 0.99


def floor_quantile(n: int, p: float = FLOOR_PROBABILITY) -> float:
    """The ``p`` quantile of the largest of ``n`` independent |N(0, 1)| draws:
    Φ⁻¹((1 + p^(1/n))/2). A relaxation on its noise floor has every unit's
    residual spread as |N(0, σ_u'²)| (:func:`floor_scale`, docs/noise_speed.md);
    all ``n`` normalized residuals |gap_u|/σ_u' fall below this value in a
    fraction ``p`` of its iterations (units outside their linear range have no
    spread and only lower the maximum). About 5.4 for n = 1.3e5 at p = 0.99."""
    if n < 1 or not 0.0 < p < 1.0:
        raise ValueError(f"floor_quantile: need n ≥ 1 and 0 < p < 1, got n = {n}, p = {p}")
    return float(-ndtri(-math.expm1(math.log(p) / n) / 2.0))


def floor_variance(var: Array, gain: float, eta: Array) -> Array:
    """σ_u'² = g² · 2/(2 − η) · var: the stationary variance of a unit's residual
    f(target) − s when each damped step reads its target with noise of variance
    ``var`` (normalized units²) and g is the activation's slope
    (docs/noise_speed.md: the state keeps η/(2 − η) of the read variance,
    the fresh read adds one)."""
    return (gain * gain) * (2.0 / (2.0 - eta)) * var


def floor_scale(var: Array, gain: float, eta: Array) -> Array:
    """σ_u' = √(:func:`floor_variance`): the stationary spread of a unit's residual
    |f(target) − s| (normalized units)."""
    return jnp.sqrt(floor_variance(var, gain, eta))


def relaxation_loop(update_layers: Callable, states: Callable, a0: tuple, key: Array, *, schedule: str,
                    max_iters: int, stall_window: int, tol: Array, res_dtype,
                    floor_z: float = 0.0, floor_stat: Callable | None = None) -> Equilibrium:
    """The damped fixed-point iteration shared by the layered and convolutional circuits.

    Args:
        update_layers: ``(layers, a_list, s_list, keys, res) -> new a_list``:
            one damped update of the 0-based ``layers`` from the states
            ``s_list``, with per-layer PRNG ``keys``; writes each updated
            layer's per-sample residual max |f(target) − s|, shape (batch,),
            into ``res[j]``.
        states: ``a_list -> s_list``, the neuron states of the pre-activations.
        a0: initial pre-activations per layer, each (C, batch, …) with C the
            number of compartments simulated (1 or 2).
        key: PRNG key of the loop (folded with the iteration number).
        schedule: ``"sync"`` (all layers at once) or ``"async"`` (even layers
            k, then odd ones, each phase seeing the states of the one before).
        max_iters, stall_window: static iteration budget and stall window.
        tol: convergence tolerance on the residual (normalized state units).
        res_dtype: dtype of the residual and its trace.
        floor_z, floor_stat: with z > 0 the loop calls ``update_layers(..., res, zres)``,
            which leaves what it measured of layer j in ``zres[j]``;
            ``floor_stat(zres)`` turns that into the largest normalized residual
            max |gap_u|/σ_u' (:func:`floor_scale`), and the loop stops once it
            is ≤ z (:func:`floor_quantile`): the noise floor reached. 0: off.

    Returns the :class:`Equilibrium` of the state the last residual was measured on.
    """
    L = len(a0)
    C, batch = a0[0].shape[:2]
    if schedule == "sync":
        phases = [tuple(range(L))]
    else:
        # layer number k = j + 1: even layers first, then odd ones
        phases = [tuple(j for j in range(L) if (j + 1) % 2 == 0), tuple(j for j in range(L) if (j + 1) % 2 == 1)]
        phases = [p for p in phases if p]

    def one_iteration(a_list, i):
        keys = jax.random.split(jax.random.fold_in(key, i), L)
        s_cur = states(a_list)
        res = [None] * L
        zres = [None] * L
        for p in phases:
            if floor_z > 0:
                a_list = update_layers(p, a_list, s_cur, keys, res, zres)
            else:
                a_list = update_layers(p, a_list, s_cur, keys, res)
            s_cur = states(a_list)
        res_ps = jnp.max(jnp.stack(res), axis=0)                     # (B,)
        amax = jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in a_list]))
        bad = ~jnp.isfinite(amax) | (amax > DIVERGENCE_LIMIT) | ~jnp.all(jnp.isfinite(res_ps))
        zmax = floor_stat(zres) if floor_z > 0 else jnp.asarray(jnp.inf)
        return a_list, res_ps, bad, zmax.astype(res_dtype)

    trace0 = -jnp.ones((max_iters,), res_dtype)

    idx = jnp.arange(max_iters)

    def no_gain(i, trace, window):
        """The last ``window`` residuals did not fall below 0.9× the best before them."""
        recent = (idx >= i - window) & (idx < i)
        before = idx < i - window
        best_recent = jnp.min(jnp.where(recent, trace, jnp.inf))
        best_before = jnp.min(jnp.where(before, trace, jnp.inf))
        return best_recent > 0.9 * best_before

    def cond(carry):
        i, a_list, a_meas, res_ps, trace, bad, zmax = carry
        res = jnp.max(res_ps)
        go = (i < max_iters) & ~bad & ~((i > 0) & (res <= tol))
        if stall_window > 0:
            go = go & ~((i >= 2 * stall_window) & no_gain(i, trace, stall_window))
        if floor_z > 0:
            go = go & ~(zmax <= floor_z)
        return go

    def body(carry):
        i, a_list, _, res_ps, trace, bad, _ = carry
        a_new, res_ps, bad, zmax = one_iteration(list(a_list), i)
        trace = trace.at[i].set(jnp.max(res_ps))
        # keep the state the residual was measured on: that is the one returned
        return i + 1, tuple(a_new), a_list, res_ps, trace, bad, zmax

    init = (jnp.asarray(0, jnp.int32), tuple(a0), tuple(a0), jnp.full((batch,), jnp.inf, res_dtype),
            trace0, jnp.asarray(False), jnp.asarray(jnp.inf, res_dtype))
    iters, a_last, a_fin, res_ps, trace, bad, zmax = jax.lax.while_loop(cond, body, init)
    # a diverged run returns its last state, so the non-finite values are visible
    a_fin = tuple(jnp.where(bad, al, af) for al, af in zip(a_last, a_fin))
    s_fin = states(list(a_fin))
    residual = jnp.max(res_ps)
    converged = (residual <= tol) & ~bad
    # Oscillation: budget spent, and the last quarter of the trace did not bring the
    # residual below 0.9× the best value before it (no decay: a cycle or a noise floor);
    # or the stall window stopped the run for the same reason.
    stalled = no_gain(iters, trace, jnp.maximum(iters // 4, 1)) & (iters >= 8)
    if stall_window > 0:
        stalled = stalled | ((iters >= 2 * stall_window) & no_gain(iters, trace, stall_window))
    if floor_z > 0:
        stalled = stalled | (zmax <= floor_z)
    oscillating = ~converged & ~bad & stalled
    c_m = 0 if C == 1 else 1          # one simulated compartment serves as both
    return Equilibrium(s_plus=tuple(s[0] for s in s_fin), s_minus=tuple(s[c_m] for s in s_fin),
                       a_plus=tuple(a[0] for a in a_fin), a_minus=tuple(a[c_m] for a in a_fin),
                       iterations=iters, residual=residual, residual_per_sample=res_ps, trace=trace,
                       converged=converged, diverged=bad, oscillating=oscillating)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _relax_jit(body: Callable, spec: Any, static: tuple, hw: Any, args: tuple) -> Equilibrium:
    return body(spec, static, hw, *args)


def run_relaxation(body: Callable, spec: Any, static: tuple, hw: Any, *args) -> Equilibrium:
    """``body(spec, static, hw, *args)`` jitted: one compilation per engine ``body``,
    ``spec.physics()`` and hashable ``static`` settings (compartments, clamps, …);
    ``hw`` and ``args`` are traced. The body builds its layer update and calls
    :func:`relaxation_loop`."""
    return _relax_jit(body, spec.physics(), static, hw, args)


def mix_compartments_forward(d: Array, lam: float) -> Array:
    """What the forward coupling device sees of the DAC'd compartment states
    ``d`` (C, B, …): λ s± + λ̄ s∓ (docs/design.md, “Circuits and relaxation”); C = 1 (one compartment) or λ = 1
    passes ``d`` through."""
    if d.shape[0] == 1 or lam == 1.0:
        return d
    lbar = 1.0 - lam
    return jnp.stack([lam * d[0] + lbar * d[1], lam * d[1] + lbar * d[0]])


def mix_compartments_backward(d: Array, lam: float, asymmetric: bool) -> Array:
    """What the backward coupling device sees: λ s± − λ̄ s∓; with one compartment
    (β = 0) this is (2λ − 1) s, or s itself for independent (asymmetric) couplings."""
    if d.shape[0] == 1:
        return d if asymmetric else (2.0 * lam - 1.0) * d
    if lam == 1.0:
        return d
    lbar = 1.0 - lam
    return jnp.stack([lam * d[0] - lbar * d[1], lam * d[1] - lbar * d[0]])


__all__ = ["DIVERGENCE_LIMIT", "Equilibrium", "check", "FLOOR_PROBABILITY", "floor_quantile", "floor_scale", "floor_variance", "is_complex", "is_static_zero",
           "mix_compartments_backward", "mix_compartments_forward", "read_states", "relaxation_loop",
           "run_relaxation"]
