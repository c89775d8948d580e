"""Circuit topology and element values: what the node-level solver solves.

A :class:`Circuit` is the *topology* (node names, which element joins which
nodes, temperature, gmin) — a frozen, hashable dataclass, usable as a static
argument of ``jax.jit``. :class:`CircuitValues` holds the element *values*
(a pytree of arrays whose leading axes may be a batch), so one compiled solve
handles many circuits of the same topology, or many input vectors, at once.
The layout of the reduced unknowns (free node voltages, then floating-source
branch currents; the independent set eliminated by its diagonal) is computed
once per topology (:attr:`Circuit.layout`). :class:`OperatingPoint` is a
solve's result. Equations and solvers: :mod:`anasim.nodal.solver`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from anasim.errors import AnasimError, ConvergenceError
from anasim.nodal.netlist import (
    DEFAULT_GMIN,
    DEFAULT_TEMPERATURE_K,
    DiodeModel,
    Element,
    Netlist,
    check_topology,
)
from anasim.circuits.precision import in_float64

Array = jax.Array

#: Boltzmann constant (J/K) and elementary charge (C), CODATA 2014: the values
#: ngspice 39 uses, so that V_T and hence diode currents agree to all digits.
K_BOLTZMANN = 1.38064852e-23
Q_ELECTRON = 1.6021766208e-19


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

    @functools.cached_property
    def index(self) -> dict[str, np.ndarray]:
        """The element tuples as int64 arrays (read-only), once per topology: ``"R"``,
        ``"C"``, ``"D"``, ``"V"``, ``"I"`` of shape (n, 2), ``"G"`` (the VCCS) (n, 4).
        Converting a large network's tuples costs tens of ms, on every assembly."""
        out = {}
        for key, items, width in (("R", self.resistors, 2), ("C", self.capacitors, 2), ("D", self.diodes, 2),
                                  ("V", self.vsources, 2), ("I", self.isources, 2), ("G", self.vccs, 4)):
            a = np.asarray(items, np.int64).reshape(-1, width)
            a.flags.writeable = False
            out[key] = a
        return out

    # --- conversions -------------------------------------------------------------

    @classmethod
    @in_float64
    def from_netlist(cls, netlist: Netlist) -> "Circuit":
        """Topology and values of a parsed netlist (values in ``circuit.values``).

        Raises:
            NetlistError: a topology with no operating point (no ground, a loop of
                voltage sources, an open node, a node with no DC path to ground),
                before any solve (:func:`~anasim.nodal.netlist.check_topology`).
        """
        check_topology(netlist)
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


