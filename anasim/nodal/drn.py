"""A deep resistive network as a node-level netlist: the Newton solver, ngspice and thermal noise.

:mod:`anasim.nodal.blocks` solves a DRN by block coordinate descent over its
layers. This module builds the *same* network, element by element, as a
:class:`~anasim.nodal.circuit.Circuit` (Shockley diodes only: an ideal diode
is no SPICE element):

* input nodes ``in{j}`` held by grounded voltage sources (the ± pixel pairs);
* rails ``rail_p`` (+V_b) and ``rail_n`` (−V_b) held by sources;
* one resistor G = g_unit·w per non-zero coupling (a zero conductance is an
  open circuit: no element);
* excitatory hidden node: diode rail_p → node; inhibitory: node → rail_n;
* one current source per node of layers 1…L: g_unit·b, plus β g_unit y at the
  outputs, and with β ≠ 0 a VCCS −β g_unit on each output's own voltage.

so that the whole-netlist Newton solve (:func:`~anasim.nodal.solver.solve_op`),
ngspice and :func:`block_operating_point` can be compared node by node, and
the thermal fluctuation of :mod:`anasim.nodal.noise` can be drawn about the
block solver's DC point (:func:`thermal_layers`).

Public API::

    drn_circuit(params, physics, vin, *, beta=0, target=None) -> (Circuit, CircuitValues, layer_nodes)
    block_operating_point(params, vin, physics, *, beta=0, target=None) -> (OperatingPoint, layers)
    drn_netlist(params, physics, vin, *, beta=0, target=None) -> Netlist   # one circuit, for ngspice
    thermal_layers(params, vin, physics, key, node_capacitance_f) -> layers with a thermal draw
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits.precision import in_float64
from anasim.errors import AnasimError
from anasim.nodal.blocks import DrnParams, DrnPhysics, excitatory_signs, kcl_residual, solve
from anasim.nodal.circuit import Circuit, CircuitValues, OperatingPoint
from anasim.nodal.netlist import Netlist
from anasim.nodal.noise import thermal_fluctuation

__all__ = ["drn_circuit", "block_operating_point", "drn_netlist", "thermal_layers"]


def _check(params: DrnParams, physics: DrnPhysics) -> None:
    if physics.diode != "shockley":
        raise AnasimError("drn circuit: an ideal diode is no netlist element; use DrnPhysics(diode='shockley')")
    if params.knee and any(np.any(np.asarray(k) != 0) for k in params.knee):
        raise AnasimError("drn circuit: diode knee offsets (params.knee) are not built into the netlist")


@in_float64
def drn_circuit(params: DrnParams, physics: DrnPhysics, vin, *, beta=0.0, target=None):
    """The netlist of the DRN for inputs ``vin`` (B, n_0) (V): (circuit, values, layer_nodes);
    ``layer_nodes[k]`` are the node indices of layer k+1. The topology depends on
    which weights are non-zero, not on their values or on the inputs."""
    _check(params, physics)
    w = [np.asarray(a, np.float64) for a in params.w]
    b = [np.asarray(a, np.float64) for a in params.b]
    vin = np.atleast_2d(np.asarray(vin, np.float64))
    B, n0 = vin.shape
    if n0 != w[0].shape[0]:
        raise AnasimError(f"drn_circuit: vin must have shape (batch, {w[0].shape[0]}), got {vin.shape}")
    names = [f"in{j}" for j in range(n0)] + ["rail_p", "rail_n"]
    layers = [np.arange(n0)]
    for k, wk in enumerate(w):
        start = len(names)
        names += [f"l{k + 1}_{i}" for i in range(wk.shape[1])]
        layers.append(np.arange(start, len(names)))
    gnd = len(names)
    rp, rn = n0, n0 + 1
    res, g = [], []
    for k, wk in enumerate(w):
        j, i = np.nonzero(wk > 0)
        res += list(zip(layers[k][j].tolist(), layers[k + 1][i].tolist()))
        g.append(physics.g_unit_s * wk[j, i])
    diodes = []
    for layer in layers[1:-1]:
        sign = np.asarray(excitatory_signs(len(layer)))
        diodes += [(rp, int(n)) if s > 0 else (int(n), rn) for n, s in zip(layer, sign)]
    out = layers[-1]
    nudged = target is not None and float(beta) != 0.0
    vccs = tuple((gnd, int(n), int(n), gnd) for n in out) if nudged else ()
    circuit = Circuit(node_names=tuple(names), resistors=tuple(res), diodes=tuple(diodes),
                      vsources=tuple((n, gnd) for n in range(n0 + 2)),
                      isources=tuple((gnd, int(n)) for layer in layers[1:] for n in layer), vccs=vccs,
                      temperature_k=physics.temperature_k, gmin=physics.gmin)
    i_node = np.broadcast_to(np.concatenate(b) * physics.g_unit_s, (B, sum(len(x) for x in b))).copy()
    if nudged:
        y = np.broadcast_to(np.asarray(target, np.float64), (B, len(out)))
        i_node[:, -len(out):] += float(beta) * physics.g_unit_s * y
    nd = len(diodes)
    values = CircuitValues(
        g=np.broadcast_to(np.concatenate(g), (B, len(res))), c=np.zeros((B, 0)),
        i_s=np.full(nd, physics.diode_is_a), n=np.full(nd, physics.diode_n),
        v=np.concatenate([vin, np.broadcast_to([physics.diode_bias_v, -physics.diode_bias_v], (B, 2))], 1),
        i=i_node, gm=np.full((B, len(vccs)), -float(beta) * physics.g_unit_s))
    return circuit, values, tuple(layers[1:])


@in_float64
def block_operating_point(params: DrnParams, vin, physics: DrnPhysics, *, beta=0.0, target=None,
                          max_sweeps: int | None = None):
    """The block solver's DC point in float64 as an :class:`OperatingPoint` of
    :func:`drn_circuit`'s topology (every node, sources included), and the layers."""
    p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    vin = jnp.asarray(np.atleast_2d(np.asarray(vin, np.float64)))
    layers, sweeps, _ = solve(p64, vin, physics, beta=beta, target=target, max_sweeps=max_sweeps)
    residual = np.asarray(kcl_residual(p64, vin, layers, physics, beta=beta, target=target))
    layers = tuple(np.asarray(v) for v in layers)
    B = vin.shape[0]
    rails = np.broadcast_to([physics.diode_bias_v, -physics.diode_bias_v], (B, 2))
    volts = np.concatenate([np.asarray(vin), rails, *layers], 1)
    names = tuple([f"in{j}" for j in range(vin.shape[1])] + ["rail_p", "rail_n"]
                  + [f"l{k + 1}_{i}" for k, v in enumerate(layers) for i in range(v.shape[1])])
    op = OperatingPoint(node_names=names, voltages=volts, iterations=np.full(B, int(sweeps)),
                        residual=residual)
    return op, layers


def drn_netlist(params: DrnParams, physics: DrnPhysics, vin, *, beta=0.0, target=None,
                title: str = "anasim deep resistive network") -> Netlist:
    """The netlist of one circuit (``vin`` of shape (n_0,) or (1, n_0)), for ngspice or a file."""
    c, vals, _ = drn_circuit(params, physics, np.atleast_2d(vin)[:1], beta=beta,
                             target=None if target is None else np.atleast_2d(target)[:1])
    one = jax.tree_util.tree_map(lambda a: np.asarray(a)[0] if np.ndim(a) == 2 else np.asarray(a), vals)
    return c.to_netlist(one, title=title)


@in_float64
def thermal_layers(params: DrnParams, vin, physics: DrnPhysics, key, node_capacitance_f: float, *,
                   beta=0.0, target=None):
    """Layers (tuple of (B, n_k), V) at the block solver's DC point plus one draw of the
    stationary thermal fluctuation (resistors' Johnson–Nyquist, diodes' shot noise) of
    the network linearized there, every node to ground through ``node_capacitance_f`` (F)
    (:func:`anasim.nodal.noise.thermal_fluctuation`; a Lyapunov solve per circuit:
    small networks)."""
    c, vals, nodes = drn_circuit(params, physics, vin, beta=beta, target=target)
    op, _ = block_operating_point(params, vin, physics, beta=beta, target=target)
    v = np.asarray(op.voltages) + thermal_fluctuation(c, vals, op, key, node_capacitance_f)
    return tuple(v[:, idx] for idx in nodes)
