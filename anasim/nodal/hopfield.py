"""Layered Hopfield circuits as node-level networks, relaxed by the nodal solver.

Two physical realizations of the layered circuit of docs/design.md, “Circuits and relaxation”, each a
netlist of resistors, diodes, sources and VCCS whose DC operating point *is*
the equilibrium (solved by :func:`anasim.nodal.solver.solve_op`, checked
against ngspice):

``resistive`` (λ = 1, symmetric; in the style of Kendall et al., "Training
end-to-end analog neural networks with equilibrium propagation", 2020)
    Every neuron is a pair of nodes p_i, m_i that carry +v_i and −v_i; every
    input a voltage source x_j·V_fs with an inverted copy −x_j·V_fs. A signed
    weight is a differential conductance pair (G⁺, G⁻): G⁺ joins p_i–p_j and
    m_i–m_j, G⁻ joins p_i–m_j and m_i–p_j. The circuit is invariant under
    (v → −v, p ↔ m) and its operating point is unique (a strictly monotone
    resistor/diode network), so v(m_i) = −v(p_i) and KCL at p_i reads

        Σ_j (G⁺_ij − G⁻_ij) v_j − Σ_j (G⁺_ij + G⁻_ij) v_i + i_clamp + i_inj = 0,

    the Hopfield fixed point with weights (G⁺ − G⁻)/g_unit, normalized by each
    node's total conductance (the leak a passive network cannot avoid).
    Coupling is reciprocal by construction: W = Wᵀ for free. Being passive,
    the network attenuates: node voltages stay within the input range and
    shrink from layer to layer (Kendall et al. place bidirectional amplifiers
    between layers for gain; they are not modelled here).
``gyrator`` (λ = 0, skew-symmetric)
    Single-ended nodes with a leak g_leak to ground; the couplings are
    gyrators (two VCCS): current (1+ε)θ v_lower into the upper layer and
    −θᵀ v_upper into the lower layer, exactly the gyrator-array convention
    of :mod:`anasim.devices.gyrator` (the realized matrix W of
    :func:`~anasim.circuits.layered.effective_matrices`); the input
    projection θ_0 x is a VCCS from the input sources. With the leak equal to
    g_unit the normalized node equation is s = W s + θ_0 x + b − clamp.
    For dyadic learning the two compartments s⁺, s⁻ are two copies of the
    circuit cross-coupled (at λ = 0 each compartment's couplings are driven
    by the *other* compartment: docs/design.md, “Circuits and relaxation”), so one solve gives both.

Common to both: diode clamps to rails are the neuron nonlinearity (a diode
from the node up to a rail at clamp_hi − V_d, one from a rail at
clamp_lo + V_d up to the node: soft clamps at ≈ [clamp_lo, clamp_hi]); biases
and nudging are injected currents. The nudge of the squared cost is
−β ∇ℓ = β (y − s) in normalized current, i.e. a current source
β g_unit V_fs y plus a VCCS −β g_unit on the output node's own voltage
(a negative β, the − compartment's +β₋ ∇ℓ, is why it is a VCCS and not a
resistor). Node voltages map to normalized states as s = v / V_fs.

Public API::

    NodalPhysics(kind, v_fs_v, g_unit_s, g_min_s, g_leak_s, clamp_lo_v, clamp_hi_v,
                 diode_drop_v, diode_is_a, diode_n, temperature_k)   # anasim.nodal.physics
    LayeredWeights(theta0, thetas, bias, g_pos=None, g_neg=None)   # realized matrices
    weights_from_hardware(spec, hw, physics) -> (LayeredWeights, physics)
    hopfield_circuit(sizes, physics) -> HopfieldCircuit             # topology (cached)
    hopfield_values(hc, weights, x, beta=0, target=None) -> CircuitValues
    solve_layers(sizes, physics, weights, x, *, beta, target) -> (layers+, layers-, op)
    relax(spec, hw, x, key, *, nudge=(0, 0), target=None, clamp=(None, None),
          state0=None, physics=None) -> layered.Equilibrium
    hopfield_netlist(sizes, physics, weights, x, beta=0, target=None, clamp=None) -> Netlist
    relax_in_jit(spec, hw, x, key, ...)    # the same, callable inside jax.jit (host callback)
    cocontent_gradient(weights, x, layers) -> dict                # ∂Ẽ/∂θ (resistive EP)

The relaxation engine built on ``relax`` is :class:`anasim.nodal.engine.NodalEngine`.
Every public call computes in float64 (:func:`anasim.circuits.precision.in_float64`) and leaves the
caller's ``jax_enable_x64`` as it was.

Output clamping (contrastive and coupled learning) holds output nodes with
grounded voltage sources (``clamp``). With ``NodalPhysics.node_capacitance_f``
and a key, ``relax`` adds the stationary thermal fluctuation (resistors'
Johnson–Nyquist, clamp diodes' shot noise) of the circuit linearized at its DC
point (covariance from the Lyapunov equation; k_B T/C per node when the network
is resistive or ideally gyrator-coupled and no clamp diode conducts; a node
held by a conducting clamp shows less, towards n k_B T/(2C)).
EP on the resistive circuit differentiates its co-content
(:func:`cocontent_gradient`). Not realized (clear AnasimError): the
cross-entropy nudge (a softmax current source), λ other than 0 and 1 (see
``_kind_for``), and device read noise during relaxation. ``relax`` is not
jittable (it builds values in numpy around one jitted batched Newton solve).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits.layered import Equilibrium
from anasim.circuits.precision import float64_scope, in_float64
from anasim.devices.resistive import ResistiveState
from anasim.errors import AnasimError
from anasim.nodal.circuit import Circuit, CircuitValues, OperatingPoint
from anasim.nodal.hopfield_blocks import conductance_pairs, resistive_layers
from anasim.nodal.netlist import Netlist
from anasim.nodal.noise import thermal_fluctuation
from anasim.nodal.physics import KINDS, NodalPhysics, kind_for_lam
from anasim.nodal.solver import solve_op

Array = jax.Array

__all__ = [
    "KINDS", "NodalPhysics", "LayeredWeights", "HopfieldCircuit", "hopfield_circuit", "hopfield_values",
    "solve_layers", "hopfield_netlist", "cocontent_gradient", "weights_from_hardware", "relax", "relax_in_jit",
]


@dataclass(frozen=True)
class LayeredWeights:
    """Realized couplings in normalized units (numpy arrays).

    theta0: (n_1, n_in) input projection; thetas: θ_k (n_{k+1}, n_k);
    backward: realized backward blocks (n_k, n_{k+1}) (gyrator: −θ_kᵀ);
    self_coupling: diagonal of the realized matrix over layers 1…L, (N,)
    (a gyrator array's −output conductance); bias: (N,) stacked biases;
    g_pos/g_neg: optional per-coupling conductance pairs (S), same shapes as
    (theta0, *thetas), used as is by the resistive circuit (a crossbar's G⁺, G⁻).
    """

    theta0: np.ndarray
    thetas: tuple
    bias: np.ndarray
    backward: tuple = ()
    self_coupling: np.ndarray | None = None
    g_pos: tuple | None = None
    g_neg: tuple | None = None


# --- topology ------------------------------------------------------------------------------

@dataclass(frozen=True)
class HopfieldCircuit:
    """A node-level Hopfield topology and where its layers live.

    ``circuit``: the :class:`Circuit`; ``layer_nodes[c][k]``: node indices of
    layer k+1 in copy c (resistive: c = 0 the p nodes, 1 the m nodes;
    gyrator: c = 0 compartment +, 1 compartment −); ``clamped[c]``: copy c's
    output nodes are held by grounded voltage sources (the last sources of the
    circuit, in output order; resistive: both copies or neither).
    """

    sizes: tuple
    physics: NodalPhysics
    circuit: Circuit
    layer_nodes: tuple
    clamped: tuple = (False, False)


class _Builder:
    def __init__(self):
        self.names: list[str] = []
        self.el = {k: [] for k in "RDVIG"}

    def node(self, name: str) -> int:
        self.names.append(name)
        return len(self.names) - 1


def hopfield_circuit(sizes: tuple, physics: NodalPhysics, clamped=(False, False)) -> HopfieldCircuit:
    """The topology for layer ``sizes`` (n_in, n_1, …, n_L) (cached).

    ``clamped``: per copy, hold the output nodes with voltage sources — the
    physical clamp of contrastive and coupled learning (a source forces the
    node voltage whatever current its neighbours, diodes and nudge sources
    draw). Resistive circuits clamp both copies (p and m) together.
    """
    clamped = (bool(clamped[0]), bool(clamped[1]))
    if physics.kind == "resistive" and clamped[0] != clamped[1]:
        raise AnasimError("hopfield_circuit: a resistive circuit clamps its p and m outputs together")
    return _hopfield_circuit(tuple(int(n) for n in sizes), physics, clamped)


@functools.lru_cache(maxsize=32)
def _hopfield_circuit(sizes: tuple, physics: NodalPhysics, clamped: tuple) -> HopfieldCircuit:
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise AnasimError(f"hopfield_circuit: sizes must list ≥ 2 positive layer sizes, got {sizes}")
    b = _Builder()
    GND = -1  # placeholder for ground, fixed up below
    L = len(sizes) - 1
    if physics.kind == "resistive":
        xp = [b.node(f"x{j}") for j in range(sizes[0])]
        xm = [b.node(f"x{j}n") for j in range(sizes[0])]
        rails = [b.node(n) for n in ("rail_hi", "rail_lo", "rail_hin", "rail_lon")]
        p = [[b.node(f"l{k + 1}_{i}") for i in range(n)] for k, n in enumerate(sizes[1:])]
        m = [[b.node(f"l{k + 1}_{i}n") for i in range(n)] for k, n in enumerate(sizes[1:])]
        for j in range(sizes[0]):
            b.el["V"] += [(xp[j], GND), (xm[j], GND)]
        b.el["V"] += [(r, GND) for r in rails]
        lower_p, lower_m = [xp] + p[:-1], [xm] + m[:-1]
        for k in range(L):  # coupling k: lower layer k → upper layer k+1
            for i in range(sizes[k + 1]):
                for j in range(sizes[k]):
                    b.el["R"] += [(p[k][i], lower_p[k][j]), (m[k][i], lower_m[k][j]),   # G⁺
                                  (p[k][i], lower_m[k][j]), (m[k][i], lower_p[k][j])]   # G⁻
        rh, rl, rhn, rln = rails
        for k in range(L):
            for i in range(sizes[k + 1]):
                b.el["D"] += [(p[k][i], rh), (rl, p[k][i]), (m[k][i], rln), (rhn, m[k][i])]
                b.el["I"] += [(GND, p[k][i]), (GND, m[k][i])]
        for i in range(sizes[-1]):
            b.el["G"] += [(GND, p[-1][i], p[-1][i], GND), (GND, m[-1][i], m[-1][i], GND)]
        copies = (p, m)
    else:
        xs = [b.node(f"x{j}") for j in range(sizes[0])]
        rails = [b.node(n) for n in ("rail_hi", "rail_lo")]
        cp = [[b.node(f"l{k + 1}_{i}") for i in range(n)] for k, n in enumerate(sizes[1:])]
        cm = [[b.node(f"l{k + 1}_{i}m") for i in range(n)] for k, n in enumerate(sizes[1:])]
        b.el["V"] += [(x, GND) for x in xs] + [(r, GND) for r in rails]
        rh, rl = rails
        for own, other in ((cp, cm), (cm, cp)):
            for i in range(sizes[1]):      # θ_0 x
                for j in range(sizes[0]):
                    b.el["G"].append((GND, own[0][i], xs[j], GND))
            for k in range(L - 1):         # gyrators, driven by the other compartment
                for i in range(sizes[k + 2]):
                    for j in range(sizes[k + 1]):
                        b.el["G"].append((GND, own[k + 1][i], other[k][j], GND))   # (1+ε)θ v_lower
                for j in range(sizes[k + 1]):
                    for i in range(sizes[k + 2]):
                        b.el["G"].append((GND, own[k][j], other[k + 1][i], GND))   # −θᵀ v_upper
            for k in range(L):             # self terms (output conductance), then nudge self terms
                for i in range(sizes[k + 1]):
                    b.el["G"].append((GND, own[k][i], own[k][i], GND))
            for i in range(sizes[-1]):
                b.el["G"].append((GND, own[-1][i], own[-1][i], GND))
            for k in range(L):
                for i in range(sizes[k + 1]):
                    b.el["R"].append((own[k][i], GND))
                    b.el["D"] += [(own[k][i], rh), (rl, own[k][i])]
                    b.el["I"].append((GND, own[k][i]))
        copies = (cp, cm)
    for cidx, copy in enumerate(copies):
        if clamped[cidx]:
            b.el["V"] += [(node, GND) for node in copy[-1]]
    n = len(b.names)

    def fix(t):
        return tuple(n if k == GND else k for k in t)

    kinds = {k: tuple(fix(t) for t in v) for k, v in b.el.items()}
    circuit = Circuit(node_names=tuple(b.names), resistors=kinds["R"], diodes=kinds["D"],
                      vsources=kinds["V"], isources=kinds["I"], vccs=kinds["G"],
                      temperature_k=float(physics.temperature_k), gmin=float(physics.gmin))
    layer_nodes = tuple(tuple(np.asarray(layer, np.int64) for layer in copy) for copy in copies)
    return HopfieldCircuit(sizes=sizes, physics=physics, circuit=circuit, layer_nodes=layer_nodes,
                           clamped=clamped)


# --- values --------------------------------------------------------------------------------

def _clamp_sources(hc: HopfieldCircuit, clamp, B: int) -> np.ndarray:
    """Values (V) of the output-clamping sources, (B, n_sources), in topology order."""
    n_out, vfs = hc.sizes[-1], hc.physics.v_fs_v
    if hc.physics.kind == "resistive":
        clamp = (clamp, clamp) if not isinstance(clamp, tuple) else clamp
    clamp = (None, None) if clamp is None else clamp
    parts = []
    for cidx, sign in enumerate((1.0, -1.0 if hc.physics.kind == "resistive" else 1.0)):
        given = clamp[cidx] is not None
        if given != hc.clamped[cidx]:
            raise AnasimError(f"hopfield circuit: clamp[{cidx}] must be {'given' if hc.clamped[cidx] else 'None'} "
                              f"for this topology (clamped = {hc.clamped})")
        if given:
            cv = np.asarray(clamp[cidx], np.float64)
            if cv.shape[-1] != n_out:
                raise AnasimError(f"hopfield circuit: clamp[{cidx}] must have shape (batch, {n_out}), got {cv.shape}")
            parts.append(sign * vfs * np.broadcast_to(cv, (B, n_out)))
    return np.concatenate(parts, 1) if parts else np.zeros((B, 0))


def hopfield_values(hc: HopfieldCircuit, weights: LayeredWeights, x, beta=0.0, target=None,
                    clamp=None) -> CircuitValues:
    """Element values for inputs ``x`` (batch, n_in) (normalized), a batch of circuits.

    ``beta``: scalar or (batch,) signed nudge per circuit (resistive) or a pair
    (β₊, β₋) (gyrator: one per compartment copy); ``target``: (batch, n_L);
    ``clamp``: output values held by the clamping sources of a clamped
    topology (resistive: (batch, n_L); gyrator: a pair, None for a free copy).
    """
    ph, sizes = hc.physics, hc.sizes
    x = np.atleast_2d(np.asarray(x, np.float64))
    B = x.shape[0]
    if x.shape[1] != sizes[0]:
        raise AnasimError(f"hopfield circuit: x must have shape (batch, {sizes[0]}), got {x.shape}")
    y = np.zeros((B, sizes[-1])) if target is None else np.broadcast_to(
        np.asarray(target, np.float64), (B, sizes[-1]))
    L = len(sizes) - 1
    vfs, gu = ph.v_fs_v, ph.g_unit_s
    bias = np.asarray(weights.bias, np.float64).reshape(-1)
    offs = np.concatenate([[0], np.cumsum(sizes[1:])])
    c = hc.circuit
    n_d = len(c.diodes)
    if ph.kind == "resistive":
        beta = np.broadcast_to(np.asarray(beta, np.float64), (B,))
        gp, gn = conductance_pairs(weights, ph)
        g = np.concatenate([np.stack([gp[k], gp[k], gn[k], gn[k]], -1).reshape(-1) for k in range(L)])
        v = np.concatenate([np.stack([x * vfs, -x * vfs], -1).reshape(B, -1),
                            np.broadcast_to([ph.rail_hi_v, ph.rail_lo_v, -ph.rail_hi_v, -ph.rail_lo_v], (B, 4)),
                            _clamp_sources(hc, clamp, B)], 1)
        i_node = np.broadcast_to(bias * gu * vfs, (B, len(bias))).copy()
        i_node[:, offs[-2]:] += beta[:, None] * gu * vfs * y
        i = np.stack([i_node, -i_node], -1).reshape(B, -1)
        gm_out = np.repeat(-beta * gu, 2 * sizes[-1]).reshape(B, -1)
        return CircuitValues(g=np.broadcast_to(g, (B, len(g))),
                             c=np.zeros((B, 0)), i_s=np.full(n_d, ph.diode_is_a), n=np.full(n_d, ph.diode_n),
                             v=v, i=i, gm=gm_out)
    # gyrator: two compartment copies
    bp, bm = (beta if isinstance(beta, tuple) else (beta, beta))
    signed = [np.broadcast_to(np.asarray(bp, np.float64), (B,)), -np.broadcast_to(np.asarray(bm, np.float64), (B,))]
    N = int(offs[-1])
    selfc = np.zeros(N) if weights.self_coupling is None else np.asarray(weights.self_coupling, np.float64)
    gm_parts, i_parts = [], []
    for cidx in range(2):
        parts = [np.broadcast_to(np.asarray(weights.theta0, np.float64).reshape(-1) * gu, (B, sizes[1] * sizes[0]))]
        for k in range(L - 1):
            parts.append(np.broadcast_to(np.asarray(weights.thetas[k], np.float64).reshape(-1) * gu, (B, sizes[k + 2] * sizes[k + 1])))
            parts.append(np.broadcast_to(np.asarray(weights.backward[k], np.float64).reshape(-1) * gu, (B, sizes[k + 1] * sizes[k + 2])))
        parts.append(np.broadcast_to(selfc * gu, (B, N)))
        parts.append(np.repeat(-signed[cidx] * gu, sizes[-1]).reshape(B, -1))
        gm_parts += parts
        inj = np.broadcast_to(bias * gu * vfs, (B, N)).copy()
        inj[:, offs[-2]:] += signed[cidx][:, None] * gu * vfs * y
        i_parts.append(inj)
    return CircuitValues(g=np.full((B, len(c.resistors)), ph.leak_s), c=np.zeros((B, 0)),
                         i_s=np.full(n_d, ph.diode_is_a), n=np.full(n_d, ph.diode_n),
                         v=np.concatenate([x * vfs, np.broadcast_to([ph.rail_hi_v, ph.rail_lo_v], (B, 2)),
                                           _clamp_sources(hc, clamp, B)], 1),
                         i=np.concatenate(i_parts, 1), gm=np.concatenate(gm_parts, 1))


def _clamped_flags(physics: NodalPhysics, clamp) -> tuple:
    if clamp is None:
        return (False, False)
    if physics.kind == "resistive":
        return (True, True)
    return (clamp[0] is not None, clamp[1] is not None)


def _node_voltages(hc: HopfieldCircuit, vals: CircuitValues, layers) -> np.ndarray:
    """Every node's voltage (B, n_nodes) (V) of a resistive circuit from its p-layer
    voltages: sources' nodes at their values, m nodes at −v (the p ↔ m symmetry)."""
    B = layers[0].shape[0]
    v = np.zeros((B, hc.circuit.n_nodes))
    src = np.asarray(vals.v, np.float64)
    for j, (node, _) in enumerate(hc.circuit.vsources):
        v[:, node] = src[:, j]
    for k, layer in enumerate(layers):
        v[:, hc.layer_nodes[0][k]] = layer
        v[:, hc.layer_nodes[1][k]] = -layer
    return v


@in_float64
def solve_layers(sizes, physics: NodalPhysics, weights: LayeredWeights, x, *, beta=0.0, target=None,
                 clamp=None, key=None, raise_on_failure: bool = True, node_voltages: bool = True):
    """Solve the circuit(s); returns (layers of copy 0, layers of copy 1, OperatingPoint).

    Layers are normalized states v / V_fs, each (batch, n_k). Resistive:
    copy 1 holds the m nodes *negated* (equal to copy 0 by symmetry).
    ``clamp``: output clamping (see :func:`hopfield_values`). ``key``: with
    ``physics.node_capacitance_f`` set, add a draw of the stationary thermal
    fluctuation (the returned OperatingPoint stays the noiseless DC point).
    The DC point comes from ``physics.solver`` (:attr:`NodalPhysics.uses_blocks`):
    block updates of the layers (resistive) or a Newton solve of the whole
    netlist; with blocks, ``iterations`` counts sweeps. ``node_voltages=False``
    skips the netlist (its topology and values) when no thermal draw needs it:
    a block solve then returns an OperatingPoint without node voltages
    (``voltages`` of shape (B, 0)), the layers being the result.
    """
    noisy = key is not None and physics.node_capacitance_f is not None
    if physics.uses_blocks:
        layers, sweeps, res = resistive_layers(weights, physics, x, beta=beta, target=target, clamp=clamp,
                                               raise_on_failure=raise_on_failure)
        if not (noisy or node_voltages):
            c0 = tuple(v / physics.v_fs_v for v in layers)
            return c0, c0, OperatingPoint(node_names=(), voltages=np.zeros((len(sweeps), 0)),
                                          iterations=sweeps, residual=res)
    hc = hopfield_circuit(tuple(sizes), physics, _clamped_flags(physics, clamp))
    vals = hopfield_values(hc, weights, x, beta, target, clamp)
    if physics.uses_blocks:
        op = OperatingPoint(node_names=hc.circuit.node_names, voltages=_node_voltages(hc, vals, layers),
                            iterations=sweeps, residual=res)
    else:
        op = solve_op(hc.circuit, vals, max_iter=physics.max_newton, raise_on_failure=raise_on_failure)
    v = np.asarray(op.voltages)
    if noisy:
        v = v + thermal_fluctuation(hc.circuit, vals, op, key, physics.node_capacitance_f,
                                    physics.ota_noise_factor)
    v = v / physics.v_fs_v
    sign = -1.0 if physics.kind == "resistive" else 1.0
    c0 = tuple(v[:, idx] for idx in hc.layer_nodes[0])
    c1 = tuple(sign * v[:, idx] for idx in hc.layer_nodes[1])
    return c0, c1, op


def hopfield_netlist(sizes, physics: NodalPhysics, weights: LayeredWeights, x, beta=0.0, target=None,
                     title: str = "anasim layered Hopfield circuit", clamp=None) -> Netlist:
    """The netlist of one circuit (x of shape (n_in,) or (1, n_in)) for ngspice or a file."""
    hc = hopfield_circuit(tuple(sizes), physics, _clamped_flags(physics, clamp))
    vals = hopfield_values(hc, weights, np.atleast_2d(x)[:1], beta, target, clamp)
    one = jax.tree_util.tree_map(lambda a: np.asarray(a)[0] if np.ndim(a) == 2 else np.asarray(a), vals)
    return hc.circuit.to_netlist(one, title=title)


@in_float64
def cocontent_gradient(weights: LayeredWeights, x, layers) -> dict:
    """∂Ẽ/∂θ of the resistive circuit's co-content at states ``layers`` (batch mean), in the
    learning rules' format {"theta0", "thetas", "biases"} (normalized units).

    The DC point of a resistor/diode/current-source network minimizes its total
    co-content E = Σ_R ½ G ΔV² + Σ_D ∫ i_D dv − Σ_I I v (KCL is ∇_v E = 0;
    Millar 1951), and the squared-cost nudge adds 2 β g_unit V_fs² ℓ (the p and
    m nodes each draw β g_unit V_fs (s − y)), so Ẽ = E / (2 g_unit V_fs²) is the
    energy whose nudged minimum EP differentiates: ∇θ ℓ = d/dβ ∂Ẽ/∂θ(s_β).
    A coupling w between s_i (upper) and s_j (lower, or an input) is the pair
    G⁺ = g_min + g_unit max(w, 0) (p–p, m–m), G⁻ = g_min + g_unit max(−w, 0)
    (p–m, m–p), whose co-content is G⁺ (v_i − v_j)² + G⁻ (v_i + v_j)², hence

        ∂Ẽ/∂w = −s_i s_j + ½ sign(w) (s_i² + s_j²),   ∂Ẽ/∂b_i = −s_i.

    The first term is the Hopfield energy's; the second is the leak a passive
    network cannot avoid: raising |w| also raises both nodes' total
    conductance. (A crossbar's own G± pairs are differentiated the same way,
    along the sign of the realized weight.)
    (The same derivative as :func:`anasim.learning.rules.energy_gradient` with
    ``leak`` = the signs of ``weights``, which the controller's EP, CL and CpL
    rules use on this circuit.)
    """
    x = jnp.asarray(np.asarray(x, np.float64))
    layers = tuple(jnp.asarray(np.asarray(s, np.float64)) for s in layers)
    if x.ndim != 2 or any(s.ndim != 2 or s.shape[0] != x.shape[0] for s in layers):
        raise AnasimError(f"cocontent_gradient: x (batch, n_0) and layers (batch, n_k) expected, got "
                          f"{x.shape} and {[s.shape for s in layers]}")
    signs = (jnp.sign(weights.theta0),) + tuple(jnp.sign(t) for t in weights.thetas)
    if len(signs) != len(layers):
        raise AnasimError(f"cocontent_gradient: {len(layers)} layers but {len(signs)} coupling matrices")
    lowers = (x,) + layers[:-1]
    msq = lambda a: jnp.mean(a * a, axis=0)  # noqa: E731
    mats = [-jnp.einsum("bi,bj->ij", up, lo) / up.shape[0] + 0.5 * sg * (msq(up)[:, None] + msq(lo)[None, :])
            for sg, up, lo in zip(signs, layers, lowers)]
    g = {"theta0": mats[0], "thetas": tuple(mats[1:]), "biases": tuple(-jnp.mean(s, axis=0) for s in layers)}
    return jax.tree_util.tree_map(np.asarray, g)


# --- from a built chip ------------------------------------------------------------------------

def _kind_for(spec) -> str:
    """λ = 1 → resistive, λ = 0 → gyrator. Between them W_λ = θ + (2λ − 1)θᵀ splits as
    λ(θ + θᵀ) (symmetric: reciprocal conductances inside each compartment) plus
    (1 − λ)(θ − θᵀ) (skew: in the dyadic dynamics it couples each compartment to
    the *other*, i.e. gyrators across the two copies). A passive conductance of
    either sign needs the differential p/m pair, so the circuit would be four
    cross-coupled copies whose node leak (total conductance) differs from the
    gyrator copies' fixed leak; it is not built, and ``relax`` says so."""
    kind = None if spec.asymmetric else kind_for_lam(spec.lam)
    if kind is None:
        raise AnasimError(f"nodal relax: a node-level circuit realizes lam = 1 (resistive) or lam = 0 "
                          f"(gyrator), got lam = {spec.lam!r}: lam in between needs resistive lam*theta "
                          f"couplings inside differential compartments plus (1 - lam)*theta gyrators across "
                          f"them (four cross-coupled copies), which is not built")
    return kind


@in_float64
def weights_from_hardware(spec, hw, physics: NodalPhysics | None = None):
    """Realized matrices of a chip from :func:`anasim.circuits.layered.build`, and the physics
    to use (``physics`` None: NodalPhysics' defaults; a spec file's ``[nodal]`` table
    is read by :func:`~anasim.nodal.physics.load_nodal_physics` into the engine's physics;
    ``physics.kind`` from λ; a resistive crossbar's own conductances and
    g_unit = (G_max − G_min)/w_max when the profile's coupling is one; a gyrator
    array's forward (1+ε)∘θ, backward −θᵀ, output conductances and OTA noise factor)."""
    kind = _kind_for(spec)
    physics = physics or NodalPhysics(kind=kind)
    if physics.kind != kind:
        physics = replace(physics, kind=kind)
    dev = hw.profile.coupling
    L = spec.n_layers
    gyr = bool(dev.skew_link and dev.output_load)   # a gyrator array: forward, backward, output load
    if gyr and getattr(dev, "noise_factor", None) is not None:
        physics = replace(physics, ota_noise_factor=float(dev.noise_factor))

    def fwd(state):
        return np.asarray(dev.forward(state) if gyr else dev.effective(state), np.float64)

    def bwd(k):
        if spec.backward in ("copy", "independent"):
            return np.asarray(dev.effective(hw.backward[k]), np.float64)
        if gyr:
            return np.asarray(dev.backward(hw.forward[k]), np.float64)  # −θᵀ
        return fwd(hw.forward[k]).T

    theta0 = fwd(hw.input_state)
    thetas = tuple(fwd(hw.forward[k]) for k in range(L - 1))
    backward = tuple(bwd(k) for k in range(L - 1))
    sizes = spec.sizes
    offs = np.concatenate([[0], np.cumsum(sizes[1:])]).astype(int)
    self_c = np.zeros(int(offs[-1]))
    if gyr:  # each OTA output loads its own node: −G on the diagonal
        _, g_b = dev.output_conductance(hw.input_state)
        self_c[offs[0]:offs[1]] -= np.asarray(g_b, np.float64)
        for k in range(L - 1):
            g_a, g_b = dev.output_conductance(hw.forward[k])
            self_c[offs[k]:offs[k + 1]] -= np.asarray(g_a, np.float64)
            self_c[offs[k + 1]:offs[k + 2]] -= np.asarray(g_b, np.float64)
    bias = np.concatenate([np.asarray(b, np.float64).reshape(-1) for b in hw.biases])
    g_pos = g_neg = None
    states = (hw.input_state,) + tuple(hw.forward)
    # a resistive crossbar's programmed conductance pairs become the netlist's resistors
    if kind == "resistive" and all(isinstance(st, ResistiveState) for st in states):
        g_pos = tuple(np.asarray(st.g[0], np.float64) for st in states)
        g_neg = tuple(np.asarray(st.g[1], np.float64) for st in states)
        physics = replace(physics, g_unit_s=float(dev.g_range / dev.w_max), g_min_s=float(dev.g_min_s))
    weights = LayeredWeights(theta0=theta0, thetas=thetas, bias=bias, backward=backward,
                             self_coupling=self_c, g_pos=g_pos, g_neg=g_neg)
    return weights, physics


@in_float64
def relax(spec, hw, x, key, *, nudge=(0.0, 0.0), target=None, clamp=(None, None), state0=None,
          eta=None, physics: NodalPhysics | None = None):
    """Equilibrium of the node-level circuit of ``spec`` on chip ``hw``: the same
    call and result type as :func:`anasim.circuits.layered.relax`.

    ``nudge = (β₊, β₋)`` with the squared cost (module docstring); λ = 1 gives
    the resistive circuit (each compartment its own solve), λ = 0 the gyrator
    circuit (both compartments in one cross-coupled solve). ``clamp = (c₊, c₋)``
    holds a compartment's output nodes at c·V_fs with voltage sources (its
    nudge, if any, then flows into the source and changes nothing).
    ``iterations`` are Newton iterations, ``residual`` the max KCL residual in
    amperes, and ``a_plus``/``a_minus`` equal the states (node voltages have no
    separate pre-activation). ``key``: with ``physics.node_capacitance_f``
    set, each compartment's states carry an independent draw of the
    stationary thermal fluctuation at its operating point; otherwise unused.
    ``state0`` and ``eta`` are unused (the DC point does not depend on where
    or how fast one gets there).

    Raises AnasimError for what the element set cannot realize: the
    cross-entropy nudge (its current −β(softmax(s) − y)_i at each output depends
    on every output voltage through the softmax: a translinear normalizer, not
    a linear VCCS) and λ other than 0 or 1 (see ``_kind_for``).
    """
    del state0, eta
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != spec.n_in:
        raise AnasimError(f"relax: x must have shape (batch, {spec.n_in}), got {x.shape}")
    B = x.shape[0]
    bp, bm = (float(nudge[0]), float(nudge[1]))
    cl = []
    for k, cv in enumerate(clamp):
        if cv is not None:
            cv = np.broadcast_to(np.asarray(cv, np.float64), (B, spec.sizes[-1]))
        cl.append(cv)
    nudged = (bp != 0.0 and cl[0] is None) or (bm != 0.0 and cl[1] is None)
    if nudged and target is None:
        raise AnasimError("relax: a nudge needs target (batch, n_out)")
    if nudged and spec.cost != "squared":
        raise AnasimError("nodal relax: the cross-entropy nudge −β(softmax(s) − y) is a current at each output "
                          "that depends on all output voltages (a translinear softmax normalizer); the node-level "
                          "elements (R, C, D, V, I, linear VCCS) cannot realize it: use cost = 'squared'")
    y = np.zeros((B, spec.sizes[-1])) if target is None else np.broadcast_to(
        np.asarray(target, np.float64), (B, spec.sizes[-1]))
    weights, physics = weights_from_hardware(spec, hw, physics)
    keys = (None, None) if key is None else tuple(jax.random.split(key, 2))
    free = not nudged and cl[0] is None and cl[1] is None
    if physics.kind == "resistive":
        # each compartment is its own circuit; compartments of one topology share a solve
        phases = [(bp, cl[0]), (-bm, cl[1])]
        groups: dict[bool, list[int]] = {}
        for k, (_, cv) in enumerate(phases[:1] if free else phases):
            groups.setdefault(cv is not None, []).append(k)
        states, its, res = [None, None], [], []
        for is_clamped, members in groups.items():
            xx = np.concatenate([x] * len(members))
            beta = np.concatenate([np.full(B, phases[k][0]) for k in members])
            cc = np.concatenate([phases[k][1] for k in members]) if is_clamped else None
            sub_key = None if key is None else jax.random.fold_in(key, int(is_clamped))
            c0, _, op = solve_layers(spec.sizes, physics, weights, xx, beta=beta,
                                     target=np.concatenate([y] * len(members)), clamp=cc, key=sub_key,
                                     node_voltages=False)
            for j, k in enumerate(members):
                states[k] = tuple(s[j * B:(j + 1) * B] for s in c0)
            its.append(op.iterations.reshape(len(members), B).max(0))
            res.append(op.residual.reshape(len(members), B).max(0))
        sp = states[0]
        sm = sp if free else states[1]
        its, res = np.max(its, 0), np.max(res, 0)
    else:
        cc = None if (cl[0] is None and cl[1] is None) else tuple(cl)
        sp, sm, op = solve_layers(spec.sizes, physics, weights, x, beta=(bp, bm), target=y, clamp=cc,
                                  key=keys[0])
        if free:
            sm = sp  # the copies agree (unique operating point); make s⁺ = s⁻ exact as the engine does
        its, res = op.iterations, op.residual
    dt = jnp.dtype(spec.dtype)
    to = lambda t: tuple(jnp.asarray(a, dt) for a in t)  # noqa: E731
    return Equilibrium(
        s_plus=to(sp), s_minus=to(sm), a_plus=to(sp), a_minus=to(sm),
        iterations=jnp.int32(np.max(its)), residual=jnp.asarray(np.max(res), dt),
        residual_per_sample=jnp.asarray(res, dt), trace=-jnp.ones(spec.max_iters, dt),
        converged=jnp.bool_(True), diverged=jnp.bool_(False), oscillating=jnp.bool_(False))


def relax_in_jit(spec, hw, x, key, *, nudge=(0.0, 0.0), target=None, clamp=(None, None), state0=None,
                 eta=None, physics: NodalPhysics | None = None):
    """:func:`relax` callable inside ``jax.jit`` (a host callback), with the signature and
    result of :func:`anasim.circuits.layered.relax`, so code that jits a training step
    around the iterative engine can run the node-level circuit instead.

    The DC solve itself runs on the host (numpy/scipy around its own compiled
    Newton loop); ``nudge``, ``target``, ``clamp`` and ``x`` may be traced.
    ``clamp`` entries are None or arrays, as a static structure. Called with
    concrete arrays (outside ``jit``) it calls :func:`relax` directly: the
    Newton loop's own compiled computation must not run from inside a host
    callback, where XLA's CPU client can wait on itself (a training step of a
    784-input circuit hung that way).
    """
    del state0, eta
    B = jnp.shape(x)[0]
    dt = jnp.dtype(spec.dtype)
    layers = tuple(jax.ShapeDtypeStruct((B, n), dt) for n in spec.sizes[1:])
    scalar = jax.ShapeDtypeStruct((), dt)
    flag = jax.ShapeDtypeStruct((), jnp.bool_)
    shapes = Equilibrium(s_plus=layers, s_minus=layers, a_plus=layers, a_minus=layers,
                         iterations=jax.ShapeDtypeStruct((), jnp.int32), residual=scalar,
                         residual_per_sample=jax.ShapeDtypeStruct((B,), dt),
                         trace=jax.ShapeDtypeStruct((spec.max_iters,), dt),
                         converged=flag, diverged=flag, oscillating=flag)
    leaves, treedef = jax.tree_util.tree_flatten(hw)
    if key is not None and jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)

    def host(leaves, x, key, nudge, target, clamp):
        eq = relax(spec, jax.tree_util.tree_unflatten(treedef, leaves), np.asarray(x),
                   None if key is None else jnp.asarray(key),
                   nudge=tuple(float(b) for b in nudge), target=target, clamp=clamp, physics=physics)
        return jax.tree_util.tree_map(lambda a, s: np.asarray(a, s.dtype), eq, shapes)

    args = (leaves, x, key, tuple(nudge), target, tuple(clamp))
    if not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(args)):
        with float64_scope():  # a float64 spec's states stay float64, as relax returns them
            return jax.tree_util.tree_map(jnp.asarray, host(*args))
    if dt.itemsize == 8 and not jax.config.jax_enable_x64:
        raise AnasimError(f"relax_in_jit: a {spec.dtype} spec traced inside jax.jit needs float64 in the "
                          f"trace: jit the step inside `with jax.enable_x64(True):` (or use float32)")
    return jax.pure_callback(host, shapes, *args)
