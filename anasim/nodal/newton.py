"""Newton solvers of the DC operating point: dense and batched in JAX (float64,
vmapped over circuits, the eliminated unknowns dropped by their diagonal so only
a Schur complement is LU-factored), and sparse with SuperLU (scipy) for one
large network. Both limit junction steps with :func:`~anasim.nodal.elements._pnjlim`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from anasim.errors import AnasimError
from anasim.nodal.assembly import (
    _blocks_matvec,
    _diode_plan,
    _gather_index,
    _plan_sum,
    _split_cells,
)
from anasim.nodal.circuit import (
    Circuit,
    CircuitValues,
    OperatingPoint,
    _Layout,
    _raise_convergence,
    thermal_voltage,
)
from anasim.nodal.elements import _diode_iv, _pnjlim

# --- dense batched Newton (JAX) --------------------------------------------------------

def _lu_solve(A, b):
    """x = A⁻¹ b by partial-pivot LU (lighter to compile than jnp.linalg.solve)."""
    lu, _, perm = jax.lax.linalg.lu(A)
    y = jax.lax.linalg.triangular_solve(lu, b[perm][:, None], left_side=True, lower=True,
                                        unit_diagonal=True)
    x = jax.lax.linalg.triangular_solve(lu, y, left_side=True, lower=False)
    return x[:, 0]


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
