"""Lipschitz bounds and estimates of Hopfield circuits, on the hardware as built.

Everything here works on :class:`~anasim.circuits.layered.EffectiveCircuit`:
the realized, noiseless matrices (``effective()`` of every device), so a
bound describes the chip that was fabricated and programmed, not the
intended weights. Notation: stacked state s = (s_1, …, s_L) of N units,
recurrent matrix W (N × N), injected current u = θ_0 x (into layer 1) + b,
neurons s = f(a) with f(a) = P(g a), P the projection onto a box or orthant
(hard sigmoid, ReLU) and g the activation gain (1, or ½ for the tempered hard
sigmoid); D = diag(g).

Three numbers:

**Linearized bound** (Høier et al., "Dyadic learning in recurrent and
feedforward models", eq. 17). In the linear region the equilibrium is
s = (I − W)^{-1} u, so

* ``hidden`` = ‖(I − W)^{-1}‖₂ — the response of the recurrent layers (all of
  s_1 … s_L) to injected currents;
* ``output`` = ‖E_L (I − W)^{-1} E_1 θ_0‖₂ — the input-to-output map x ↦ s_L.

For skew-symmetric W, I − W is normal with singular values √(1 + ω²)
(±iω the eigenvalues of W), so ``hidden`` = 1/√(1 + ω_min²) ≤ 1, with
equality exactly when W is singular. A layered skew W is bipartite between
odd and even layers; with 784-500-500-500-500-10 the odd layers hold
500 + 500 + 10 = 1010 units and the even 1000, so W has a null space of
dimension ≥ 10 and ``hidden`` = 1 exactly, whatever the weights.

**General bound**, for any proximal activation. s* = P(D(W s* + u)) means
D(Ws* + u) − s* lies in the normal cone of the (separable) box at s*;
normal cones are monotone coordinate by coordinate, so weighting coordinate
i by 1/g_i and subtracting two equilibria gives
⟨(D^{-1} − W) Δs, Δs⟩ ≤ ⟨Δu, Δs⟩, hence

    ‖Δs‖ ≤ ‖Δu‖ / λ_min(D^{-1} − sym W),   sym W = (W + Wᵀ)/2,

whenever that λ_min is positive. With unit gains this is
1/(1 − λ_max(sym W)) when λ_max(sym W) < 1: L ≤ 1 for every skew W, and the
bound degrades smoothly with the symmetric part that device mismatch (SLM copy
errors, gyrator ε) introduces. ``current`` is the bound with respect to u,
``input`` = ``current`` · ‖θ_0‖₂ with respect to x.

**Empirical estimate**: equilibria of the realized circuit (an ideal,
noiseless relaxation on the effective matrices, float64) for random input
pairs, then a few steps of gradient ascent on the ratio
‖s*(x₁) − s*(x₂)‖ / ‖θ_0(x₁ − x₂)‖ (gradients through an unrolled relaxation),
re-measured at the tight tolerance. It is a lower estimate of the true
constant; the bounds are upper bounds where they hold.

Public API::

    linearized_bound(eff) -> LinearizedBound(hidden, output)
    general_bound(eff) -> GeneralBound(lam_max_sym, margin, current, input)
    relax_effective(eff, x, *, eta=None, max_iters=2000, tol=1e-10) -> (s, residual, iterations)
    empirical_estimate(eff, key, *, x=None, n_pairs=16, ascent_steps=20, ...) -> EmpiricalEstimate
    lipschitz_report(spec, hw, key, x=None) -> dict     # everything, JSON-ready
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from anasim.circuits.layered import EffectiveCircuit, activation, effective_matrices
from anasim.circuits.precision import in_float64

Array = jax.Array


@dataclass(frozen=True)
class LinearizedBound:
    """Eq. 17 of Høier et al.: ``hidden`` = ‖(I − W)^{-1}‖₂, ``output`` = ‖E_L (I − W)^{-1} E_1 θ_0‖₂."""

    hidden: float
    output: float


@dataclass(frozen=True)
class GeneralBound:
    """The proximal-activation bound (module docstring).

    Attributes:
        lam_max_sym: λ_max(sym W).
        margin: λ_min(D^{-1} − sym W) (= 1 − λ_max(sym W) for unit gains);
            the bound holds when it is > 0.
        current: 1/margin (inf when margin ≤ 0): bound on ‖Δs‖/‖Δu‖.
        input: current · ‖θ_0‖₂: bound on ‖Δs‖/‖Δx‖.
    """

    lam_max_sym: float
    margin: float
    current: float
    input: float


@dataclass(frozen=True)
class EmpiricalEstimate:
    """Largest measured ratios over random pairs and adversarial refinement.

    Attributes:
        hidden: max ‖Δs‖/‖θ_0 Δx‖ over all layers s_1 … s_L (compare with
            ``LinearizedBound.hidden`` and ``GeneralBound.current``).
        output: max ‖Δs_L‖/‖Δx‖ (compare with ``LinearizedBound.output``).
        hidden_random, output_random: the same before the adversarial search.
        max_residual: largest fixed-point residual max|s − f(Ws + u)| of the
            equilibria used.
        n_pairs: number of pairs.
    """

    hidden: float
    output: float
    hidden_random: float
    output_random: float
    max_residual: float
    n_pairs: int


#: How often :func:`relax_effective` halves its default η when a run does not settle.
ETA_HALVINGS = 4


def _unit_eta(eff: EffectiveCircuit) -> float:
    # Damped iteration a ← (1−η)a + η(W P(Da) + u): in a linear region its
    # eigenvalues are 1 − η + ημ, μ an eigenvalue of W D restricted to the
    # active units. For Re μ ≤ 0 (skew-dominated W), |1 − η + ημ|² ≤
    # (1 − η)² + η²‖WD‖² < 1 iff η < 2/(1 + ‖WD‖²); take half of that. For a
    # strong symmetric part no damping is guaranteed: the residual is reported.
    WD = eff.W * eff.gains[None, :]
    nrm = float(np.sqrt(max(_extreme_eigenvalue(WD.T @ WD, largest=True), 0.0)))
    return float(min(1.0, 1.0 / (1.0 + nrm ** 2)))


def _extreme_eigenvalue(M: np.ndarray, largest: bool) -> float:
    """One end of the spectrum of a symmetric matrix (LAPACK subset solver, exact
    to rounding; Lanczos is no faster here: the ends are clustered)."""
    n = M.shape[0]
    if not np.any(M):
        return 0.0
    idx = [n - 1, n - 1] if largest else [0, 0]
    return float(scipy.linalg.eigvalsh(M, subset_by_index=idx, check_finite=False)[0])


def _inverse_norm(A: np.ndarray) -> float:
    """‖A^{-1}‖₂ = 1/σ_min(A): a dense SVD for small A; for large A (where the SVD
    costs several times more) σ_min² = λ_min(AᵀA) from the subset eigensolver,
    accurate to ~1e-16·‖A‖²/σ_min² relative (ample unless A is nearly singular,
    where the bound is huge anyway)."""
    if A.shape[0] <= 400:
        sv = scipy.linalg.svdvals(A, check_finite=False)
        return float(np.inf if sv[-1] == 0 else 1.0 / sv[-1])
    sig2 = _extreme_eigenvalue(A.T @ A, largest=False)
    return float(np.inf if sig2 <= 0 else 1.0 / np.sqrt(sig2))


def linearized_bound(eff: EffectiveCircuit) -> LinearizedBound:
    """Høier et al. eq. 17 on the realized matrices (float64).

    ``hidden`` = ‖(I − W)^{-1}‖₂ = 1/σ_min(I − W) (dense SVD); ``output`` from
    one linear solve.
    """
    N = eff.W.shape[0]
    A = np.eye(N) - eff.W
    hidden = _inverse_norm(A)
    offs = eff.offsets
    n1 = eff.sizes[1]
    rhs = np.zeros((N, eff.theta0.shape[1]))
    rhs[:n1] = eff.theta0
    try:
        resp = np.linalg.solve(A, rhs)
        out = float(np.linalg.norm(resp[offs[-2]:offs[-1]], 2))
    except np.linalg.LinAlgError:
        out = float("inf")
    return LinearizedBound(hidden=hidden, output=out)


def general_bound(eff: EffectiveCircuit) -> GeneralBound:
    """L ≤ 1/λ_min(D^{-1} − sym W) (module docstring); inf where it does not hold."""
    sym = 0.5 * (eff.W + eff.W.T)
    lam_max = _extreme_eigenvalue(sym, largest=True)
    if np.all(eff.gains == eff.gains[0]):
        margin = 1.0 / float(eff.gains[0]) - lam_max   # uniform gain: D^{-1} is a multiple of I
    else:
        margin = _extreme_eigenvalue(np.diag(1.0 / eff.gains) - sym, largest=False)
    current = 1.0 / margin if margin > 0 else float("inf")
    theta_norm = float(np.linalg.norm(eff.theta0, 2))
    return GeneralBound(lam_max_sym=lam_max, margin=margin, current=current,
                        input=current * theta_norm)


def _stacked_activation(activations: tuple, offsets: tuple):
    fs = [activation(a) for a in activations]

    def f(a):
        return jnp.concatenate([fs[k](a[..., offsets[k]:offsets[k + 1]]) for k in range(len(fs))], axis=-1)
    return f


def _layer_activation(eff: EffectiveCircuit):
    return _stacked_activation(tuple(eff.activations), eff.offsets)


def _currents(eff: EffectiveCircuit, x: Array) -> Array:
    N = eff.W.shape[0]
    n1 = eff.sizes[1]
    u1 = x @ jnp.asarray(eff.theta0).T
    return jnp.pad(u1, ((0, 0), (0, N - n1))) + jnp.asarray(eff.bias)


@in_float64
def relax_effective(eff: EffectiveCircuit, x: Array, *, eta: float | None = None,
                    max_iters: int = 2000, tol: float = 1e-10) -> tuple[Array, Array, Array]:
    """Noiseless free equilibrium of the realized circuit, float64, synchronous damped iteration.

    Args:
        eff: realized matrices.
        x: inputs, shape (batch, n_in).
        eta: damping; default a value that makes the linearized iteration
            contract (:func:`_unit_eta`).
        max_iters, tol: stop when max|s_t − s_{t−1}| ≤ tol.

    With the default η, a run that spends ``max_iters`` without settling is
    repeated with η halved (at most :data:`ETA_HALVINGS` times) and the run with
    the smallest residual is returned. The default η is exact for skew-dominated
    W; a symmetric part with λ_max(sym W) near 1/g puts eigenvalues 1 − η(1 − μ)
    of the linearized iteration near the unit circle, where a smaller η contracts
    (|1 − ηz|² = 1 − 2η Re z + η²|z|² < 1 for 0 < η < 2 Re z / |z|²).

    Returns:
        (s, residual, iterations): stacked states (batch, N); the fixed-point
        residual max|s − f(W s + u)| per sample (batch,); iterations used (of
        the returned run).
    """
    W = jnp.asarray(eff.W, jnp.float64)
    x = jnp.asarray(x, jnp.float64)
    u = _currents(eff, x)

    def run(e):
        return _relax_dense(W, u, tuple(eff.activations), eff.offsets, jnp.asarray(e, jnp.float64),
                            int(max_iters), jnp.asarray(tol, jnp.float64))

    if eta is not None:
        return run(float(eta))
    e = _unit_eta(eff)
    best = run(e)
    for _ in range(ETA_HALVINGS):
        if int(best[2]) < max_iters:
            break
        e /= 2
        trial = run(e)
        if float(jnp.max(trial[1])) < float(jnp.max(best[1])):
            best = trial
    return best


@functools.partial(jax.jit, static_argnums=(2, 3, 5))
def _relax_dense(W, u, activations, offsets, eta, max_iters, tol):
    f = _stacked_activation(activations, offsets)

    def cond(c):
        i, a, res = c
        return (i < max_iters) & (res > tol)

    def body(c):
        i, a, _ = c
        s = f(a)
        a_new = (1 - eta) * a + eta * (s @ W.T + u)
        return i + 1, a_new, jnp.max(jnp.abs(f(a_new) - s))

    a0 = jnp.zeros_like(u)
    iters, a, _ = jax.lax.while_loop(cond, body, (0, a0, jnp.inf))
    s = f(a)
    residual = jnp.max(jnp.abs(s - f(s @ W.T + u)), axis=-1)
    return s, residual, iters


def _unrolled(W, u, f, eta, n):
    def body(_, a):
        return (1 - eta) * a + eta * (f(a) @ W.T + u)
    return f(jax.lax.fori_loop(0, n, body, jnp.zeros_like(u)))


@in_float64
def empirical_estimate(eff: EffectiveCircuit, key: Array, *, x: Array | None = None,
                       n_pairs: int = 16, ascent_steps: int = 20, step_size: float = 0.1,
                       unroll: int = 200, eta: float | None = None, max_iters: int = 5000,
                       tol: float = 1e-10, step: Callable[[str], None] | None = None) -> EmpiricalEstimate:
    """Measured Lipschitz ratios of the realized circuit (module docstring).

    Args:
        eff: realized matrices.
        key: PRNG key for the random pairs.
        x: optional inputs (batch ≥ 1, n_in) to draw pairs around (e.g. data);
            default uniform in [0, 1].
        n_pairs: number of pairs.
        ascent_steps: gradient-ascent steps on the hidden ratio (0 = random only).
        step_size: ascent step, relative to the pair distance.
        unroll: iterations of the differentiable relaxation used for gradients.
        eta, max_iters, tol: of the measuring relaxation (:func:`relax_effective`).
        step: called with a label after each long step (the random pairs' relaxation,
            each ascent step, the final relaxation), for a progress display;
            :func:`empirical_steps` counts them.
    """
    step = step or (lambda label: None)
    eta = _unit_eta(eff) if eta is None else float(eta)
    n_in = eff.theta0.shape[1]
    W = jnp.asarray(eff.W, jnp.float64)
    theta0 = jnp.asarray(eff.theta0, jnp.float64)
    f = _layer_activation(eff)
    offs = eff.offsets
    k1, k2, k3 = jax.random.split(key, 3)
    if x is None:
        x1 = jax.random.uniform(k1, (n_pairs, n_in), jnp.float64)
    else:
        x = jnp.asarray(x, jnp.float64)
        x1 = x[jax.random.randint(k1, (n_pairs,), 0, x.shape[0])]
    # partners: a random direction at a random distance (0.01 … 1 of the input scale)
    d = jax.random.normal(k2, (n_pairs, n_in), jnp.float64)
    d = d / jnp.linalg.norm(d, axis=1, keepdims=True)
    r = 10.0 ** jax.random.uniform(k3, (n_pairs, 1), jnp.float64, -2.0, 0.0) * np.sqrt(n_in) * 0.3
    x2 = x1 + r * d

    def measure(xa, xb):
        both = jnp.concatenate([xa, xb])
        s, res, _ = relax_effective(eff, both, eta=eta, max_iters=max_iters, tol=tol)
        sa, sb = s[:n_pairs], s[n_pairs:]
        du = jnp.linalg.norm((xa - xb) @ theta0.T, axis=1)
        dx = jnp.linalg.norm(xa - xb, axis=1)
        hid = jnp.linalg.norm(sa - sb, axis=1) / du
        out = jnp.linalg.norm(sa[:, offs[-2]:] - sb[:, offs[-2]:], axis=1) / dx
        return hid, out, jnp.max(res)

    hid0, out0, res0 = measure(x1, x2)
    jax.block_until_ready(hid0)
    step("random pairs")

    u_of = lambda xx: _currents(eff, xx)

    def ratio(xa, xb):
        sa = _unrolled(W, u_of(xa), f, eta, unroll)
        sb = _unrolled(W, u_of(xb), f, eta, unroll)
        num = jnp.sum((sa - sb) ** 2, axis=1)
        den = jnp.sum(((xa - xb) @ theta0.T) ** 2, axis=1)
        return jnp.sum(jnp.log(num + 1e-300) - jnp.log(den + 1e-300))

    grad = jax.jit(jax.grad(ratio, argnums=(0, 1)))
    xa, xb = x1, x2
    scale = jnp.linalg.norm(x1 - x2, axis=1, keepdims=True)
    for _ in range(ascent_steps):
        ga, gb = grad(xa, xb)
        na = jnp.linalg.norm(ga, axis=1, keepdims=True) + 1e-300
        nb = jnp.linalg.norm(gb, axis=1, keepdims=True) + 1e-300
        xa = xa + step_size * scale * ga / na
        xb = xb + step_size * scale * gb / nb
        # keep the pair apart: a ratio of two vanishing differences is all rounding
        dist = jnp.linalg.norm(xa - xb, axis=1, keepdims=True)
        xb = jnp.where(dist < 1e-3 * scale, xa + 1e-3 * scale * d, xb)
        jax.block_until_ready(xb)
        step("gradient ascent")
    if ascent_steps:
        hid1, out1, res1 = measure(xa, xb)
        jax.block_until_ready(hid1)
        step("final pairs")
    else:
        hid1, out1, res1 = hid0, out0, res0
    return EmpiricalEstimate(
        hidden=float(max(jnp.max(hid0), jnp.max(hid1))),
        output=float(max(jnp.max(out0), jnp.max(out1))),
        hidden_random=float(jnp.max(hid0)),
        output_random=float(jnp.max(out0)),
        max_residual=float(max(res0, res1)),
        n_pairs=n_pairs,
    )


@in_float64
def empirical_steps(n_pairs: int, ascent_steps: int) -> int:
    """How many times :func:`lipschitz_report` calls its ``step`` (bounds included)."""
    return 1 + (0 if n_pairs <= 0 else 1 + ascent_steps + (1 if ascent_steps else 0))


def lipschitz_report(spec, hw, key: Array, *, x: Array | None = None, n_pairs: int = 16,
                     ascent_steps: int = 20, step: Callable[[str], None] | None = None) -> dict:
    """All bounds and the empirical estimate for a built chip, as a JSON-ready dict
    (``n_pairs = 0``: bounds only, ``"empirical": None``). ``step(label)`` is called
    after each long step (:func:`empirical_steps` of them), for a progress display."""
    step = step or (lambda label: None)
    eff = effective_matrices(spec, hw)
    lin = linearized_bound(eff)
    gen = general_bound(eff)
    step("bounds")
    emp = (empirical_estimate(eff, key, x=x, n_pairs=n_pairs, ascent_steps=ascent_steps, step=step)
           if n_pairs > 0 else None)
    return {
        "circuit": spec.name,
        "device": hw.profile.name,
        "lam": spec.lam,
        "sizes": list(spec.sizes),
        "linearized": asdict(lin),
        "general": asdict(gen),
        "empirical": asdict(emp) if emp is not None else None,
    }
