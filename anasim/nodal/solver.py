"""Nodal (Kirchhoff) solver: the DC operating point of resistor/diode/source/VCCS
circuits (gyrators are VCCS pairs).

A :class:`Circuit` is the *topology* (node names, which element joins which
nodes, temperature, gmin) — a frozen, hashable dataclass, usable as a static
argument of ``jax.jit``. :class:`CircuitValues` holds the element *values*
(a pytree of arrays whose leading axes may be a batch), so one compiled solve
handles many circuits of the same topology, or many input vectors, at once.

Equations (modified nodal analysis). For every non-ground node the sum of the
currents *leaving* it through its elements is zero:

* resistor/conductance g between a, b: i = g (v_a − v_b) leaves a;
* diode from anode a to cathode k (Shockley, as SPICE with gmin across the
  junction): i = I_s (exp(v_d / (n V_T)) − 1) + gmin·v_d, v_d = v_a − v_k,
  V_T = k_B T / q (CODATA-2014 constants, as ngspice uses);
* current source I from p to n (SPICE: current flows p → source → n): I leaves p;
* VCCS gm from p to n controlled by (cp, cn): gm (v_cp − v_cn) leaves p;
* voltage source V from p to n: v_p − v_n = V; its branch current leaves p.
  A source with one terminal at ground fixes its node's voltage, so that node
  is eliminated from the unknowns (fewer unknowns, same solution); a floating
  source keeps its branch current as an MNA unknown.

Capacitors are open at DC. The nonlinear system is solved by Newton's method
with SPICE's junction-voltage limiting (``pnjlim``: a step in a forward-biased
junction voltage beyond 2 n V_T is replaced by a logarithmic one, extended to
a junction retreating from an overshoot), which damps the iteration where the
exponential would overshoot. ``method="dense"`` (JAX, float64, vmapped over a
batch): the linear stamps are assembled once per solve on the host (sparse
products over the batch), the diodes are stamped per iteration, and the
unknowns of a precomputed independent set of resistor/diode nodes (in a
layered circuit, every other layer) are eliminated by their diagonal, so only
the Schur complement over the rest is LU-factored; convergence is declared
when the step is within reltol·|v| + vntol, or when two unlimited quadratic
steps predict the next one within it. ``method="sparse"``: SuperLU (scipy) for
one large network. A solve that does not converge raises
:class:`~anasim.errors.ConvergenceError` naming the node with the largest KCL
residual.

Noise (Johnson–Nyquist, diode shot, OTA), small-signal analysis and noisy
transients of these circuits: :mod:`anasim.nodal.noise`.

Modules: :mod:`anasim.nodal.circuit` (topology, values, layout, result),
:mod:`anasim.nodal.elements` (junction physics), :mod:`anasim.nodal.assembly`
(stamps, residual, sum plans), :mod:`anasim.nodal.newton` (dense batched and
sparse Newton); this module holds :func:`solve_op`. Every public entry point
computes in float64 whatever the caller's ``jax_enable_x64``
(:func:`anasim.circuits.precision.in_float64`).
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from anasim.errors import AnasimError
from anasim.nodal.assembly import _assemble_linear
from anasim.nodal.circuit import (
    K_BOLTZMANN,
    Q_ELECTRON,
    Circuit,
    CircuitValues,
    OperatingPoint,
    _broadcast_values,
    _raise_convergence,
    thermal_voltage,
)
from anasim.circuits.precision import in_float64
from anasim.nodal.netlist import read_netlist
from anasim.nodal.newton import _newton_batched, _solve_op_sparse


@in_float64
def solve_op(c: Circuit, values: CircuitValues | None = None, *, method: str = "dense",
             max_iter: int = 100, reltol: float = 1e-10, vntol: float = 1e-13,
             raise_on_failure: bool = True, z0=None) -> OperatingPoint:
    """DC operating point of one circuit or a batch of circuits of topology ``c``.

    Args:
        c: topology.
        values: element values; leading axes of the leaves are batch axes
            (broadcast against each other). Default ``c.values``.
        method: ``"dense"`` (JAX, batched, float64; module docstring) or ``"sparse"``
            (scipy SuperLU, one circuit; for thousands of nodes).
        max_iter: Newton iteration budget.
        reltol, vntol: convergence when every node-voltage step — taken, or
            predicted from two unlimited quadratic steps — is below
            ``reltol·|v| + vntol`` (V) and no junction was limited.
        raise_on_failure: raise :class:`ConvergenceError` if any circuit of the
            batch did not converge (else return with ``iterations == max_iter``).
        z0: optional start for the unknowns (free node voltages, then floating
            source currents), shape (*batch, n_unknowns); default zeros.

    Raises:
        ConvergenceError: names the circuit (batch index), the node with the
            largest KCL residual and that residual in amperes.
    """
    vals = values if values is not None else c.values
    if vals is None:
        raise AnasimError("solve_op: no values given and the circuit has none")
    if method == "sparse":
        return _solve_op_sparse(c, vals, max_iter=max_iter, reltol=reltol, vntol=vntol,
                                raise_on_failure=raise_on_failure)
    if method != "dense":
        raise AnasimError(f"solve_op: method must be 'dense' or 'sparse', got {method!r}")
    vals = _broadcast_values(c, vals)
    batch = vals.batch_shape
    nb = int(np.prod(batch, dtype=np.int64))
    flat = jax.tree_util.tree_map(lambda a: a.reshape((nb,) + a.shape[len(batch):]), vals)
    size = c.layout.size
    z_init = np.zeros((nb, size)) if z0 is None else np.broadcast_to(
        np.asarray(z0, np.float64), batch + (size,)).reshape(nb, size)
    A, b0 = _assemble_linear(c, flat)
    # the Newton loop needs only the sources and junctions: the linear elements are in A, b0
    none = np.zeros((nb, 0))
    lean = CircuitValues(g=none, c=none, i_s=flat.i_s, n=flat.n, v=flat.v, i=none, gm=none)
    v, z, it, done, res = _newton_batched(c, lean, z_init, A, b0, max_iter=max_iter, reltol=reltol, vntol=vntol)
    v, it, done, res = np.asarray(v), np.asarray(it), np.asarray(done), np.asarray(res)
    op = OperatingPoint(node_names=c.node_names, voltages=v.reshape(batch + (c.n_nodes,)),
                        iterations=it.reshape(batch),
                        residual=np.max(np.abs(res), axis=-1, initial=0.0).reshape(batch),
                        branch_currents=np.asarray(z)[:, len(c.layout.free):].reshape(
                            batch + (len(c.layout.floating),)))
    if raise_on_failure and not done.all():
        bad = int(np.flatnonzero(~done)[0])
        _raise_convergence(c, res[bad], int(it[bad]),
                           where="" if not batch else f"circuit {np.unravel_index(bad, batch)} of the batch: ")
    return op



@in_float64
def parse_and_solve(path: str, **kwargs) -> OperatingPoint:
    """Read a netlist file and solve its DC operating point (for the CLI)."""
    c = Circuit.from_netlist(read_netlist(path))
    return solve_op(c, **kwargs)


__all__: Sequence[str] = (
    "Circuit", "CircuitValues", "OperatingPoint", "solve_op", "thermal_voltage", "K_BOLTZMANN", "Q_ELECTRON",
    "parse_and_solve",
)
