"""Assembly of the modified-nodal equations: the linear elements' stamps, the KCL
residual, and sums over stamps by static gather plans.

The linear Jacobian A and offset b0 (F_lin(z) = A z + b0) of a batch are
assembled on the host with sparse maps built once per topology
(:func:`_assemble_linear`); with eliminated unknowns (the layout's independent
set) A is stored as the blocks diag(A_EE), A_EK, A_KE, A_KK (:func:`_cell_index`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from anasim.nodal.circuit import Circuit, CircuitValues, _Layout

def _linear_stamps(c: Circuit, lay: _Layout):
    """Static (rows, cols) of the linear stamps and a function of the values giving their data."""
    col = lay.col
    rows, cols, parts = [], [], []
    if c.resistors:
        a, b = col[c.index["R"][:, 0]], col[c.index["R"][:, 1]]
        rows += [a, b, a, b]
        cols += [a, b, b, a]
        parts.append(("g", (1, 1, -1, -1)))
    if c.vccs:
        p, n = col[c.index["G"][:, 0]], col[c.index["G"][:, 1]]
        cp, cn = col[c.index["G"][:, 2]], col[c.index["G"][:, 3]]
        rows += [p, p, n, n]
        cols += [cp, cn, cp, cn]
        parts.append(("gm", (1, -1, -1, 1)))
    if len(lay.floating):
        src = c.index["V"][lay.floating]
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
        a, b = c.index["R"][:, 0], c.index["R"][:, 1]
        add(a, b, vals.g * (vfull[..., a] - vfull[..., b]))
    if c.vccs:
        q = c.index["G"]
        add(q[:, 0], q[:, 1], vals.gm * (vfull[..., q[:, 2]] - vfull[..., q[:, 3]]))
    if c.isources:
        add(c.index["I"][:, 0], c.index["I"][:, 1], vals.i)
    if c.diodes:
        add(c.index["D"][:, 0], c.index["D"][:, 1], diode_i)
    if len(lay.floating):
        src = c.index["V"][lay.floating]
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


def _diode_plan(c: Circuit, lay: _Layout):
    """Static diode indexing: anode/cathode nodes, their unknown columns, the junctions
    joining two unknowns (off-diagonal stamps) and the plan summing junction
    currents into rows."""
    da, dk = c.index["D"][:, 0], c.index["D"][:, 1]
    ca, ck = lay.col[da], lay.col[dk]
    # a junction with one terminal fixed (rail, ground) stamps only a diagonal entry
    both = np.flatnonzero((ca < lay.size) & (ck < lay.size))
    return dict(da=da, dk=dk, rows=np.concatenate([ca[both], ck[both]]),
                cols=np.concatenate([ck[both], ca[both]]), both=np.concatenate([both, both]),
                plan=_sum_plan(np.concatenate([ca, ck]), lay.size))


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

    R = c.index["R"]
    Q = c.index["G"]
    Iq = c.index["I"]
    ra, rb = col[R[:, 0]], col[R[:, 1]]
    qp, qn, qcp, qcn = (col[Q[:, k]] for k in range(4))
    maps = dict(
        A_g=to_cells([ra, rb, ra, rb], [ra, rb, rb, ra], (1, 1, -1, -1), len(R)),
        A_gm=to_cells([qp, qp, qn, qn], [qcp, qcn, qcp, qcn], (1, -1, -1, 1), len(Q)),
        F_g=to_rows(R[:, 0], R[:, 1], len(R)), F_gm=to_rows(Q[:, 0], Q[:, 1], len(Q)),
        F_i=to_rows(Iq[:, 0], Iq[:, 1], len(Iq)))
    A_one = np.zeros(n_cells)
    if len(lay.floating):  # floating sources are never next to an eliminated unknown
        src = c.index["V"][lay.floating]
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
        R = c.index["R"][maps["R_fix"]]
        b0[:nf] += maps["F_g_fix"] @ (gT[maps["R_fix"]] * (v0[R[:, 0]] - v0[R[:, 1]]))
    if len(maps["Q_fix"]):
        Q = c.index["G"][maps["Q_fix"]]
        b0[:nf] += maps["F_gm_fix"] @ (gmT[maps["Q_fix"]] * (v0[Q[:, 2]] - v0[Q[:, 3]]))
    if len(c.isources):
        b0[:nf] += maps["F_i"] @ np.ascontiguousarray(vals.i.T)
    if len(lay.floating):
        src = c.index["V"][lay.floating]
        b0[nf:] = v0[src[:, 0]] - v0[src[:, 1]] - vals.v[:, lay.floating].T
    return A, b0
