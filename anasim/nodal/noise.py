"""Noise in nodal circuits: small-signal analysis at the DC operating point, the
stationary fluctuation of every node (Lyapunov equation), and noisy transients.

Sources, each a white current noise between an element's terminals:

* every conductance g (resistor): Johnson–Nyquist, one-sided density
  S_I = 4 k_B T g (A²/Hz; Nyquist 1928);
* every diode: shot noise 2q (I_D + 2 I_s) (:func:`_shot_density`);
* every VCCS, when given an OTA excess noise factor γ: 4 k_B T γ |g_m|.

As an SDE a density S is dI = √(S/2) dW (two-sided S/2), so an RC node
C dv = −g v dt + √(2 k_B T g) dW is an Ornstein–Uhlenbeck process with
stationary variance (2 k_B T g / C²) / (2 g / C) = k_B T / C (equipartition);
for a resistor network the stationary covariance is k_B T C⁻¹ whatever the
conductances. :func:`simulate_transient` integrates the nonlinear circuit
(Euler–Maruyama, or a drift-implicit variant that is stable for stiff
circuits) with an explicit time step and PRNG key; :func:`thermal_covariance`
and :func:`thermal_fluctuation` give the stationary covariance of the circuit
linearized at its operating point; :func:`output_noise_density` is the
small-signal output noise √(Σ_k S_k |Z_{out,k}|²) (V/√Hz), what ngspice's
``.noise`` reports as ``onoise_spectrum``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_limits

from anasim.errors import AnasimError
from anasim.nodal.assembly import _gather_index, _linear_system, _residual
from anasim.nodal.circuit import (
    K_BOLTZMANN,
    Q_ELECTRON,
    Circuit,
    CircuitValues,
    OperatingPoint,
    _broadcast_values,
    _Layout,
    thermal_voltage,
)
from anasim.circuits.precision import in_float64
from anasim.nodal.elements import _diode_iv
from anasim.nodal.solver import solve_op

Array = jax.Array

# The covariances are many small (n_free ≲ a few hundred) LAPACK problems, one per
# circuit: BLAS threads gain nothing there, and their spin-waiting collapses when other
# work shares the cores. Beside a 2-thread training run on the 2-core machine, one
# 100-circuit thermal draw of the 49-32-10 resistive Hopfield circuit took 28 s with
# OpenBLAS's default threads and 0.42 s with one.
_SMALL_LAPACK_THREADS = 1


def _johnson_density(g, temperature_k: float):
    """One-sided Johnson–Nyquist current-noise density (A²/Hz) of conductances g (S):
    4 k_B T g (Nyquist 1928)."""
    return 4.0 * K_BOLTZMANN * temperature_k * g


def _ota_density(gm, temperature_k: float, factor: float, xp=jnp):
    """One-sided output current-noise density (A²/Hz) of transconductors gm (S) with
    excess noise factor γ: 4 k_B T γ |g_m| (γ = 2/3 for a long-channel MOSFET in
    saturation; an OTA's several transistors raise it to a few)."""
    return _johnson_density(factor * xp.abs(gm), temperature_k)


def _shot_density(vd, i_s, vte, gmin, xp=jnp, i=None):
    """One-sided shot-noise density (A²/Hz) of a junction at voltage vd (V).

    The forward (I_s e^{v/nV_T}) and reverse (I_s) carrier currents of a pn
    junction are independent Poisson streams, so S = 2q (I_s e^{v/nV_T} + I_s)
    = 2q (I_D + 2 I_s) (van der Ziel, "Noise in solid state devices", 1986).
    Forward biased that is 2q I_D; at zero bias, n = 1, it is 4 k_B T g_d, the
    Johnson noise of the junction's own conductance, as thermal equilibrium
    requires. (SPICE uses 2q|I_D|, the same except within a few nV_T of zero
    bias.) The gmin conductance is a numerical aid and adds none. ``i``: the
    junction current at vd from :func:`_diode_iv`, where the caller has it.
    """
    if i is None:
        i, _ = _diode_iv(vd, i_s, vte, gmin, xp=xp)
    return 2.0 * Q_ELECTRON * (i - gmin * vd + 2.0 * i_s)



# --- small-signal noise ---------------------------------------------------------------

@in_float64
def small_signal_matrices(c: Circuit, values: CircuitValues | None = None, op: OperatingPoint | None = None):
    """Conductance matrix G (with diode small-signal conductances at ``op``)
    and capacitance matrix C over the free nodes, shapes (n_free, n_free),
    plus the free node indices. One unbatched circuit; no floating sources."""
    vals = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), values if values is not None else c.values)
    lay = c.layout
    if len(lay.floating):
        raise AnasimError("small-signal analysis supports voltage sources with one terminal at ground only")
    n1 = c.n_nodes + 1
    G = np.zeros((n1, n1))
    Cm = np.zeros((n1, n1))

    def add2(M, a, b, g):
        np.add.at(M, (a, a), g), np.add.at(M, (b, b), g), np.add.at(M, (a, b), -g), np.add.at(M, (b, a), -g)

    R = c.index["R"]
    add2(G, R[:, 0], R[:, 1], vals.g)
    Cc = c.index["C"]
    add2(Cm, Cc[:, 0], Cc[:, 1], vals.c)
    Q = c.index["G"]
    for sgn_r, r in ((1, 0), (-1, 1)):
        np.add.at(G, (Q[:, r], Q[:, 2]), sgn_r * vals.gm)
        np.add.at(G, (Q[:, r], Q[:, 3]), -sgn_r * vals.gm)
    if c.diodes:
        if op is None:
            op = solve_op(c, values)
        v = np.append(np.asarray(op.voltages), 0.0)
        D = c.index["D"]
        _, gd = _diode_iv(jnp.asarray(v[D[:, 0]] - v[D[:, 1]]), jnp.asarray(vals.i_s),
                          jnp.asarray(vals.n * thermal_voltage(c.temperature_k)), c.gmin)
        add2(G, D[:, 0], D[:, 1], np.asarray(gd))
    f = lay.free
    return G[np.ix_(f, f)], Cm[np.ix_(f, f)], f


@in_float64
def output_noise_density(c: Circuit, node: str, values: CircuitValues | None = None,
                         frequency_hz: float = 0.0, op: OperatingPoint | None = None,
                         vccs_noise_factor: float = 0.0) -> float:
    """Output noise at ``node`` (V/√Hz, one-sided) from every resistor and diode, and
    every VCCS when ``vccs_noise_factor`` γ > 0 (4 k_B T γ |g_m| between its outputs).

    Each resistor g between a, b is a current-noise source of density 4 k_B T g
    (A²/Hz) and each diode one of 2q (I_D + 2 I_s) at the operating point
    (:func:`_shot_density`); a source's contribution at the output is its
    density times |Z_oa − Z_ob|², with Z = (G + j2πf C)⁻¹ the nodal impedance
    matrix (grounded sources shorted). For a resistor network this equals
    √(4 k_B T Re Z_oo) (Nyquist's theorem), which the tests check along with
    ngspice's ``.noise`` (diodes included; ngspice's VCCS are noiseless).
    """
    _check_noise_factor("output_noise_density", vccs_noise_factor)
    vals = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), values if values is not None else c.values)
    if c.diodes and op is None:
        op = solve_op(c, values)
    G, Cm, free = small_signal_matrices(c, vals, op)
    Y = G + 2j * np.pi * frequency_hz * Cm
    k = c.node_index(node)
    pos = np.flatnonzero(free == k)
    if not len(pos):
        raise AnasimError(f"output_noise_density: node {node!r} is fixed by a voltage source")
    # row of Z for the output node: solve Yᵀ z = e_out
    e = np.zeros(len(free), complex)
    e[pos[0]] = 1.0
    z_row = np.linalg.solve(Y.T, e)
    zfull = np.zeros(c.n_nodes + 1, complex)
    zfull[free] = z_row
    R = c.index["R"]
    transfer = zfull[R[:, 0]] - zfull[R[:, 1]]
    psd = np.sum(_johnson_density(vals.g, c.temperature_k) * np.abs(transfer) ** 2)
    if c.diodes:
        D = c.index["D"]
        v = np.append(np.asarray(op.voltages, np.float64), 0.0)
        s_d = _shot_density(v[D[:, 0]] - v[D[:, 1]], vals.i_s, vals.n * thermal_voltage(c.temperature_k),
                            c.gmin, xp=np)
        psd += np.sum(s_d * np.abs(zfull[D[:, 0]] - zfull[D[:, 1]]) ** 2)
    if vccs_noise_factor and c.vccs:
        Q = c.index["G"]
        s_q = _ota_density(vals.gm, c.temperature_k, vccs_noise_factor, xp=np)
        psd += np.sum(s_q * np.abs(zfull[Q[:, 0]] - zfull[Q[:, 1]]) ** 2)
    return float(np.sqrt(psd))


def _check_noise_factor(where: str, factor) -> None:
    if not (np.isscalar(factor) and float(factor) >= 0 and np.isfinite(float(factor))):
        raise AnasimError(f"{where}: vccs_noise_factor must be a finite number >= 0 (OTA excess noise "
                          f"factor γ), got {factor!r}")


def _small_signal_batch(c: Circuit, vals: CircuitValues, volts: np.ndarray, node_capacitance_f,
                        vccs_noise_factor: float = 0.0):
    """G (small-signal, at ``volts``), the two-sided current-noise intensity N (A²/Hz:
    2 k_B T g per resistor, half of :func:`_shot_density` per diode, 2 k_B T γ |g_m|
    per VCCS) and C over the free nodes for a batch: values with one leading axis
    (nb, ...), volts (nb, n_nodes). Each (nb, n_free, n_free), assembled with one
    bincount per matrix."""
    _check_noise_factor("thermal noise", vccs_noise_factor)
    lay = c.layout
    if len(lay.floating):
        raise AnasimError("small-signal analysis supports voltage sources with one terminal at ground only")
    nb = volts.shape[0]
    nf = len(lay.free)
    pos = np.full(c.n_nodes + 1, nf, np.int64)   # fixed nodes and ground → nf, outside the block
    pos[lay.free] = np.arange(nf)

    def shared_row(x):
        # one circuit's values when every circuit of the batch has them (a chip's
        # conductances, broadcast: stride 0), else None
        x = np.asarray(x, np.float64)
        if x.ndim < 2:
            return x
        if x.shape[0] == 1 or x.strides[0] == 0:
            return x[0]
        return None

    def matrix(stamps):
        # Entries at a fixed node fall outside the free block and are dropped first;
        # a stamp whose values are the same for every circuit of the batch (a chip's
        # conductances, all its inputs) is summed once, not once per circuit.
        shared, per = [], []
        for i, j, x, sign in stamps:
            keep = (pos[i] < nf) & (pos[j] < nf)
            k = pos[i[keep]] * nf + pos[j[keep]]
            row = shared_row(x)
            if row is not None:
                shared.append((k, sign * np.broadcast_to(row, (len(i),))[keep]))
                continue
            xb = np.broadcast_to(x, (nb, len(i)))[:, keep]
            if np.all(xb == xb[:1]):
                shared.append((k, sign * xb[0]))
            else:
                per.append((k, sign * xb))
        M = np.zeros((nb, nf, nf))
        if shared:
            M += np.bincount(np.concatenate([k for k, _ in shared]),
                             np.concatenate([x for _, x in shared]), nf * nf).reshape(nf, nf)
        if per:
            base = (np.arange(nb) * nf * nf)[:, None]
            idx = np.concatenate([base + k for k, _ in per], 1)
            M += np.bincount(idx.ravel(), np.concatenate([x for _, x in per], 1).ravel(),
                             nb * nf * nf).reshape(nb, nf, nf)
        return M

    def two(pairs, x):
        a, b = pairs[:, 0], pairs[:, 1]
        return [(a, a, x, 1.0), (b, b, x, 1.0), (a, b, x, -1.0), (b, a, x, -1.0)]

    def density(x, f):
        # a noise density of shared values computed on one row
        row = shared_row(x)
        return f(x) if row is None else f(row)

    resistors = two(c.index["R"], vals.g)
    Q = c.index["G"]
    vccs = [(Q[:, 0], Q[:, 2], vals.gm, 1.0), (Q[:, 0], Q[:, 3], vals.gm, -1.0),
            (Q[:, 1], Q[:, 2], vals.gm, -1.0), (Q[:, 1], Q[:, 3], vals.gm, 1.0)]
    diodes, shot = [], []
    if c.diodes:
        D = c.index["D"]
        v = np.concatenate([volts, np.zeros((nb, 1))], 1)
        vd, vte = v[:, D[:, 0]] - v[:, D[:, 1]], vals.n * thermal_voltage(c.temperature_k)
        _, gd = _diode_iv(vd, vals.i_s, vte, c.gmin, xp=np)
        diodes = two(D, gd)
        shot = two(D, 0.5 * _shot_density(vd, vals.i_s, vte, c.gmin, xp=np))
    N = matrix(two(c.index["R"], density(vals.g, lambda g: 0.5 * _johnson_density(g, c.temperature_k))))
    if shot:
        N = N + matrix(shot)
    if vccs_noise_factor and len(Q):
        N = N + matrix(two(Q[:, :2], density(vals.gm, lambda gm: 0.5 * _ota_density(
            gm, c.temperature_k, vccs_noise_factor, xp=np))))
    G = matrix(resistors + vccs + diodes)
    Cm = matrix(two(c.index["C"], vals.c))
    if node_capacitance_f is not None:
        Cm = Cm + np.broadcast_to(np.asarray(node_capacitance_f, np.float64), (nf,)) * np.eye(nf)
    return G, N, Cm


def _lyapunov_batch(A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Σ with A Σ + Σ Aᵀ = Q for a batch (nb, n, n), by A's eigenvectors
    (Σ̃_ij = Q̃_ij / (λ_i + λ̄_j)); circuits where that is inaccurate (nearly
    defective A) are redone with scipy's Bartels–Stewart solver."""
    import scipy.linalg

    lam, V = np.linalg.eig(A)
    W = np.linalg.inv(V)
    Qt = W @ Q @ np.conj(np.swapaxes(W, -1, -2))
    St = Qt / (lam[:, :, None] + np.conj(lam)[:, None, :])
    S = np.real(V @ St @ np.conj(np.swapaxes(V, -1, -2)))
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    err = np.abs(A @ S + S @ np.swapaxes(A, -1, -2) - Q).max((-1, -2))
    for k in np.flatnonzero(~(err <= 1e-9 * np.abs(Q).max((-1, -2)))):
        sk = scipy.linalg.solve_continuous_lyapunov(A[k], Q[k])
        S[k] = 0.5 * (sk + sk.T)
    return S


@threadpool_limits.wrap(limits=_SMALL_LAPACK_THREADS, user_api="blas")
def _thermal_covariances(c: Circuit, flat: CircuitValues, volts: np.ndarray, node_capacitance_f,
                         vccs_noise_factor: float = 0.0) -> np.ndarray:
    G, N, Cm = _small_signal_batch(c, flat, volts, node_capacitance_f, vccs_noise_factor)
    d = np.abs(np.diagonal(Cm, axis1=-2, axis2=-1))
    if d.size and d.min() == 0:
        k = int(c.layout.free[np.argmin(d.min(0))])
        raise AnasimError(f"thermal noise: node {c.node_names[k]!r} has no capacitance "
                          "(give node_capacitance_f or a capacitor)")
    if _reciprocal(G, Cm):
        return _lyapunov_reciprocal(G, N, np.diagonal(Cm, axis1=-2, axis2=-1))
    Ci = np.linalg.inv(Cm)
    return _lyapunov_batch(Ci @ G, Ci @ N @ Ci)


def _reciprocal(G: np.ndarray, Cm: np.ndarray) -> bool:
    """Whether every circuit of the batch has a symmetric G (resistors, diodes, a VCCS on
    its own node: no gyrator) and node capacitances only (diagonal C)."""
    off = Cm - np.einsum("bii->bi", Cm)[..., None] * np.eye(Cm.shape[-1])
    return bool(not np.any(off) and np.array_equal(G, np.swapaxes(G, -1, -2)))


def _lyapunov_reciprocal(G: np.ndarray, N: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Σ of C⁻¹G Σ + Σ G C⁻¹ = C⁻¹ N C⁻¹ for symmetric G and diagonal C = diag(c), a
    batch. With Σ = C^{-1/2} S C^{-1/2} it reads à S + S à = Ñ for the symmetric
    à = C^{-1/2} G C^{-1/2}, Ñ = C^{-1/2} N C^{-1/2}: in Ã's eigenbasis (eigh, real
    and orthogonal) S̃_ij = Ñ̃_ij / (λ_i + λ_j). Circuits whose à is not positive
    definite (no stationary state) go to the general solver, which reports them."""
    r = 1.0 / np.sqrt(c)
    At = r[:, :, None] * G * r[:, None, :]
    Nt = r[:, :, None] * N * r[:, None, :]
    lam, U = np.linalg.eigh(At)
    St = np.swapaxes(U, -1, -2) @ Nt @ U / (lam[:, :, None] + lam[:, None, :])
    S = r[:, :, None] * (U @ St @ np.swapaxes(U, -1, -2)) * r[:, None, :]
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    bad = np.flatnonzero(~(lam.min(-1) > 0))
    if len(bad):
        Ci = 1.0 / c[bad]
        S[bad] = _lyapunov_batch(Ci[:, :, None] * G[bad], Ci[:, :, None] * N[bad] * Ci[:, None, :])
    return S


@in_float64
def thermal_covariance(c: Circuit, values: CircuitValues | None = None, op: OperatingPoint | None = None,
                       node_capacitance_f=None, vccs_noise_factor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Stationary covariance (V²) of the free node voltages under the Johnson–Nyquist
    noise of every resistor and the shot noise of every diode, the circuit
    linearized at its operating point.

    Small-signal dynamics C dv = −G v dt + dI with G the conductance matrix at
    ``op`` (resistors, VCCS, diode slopes) and white current noise of two-sided
    intensity N: 2 k_B T g per resistor, q (I_D + 2 I_s) per diode
    (:func:`_shot_density`), 2 k_B T γ |g_m| per VCCS (γ = ``vccs_noise_factor``;
    0: they damp but add no noise). The covariance
    Σ solves the Lyapunov equation A Σ + Σ Aᵀ = C⁻¹ N C⁻¹, A = C⁻¹ G. For a
    resistor network N = 2 k_B T G and Σ = k_B T C⁻¹ (equipartition); a
    skew-symmetric VCCS part K (ideal gyrators) keeps that when C ∝ 1:
    (G + K) k_B T C⁻¹ + k_B T C⁻¹ (G − K) = 2 k_B T G C⁻¹. A diode at zero
    bias (n = 1) is its conductance's Johnson noise and keeps it too; a
    forward-biased one carries 2q I_D = 2 n k_B T g_d, half of that: a diode
    to ground alone gives n k_B T / (2C). Noisy OTAs (γ > 0) break
    equipartition: an ideal gyrator g_m between two nodes of leak g and
    capacitance C gives each k_B T (1 + γ g_m / g) / C.

    Args:
        node_capacitance_f: extra capacitance (F) from every free node to
            ground, scalar or (n_free,), added to the circuit's capacitors.
        vccs_noise_factor: excess noise factor γ of every VCCS (an OTA): output
            current noise of one-sided density 4 k_B T γ |g_m| between its
            output nodes (0: noiseless, as SPICE's G elements).

    Returns (Σ of shape (n_free, n_free), the free node indices). One
    unbatched circuit without floating sources (default op: solved here).
    """
    vals = _broadcast_values(c, values if values is not None else c.values)
    if vals.batch_shape:
        raise AnasimError("thermal_covariance: values must be unbatched (one circuit)")
    if op is None:
        op = solve_op(c, vals)
    one = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], vals)
    sigma = _thermal_covariances(c, one, np.asarray(op.voltages, np.float64)[None], node_capacitance_f,
                                 vccs_noise_factor)
    return sigma[0], c.layout.free


@in_float64
def thermal_fluctuation(c: Circuit, values: CircuitValues, op: OperatingPoint, key: Array,
                        node_capacitance_f=None, vccs_noise_factor: float = 0.0) -> np.ndarray:
    """One draw of the stationary thermal fluctuation of every node voltage (V), shape
    (*batch, n_nodes) like ``op.voltages`` (zero on nodes held by sources): a
    zero-mean Gaussian with the covariance of :func:`thermal_covariance` at each
    circuit's operating point, drawn from ``key``. What a circuit that has sat at
    its DC point for many RC times shows at a sampling instant."""
    vals = _broadcast_values(c, values)
    batch = vals.batch_shape
    nb = int(np.prod(batch, dtype=np.int64))
    flat = jax.tree_util.tree_map(lambda a: a.reshape((nb,) + a.shape[len(batch):]), vals)
    volts = np.asarray(op.voltages, np.float64).reshape(nb, c.n_nodes)
    sigma = _thermal_covariances(c, flat, volts, node_capacitance_f, vccs_noise_factor)
    with threadpool_limits(limits=_SMALL_LAPACK_THREADS, user_api="blas"):
        w, U = np.linalg.eigh(sigma)
    xi = np.asarray(jax.random.normal(key, (nb, len(c.layout.free))), np.float64)
    # The symmetric square root U √w Uᵀ, not U √w: near equipartition Σ's eigenvalues
    # are nearly degenerate and eigh's basis within them moves with the last bits
    # of Σ; the symmetric root does not, so a key gives the same draw whatever
    # order the matrices were summed in.
    out = np.zeros((nb, c.n_nodes))
    rot = np.einsum("bji,bj->bi", U, xi)
    out[:, c.layout.free] = np.einsum("bij,bj->bi", U, np.sqrt(np.maximum(w, 0.0)) * rot)
    return out.reshape(batch + (c.n_nodes,))


# --- transient with thermal noise -------------------------------------------------------

@dataclass(frozen=True)
class Transient:
    """Sampled trajectory: ``times`` (n_samples,) s; ``voltages``
    (*batch, n_samples, n_nodes) V in ``node_names`` order."""

    node_names: tuple[str, ...]
    times: np.ndarray
    voltages: Array


def _incidence(c: Circuit, lay: _Layout, pairs) -> np.ndarray:
    """(n_free, n_elements) matrix: +1 where an element's first node is a free node, −1 second."""
    nf = len(lay.free)
    P = np.zeros((nf, len(pairs)))
    for j, (a, b) in enumerate(pairs):
        if lay.col[a] < nf:
            P[lay.col[a], j] += 1.0
        if lay.col[b] < nf:
            P[lay.col[b], j] -= 1.0
    return P


def _transient(c: Circuit, vals: CircuitValues, v0, key, dt, *, n_steps, every, method, noise,
               vccs_noise_factor=0.0):
    """One trajectory (vmapped by the caller): free node voltages every ``every`` steps."""
    lay = c.layout
    nf = len(lay.free)
    vt = thermal_voltage(c.temperature_k)
    n1 = c.n_nodes + 1
    Cm = jnp.zeros((n1, n1))
    if c.capacitors:
        a, b = c.index["C"][:, 0], c.index["C"][:, 1]
        Cm = Cm.at[a, a].add(vals.c).at[b, b].add(vals.c).at[a, b].add(-vals.c).at[b, a].add(-vals.c)
    Cf = Cm[jnp.ix_(lay.free, lay.free)]
    A = _linear_system(c, lay, vals)[:nf, :nf]  # conductances and VCCS among free nodes
    pos = _gather_index(c, lay)
    vfix = lay.fixed_sign * vals.v[lay.fixed_src] if len(lay.fixed) else jnp.zeros(0)

    def full(v):
        return jnp.concatenate([v, vfix, jnp.zeros(1)])[pos]

    b0 = _residual(c, lay, vals, jnp.zeros(lay.size), full(jnp.zeros(nf)), jnp.zeros(len(c.diodes)))
    if c.diodes:
        da, dk = c.index["D"][:, 0], c.index["D"][:, 1]
        Pd = jnp.asarray(_incidence(c, lay, c.diodes))
        vte = vals.n * vt
    Pr = jnp.asarray(_incidence(c, lay, c.resistors))
    # a white current of one-sided density S across an element (two-sided S/2) moves the
    # charge √(S/2 · dt) N(0, 1) over one step; Johnson–Nyquist: √(2 k_B T g dt) N(0, 1)
    noise_amp = jnp.sqrt(0.5 * _johnson_density(vals.g, c.temperature_k) * dt)
    M = jnp.linalg.inv(Cf + dt * A) if method == "implicit" else jnp.linalg.inv(Cf)


    n_r, n_d = len(c.resistors), len(c.diodes)
    n_q = len(c.vccs) if vccs_noise_factor else 0
    if n_q:
        Pq = jnp.asarray(_incidence(c, lay, [q[:2] for q in c.vccs]))
        ota_amp = jnp.sqrt(0.5 * _ota_density(vals.gm, c.temperature_k, vccs_noise_factor) * dt)

    def one(v, xi):
        F = A @ v + b0      # currents leaving each free node
        q = Pr @ (noise_amp * xi[:n_r]) if noise else 0.0
        if noise and n_q:
            q = q + Pq @ (ota_amp * xi[n_r + n_d:])
        if c.diodes:
            vf = full(v)
            vd = vf[da] - vf[dk]
            i_d, _ = _diode_iv(vd, vals.i_s, vte, c.gmin)
            F = F + Pd @ i_d
            if noise:
                # shot noise at the junction's present current (Itô)
                s_d = _shot_density(vd, vals.i_s, vte, c.gmin, i=i_d)
                q = q + Pd @ (jnp.sqrt(0.5 * s_d * dt) * xi[n_r:n_r + n_d])
        if method == "euler_maruyama":
            return v + M @ (q - dt * F)
        # drift-implicit in the linear part: (C + dt A) v' = C v − dt (F(v) − A v) + q
        return M @ (Cf @ v - dt * (F - A @ v) + q)

    def sample(v, k):
        xi = jax.random.normal(k, (every, n_r + n_d + n_q))
        v, _ = jax.lax.scan(lambda vv, x: (one(vv, x), None), v, xi)
        return v, v

    _, traj = jax.lax.scan(sample, v0, jax.random.split(key, n_steps // every))
    return traj


@functools.partial(jax.jit, static_argnames=("c", "n_steps", "every", "method", "noise", "vccs_noise_factor"))
def _transient_batched(c: Circuit, vals: CircuitValues, v0, keys, dt, *, n_steps, every, method, noise,
                       vccs_noise_factor=0.0):
    """Trajectories of a batch, as all node voltages (batch, samples, n_nodes)."""
    lay = c.layout
    pos = _gather_index(c, lay)

    def one(vv, v_, k):
        traj = _transient(c, vv, v_, k, dt, n_steps=n_steps, every=every, method=method, noise=noise,
                          vccs_noise_factor=vccs_noise_factor)
        vfix = lay.fixed_sign * vv.v[lay.fixed_src] if len(lay.fixed) else jnp.zeros(0)
        rest = jnp.broadcast_to(jnp.concatenate([vfix, jnp.zeros(1)]), (traj.shape[0], len(lay.fixed) + 1))
        return jnp.concatenate([traj, rest], axis=1)[:, pos[:-1]]

    return jax.vmap(one)(vals, v0, keys)


@in_float64
def simulate_transient(c: Circuit, key: Array, *, dt: float, n_steps: int, values: CircuitValues | None = None,
                       v0=None, every: int = 1, method: str = "euler_maruyama",
                       noise: bool = True, vccs_noise_factor: float = 0.0) -> Transient:
    """Transient node voltages with Johnson–Nyquist noise of every resistor and shot
    noise of every diode.

    Integrates C dv = −F(v) dt + Σ_k √(2 k_B T g_k) dW_k (a_k − b_k)
    + Σ_d √(q (I_d(v) + 2 I_s)) dW_d (a_d − b_d) for the free nodes (F:
    currents leaving each node through the elements; the shot intensity at the
    junction's present current, Itô; one Wiener increment per resistor, per
    diode and, with ``vccs_noise_factor``, per VCCS from ``key``), with
    grounded voltage sources holding their nodes. Every free node needs a capacitance
    (the capacitance matrix over free nodes must be invertible).

    Args:
        key: PRNG key (one Gaussian per resistor and diode per step).
        dt: time step (s). ``euler_maruyama`` is stable for dt < 2 min(C/g);
            ``implicit`` treats the linear part implicitly (stable for any dt).
            Both have O(dt·g/C) bias in the stationary variance.
        n_steps: number of steps (a multiple of ``every``).
        values: element values, leading axes are a batch (vmapped).
        v0: start voltages of the free nodes (*batch, n_free); default the
            noiseless DC operating point (so no burn-in from a cold start).
        every: keep one sample every ``every`` steps.
        noise: False for the deterministic RC transient.
        vccs_noise_factor: excess noise factor γ of every VCCS (an OTA): output
            current noise of one-sided density 4 k_B T γ |g_m| between its
            output nodes (0: noiseless, as SPICE's G elements).
    """
    if method not in ("euler_maruyama", "implicit"):
        raise AnasimError(f"simulate_transient: method must be 'euler_maruyama' or 'implicit', got {method!r}")
    if n_steps % every or n_steps < every:
        raise AnasimError(f"simulate_transient: n_steps ({n_steps}) must be a positive multiple of every ({every})")
    if not dt > 0:
        raise AnasimError(f"simulate_transient: dt must be > 0 s, got {dt}")
    lay = c.layout
    if len(lay.floating):
        raise AnasimError("simulate_transient supports voltage sources with one terminal at ground only")
    vals = _broadcast_values(c, values if values is not None else c.values)
    nf = len(lay.free)
    Cm = np.zeros((c.n_nodes + 1,) * 2)
    for (a, b) in c.capacitors:
        Cm[a, a] += 1
        Cm[b, b] += 1
    missing = [c.node_names[k] for k in lay.free if Cm[k, k] == 0]
    if missing:
        raise AnasimError(f"simulate_transient: node {missing[0]!r} has no capacitor (every free node needs one)")
    batch = vals.batch_shape
    nb = int(np.prod(batch, dtype=np.int64))
    flat = jax.tree_util.tree_map(lambda a: a.reshape((nb,) + a.shape[len(batch):]), vals)
    if v0 is None:  # start at the noiseless DC operating point
        op = solve_op(c, vals)
        v0 = np.asarray(op.voltages)[..., lay.free]
    v0 = np.broadcast_to(np.asarray(v0, np.float64), batch + (nf,)).reshape(nb, nf)
    keys = jax.random.split(key, nb)
    _check_noise_factor("simulate_transient", vccs_noise_factor)
    full = _transient_batched(c, flat, v0, keys, dt, n_steps=n_steps, every=every, method=method, noise=noise,
                              vccs_noise_factor=float(vccs_noise_factor))
    ns = full.shape[1]
    times = dt * every * np.arange(1, ns + 1)
    return Transient(node_names=c.node_names, times=times, voltages=full.reshape(batch + (ns, c.n_nodes)))


__all__: Sequence[str] = (
    "Transient", "output_noise_density", "simulate_transient", "small_signal_matrices", "thermal_covariance",
    "thermal_fluctuation",
)
