"""The resistive Hopfield circuit's DC point by exact block updates of its layers.

The resistive node-level circuit of :mod:`anasim.nodal.hopfield` (λ = 1:
differential conductance pairs, inputs as ± voltage sources, two clamp diodes
per node) is layered: a node of layer k touches only layers k − 1 and k + 1
through conductances, and its own clamp diodes, bias source and nudge
elements. Given its two neighbouring layers, the KCL of the p node of neuron i
is one scalar equation in its voltage v (V):

    F(v) = n_i − a_i v − i_hi(v) + i_lo(v) = 0,

    n_i = Σ_j (G⁺ − G⁻)_ij v_j + I_i,     a_i = Σ_j (G⁺ + G⁻)_ij [+ β g_unit at the outputs],

(the sums over both neighbouring layers, v_j their p voltages; the m node
carries −v by the circuit's p ↔ m symmetry, so G⁻ to m_j acts as −G⁻ to
v_j). I_i = g_unit V_fs (b_i [+ β y_i]) is the injected current; the nudge's
VCCS is the β g_unit in a_i. The clamp diodes are the netlist's: i_hi =
I_s (e^{(v − V_hi)/nV_T} − 1) + gmin (v − V_hi) leaves the node into the upper
rail, i_lo = I_s (e^{(V_lo − v)/nV_T} − 1) + gmin (V_lo − v) enters it from the
lower rail.

**The node solve.** F is strictly decreasing when a_i + 2 gmin > 0. Write
E(v) = −I_s e^{(v − V_hi)/nV_T} + I_s e^{(V_lo − v)/nV_T}: E vanishes at the
rails' midpoint v_m = (V_hi + V_lo)/2, is concave above it and convex below.
The linear part alone is zero at v_ℓ = (n_i + gmin (V_hi + V_lo))/(a_i + 2 gmin),
where F(v_ℓ) = E(v_ℓ); so the root lies between v_ℓ and v_m, in the half where
F has one curvature. Newton from the end whose tangent stays on the root's
side (the right end when the root is above v_m, where F is concave; the left
end below) moves monotonically onto the root, never past it. Far beyond the
rail the start is the diode's own voltage for the current the conductances
deliver (v_c = V_hi + nV_T ln(1 + (n' − a' V_hi)/I_s) above, mirrored below),
which has the same sign of F and keeps the exponentials finite.

**The sweep.** Layers of one parity do not touch each other, so one sweep
updates all odd layers at once, then all even ones: block coordinate descent
on the circuit's co-content (a strictly convex function of the node voltages
for a > 0), which decreases at every update; its fixed point is the DC
operating point. A solve stops when no node moved more than ``tol_v`` in a
sweep. Outputs held by clamping sources (contrastive and coupled learning)
are fixed at the source voltage and not updated. No matrix is assembled or
factored: a sweep costs two products per coupling.

This is the solver of :func:`anasim.nodal.hopfield.solve_layers` for a
resistive circuit whose physics says ``solver = "blocks"`` or ``"auto"`` (the
default); the whole-netlist Newton solve (``solver = "newton"``) is the
reference it is tested against, node by node.

Public API::

    conductance_pairs(weights, physics) -> ([G⁺_k], [G⁻_k])      # S, the netlist's resistors
    resistive_layers(weights, physics, x, *, beta=0, target=None, clamp=None)
        -> (layers (V), sweeps (B,), residual (B,) A)
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits.precision import in_float64
from anasim.errors import AnasimError
from anasim.nodal.blocks import sweep_to_tolerance
from anasim.nodal.circuit import thermal_voltage
from anasim.nodal.physics import NodalPhysics

Array = jax.Array

__all__ = ["conductance_pairs", "resistive_layers"]

#: Newton steps of one node solve; a monotone run from the start points above
#: settles in well under this (the exponential's region takes a few, the
#: linear one a single step).
_NODE_NEWTON_STEPS = 30


def conductance_pairs(weights, physics: NodalPhysics) -> tuple[list, list]:
    """The differential pairs (G⁺, G⁻) (S) of every coupling, each (n_{k+1}, n_k): a
    crossbar's own ``weights.g_pos``/``g_neg`` when given, else
    G± = g_min + g_unit·max(±θ, 0) from the realized θ's."""
    if weights.g_pos is not None:
        return ([np.asarray(g, np.float64) for g in weights.g_pos],
                [np.asarray(g, np.float64) for g in weights.g_neg])
    mats = (weights.theta0,) + tuple(weights.thetas)
    gp = [physics.g_min_s + physics.g_unit_s * np.maximum(np.asarray(w, np.float64), 0) for w in mats]
    gn = [physics.g_min_s + physics.g_unit_s * np.maximum(-np.asarray(w, np.float64), 0) for w in mats]
    return gp, gn


def _node_kcl(num, a, v, physics: NodalPhysics):
    """F(v) (A) of the module docstring and dF/dv (S), per node: ``num`` n_i (A), ``a`` a_i (S)."""
    vte = physics.diode_n * thermal_voltage(physics.temperature_k)
    i_s, gmin = physics.diode_is_a, physics.gmin
    hi, lo = physics.rail_hi_v, physics.rail_lo_v
    e_hi = jnp.expm1((v - hi) / vte)
    e_lo = jnp.expm1((lo - v) / vte)
    f = num - a * v - i_s * e_hi - gmin * (v - hi) + i_s * e_lo + gmin * (lo - v)
    df = -a - 2.0 * gmin - i_s * (e_hi + e_lo + 2.0) / vte
    return f, df


def _node_solve(num, a, physics: NodalPhysics):
    """The root v (V) of F above, per node; ``num`` n_i (A), ``a`` a_i (S), same shape.
    Needs V_hi ≥ V_lo (checked by :func:`resistive_layers`): then the start points
    below lie on the root's far side from the rails' midpoint."""
    vte = physics.diode_n * thermal_voltage(physics.temperature_k)
    i_s, gmin = physics.diode_is_a, physics.gmin
    hi, lo = physics.rail_hi_v, physics.rail_lo_v
    n1 = num + gmin * (hi + lo)
    a1 = a + 2.0 * gmin
    v_lin = n1 / a1
    mid = 0.5 * (hi + lo)
    up = v_lin > mid          # the root lies in [mid, v_lin] (concave F) or [v_lin, mid] (convex)
    # the diode's voltage for the current the conductances deliver at its rail: F ≤ 0 there
    # above (F ≥ 0 below), since the other diode is then reverse biased (V_hi ≥ V_lo)
    v_hi = hi + vte * jnp.log1p(jnp.maximum(n1 - a1 * hi, 0.0) / i_s)
    v_lo = lo - vte * jnp.log1p(jnp.maximum(a1 * lo - n1, 0.0) / i_s)
    v = jnp.where(up, jnp.minimum(v_lin, v_hi), jnp.maximum(v_lin, v_lo))

    def step(_, v):
        f, df = _node_kcl(num, a, v, physics)
        new = v - f / df
        # monotone towards the root: from above never up, from below never down
        return jnp.where(up, jnp.minimum(new, v), jnp.maximum(new, v))

    return jax.lax.fori_loop(0, _NODE_NEWTON_STEPS, step, v)


def _layer_terms(k, layers, v_in, diff, total, inj, a_out):
    """n (A) and a (S) of layer k (1…L) given its neighbours."""
    L = len(diff)
    below = v_in if k == 1 else layers[k - 2]
    num = below @ diff[k - 1].T + inj[k - 1]
    a = jnp.sum(total[k - 1], axis=1)
    if k < L:
        num = num + layers[k] @ diff[k]
        a = a + jnp.sum(total[k], axis=0)
    else:
        a = a + a_out
    return num, jnp.broadcast_to(a, num.shape)


@partial(jax.jit, static_argnames=("physics", "clamped", "tol_v", "max_sweeps"))
def _solve(v_in, diff, total, inj, a_out, init, physics, clamped, tol_v, max_sweeps):
    L = len(diff)
    free = [k for k in range(1, L + 1) if not (clamped and k == L)]
    layers, sweeps, change = sweep_to_tolerance(
        lambda k, layers: _node_solve(*_layer_terms(k, layers, v_in, diff, total, inj, a_out), physics),
        init, free, tol_v, max_sweeps)
    # KCL residual of every updated node at the final voltages (A), per circuit
    res = jnp.zeros(v_in.shape[0])
    for k in free:
        f, _ = _node_kcl(*_layer_terms(k, layers, v_in, diff, total, inj, a_out), layers[k - 1], physics)
        res = jnp.maximum(res, jnp.max(jnp.abs(f), axis=-1))
    return layers, sweeps, change, res


@in_float64
def resistive_layers(weights, physics: NodalPhysics, x, *, beta=0.0, target=None, clamp=None,
                     raise_on_failure: bool = True):
    """The resistive circuit's DC point by block updates (module docstring).

    Args:
        weights: :class:`~anasim.nodal.hopfield.LayeredWeights` (the conductance
            pairs ``g_pos``/``g_neg`` when given, else g_min + g_unit·max(±θ, 0)).
        physics: resistive :class:`NodalPhysics` (``block_tol_v``, ``max_sweeps``).
        x: normalized inputs (B, n_in); the sources hold ±x·V_fs.
        beta: signed nudge per circuit, scalar or (B,); with ``target`` (B, n_L).
        clamp: output values held by sources (B, n_L) (normalized), or None.
        raise_on_failure: raise when the sweeps run out (else return the last
            sweep's voltages; ``residual`` says how far they are from KCL).

    Returns:
        (layers, sweeps, residual): p-node voltages of layers 1…L (tuple of
        (B, n_k), V; a clamped output layer at the source voltage), the sweeps
        of the solve (B,) (the batch's common count), and the largest KCL
        residual of each circuit's updated nodes (B,) (A).

    Raises:
        AnasimError: a node whose conductances sum to ≤ −2 gmin (a nudge of
            β < 0 larger than the output's conductance: no monotone node
            equation, and the operating point need not be unique); clamp rails
            crossed (V_hi < V_lo); or a solve that ran out of sweeps.
    """
    if physics.kind != "resistive":
        raise AnasimError(f"resistive_layers: block updates solve the resistive circuit, got kind {physics.kind!r}")
    if physics.rail_hi_v < physics.rail_lo_v:
        raise AnasimError(f"resistive_layers: block updates need the upper clamp rail at or above the lower "
                          f"one (clamp_hi_v - clamp_lo_v >= 2 diode_drop_v), got rails at {physics.rail_hi_v:g} V "
                          f"and {physics.rail_lo_v:g} V; use solver = 'newton'")
    x = np.atleast_2d(np.asarray(x, np.float64))
    B = x.shape[0]
    gp, gn = conductance_pairs(weights, physics)
    L = len(gp)
    sizes = (gp[0].shape[1],) + tuple(g.shape[0] for g in gp)
    if x.shape[1] != sizes[0]:
        raise AnasimError(f"resistive_layers: x must have shape (batch, {sizes[0]}), got {x.shape}")
    vfs, gu = physics.v_fs_v, physics.g_unit_s
    beta = np.broadcast_to(np.asarray(beta, np.float64), (B,))
    y = np.zeros((B, sizes[-1])) if target is None else np.broadcast_to(np.asarray(target, np.float64), (B, sizes[-1]))
    offs = np.concatenate([[0], np.cumsum(sizes[1:])]).astype(int)
    bias = np.asarray(weights.bias, np.float64).reshape(-1)
    inj = [np.broadcast_to(bias[offs[k]:offs[k + 1]] * gu * vfs, (B, sizes[k + 1])).copy() for k in range(L)]
    inj[-1] = inj[-1] + beta[:, None] * gu * vfs * y
    a_out = (beta * gu)[:, None]
    total = [p + n for p, n in zip(gp, gn)]
    clamped = clamp is not None
    if not clamped:
        a_min = np.sum(total[-1], axis=1).min() + 2 * physics.gmin + (beta * gu).min()
        if a_min <= 0:
            raise AnasimError(f"resistive_layers: a nudge of beta = {beta.min():g} drains more than an output "
                              f"node's conductance ({np.sum(total[-1], axis=1).min():.3g} S): its node equation "
                              f"is not monotone; use a smaller |beta| or solver = 'newton'")
    init = [np.zeros((B, n)) for n in sizes[1:]]
    if clamped:
        init[-1] = np.broadcast_to(np.asarray(clamp, np.float64), (B, sizes[-1])) * vfs
    layers, sweeps, change, res = _solve(
        jnp.asarray(x * vfs), tuple(jnp.asarray(p - n) for p, n in zip(gp, gn)), tuple(jnp.asarray(t) for t in total),
        tuple(jnp.asarray(i) for i in inj), jnp.asarray(a_out), tuple(jnp.asarray(v) for v in init),
        physics, clamped, float(physics.block_tol_v), int(physics.max_sweeps))
    if raise_on_failure and not float(change) <= physics.block_tol_v:
        raise AnasimError(f"resistive_layers: the block solve did not settle in {physics.max_sweeps} sweeps "
                          f"(last change {float(change):.3g} V > block_tol_v = {physics.block_tol_v:g} V); "
                          f"raise nodal.max_sweeps or use solver = 'newton'")
    return tuple(np.asarray(v) for v in layers), np.full(B, int(sweeps)), np.asarray(res)
