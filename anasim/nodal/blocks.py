"""Deep resistive networks (DRNs) solved exactly by block coordinate descent over their layers.

A DRN (Scellier, "A fast algorithm to simulate nonlinear resistive networks",
ICML 2024) is a layered network of nodes joined by conductances, driven by
voltage sources at its inputs:

* layer 0: 2·n_in input voltage sources, each pixel x ∈ [0, 1] as the pair
  (+g_in·x, −g_in·x) volts (``input_gain_v`` = g_in): the inverted copy lets a
  non-negative conductance act with either sign;
* hidden layers: each node joined to ground-referenced rails by one clamp
  diode; the first half of every hidden layer is *excitatory* (a diode from a
  rail at +``diode_bias_v`` into the node keeps v ≳ 0), the second half
  *inhibitory* (a diode from the node to a rail at −``diode_bias_v`` keeps
  v ≲ 0);
* output layer: linear nodes, read as volts (one node per class); the squared
  cost ½‖v_L − y‖² is nudged by the current β g_unit (y − v_L) (a current
  source and a VCCS on the node's own voltage);
* every node of layers 1…L receives a bias current b·g_unit (A).

Coupling k joins every node j of layer k to every node i of layer k+1 with a
conductance G = g_unit·w_k[j, i] ≥ 0 (S); w_k (n_k, n_{k+1}) are the
normalized weights (the ``w`` of :class:`DrnParams`; layer 0 has 2·n_in nodes).

Nodes of a layer do not touch each other, so given its two neighbouring layers
each node's KCL is one scalar equation

    g_unit·(Σ_j w v_j + b [+ β y]) − g_unit·(Σ_j w [+ β]) v + i_D(v) = 0

(the sums run over both neighbouring layers). With ideal diodes (the
reference's model, ``diode = "ideal"``) its solution is closed form: the
conductance-weighted mean of the neighbours (plus bias), clipped at 0 from
below (excitatory) or above (inhibitory). With Shockley diodes
(``diode = "shockley"``, the default: i = I_s (e^{V/nV_T} − 1) plus SPICE's
gmin across the junction) the left side is strictly decreasing and convex
(after a sign flip for inhibitory nodes), and a few Newton steps from a point
left of the root converge monotonically (:func:`_shockley_node`). Odd layers
depend only on even layers and vice versa, so one *sweep* updates all odd
layers at once, then all even layers: block coordinate descent on the
network's co-content, which it decreases at every step; its fixed point is the
DC operating point (KCL at every node). Everything is vectorized over nodes and
the batch and jitted.

Public API::

    DrnPhysics(diode, input_gain_v, g_unit_s, diode_is_a, diode_n, diode_bias_v, temperature_k,
               gmin, tol_v, max_sweeps, newton_steps)
    DrnParams(w, b, knee=())                      # normalized weights (≥ 0), biases, clamp offsets
    init_params(sizes, key, gain=1.0) -> DrnParams
    input_voltages(x, physics) -> (B, 2·n_in) volts
    solve(params, vin, physics, *, beta=0, target=None, init=None) -> (layers, sweeps, change)
    ep_gradient(params, vin, target, physics, beta, max_sweeps=None, init=None) -> (grads, free layers)
    ep_estimate(vin, plus, minus, beta) -> DrnParams grads    # from given nudged layers
    kcl_residual(params, vin, layers, physics, *, beta=0, target=None) -> (B,) amperes
    sweep_to_tolerance(update, init, updated, tol_v, max_sweeps) -> (layers, sweeps, change)
        # the odd/even sweep itself, shared with anasim.nodal.hopfield_blocks
    sgd_step(params, vin, target, physics, beta, lr) -> (params, free layers)
    sgd_epoch(params, x, targets, physics, beta, lr) -> params     # a jitted scan of steps

The network is ``anasim.nodal.drn``'s too: it builds the same network as a
:class:`~anasim.nodal.circuit.Circuit` for the Newton solver, ngspice and the
thermal-noise model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from anasim.errors import AnasimError
from anasim.nodal.circuit import thermal_voltage
from anasim.nodal.netlist import DEFAULT_GMIN

Array = jax.Array

DIODES = ("shockley", "ideal")

__all__ = ["DIODES", "DrnPhysics", "DrnParams", "init_params", "input_voltages", "solve", "ep_gradient",
           "sgd_step", "sgd_epoch", "ep_estimate", "kcl_residual", "excitatory_signs", "layer_sizes",
           "sweep_to_tolerance"]


@dataclass(frozen=True)
class DrnPhysics:
    """Physical parameters of a deep resistive network (hashable: a jit static argument).

    Attributes:
        diode: ``"shockley"`` (default; I_s, n, gmin) or ``"ideal"`` (the
            reference's model: a perfect switch at 0 V, no bias, no gmin).
        input_gain_v: input source voltage of a pixel of value 1 (V); the
            reference uses 100 (DRN-XS) and 480 (DRN-1H).
        g_unit_s: conductance of a unit normalized weight (S); the bias and
            nudge currents scale with it too. Assumed 1e-4 S: the reference's
            initial weights (≈ 1/√1568) are then 2.5 µS devices.
        diode_is_a, diode_n: saturation current (A) and ideality of the clamp
            diodes (assumed: 1e-14 A, 1, a small-signal silicon junction).
        diode_bias_v: rail voltage behind each clamp diode (V): +bias for the
            excitatory clamps, −bias for the inhibitory ones, so that the
            junction's ≈ 0.6 V knee lands near 0 V. Assumed 0.6 V. (Shockley only.)
        temperature_k: junction temperature (K); ngspice's default 300.15 K.
        gmin: conductance across every junction (S), as SPICE adds it (Shockley only).
        tol_v: a solve stops when no node moved more than this in a sweep (V).
        max_sweeps: sweep budget of a solve.
        newton_steps: Newton steps per Shockley node update (monotone from the left).
    """

    diode: str = "shockley"
    input_gain_v: float = 100.0
    g_unit_s: float = 1e-4
    diode_is_a: float = 1e-14
    diode_n: float = 1.0
    diode_bias_v: float = 0.6
    temperature_k: float = 300.15
    gmin: float = DEFAULT_GMIN
    tol_v: float = 1e-6
    max_sweeps: int = 200
    newton_steps: int = 12

    def __post_init__(self):
        if self.diode not in DIODES:
            raise AnasimError(f"DrnPhysics.diode must be one of {DIODES}, got {self.diode!r}")
        for name in ("input_gain_v", "g_unit_s", "diode_is_a", "diode_n", "temperature_k", "tol_v"):
            if not float(getattr(self, name)) > 0:
                raise AnasimError(f"DrnPhysics.{name} must be > 0, got {getattr(self, name)!r}")
        if self.gmin < 0 or self.diode_bias_v < 0:
            raise AnasimError("DrnPhysics: gmin and diode_bias_v must be ≥ 0")
        if int(self.max_sweeps) < 1 or int(self.newton_steps) < 1:
            raise AnasimError("DrnPhysics: max_sweeps and newton_steps must be ≥ 1")

    @property
    def vte_v(self) -> float:
        """n V_T (V)."""
        return self.diode_n * thermal_voltage(self.temperature_k)


class DrnParams(NamedTuple):
    """Normalized couplings w_k (n_k, n_{k+1}) ≥ 0 (layer 0: 2·n_in input nodes) and
    biases b_k (n_{k+1},) of layers 1…L (current b·g_unit, A).

    ``knee``: optional per-node clamp offsets δ (V) of the hidden layers (a tuple
    of (n_k,) arrays, one per hidden layer; empty: none): diode mismatch. An
    excitatory node's rail sits at +V_b + δ, an inhibitory node's at −V_b + δ
    (ideal diodes: v ≥ δ, v ≤ δ). Fixed at fabrication, not learned.
    """

    w: tuple
    b: tuple
    knee: tuple = ()


def layer_sizes(params: DrnParams) -> tuple:
    """(2·n_in, n_1, …, n_L) node counts."""
    return (int(params.w[0].shape[0]),) + tuple(int(w.shape[1]) for w in params.w)


def init_params(sizes, key: Array, gain: float = 1.0, dtype=jnp.float32) -> DrnParams:
    """The reference's initialization: w ~ U(−s, s) with s = gain/√n_k, clipped at 0
    (half the conductances start at 0); biases 0. ``sizes`` = (n_in, n_1, …, n_L)
    pixels and nodes (the input layer gets 2·n_in nodes)."""
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise AnasimError(f"init_params: sizes must list ≥ 2 positive layer sizes, got {sizes}")
    nodes = (2 * sizes[0],) + sizes[1:]
    keys = jax.random.split(key, len(nodes) - 1)
    w = tuple(jnp.maximum(jax.random.uniform(k, (a, b), dtype, -1.0, 1.0) * (gain / np.sqrt(a)), 0.0)
              for k, a, b in zip(keys, nodes[:-1], nodes[1:]))
    b = tuple(jnp.zeros((n,), dtype) for n in nodes[1:])
    return DrnParams(w, b)


def input_voltages(x, physics: DrnPhysics) -> Array:
    """Input source voltages (B, 2·n_in) (V) of pixels ``x`` (B, n_in) in [0, 1]."""
    x = jnp.asarray(x)
    return physics.input_gain_v * jnp.concatenate([x, -x], axis=-1)


def excitatory_signs(n: int, dtype=jnp.float32) -> Array:
    """+1 for the excitatory first half of a hidden layer of n nodes, −1 for the rest."""
    return jnp.where(jnp.arange(n) < n // 2, 1.0, -1.0).astype(dtype)


def _shockley_node(num, a, sign, physics: DrnPhysics, knee=0.0):
    """Root v of  num − a v + s·i_D(s v) = 0  per node, with i_D the current a clamp
    diode delivers (A): a diode from a rail at s·V_b into the node (s = +1) or
    from the node to a rail at −V_b (s = −1), plus gmin across it.

    In u = s v the equation is F(u) = ñ − ã u + I_s (e^{(r − u)/nV_T} − 1) = 0 with
    ñ = s·num + gmin r, ã = a + gmin, r = V_b: F is strictly decreasing and
    convex, so Newton from any u₀ with F(u₀) ≥ 0 climbs monotonically to the
    root. u₀ = max(u_c, (ñ − I_s)/ã) where u_c = r − nV_T ln(1 + max(ã r − ñ, 0)/I_s)
    (the voltage at which the diode alone would carry the current the
    conductances draw at u = r): both points have F ≥ 0 and u_c is within a
    few nV_T of the root when the diode conducts. ``knee``: the node's clamp
    offset δ (V), moving its rail to s·V_b + δ (r = V_b + s δ).
    """
    vte, i_s = physics.vte_v, physics.diode_is_a
    r = physics.diode_bias_v + sign * knee
    nt = sign * num + physics.gmin * r
    at = a + physics.gmin
    u_c = r - vte * jnp.log1p(jnp.maximum(at * r - nt, 0.0) / i_s)
    u = jnp.maximum(u_c, (nt - i_s) / at)

    def step(_, u):
        e = jnp.exp((r - u) / vte)
        f = nt - at * u + i_s * (e - 1.0)
        df = -at - i_s * e / vte
        return jnp.maximum(u - f / df, u)    # monotone from the left: never step back

    u = jax.lax.fori_loop(0, physics.newton_steps, step, u)
    return sign * u


def _layer_update(k, layers, vin, params, physics, beta, target, nudged):
    """Exact update of layer k (1…L) given layers k−1 and k+1: (B, n_k) volts."""
    L = len(params.w)
    below = vin if k == 1 else layers[k - 2]
    w_in = params.w[k - 1]
    num = below @ w_in + params.b[k - 1]
    a = jnp.sum(w_in, axis=0)
    if k < L:
        w_out = params.w[k]
        num = num + layers[k] @ w_out.T
        a = a + jnp.sum(w_out, axis=1)
    a = jnp.broadcast_to(a, num.shape)
    if k == L:
        if nudged:
            num = num + beta * target
            a = a + beta
        # a linear output node: a node with every conductance at 0 floats; hold it at 0
        return jnp.where(a > 0, num / jnp.where(a > 0, a, 1.0), 0.0)
    sign = excitatory_signs(num.shape[-1], num.dtype)
    knee = params.knee[k - 1] if params.knee else jnp.zeros((), num.dtype)
    if physics.diode == "ideal":
        v = num / jnp.where(a > 0, a, 1.0)
        return sign * jnp.maximum(sign * v, sign * knee)
    gu = physics.g_unit_s
    return _shockley_node(gu * num, gu * a, sign, physics, knee)


def sweep_to_tolerance(update, init: tuple, updated, tol_v: float, max_sweeps: int):
    """Block coordinate descent over a layered network's layers (traceable).

    One sweep replaces every odd layer of ``updated`` (1-based layer numbers),
    all at once, then every even one: ``update(k, layers)`` returns the new
    layer k given the current ``layers`` (a tuple of (B, n_k)). Layers of one
    parity do not touch each other, so each half-sweep is exact. Sweeps stop
    when no node moved more than ``tol_v`` (V) or after ``max_sweeps``.

    Returns (layers, sweeps, change): the last sweep's largest node change (V).
    """
    def sweep(layers):
        layers = list(layers)
        for parity in (1, 0):  # odd layers (1, 3, …) then even layers (2, 4, …)
            new = {k: update(k, layers) for k in updated if k % 2 == parity}
            for k, v in new.items():
                layers[k - 1] = v
        return tuple(layers)

    def cond(c):
        _, it, change = c
        return (it < max_sweeps) & (change > tol_v)

    def body(c):
        layers, it, _ = c
        new = sweep(layers)
        change = jnp.max(jnp.stack([jnp.max(jnp.abs(n - o)) for n, o in zip(new, layers)]))
        return new, it + 1, change

    inf = jnp.asarray(jnp.inf, init[0].dtype)
    return jax.lax.while_loop(cond, body, (tuple(init), jnp.int32(0), inf))


@partial(jax.jit, static_argnames=("physics", "nudged", "max_sweeps"))
def _solve(params, vin, init, beta, target, physics, nudged, max_sweeps):
    return sweep_to_tolerance(lambda k, layers: _layer_update(k, layers, vin, params, physics, beta, target, nudged),
                              init, range(1, len(params.w) + 1), physics.tol_v, max_sweeps)


def solve(params: DrnParams, vin, physics: DrnPhysics, *, beta=0.0, target=None, init=None,
          max_sweeps: int | None = None):
    """The DC operating point of a batch of DRNs by block coordinate descent.

    Args:
        params: the network (:class:`DrnParams`).
        vin: input source voltages (B, 2·n_in) (V) (:func:`input_voltages`).
        beta: nudge strength (scalar, may be traced); the output nodes receive
            β g_unit (y − v) (A). Ignored when ``target`` is None.
        target: (B, n_L) targets (V), or None for the free network.
        init: starting layer voltages (tuple of (B, n_k)); default zeros.
        max_sweeps: sweep budget (default ``physics.max_sweeps``): the
            reference's solver stops after 4.

    Returns:
        (layers, sweeps, change): node voltages of layers 1…L (tuple of (B, n_k), V),
        the sweeps done, and the largest node change of the last sweep (V).
    """
    vin = jnp.asarray(vin)
    if vin.ndim != 2 or vin.shape[1] != params.w[0].shape[0]:
        raise AnasimError(f"solve: vin must have shape (batch, {params.w[0].shape[0]}), got {vin.shape}")
    B = vin.shape[0]
    if init is None:
        init = tuple(jnp.zeros((B, w.shape[1]), vin.dtype) for w in params.w)
    nudged = target is not None
    tgt = jnp.zeros((B, params.w[-1].shape[1]), vin.dtype) if target is None else jnp.asarray(target, vin.dtype)
    return _solve(params, vin, tuple(init), jnp.asarray(beta, vin.dtype), tgt, physics, nudged,
                  int(max_sweeps or physics.max_sweeps))


def _pair_energy_grad(lower, upper):
    """∂/∂w of ½ Σ w (v_j − v_i)², batch mean: (n_lower, n_upper)."""
    B = lower.shape[0]
    msq_l = jnp.mean(lower * lower, axis=0)
    msq_u = jnp.mean(upper * upper, axis=0)
    return 0.5 * (msq_l[:, None] + msq_u[None, :]) - lower.T @ upper / B


def ep_gradient(params: DrnParams, vin, target, physics: DrnPhysics, beta: float,
                max_sweeps: int | None = None, init=None):
    """Centered EP estimate of ∇ of the squared cost w.r.t. (w, b), and the free layers.

    The co-content of the network (normalized by g_unit) is
    E = Σ ½ w (v_j − v_i)² − Σ b v (+ the diodes', independent of w, b); with
    the nudged states at ±β: ĝ = [∂E/∂θ(+β) − ∂E/∂θ(−β)] / (2β). The free
    solve starts from ``init`` (layer voltages; default 0 V), both nudged
    solves from the free state.
    """
    free, _, _ = solve(params, vin, physics, init=init, max_sweeps=max_sweeps)
    plus, _, _ = solve(params, vin, physics, beta=beta, target=target, init=free, max_sweeps=max_sweeps)
    minus, _, _ = solve(params, vin, physics, beta=-beta, target=target, init=free, max_sweeps=max_sweeps)
    return ep_estimate(vin, plus, minus, beta), free


def ep_estimate(vin, plus, minus, beta) -> DrnParams:
    """The centered EP estimate from the layers nudged at +β (``plus``) and −β (``minus``)
    (tuples of (B, n_k)): [∂E/∂θ(+β) − ∂E/∂θ(−β)] / (2β), batch mean, as DrnParams."""
    lows_p, lows_m = (vin,) + tuple(plus[:-1]), (vin,) + tuple(minus[:-1])
    gw = tuple((_pair_energy_grad(lp, up) - _pair_energy_grad(lm, um)) / (2 * beta)
               for lp, up, lm, um in zip(lows_p, plus, lows_m, minus))
    gb = tuple(-(jnp.mean(p, 0) - jnp.mean(m, 0)) / (2 * beta) for p, m in zip(plus, minus))
    return DrnParams(gw, gb)


def sgd_step(params: DrnParams, vin, target, physics: DrnPhysics, beta: float, lr: float,
             max_sweeps: int | None = None):
    """One EP step: w ← max(w − lr ĝ_w, 0) (conductances stay ≥ 0), b ← b − lr ĝ_b.
    Returns (new params, free layers)."""
    g, free = ep_gradient(params, vin, target, physics, beta, max_sweeps)
    w = tuple(jnp.maximum(w - lr * gw, 0.0) for w, gw in zip(params.w, g.w))  # the reference clips too
    b = tuple(b - lr * gb for b, gb in zip(params.b, g.b))
    return DrnParams(w, b, params.knee), free


@partial(jax.jit, static_argnames=("physics", "max_sweeps"))
def sgd_epoch(params: DrnParams, x, targets, physics: DrnPhysics, beta, lr, max_sweeps: int | None = None):
    """:func:`sgd_step` over a stack of batches (one compiled loop): ``x`` (steps, B, n_in)
    pixels in [0, 1], ``targets`` (steps, B, n_L). Returns the trained params."""
    def body(p, xy):
        p, _ = sgd_step(p, input_voltages(xy[0], physics), xy[1], physics, beta, lr, max_sweeps)
        return p, None

    params, _ = jax.lax.scan(body, params, (x, targets))
    return params


def kcl_residual(params: DrnParams, vin, layers, physics: DrnPhysics, *, beta=0.0, target=None) -> Array:
    """Largest KCL violation (A) at any node of layers 1…L, per example: (B,).

    Shockley: |g_unit (Σ w v_nb + b [+ β y] − (Σ w [+ β]) v) + i_D(v)|. Ideal: that
    residual without i_D at nodes off their clamp; at a clamped node the diode may
    carry any current of its own direction, so only a current it cannot carry counts.
    """
    vin = jnp.asarray(vin)
    layers = tuple(jnp.asarray(v, vin.dtype) for v in layers)
    L, gu = len(params.w), physics.g_unit_s
    nudged = target is not None
    tgt = jnp.zeros_like(layers[-1]) if target is None else jnp.asarray(target, vin.dtype)
    worst = jnp.zeros(vin.shape[0], vin.dtype)
    for k in range(1, L + 1):
        below = vin if k == 1 else layers[k - 2]
        num = below @ params.w[k - 1] + params.b[k - 1]
        a = jnp.sum(params.w[k - 1], axis=0)
        if k < L:
            num = num + layers[k] @ params.w[k].T
            a = a + jnp.sum(params.w[k], axis=1)
        v = layers[k - 1]
        if k == L:
            if nudged:
                num, a = num + beta * tgt, a + beta
            r = jnp.abs(gu * (num - a * v))
        else:
            sign = excitatory_signs(v.shape[-1], v.dtype)
            knee = params.knee[k - 1] if params.knee else jnp.zeros((), v.dtype)
            r = gu * (num - a * v)
            if physics.diode == "ideal":
                clamped = sign * (v - knee) <= 0
                r = jnp.where(clamped, jnp.maximum(sign * r, 0.0), jnp.abs(r))
            else:
                vte, i_s = physics.vte_v, physics.diode_is_a
                rail = physics.diode_bias_v + sign * knee
                u = sign * v
                i_d = i_s * (jnp.exp((rail - u) / vte) - 1.0) + physics.gmin * (rail - u)
                r = jnp.abs(r + sign * i_d)
        worst = jnp.maximum(worst, jnp.max(r, axis=-1))
    return worst
