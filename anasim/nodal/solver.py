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
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from anasim.nodal.netlist import (
    DEFAULT_GMIN,
    DEFAULT_TEMPERATURE_K,
    DiodeModel,
    Element,
    Netlist,
)
from anasim.errors import AnasimError, ConvergenceError

Array = jax.Array

#: Boltzmann constant (J/K) and elementary charge (C), CODATA 2014: the values
#: ngspice 39 uses, so that V_T and hence diode currents agree to all digits.
K_BOLTZMANN = 1.38064852e-23
Q_ELECTRON = 1.6021766208e-19

#: Beyond this exponent the diode exponential continues linearly (no overflow
#: while Newton explores; a junction there would carry > 1e50 × I_s).
_EXP_LIMIT = 120.0


def thermal_voltage(temperature_k: float) -> float:
    """V_T = k_B T / q in volts (CODATA 2014)."""
    return K_BOLTZMANN * temperature_k / Q_ELECTRON


# --- topology and values -----------------------------------------------------------

@dataclass(frozen=True)
class Circuit:
    """Topology of a circuit (hashable). Node indices refer to ``node_names``;
    index ``n_nodes`` (== len(node_names)) is ground.

    Attributes:
        node_names: non-ground node names.
        resistors, capacitors, diodes, vsources, isources: (a, b) index pairs
            (diodes: (anode, cathode); sources: (n+, n-)).
        vccs: (p, n, cp, cn) index quadruples.
        names: element names per kind, same order, for export and messages.
        temperature_k: circuit temperature (K).
        gmin: conductance across every junction (S), as SPICE adds it.
        values: the element values read with the topology (default values).
    """

    node_names: tuple[str, ...]
    resistors: tuple[tuple[int, int], ...] = ()
    capacitors: tuple[tuple[int, int], ...] = ()
    diodes: tuple[tuple[int, int], ...] = ()
    vsources: tuple[tuple[int, int], ...] = ()
    isources: tuple[tuple[int, int], ...] = ()
    vccs: tuple[tuple[int, int, int, int], ...] = ()
    names: tuple[tuple[str, ...], ...] = ((), (), (), (), (), ())
    temperature_k: float = DEFAULT_TEMPERATURE_K
    gmin: float = DEFAULT_GMIN
    values: "CircuitValues | None" = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_hash", hash((self.node_names, self.resistors, self.capacitors,
                                                self.diodes, self.vsources, self.isources,
                                                self.vccs, self.temperature_k, self.gmin)))
        _validate_topology(self)

    def __hash__(self):  # cached: large topologies are hashed on every jit call
        return self._hash

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def ground(self) -> int:
        return len(self.node_names)

    def node_index(self, name: str) -> int:
        try:
            return self.node_names.index(name.lower())
        except ValueError:
            raise AnasimError(f"circuit has no node named {name!r}") from None

    # --- layout of the reduced unknowns (computed once per topology) -----------

    @functools.cached_property
    def layout(self) -> "_Layout":
        return _make_layout(self)

    # --- conversions -------------------------------------------------------------

    @classmethod
    def from_netlist(cls, netlist: Netlist) -> "Circuit":
        """Topology and values of a parsed netlist (values in ``circuit.values``)."""
        nodes = netlist.node_names
        index = {n: i for i, n in enumerate(nodes)}
        index["0"] = len(nodes)
        groups: dict[str, list[Element]] = {k: [] for k in "RCDVIG"}
        for e in netlist.elements:
            groups[e.kind].append(e)

        def pairs(kind):
            return tuple(tuple(index[n] for n in e.nodes) for e in groups[kind])

        models = {m.name: m for m in netlist.models}
        d_is = [models[e.model].i_s * e.value for e in groups["D"]]  # area scales I_s
        d_n = [models[e.model].n for e in groups["D"]]
        vals = CircuitValues(
            g=jnp.asarray([1.0 / e.value for e in groups["R"]], jnp.float64),
            c=jnp.asarray([e.value for e in groups["C"]], jnp.float64),
            i_s=jnp.asarray(d_is, jnp.float64),
            n=jnp.asarray(d_n, jnp.float64),
            v=jnp.asarray([e.value for e in groups["V"]], jnp.float64),
            i=jnp.asarray([e.value for e in groups["I"]], jnp.float64),
            gm=jnp.asarray([e.value for e in groups["G"]], jnp.float64),
        )
        try:
            return cls(
                node_names=nodes, resistors=pairs("R"), capacitors=pairs("C"), diodes=pairs("D"),
                vsources=pairs("V"), isources=pairs("I"), vccs=pairs("G"),
                names=tuple(tuple(e.name for e in groups[k]) for k in "RCDVIG"),
                temperature_k=netlist.temperature_k, gmin=netlist.gmin, values=vals)
        except AnasimError as err:
            raise AnasimError(f"{netlist.source or 'netlist'}: {err}") from None

    def to_netlist(self, values: "CircuitValues | None" = None, title: str = "anasim circuit") -> Netlist:
        """A netlist of this topology with ``values`` (unbatched), for ngspice.

        Diodes get one ``.model`` per distinct (I_s, n) pair.
        """
        v = values if values is not None else self.values
        if v is None:
            raise AnasimError("to_netlist: no values given and the circuit has none")
        v = jax.tree_util.tree_map(np.asarray, v)
        if v.g.ndim != 1:
            raise AnasimError("to_netlist: values must be unbatched (one circuit)")
        nm = list(self.node_names) + ["0"]
        names = self.names if any(self.names) else ((),) * 6

        def name(kind_i, kind, j):
            given = names[kind_i] if kind_i < len(names) else ()
            return given[j] if j < len(given) else f"{kind.lower()}{j + 1}"

        els: list[Element] = []
        for j, (a, b) in enumerate(self.resistors):
            if float(v.g[j]) == 0.0:
                continue  # an open: nothing to write
            els.append(Element("R", name(0, "R", j), (nm[a], nm[b]), 1.0 / float(v.g[j])))
        for j, (a, b) in enumerate(self.capacitors):
            els.append(Element("C", name(1, "C", j), (nm[a], nm[b]), float(v.c[j])))
        models: dict[tuple[float, float], DiodeModel] = {}
        for j, (a, b) in enumerate(self.diodes):
            key = (float(v.i_s[j]), float(v.n[j]))
            if key not in models:
                models[key] = DiodeModel(name=f"dm{len(models) + 1}", i_s=key[0], n=key[1])
            els.append(Element("D", name(2, "D", j), (nm[a], nm[b]), 1.0, model=models[key].name))
        for j, (a, b) in enumerate(self.vsources):
            els.append(Element("V", name(3, "V", j), (nm[a], nm[b]), float(v.v[j])))
        for j, (a, b) in enumerate(self.isources):
            els.append(Element("I", name(4, "I", j), (nm[a], nm[b]), float(v.i[j])))
        for j, q in enumerate(self.vccs):
            if float(v.gm[j]) == 0.0:
                continue
            els.append(Element("G", name(5, "G", j), tuple(nm[k] for k in q), float(v.gm[j])))
        return Netlist(title=title, elements=tuple(els), models=tuple(models.values()),
                       temperature_k=self.temperature_k, gmin=self.gmin)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class CircuitValues:
    """Element values (SI units); every leaf has shape (*batch, n_elements_of_kind).

    Attributes:
        g: resistor conductances (S).  c: capacitances (F).
        i_s: diode saturation currents (A).  n: diode ideality factors.
        v: voltage-source values (V).  i: current-source values (A).
        gm: VCCS transconductances (S).
    """

    g: Array
    c: Array
    i_s: Array
    n: Array
    v: Array
    i: Array
    gm: Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return jnp.shape(self.g)[:-1]


def _validate_topology(c: Circuit) -> None:
    n = c.n_nodes
    for kind, items in (("resistor", c.resistors), ("capacitor", c.capacitors),
                        ("diode", c.diodes), ("voltage source", c.vsources),
                        ("current source", c.isources), ("VCCS", c.vccs)):
        for t in items:
            if any(not (0 <= k <= n) for k in t):
                raise AnasimError(f"{kind} {t}: node index out of range 0..{n}")
    fixed: dict[int, int] = {}
    for j, (p, m) in enumerate(c.vsources):
        if p == m:
            raise AnasimError(f"voltage source {j} is shorted (both terminals on one node)")
        if (p == n) != (m == n):
            node = m if p == n else p
            if node in fixed:
                raise AnasimError(f"node {c.node_names[node]!r} is driven by two grounded voltage sources")
            fixed[node] = j


@dataclass(frozen=True)
class _Layout:
    """Reduced unknowns: free node voltages, then floating-source branch currents."""

    free: np.ndarray          # node indices that are unknowns
    fixed: np.ndarray         # node indices fixed by grounded sources
    fixed_src: np.ndarray     # source index fixing each fixed node
    fixed_sign: np.ndarray    # +1 if the node is the source's n+, −1 if n-
    floating: np.ndarray      # indices of floating voltage sources
    col: np.ndarray           # node index (0..n_nodes, ground last) → unknown column or dummy
    size: int                 # number of unknowns
    elim: np.ndarray          # unknowns eliminated first (mutually unconnected, resistor/diode rows)
    keep: np.ndarray          # the other unknowns (the Schur complement's)


def _make_layout(c: Circuit) -> _Layout:
    n = c.n_nodes
    fixed, fsrc, fsign, floating = [], [], [], []
    for j, (p, m) in enumerate(c.vsources):
        if m == n:
            fixed.append(p), fsrc.append(j), fsign.append(1.0)
        elif p == n:
            fixed.append(m), fsrc.append(j), fsign.append(-1.0)
        else:
            floating.append(j)
    fixed_set = set(fixed)
    free = [k for k in range(n) if k not in fixed_set]
    size = len(free) + len(floating)
    col = np.full(n + 1, size, dtype=np.int64)  # fixed nodes and ground → dummy column
    col[free] = np.arange(len(free))
    elim = _independent_unknowns(c, col, len(free), np.asarray(floating, np.int64))
    keep = np.setdiff1d(np.arange(size), elim)
    return _Layout(free=np.asarray(free, np.int64), fixed=np.asarray(fixed, np.int64),
                   fixed_src=np.asarray(fsrc, np.int64), fixed_sign=np.asarray(fsign),
                   floating=np.asarray(floating, np.int64), col=col, size=size,
                   elim=elim, keep=keep)


def _independent_unknowns(c: Circuit, col: np.ndarray, nf: int, floating: np.ndarray) -> np.ndarray:
    """Free-node unknowns that can be eliminated with their own diagonal as pivot.

    A node qualifies when its KCL row holds only resistors and diodes (no VCCS
    output, no floating source): its row is then diagonally dominant with a
    positive diagonal (gmin at least), and eliminating it is the star–mesh
    transform, stable without pivoting. Among those, a greedy minimum-degree
    independent set (no element joins two of them), so their block of the
    Jacobian is diagonal for *every* Newton iterate (diodes change only
    diagonals and the blocks they join). A layered circuit is bipartite: every
    other layer drops out and the dense solve shrinks to the remaining layers.
    """
    banned = np.zeros(nf + 1, bool)
    adj: list[set] = [set() for _ in range(nf)]

    def link(a, b):
        a, b = col[a], col[b]
        if a < nf and b < nf and a != b:
            adj[a].add(b), adj[b].add(a)

    for a, b in c.resistors + c.diodes:
        link(a, b)
    for p, m, cp, cn in c.vccs:
        banned[[min(col[p], nf), min(col[m], nf)]] = True
        for r in (p, m):
            for q in (cp, cn):
                link(r, q)
    for j in floating:
        p, m = c.vsources[j]
        banned[[min(col[p], nf), min(col[m], nf)]] = True
    chosen = np.zeros(nf, bool)
    blocked = banned[:nf].copy()
    for u in sorted(range(nf), key=lambda k: (len(adj[k]), k)):
        if not blocked[u]:
            chosen[u] = True
            blocked[list(adj[u])] = True
    return np.flatnonzero(chosen).astype(np.int64)


def _idx(items, k, width) -> np.ndarray:
    a = np.asarray(items, np.int64).reshape(-1, width)
    return a[:, k]


# --- element physics -----------------------------------------------------------------

def _diode_iv(vd, i_s, vte, gmin, xp=jnp):
    """Junction current (A) and conductance (S) at junction voltage vd (V)."""
    x = vd / vte
    xc = xp.minimum(x, _EXP_LIMIT)
    e = xp.exp(xc)
    e_lin = e * (1.0 + (x - xc))  # linear continuation beyond the limit
    i = i_s * (e_lin - 1.0) + gmin * vd
    g = i_s * e / vte + gmin
    return i, g


def _pnjlim(vnew, vold, vte, vcrit, xp=jnp):
    """Junction-voltage limiting: SPICE's ``pnjlim`` for large forward steps, and the same
    logarithmic map for a forward-biased junction retreating from an overshoot.

    Both replace the step by the junction voltage at which the exponential
    carries the current the Newton step predicted, i_old (1 + Δv / nV_T). SPICE
    applies it above vcrit only; below, a junction pushed past its operating
    current retreats by at most one nV_T per Newton step (Newton on an
    exponential from above), so a retreat whose predicted current falls below
    half of i_old is mapped too. Near the solution steps are ≪ nV_T and neither
    map acts: quadratic convergence is kept.
    """
    arg = 1.0 + (vnew - vold) / vte
    up = (vnew > vcrit) & (xp.abs(vnew - vold) > 2.0 * vte)
    log_step = vold + vte * xp.log(xp.maximum(arg, 1e-300))
    from_pos = xp.where(arg > 0, log_step, vcrit)
    from_neg = vte * xp.log(xp.maximum(vnew / vte, 1e-300))
    down = ~up & (vold > 10.0 * vte) & (arg > 0) & (arg < 0.5)
    lim = xp.where(up, xp.where(vold > 0, from_pos, from_neg), xp.where(down, log_step, vnew))
    return lim, up | down


# --- dense batched Newton (JAX) --------------------------------------------------------

def _linear_stamps(c: Circuit, lay: _Layout):
    """Static (rows, cols) of the linear stamps and a function of the values giving their data."""
    col = lay.col
    rows, cols, parts = [], [], []
    if c.resistors:
        a, b = col[_idx(c.resistors, 0, 2)], col[_idx(c.resistors, 1, 2)]
        rows += [a, b, a, b]
        cols += [a, b, b, a]
        parts.append(("g", (1, 1, -1, -1)))
    if c.vccs:
        p, n = col[_idx(c.vccs, 0, 4)], col[_idx(c.vccs, 1, 4)]
        cp, cn = col[_idx(c.vccs, 2, 4)], col[_idx(c.vccs, 3, 4)]
        rows += [p, p, n, n]
        cols += [cp, cn, cp, cn]
        parts.append(("gm", (1, -1, -1, 1)))
    if len(lay.floating):
        src = np.asarray(c.vsources, np.int64)[lay.floating]
        p, n = col[src[:, 0]], col[src[:, 1]]
        br = len(lay.free) + np.arange(len(lay.floating))
        rows += [p, n, br, br]
        cols += [br, br, p, n]
        parts.append(("one", (1, -1, 1, -1)))
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cc = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return r, cc, parts


@dataclass(frozen=True)
class _SumPlan:
    """Static plan for out[t] = Σ_{k: target[k] = t} data[k] by gathers only.

    XLA's scatter-add on CPU runs element by element (assembling 1000 circuits'
    stamps that way cost more than all their Newton iterations); a gather of
    each target's contributors, padded to a power-of-two width per bucket and
    summed, vectorizes. Targets ≥ n_out are dropped (ground, fixed nodes).
    """

    buckets: tuple        # index matrices (n_targets_in_bucket, width) into data + [0]
    out_map: np.ndarray   # (n_out,) position of each output in the bucket sums, or the zero


def _sum_plan(targets: np.ndarray, n_out: int) -> _SumPlan:
    targets = np.asarray(targets, np.int64)
    n_data = len(targets)
    src = np.flatnonzero(targets < n_out)
    src = src[np.argsort(targets[src], kind="stable")]
    uniq, start, counts = np.unique(targets[src], return_index=True, return_counts=True)
    width = 1 << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    buckets, order = [], []
    for w in np.unique(width):
        sel = np.flatnonzero(width == w)
        off = np.arange(w)
        take = start[sel, None] + off
        idx = np.where(off < counts[sel, None], src[np.minimum(take, len(src) - 1)], n_data)
        buckets.append(idx)
        order.append(uniq[sel])
    out_map = np.full(n_out, len(uniq), np.int64)
    if order:
        out_map[np.concatenate(order)] = np.arange(len(uniq))
    return _SumPlan(buckets=tuple(buckets), out_map=out_map)


def _plan_sum(plan: _SumPlan, data):
    """Apply a plan to data of shape (*batch, n) → (*batch, n_out).

    Outside ``vmap`` the batch is moved last, so every gather copies a
    contiguous run of the batch instead of one scalar.
    """
    d = jnp.moveaxis(jnp.asarray(data), -1, 0)
    d = jnp.concatenate([d, jnp.zeros((1,) + d.shape[1:], d.dtype)])
    sums = [d[idx].sum(1) for idx in plan.buckets]
    out = jnp.concatenate(sums + [jnp.zeros((1,) + d.shape[1:], d.dtype)])[plan.out_map]
    return jnp.moveaxis(out, 0, -1)


def _linear_system(c: Circuit, lay: _Layout, vals: CircuitValues):
    """Jacobian (size+1)² of the linear elements (last row/col a zero dummy)."""
    m = lay.size + 1
    r, cc, parts = _linear_stamps(c, lay)
    data = []
    for name, signs in parts:
        x = jnp.ones(len(lay.floating)) if name == "one" else getattr(vals, name)
        data += [s * x for s in signs]
    batch = jnp.shape(vals.g)[:-1]
    if not data:
        return jnp.zeros(batch + (m, m), jnp.float64)
    inside = (r < lay.size) & (cc < lay.size)
    plan = _sum_plan(np.where(inside, r * m + cc, m * m), m * m)
    data = [jnp.broadcast_to(x, batch + jnp.shape(x)[-1:]) for x in data]
    return _plan_sum(plan, jnp.concatenate(data, -1)).reshape(batch + (m, m))


def _lu_solve(A, b):
    """x = A⁻¹ b by partial-pivot LU (lighter to compile than jnp.linalg.solve)."""
    lu, _, perm = jax.lax.linalg.lu(A)
    y = jax.lax.linalg.triangular_solve(lu, b[perm][:, None], left_side=True, lower=True,
                                        unit_diagonal=True)
    x = jax.lax.linalg.triangular_solve(lu, y, left_side=True, lower=False)
    return x[:, 0]


def _residual(c: Circuit, lay: _Layout, vals: CircuitValues, z, vfull, diode_i):
    """KCL residual per unknown row (currents leaving each free node; source equations).

    Arrays may carry leading batch axes (all alike)."""
    nf = len(lay.free)
    batch = jnp.shape(z)[:-1]
    idx, cur = [], []

    def add(nodes_a, nodes_b, i):
        i = jnp.broadcast_to(i, batch + jnp.shape(i)[-1:])
        idx.extend([nodes_a, nodes_b])
        cur.extend([i, -i])

    if c.resistors:
        a, b = _idx(c.resistors, 0, 2), _idx(c.resistors, 1, 2)
        add(a, b, vals.g * (vfull[..., a] - vfull[..., b]))
    if c.vccs:
        q = np.asarray(c.vccs, np.int64)
        add(q[:, 0], q[:, 1], vals.gm * (vfull[..., q[:, 2]] - vfull[..., q[:, 3]]))
    if c.isources:
        add(_idx(c.isources, 0, 2), _idx(c.isources, 1, 2), vals.i)
    if c.diodes:
        add(_idx(c.diodes, 0, 2), _idx(c.diodes, 1, 2), diode_i)
    if len(lay.floating):
        src = np.asarray(c.vsources, np.int64)[lay.floating]
        add(src[:, 0], src[:, 1], z[..., nf:])  # branch currents leave n+ and enter n-
    if idx:  # currents leaving each free node (position = its unknown column)
        res = _plan_sum(_sum_plan(lay.col[np.concatenate(idx)], nf), jnp.concatenate(cur, -1))
    else:
        res = jnp.zeros(batch + (nf,), z.dtype)
    if len(lay.floating):
        res = jnp.concatenate([res, vfull[..., src[:, 0]] - vfull[..., src[:, 1]] - vals.v[..., lay.floating]], -1)
    return res


def _gather_index(c: Circuit, lay: _Layout) -> np.ndarray:
    """Static positions: full node voltages = concat(free unknowns, fixed values, [0])[index]."""
    nf = len(lay.free)
    pos = np.full(c.n_nodes + 1, nf + len(lay.fixed), np.int64)  # ground → the trailing 0
    pos[lay.free] = np.arange(nf)
    pos[lay.fixed] = nf + np.arange(len(lay.fixed))
    return pos


def _cell_index(lay: _Layout) -> tuple[np.ndarray, tuple]:
    """Where each Jacobian entry (row, col) of the linear part is stored: an index into a
    flat vector of cells (−1: structurally zero), and the block shapes. With
    eliminated unknowns E the cells are diag(A_EE), A_EK, A_KE, A_KK (A_EE is
    diagonal by construction); without, the dense matrix."""
    size = lay.size
    E, K = lay.elim, lay.keep
    if not len(E):
        return np.arange(size * size).reshape(size, size), ((size, size),)
    ne, nk = len(E), len(K)
    cell = np.full((size, size), -1, np.int64)
    cell[E, E] = np.arange(ne)
    o = ne
    cell[np.ix_(E, K)] = o + np.arange(ne * nk).reshape(ne, nk)
    o += ne * nk
    cell[np.ix_(K, E)] = o + np.arange(nk * ne).reshape(nk, ne)
    o += nk * ne
    cell[np.ix_(K, K)] = o + np.arange(nk * nk).reshape(nk, nk)
    return cell, ((ne,), (ne, nk), (nk, ne), (nk, nk))


def _split_cells(lay: _Layout, cells):
    """The linear part from its cell vector (*batch, n_cells): the dense A, or the
    blocks (diag A_EE, A_EK, A_KE, A_KK)."""
    _, shapes = _cell_index(lay)
    out, o = [], 0
    for shp in shapes:
        n = int(np.prod(shp))
        out.append(cells[..., o:o + n].reshape(cells.shape[:-1] + shp))
        o += n
    return out[0] if len(out) == 1 else tuple(out)


def _blocks_matvec(lay: _Layout, blocks, z):
    """A z from the blocks (one circuit)."""
    a_ee, A_ek, A_ke, A_kk = blocks
    z_e, z_k = z[lay.elim], z[lay.keep]
    out = jnp.concatenate([a_ee * z_e + A_ek @ z_k, A_ke @ z_e + A_kk @ z_k])
    return out[np.argsort(np.concatenate([lay.elim, lay.keep]))]


def _block_solver(lay: _Layout, blocks, rows: np.ndarray, cols: np.ndarray):
    """Solver of (A + diag(d) + off-diagonal stamps at (rows, cols)) x = r by eliminating
    ``lay.elim`` first: their block is diagonal, so only the Schur complement
    S = J_KK − J_KE diag(J_EE)⁻¹ J_EK over the kept unknowns needs an LU.

    The stamps (diodes joining two unknowns) never join two eliminated unknowns
    (the layout's independent set excludes that), so each lands in one block.
    """
    E, K = lay.elim, lay.keep
    a_ee, A_ek, A_ke, A_kk = blocks
    pos = np.zeros(lay.size, np.int64)
    pos[E], pos[K] = np.arange(len(E)), np.arange(len(K))
    back = np.argsort(np.concatenate([E, K]))
    in_e = np.zeros(lay.size, bool)
    in_e[E] = True
    sel = {key: np.flatnonzero((in_e[rows] == key[0]) & (in_e[cols] == key[1]))
           for key in ((True, False), (False, True), (False, False))}

    def solve(d, off, r):
        J_ek, J_ke, J_kk = A_ek, A_ke, A_kk + jnp.diag(d[K])
        if len(rows):
            for (re, ce), j in sel.items():
                if not len(j):
                    continue
                ri, ci = pos[rows[j]], pos[cols[j]]
                if re:
                    J_ek = J_ek.at[ri, ci].add(off[j])
                elif ce:
                    J_ke = J_ke.at[ri, ci].add(off[j])
                else:
                    J_kk = J_kk.at[ri, ci].add(off[j])
        d_e = a_ee + d[E]
        r_e = r[E] / d_e
        x_k = _lu_solve(J_kk - (J_ke / d_e) @ J_ek, r[K] - J_ke @ r_e) if len(K) else jnp.zeros(0)
        x_e = r_e - (J_ek @ x_k) / d_e
        return jnp.concatenate([x_e, x_k])[back]

    return solve


def _diode_plan(c: Circuit, lay: _Layout):
    """Static diode indexing: anode/cathode nodes, their unknown columns, the junctions
    joining two unknowns (off-diagonal stamps) and the plan summing junction
    currents into rows."""
    da, dk = _idx(c.diodes, 0, 2), _idx(c.diodes, 1, 2)
    ca, ck = lay.col[da], lay.col[dk]
    # a junction with one terminal fixed (rail, ground) stamps only a diagonal entry
    both = np.flatnonzero((ca < lay.size) & (ck < lay.size))
    return dict(da=da, dk=dk, rows=np.concatenate([ca[both], ck[both]]),
                cols=np.concatenate([ck[both], ca[both]]), both=np.concatenate([both, both]),
                plan=_sum_plan(np.concatenate([ca, ck]), lay.size))


def _newton_dense(c: Circuit, vals: CircuitValues, z0, lin, b0, *, max_iter: int, reltol: float,
                  vntol: float):
    """Newton with junction limiting on one circuit (vmapped by the caller).

    The linear elements enter as F_lin(z) = A z + b0, with A assembled by the
    caller for the whole batch: dense, or as the blocks of :func:`_block_solver`
    when the layout has eliminated unknowns. An iteration stamps the diodes and
    solves (by blocks, or one dense LU). (F_lin is recomputed, not updated by
    A dz = −F − J_d dz: a junction far past its knee early on carries currents
    whose rounding would then stay in the residual.)
    """
    lay = c.layout
    vt = thermal_voltage(c.temperature_k)
    nf = len(lay.free)
    pos = _gather_index(c, lay)
    vfix = lay.fixed_sign * vals.v[lay.fixed_src] if len(lay.fixed) else jnp.zeros(0)
    blocked = isinstance(lin, tuple)

    def full(z):
        return jnp.concatenate([z[:nf], vfix, jnp.zeros(1)])[pos]

    has_d = bool(c.diodes)
    if has_d:
        dp = _diode_plan(c, lay)
        da, dk = dp["da"], dp["dk"]
        vte = vals.n * vt
        vcrit = vte * jnp.log(vte / (math.sqrt(2.0) * vals.i_s))
    empty = np.zeros(0, np.int64)
    solve = (_block_solver(lay, lin, dp["rows"] if has_d else empty, dp["cols"] if has_d else empty)
             if blocked else None)

    def matvec(z):
        return _blocks_matvec(lay, lin, z) if blocked else lin @ z

    def step(z, vd_old):
        f_lin = matvec(z) + b0
        if has_d:
            vfull = full(z)
            vd_raw = vfull[da] - vfull[dk]
            vd, limited = _pnjlim(vd_raw, vd_old, vte, vcrit)
            i_d, g_d = _diode_iv(vd, vals.i_s, vte, c.gmin)
            # companion model: current at the limited point, slope g_d
            i_lin = i_d + g_d * (vd_raw - vd)
            both_g = jnp.concatenate([g_d, g_d])
            diag = _plan_sum(dp["plan"], both_g)
            off = -both_g[dp["both"]]
            F = f_lin + _plan_sum(dp["plan"], jnp.concatenate([i_lin, -i_lin]))
            if solve is not None:
                dz = solve(diag, off, -F)
            else:
                J = lin + jnp.diag(diag)
                if len(dp["rows"]):
                    J = J.at[dp["rows"], dp["cols"]].add(off)
                dz = _lu_solve(J, -F)
        else:
            vd, limited = vd_old, jnp.zeros((0,), bool)
            dz = solve(jnp.zeros(lay.size), jnp.zeros(0), -f_lin) if blocked else _lu_solve(lin, -f_lin)
        return z + dz, vd, dz, jnp.any(limited)

    def cond(carry):
        it, z, vd, done, _, _ = carry
        return (it < max_iter) & ~done

    def body(carry):
        it, z, vd, _, m_prev, lim_prev = carry
        z_new, vd_new, dz, limited = step(z, vd)
        dv = jnp.abs(dz[:nf])
        tol = reltol * jnp.maximum(jnp.abs(z_new[:nf]), jnp.abs(z[:nf])) + vntol
        m = jnp.max(dv, initial=0.0)
        # Two unlimited Newton steps in the quadratic regime predict the next one:
        # |dz_{k+1}| ≈ (m_k / m_{k-1})² |dz_k|. When that is within tolerance, z_new is
        # already as accurate as the step that would confirm it (saves that step).
        q = (m / m_prev) ** 2
        predicted = (it > 0) & ~lim_prev & (q < 0.25) & jnp.all(q * dv <= tol)
        ok = (jnp.all(dv <= tol) | predicted) & ~limited & jnp.all(jnp.isfinite(z_new))
        return it + 1, z_new, vd_new, ok, m, limited

    vd0 = jnp.zeros(len(c.diodes), jnp.float64)
    it, z, _, done, _, _ = jax.lax.while_loop(
        cond, body, (jnp.int32(0), z0, vd0, jnp.bool_(False), jnp.float64(jnp.inf), jnp.bool_(True)))
    return z, it, done


@functools.lru_cache(maxsize=64)
def _linear_maps(c: Circuit):
    """Sparse linear maps (scipy CSR, built once per topology) from element values to the
    linear Jacobian A (flattened size²) and to the KCL rows of the free nodes."""
    import scipy.sparse as sp

    lay = c.layout
    size, nf, col = lay.size, len(lay.free), lay.col

    cell, shapes = _cell_index(lay)
    n_cells = sum(int(np.prod(s)) for s in shapes)

    def to_cells(rows, cols, signs, n_el):
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        el = np.tile(np.arange(n_el), len(signs))
        data = np.repeat(np.asarray(signs, np.float64), n_el)
        keep = (rows < size) & (cols < size)
        at = cell[rows[keep], cols[keep]]
        if (at < 0).any():
            raise AssertionError("a linear stamp joins two eliminated unknowns")
        return sp.csr_matrix((data[keep], (at, el[keep])), shape=(n_cells, n_el))

    def to_rows(a, b, n_el):
        rows = np.concatenate([col[a], col[b]])
        el = np.tile(np.arange(n_el), 2)
        data = np.repeat([1.0, -1.0], n_el)
        keep = rows < nf
        return sp.csr_matrix((data[keep], (rows[keep], el[keep])), shape=(nf, n_el))

    R = np.asarray(c.resistors, np.int64).reshape(-1, 2)
    Q = np.asarray(c.vccs, np.int64).reshape(-1, 4)
    Iq = np.asarray(c.isources, np.int64).reshape(-1, 2)
    ra, rb = col[R[:, 0]], col[R[:, 1]]
    qp, qn, qcp, qcn = (col[Q[:, k]] for k in range(4))
    maps = dict(
        A_g=to_cells([ra, rb, ra, rb], [ra, rb, rb, ra], (1, 1, -1, -1), len(R)),
        A_gm=to_cells([qp, qp, qn, qn], [qcp, qcn, qcp, qcn], (1, -1, -1, 1), len(Q)),
        F_g=to_rows(R[:, 0], R[:, 1], len(R)), F_gm=to_rows(Q[:, 0], Q[:, 1], len(Q)),
        F_i=to_rows(Iq[:, 0], Iq[:, 1], len(Iq)))
    A_one = np.zeros(n_cells)
    if len(lay.floating):  # floating sources are never next to an eliminated unknown
        src = np.asarray(c.vsources, np.int64)[lay.floating]
        br = nf + np.arange(len(lay.floating))
        for p_, n_, k in zip(col[src[:, 0]], col[src[:, 1]], br):
            for node, sgn in ((p_, 1.0), (n_, -1.0)):
                if node < size:
                    A_one[cell[node, k]] += sgn
                    A_one[cell[k, node]] += sgn
    maps["A_one"] = A_one
    fixed = np.zeros(c.n_nodes + 1, bool)
    fixed[lay.fixed] = True
    R_fix = np.flatnonzero(fixed[R[:, 0]] | fixed[R[:, 1]])
    Q_fix = np.flatnonzero(fixed[Q[:, 2]] | fixed[Q[:, 3]])
    maps.update(R_fix=R_fix, F_g_fix=maps["F_g"][:, R_fix].tocsr(),
                Q_fix=Q_fix, F_gm_fix=maps["F_gm"][:, Q_fix].tocsr())
    return maps


def _assemble_linear(c: Circuit, vals: CircuitValues):
    """Linear Jacobian A as cells (n_cells, batch) (:func:`_cell_index`) and offset b0
    (size, batch), F_lin(z) = A z + b0, for numpy values with one leading batch
    axis. Batch last: the sparse products' inner loops and every gather run
    over contiguous batch rows (a scatter per stamp in XLA cost more than the
    Newton solve); the compiled solve transposes back."""
    lay = c.layout
    maps = _linear_maps(c)
    size, nf = lay.size, len(lay.free)
    B = vals.g.shape[0]
    gT = np.ascontiguousarray(vals.g.T)
    A = maps["A_g"] @ gT if len(c.resistors) else np.zeros((len(maps["A_one"]), B))
    if len(c.vccs):
        gmT = np.ascontiguousarray(vals.gm.T)
        A += maps["A_gm"] @ gmT
    if maps["A_one"].any():
        A += maps["A_one"][:, None]
    v0 = np.zeros((c.n_nodes + 1, B))  # node voltages at z = 0: only the fixed nodes
    if len(lay.fixed):
        v0[lay.fixed] = lay.fixed_sign[:, None] * vals.v[:, lay.fixed_src].T
    b0 = np.zeros((size, B))
    # only elements with a fixed terminal (controlling node) carry current at z = 0
    if len(maps["R_fix"]):
        R = np.asarray(c.resistors, np.int64)[maps["R_fix"]]
        b0[:nf] += maps["F_g_fix"] @ (gT[maps["R_fix"]] * (v0[R[:, 0]] - v0[R[:, 1]]))
    if len(maps["Q_fix"]):
        Q = np.asarray(c.vccs, np.int64)[maps["Q_fix"]]
        b0[:nf] += maps["F_gm_fix"] @ (gmT[maps["Q_fix"]] * (v0[Q[:, 2]] - v0[Q[:, 3]]))
    if len(c.isources):
        b0[:nf] += maps["F_i"] @ np.ascontiguousarray(vals.i.T)
    if len(lay.floating):
        src = np.asarray(c.vsources, np.int64)[lay.floating]
        b0[nf:] = v0[src[:, 0]] - v0[src[:, 1]] - vals.v[:, lay.floating].T
    return A, b0


@functools.partial(jax.jit, static_argnames=("c", "max_iter", "reltol", "vntol"))
def _newton_batched(c: Circuit, vals: CircuitValues, z0, A, b0, *, max_iter: int, reltol: float,
                    vntol: float):
    """:func:`_newton_dense` vmapped over the leading axis of ``vals``, ``z0``, ``A``, ``b0``;
    returns node voltages, unknowns, iterations, convergence flags and the KCL residual."""
    lay = c.layout
    A, b0 = A.T, b0.T   # the host assembled them batch-last
    lin = _split_cells(lay, A)
    z, it, done = jax.vmap(lambda v, z_, a, b: _newton_dense(
        c, v, z_, a, b, max_iter=max_iter, reltol=reltol, vntol=vntol))(vals, z0, lin, b0)
    nf = len(lay.free)
    vfix = lay.fixed_sign * vals.v[..., lay.fixed_src]
    vfull = jnp.concatenate([z[..., :nf], vfix, jnp.zeros(z.shape[:-1] + (1,))], -1)[..., _gather_index(c, lay)]
    if isinstance(lin, tuple):
        res = jax.vmap(lambda a, z_: _blocks_matvec(lay, a, z_))(lin, z) + b0
    else:
        res = jnp.einsum("bij,bj->bi", lin, z) + b0
    if c.diodes:
        dp = _diode_plan(c, lay)
        i_d, _ = _diode_iv(vfull[..., dp["da"]] - vfull[..., dp["dk"]], vals.i_s,
                           vals.n * thermal_voltage(c.temperature_k), c.gmin)
        res = res + _plan_sum(dp["plan"], jnp.concatenate([i_d, -i_d], -1))
    return vfull[..., :-1], z, it, done, res


@dataclass(frozen=True)
class OperatingPoint:
    """DC solution. ``voltages``: (*batch, n_nodes) node voltages (V) in
    ``node_names`` order; ``iterations``: Newton iterations per circuit;
    ``residual``: max |KCL residual| (A) per circuit; ``branch_currents``:
    floating-voltage-source currents (A) per circuit (grounded sources are
    eliminated and have none)."""

    node_names: tuple[str, ...]
    voltages: np.ndarray
    iterations: np.ndarray
    residual: np.ndarray
    branch_currents: np.ndarray | None = None

    def as_dict(self, index: int | tuple = ()) -> dict[str, float]:
        """{node name: volts} for one circuit of the batch."""
        v = np.asarray(self.voltages)[index]
        return {n: float(x) for n, x in zip(self.node_names, v)}


def _broadcast_values(c: Circuit, vals: CircuitValues) -> CircuitValues:
    counts = dict(g=len(c.resistors), c=len(c.capacitors), i_s=len(c.diodes), n=len(c.diodes),
                  v=len(c.vsources), i=len(c.isources), gm=len(c.vccs))
    leaves = {}
    batch: tuple[int, ...] = ()
    for k, cnt in counts.items():
        a = np.asarray(getattr(vals, k), np.float64)  # numpy: no per-shape eager compiles
        if a.ndim == 0 or a.shape[-1] != cnt:
            raise AnasimError(f"CircuitValues.{k}: expected shape (..., {cnt}), got {a.shape}")
        leaves[k] = a
        batch = np.broadcast_shapes(batch, a.shape[:-1])
    return CircuitValues(**{k: np.broadcast_to(a, batch + a.shape[-1:]) for k, a in leaves.items()})


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


def _raise_convergence(c: Circuit, res: np.ndarray, iters: int, where: str = "") -> None:
    lay = c.layout
    res = np.where(np.isfinite(res), res, np.inf)
    k = int(np.argmax(np.abs(res)))
    if k < len(lay.free):
        what = f"node {c.node_names[lay.free[k]]!r}"
        unit = "A"
    else:
        j = int(lay.floating[k - len(lay.free)])
        name = c.names[3][j] if len(c.names) > 3 and j < len(c.names[3]) else f"v{j + 1}"
        what = f"voltage source {name!r}"
        unit = "V"
    raise ConvergenceError(f"{where}DC operating point did not converge in {iters} Newton iterations: "
                           f"worst {what}, residual {float(res[k]):.3e} {unit}")


# --- sparse Newton (scipy) for large single networks ------------------------------------

def _solve_op_sparse(c: Circuit, vals: CircuitValues, *, max_iter, reltol, vntol,
                     raise_on_failure) -> OperatingPoint:
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    vals = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), vals)
    if vals.g.ndim != 1:
        raise AnasimError("solve_op(method='sparse') solves one circuit; values must be unbatched")
    lay = c.layout
    n1 = c.n_nodes + 1
    size = lay.size
    col = lay.col
    rows, cols, data = [], [], []

    def stamp2(a, b, g):
        ca, cb = col[a], col[b]
        rows.extend([ca, cb, ca, cb]), cols.extend([ca, cb, cb, ca]), data.extend([g, g, -g, -g])

    R = np.asarray(c.resistors, np.int64).reshape(-1, 2)
    stamp2(R[:, 0], R[:, 1], vals.g)
    Q = np.asarray(c.vccs, np.int64).reshape(-1, 4)
    p, n, cp, cn = (col[Q[:, k]] for k in range(4))
    rows.extend([p, p, n, n]), cols.extend([cp, cn, cp, cn])
    data.extend([vals.gm, -vals.gm, -vals.gm, vals.gm])
    nf = len(lay.free)
    S = np.asarray(c.vsources, np.int64).reshape(-1, 2)[lay.floating]
    br = nf + np.arange(len(lay.floating))
    one = np.ones(len(br))
    rows.extend([col[S[:, 0]], col[S[:, 1]], br, br]), cols.extend([br, br, col[S[:, 0]], col[S[:, 1]]])
    data.extend([one, -one, one, -one])
    r_lin, c_lin, d_lin = (np.concatenate(x) for x in (rows, cols, data))
    D = np.asarray(c.diodes, np.int64).reshape(-1, 2)
    vt = thermal_voltage(c.temperature_k)
    vte = vals.n * vt
    vcrit = vte * np.log(vte / (math.sqrt(2.0) * vals.i_s)) if len(D) else np.zeros(0)
    Iq = np.asarray(c.isources, np.int64).reshape(-1, 2)

    def full(z):
        v = np.zeros(n1)
        v[lay.free] = z[:nf]
        if len(lay.fixed):
            v[lay.fixed] = lay.fixed_sign * vals.v[lay.fixed_src]
        v[-1] = 0.0
        return v

    def diode(vd):
        return _diode_iv(vd, vals.i_s, vte, c.gmin, xp=np)

    def residual(z, v, i_d):
        leave = np.zeros(n1)
        i = vals.g * (v[R[:, 0]] - v[R[:, 1]])
        np.add.at(leave, R[:, 0], i), np.add.at(leave, R[:, 1], -i)
        i = vals.gm * (v[Q[:, 2]] - v[Q[:, 3]])
        np.add.at(leave, Q[:, 0], i), np.add.at(leave, Q[:, 1], -i)
        np.add.at(leave, Iq[:, 0], vals.i), np.add.at(leave, Iq[:, 1], -vals.i)
        np.add.at(leave, D[:, 0], i_d), np.add.at(leave, D[:, 1], -i_d)
        jb = z[nf:]
        np.add.at(leave, S[:, 0], jb), np.add.at(leave, S[:, 1], -jb)
        out = [leave[lay.free]]
        out.append(v[S[:, 0]] - v[S[:, 1]] - vals.v[lay.floating])
        return np.concatenate(out)

    z = np.zeros(size)
    vd_old = np.zeros(len(D))
    done = False
    it = 0
    while it < max_iter and not done:
        v = full(z)
        vd_raw = v[D[:, 0]] - v[D[:, 1]]
        if len(D):
            with np.errstate(invalid="ignore", divide="ignore"):
                vd, limited = _pnjlim(vd_raw, vd_old, vte, vcrit, xp=np)
            i_d, g_d = diode(vd)
            i_lin = i_d + g_d * (vd_raw - vd)
            ca, ck = col[D[:, 0]], col[D[:, 1]]
            rr = np.concatenate([r_lin, ca, ck, ca, ck])
            cc = np.concatenate([c_lin, ca, ck, ck, ca])
            dd = np.concatenate([d_lin, g_d, g_d, -g_d, -g_d])
        else:
            vd, limited, i_lin = vd_raw, np.zeros(0, bool), np.zeros(0)
            rr, cc, dd = r_lin, c_lin, d_lin
        keep = (rr < size) & (cc < size)
        J = sp.csc_matrix((dd[keep], (rr[keep], cc[keep])), shape=(size, size))
        F = residual(z, v, i_lin)
        dz = spla.splu(J).solve(-F)
        z_new = z + dz
        dv = np.abs(dz[:nf])
        done = bool(np.all(dv <= reltol * np.maximum(np.abs(z_new[:nf]), np.abs(z[:nf])) + vntol)
                    and not limited.any() and np.all(np.isfinite(z_new)))
        z, vd_old = z_new, vd
        it += 1
    v = full(z)
    i_d, _ = diode(v[D[:, 0]] - v[D[:, 1]]) if len(D) else (np.zeros(0), None)
    res = residual(z, v, i_d)
    if raise_on_failure and not done:
        _raise_convergence(c, res, it)
    return OperatingPoint(node_names=c.node_names, voltages=v[:-1], iterations=np.asarray(it),
                          residual=np.asarray(np.max(np.abs(res), initial=0.0)),
                          branch_currents=z[nf:])


def parse_and_solve(path: str, **kwargs) -> OperatingPoint:
    """Read a netlist file and solve its DC operating point (for the CLI)."""
    from anasim.nodal.netlist import read_netlist

    c = Circuit.from_netlist(read_netlist(path))
    return solve_op(c, **kwargs)


__all__: Sequence[str] = (
    "Circuit", "CircuitValues", "OperatingPoint", "solve_op", "thermal_voltage", "K_BOLTZMANN", "Q_ELECTRON",
    "parse_and_solve",
)
