"""Holomorphic equilibrium propagation (hEP) for circuits without weight symmetry.

Laborieux & Zenke ("Improving equilibrium propagation without weight symmetry
through Jacobian homeostasis", ICLR 2024). The nudged fixed point u*(β) of a
circuit with a holomorphic activation is an analytic function of the nudge
strength β, so its derivative at β = 0, the *neuronal error vector*
δ = du*/dβ, is a Cauchy integral over a circle of radius |β|. Its discrete
N-point version uses the complex nudges β_k = |β| e^{2πik/N}:

    δ_N = (1 / (N|β|)) Σ_k e^{−2πik/N} (u*(β_k) − u*(0)),

exact up to O(|β|^N) (only the Taylor terms β^{1+jN} survive the sum). N = 1
is one-sided EP (u*(β) − u*(0))/β; N = 2 is centered EP (u*(β) − u*(−β))/2β;
for N ≥ 2 the free state drops out of the sum (it is subtracted anyway: it
cancels large, equal parts of the complex states). The continuous-time
version (:func:`error_vector_continuous`) rotates one nudge, β(t) = |β| e^{iωt},
and demodulates the oscillating state, δ ≈ ⟨u(t) e^{−iωt}⟩/|β| over whole
periods, with no separate free phase.

Every complex state is a relaxation of the same engine,
:func:`anasim.circuits.layered.relax`, driven by a complex nudge (holomorphic
``sigmoid``/``identity`` activations, ideal devices). The complex states are
read exactly: on hardware the amplitude and phase of the first harmonic would
be measured by lock-in detection.

Local rule. With states s and the error vector δ = ds*/dβ of a circuit whose
nudge is −β∇ℓ on the output pre-activation, the update of every directed
coupling is post-synaptic error times pre-synaptic state:

    ∇θ_k = −⟨δ_{k+1} s_kᵀ⟩,  ∇ψ_k = −⟨δ_k s_{k+1}ᵀ⟩,  ∇θ_0 = −⟨δ_1 xᵀ⟩,  ∇b_k = −⟨δ_k⟩

(batch means; for a symmetric circuit, λ = 1, θ_k carries both directions and
gets the sum −⟨δ_{k+1} s_kᵀ + s_{k+1} δ_kᵀ⟩, which is EP's rule). With
W symmetric this is the gradient exactly (for β → 0). With independent ψ_k it
is biased: δ solves the linearized fixed point with J where the gradient
needs Jᵀ (:mod:`anasim.analysis.homeostasis`). :func:`exact_error_vectors`
gives both vectors by implicit differentiation; the gradient's one is
δ_grad = −∂ℓ/∂b per example.

Training: the controller (:func:`anasim.learning.train`) trains with hEP like
with every other rule, ``training.rule = "hep"`` with ``hep_points`` nudges of
radius ``beta``; optional Jacobian homeostasis (``training.homeostasis`` =
λ_homeo) adds λ_homeo ∇L_homeo, L_homeo the Hutchinson estimate of
½‖J − Jᵀ‖²_F at the free fixed point, differentiated by autodiff (a
regularizer the controller computes; see
:func:`anasim.analysis.homeostasis.circuit_homeostatic_loss`).
:func:`diagnostics` measures what the runs are about: the functional symmetry
of the fixed point's Jacobian and the cosines of the error vectors and the
update with the exact ones (float64 references, computed with float64 switched
on for their own computation only).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from anasim.analysis import homeostasis
from anasim.circuits import layered
from anasim.circuits.layered import Params
from anasim.circuits.precision import float64_scope
from anasim.circuits.spec import CircuitSpec
from anasim.devices.profile import ideal_profile
from anasim.errors import AnasimError

Array = jax.Array


def nudge_points(beta: float, n_points: int) -> np.ndarray:
    """The N complex nudges β_k = |β| e^{2πik/N}, k = 0 … N−1 (complex128)."""
    if int(n_points) < 1:
        raise AnasimError(f"n_points: expected N ≥ 1 nudges, got {n_points!r}")
    if not (abs(beta) > 0 and math.isfinite(abs(beta))):
        raise AnasimError(f"beta: expected a nonzero finite nudge radius, got {beta!r}")
    k = np.arange(int(n_points))
    return abs(beta) * np.exp(2j * np.pi * k / int(n_points))


def _check_spec(spec: CircuitSpec) -> None:
    if spec.lam_mix != 1.0:
        raise AnasimError(
            f"holomorphic EP: network.lam must be 1 or \"asymmetric\" (compartments that do not "
            f"interact), got {spec.lam!r}")


def _real_dtype(spec: CircuitSpec):
    return jnp.dtype("float64" if spec.dtype == "float64" else "float32")


@dataclass(frozen=True)
class HEPEstimate:
    """One hEP measurement.

    Attributes:
        delta: error vector per layer 1 … L, real, (batch, n_k) (state units per loss unit).
        free: the free states per layer (real).
        iterations: relaxation iterations spent, all phases together.
    """

    delta: tuple
    free: tuple
    iterations: Array


def error_vector(spec: CircuitSpec, hw, x, y, key, *, beta: float, n_points: int,
                 free_eq=None, engine=None) -> HEPEstimate:
    """δ_N from one free and N complex-nudged relaxations of the chip ``hw`` (jittable).

    The N nudges are relaxed two at a time, one per compartment (they do not
    interact at λ = 1 or with independent couplings), each started from the
    free equilibrium. ``free_eq``: a free :class:`Equilibrium` to reuse.
    ``engine``: the relaxation engine (one with the ``"complex_nudge"``
    ability; default :func:`anasim.circuits.layered.relax`).
    """
    _check_spec(spec)
    phases = nudge_points(1.0, n_points)          # e^{2πik/N}; |β| may be traced
    if isinstance(beta, (int, float)):
        nudge_points(beta, n_points)              # validate a concrete radius
    radius = jnp.abs(jnp.asarray(beta))
    relax = layered.relax if engine is None else engine.relax
    k_free, k_n = jax.random.split(key)
    if free_eq is None:
        free_eq = relax(spec, hw, x, k_free)
    s0 = free_eq.s_plus
    cdt = layered.engine_dtypes(spec, True)[0]
    acc = [jnp.zeros(s.shape, cdt) for s in s0]
    iters = free_eq.iterations
    for i in range(0, len(phases), 2):
        pair = phases[i:i + 2]
        bp = (radius * pair[0]).astype(cdt)
        # the − compartment gets +β₋∇ℓ: β₋ = −β_k gives it the nudge −β_k∇ℓ
        bm = (-radius * pair[1]).astype(cdt) if len(pair) == 2 else 0j
        eq = relax(spec, hw, x, jax.random.fold_in(k_n, i), nudge=(bp, bm), target=y, state0=free_eq)
        iters = iters + eq.iterations
        for j in range(len(acc)):
            acc[j] = acc[j] + np.conj(pair[0]) * (eq.s_plus[j] - s0[j])
            if len(pair) == 2:
                acc[j] = acc[j] + np.conj(pair[1]) * (eq.s_minus[j] - s0[j])
    rdt = _real_dtype(spec)
    delta = tuple((a / (len(phases) * radius)).real.astype(rdt) for a in acc)
    return HEPEstimate(delta=delta, free=tuple(s.astype(rdt) for s in s0), iterations=iters)


def error_vector_continuous(spec: CircuitSpec, hw, x, y, key, *, beta: float, period: int = 64,
                            periods: int = 3, settle_periods: int = 1, free_eq=None) -> HEPEstimate:
    """Continuous-time hEP: the nudge phase rotates, β(t) = |β| e^{2πit/T}, T = ``period`` iterations.

    The engine advances one damped iteration per time step t (the device
    noise, if any, is drawn per step). After ``settle_periods`` periods the
    states are demodulated over ``periods`` whole periods:
    δ = (1/(|β| n)) Σ_t u(t) e^{−iωt}. The − compartment runs the same rotation
    a quarter period ahead and its demodulated estimate is averaged in. The
    estimate is biased by the lag of the relaxation behind the rotating nudge
    (τ the relaxation time): T must be long against τ (on a 5-6-7-4 circuit
    with η = 0.5 the relative error fell from 0.11 at T = 25 to 0.002 at T = 200).
    """
    _check_spec(spec)
    if int(period) < 3 or int(periods) < 1 or int(settle_periods) < 0:
        raise AnasimError("error_vector_continuous: need period ≥ 3 iterations, periods ≥ 1, settle_periods ≥ 0")
    k_free, k_n = jax.random.split(key)
    if free_eq is None:
        free_eq = layered.relax(spec, hw, x, k_free)
    # relax returns the state its last residual was measured on: two iterations advance one
    step_spec = dataclasses.replace(spec, max_iters=2, tol=0.0, stall_window=0)
    omega = 2.0 * np.pi / int(period)
    cdt = layered.engine_dtypes(spec, True)[0]
    acc = [jnp.zeros(s.shape, cdt) for s in free_eq.s_plus]
    eq = free_eq
    n_avg = int(period) * int(periods)
    total = int(period) * int(settle_periods) + n_avg
    for t in range(total):
        rot = abs(beta) * np.exp(1j * omega * t)
        eq = layered.relax(step_spec, hw, x, jax.random.fold_in(k_n, t), nudge=(complex(rot), complex(-1j * rot)),
                           target=y, state0=eq)
        if t >= total - n_avg:
            # states after this step belong to time t + 1, nudged with β(t)
            demod = np.exp(-1j * omega * t)
            for j in range(len(acc)):
                acc[j] = acc[j] + 0.5 * demod * (eq.s_plus[j] - 1j * eq.s_minus[j])
    rdt = _real_dtype(spec)
    delta = tuple((a / (n_avg * abs(beta))).real.astype(rdt) for a in acc)
    return HEPEstimate(delta=delta, free=tuple(s.real.astype(rdt) for s in free_eq.s_plus),
                       iterations=free_eq.iterations + total)


# --- updates -----------------------------------------------------------------------------

def _outer(a, b):
    return jnp.einsum("bi,bj->ij", a, b) / a.shape[0]


def hep_update(spec: CircuitSpec, x, s: tuple, delta: tuple) -> dict:
    """Gradient estimate (descend along it) from free states ``s`` and error vectors ``delta``.

    Returns {"theta0", "thetas", "biases", "backward"} with :class:`Params`
    shapes ("backward" empty unless the circuit is asymmetric); rule in the
    module docstring.
    """
    _check_spec(spec)
    L = spec.n_layers
    theta0 = -_outer(delta[0], x)
    if spec.asymmetric:
        thetas = tuple(-_outer(delta[i + 1], s[i]) for i in range(L - 1))
        backward = tuple(-_outer(delta[i], s[i + 1]) for i in range(L - 1))
    else:
        thetas = tuple(-(_outer(delta[i + 1], s[i]) + _outer(s[i + 1], delta[i])) for i in range(L - 1))
        backward = ()
    biases = tuple(-jnp.mean(d, axis=0) for d in delta)
    return {"theta0": theta0, "thetas": thetas, "biases": biases, "backward": backward}


def flatten_update(u) -> Array:
    """All entries of an update dict or :class:`Params` as one vector."""
    if isinstance(u, Params):
        u = {"theta0": u.theta0, "thetas": u.thetas, "biases": u.biases, "backward": u.backward}
    parts = [u["theta0"].ravel()] + [t.ravel() for t in u["thetas"]] + [b.ravel() for b in u["biases"]]
    parts += [t.ravel() for t in u.get("backward", ())]
    return jnp.concatenate(parts)


# --- the reference: implicit differentiation of the ideal circuit ---------------------

def _nudged_map(spec, params, x1, s_flat, beta, y1):
    """Undamped nudged update of one example, flattened: f(a(s) − β∇ℓ(s_L)·[output])."""
    sizes = spec.sizes[1:]
    s = homeostasis._unflat(s_flat[None], sizes)
    pre = list(layered.preactivation_map(spec, params, x1, s))
    pre[-1] = pre[-1] - beta * layered.cost_grad(spec, s[-1], y1)
    return jnp.concatenate([layered.activation(n)(a) for n, a in zip(spec.activations, pre)], axis=-1)[0]


@functools.partial(jax.jit, static_argnums=(0, 4))
def _exact_jit(spec, params, x, y, newton):
    sizes = spec.sizes[1:]
    N = sum(sizes)

    def one(x1, y1):
        x1, y1 = x1[None], y1[None]
        F = lambda s, b: _nudged_map(spec, params, x1, s, b, y1)  # noqa: E731
        s = jax.lax.fori_loop(0, 400, lambda _, s: 0.5 * s + 0.5 * F(s, 0.0), jnp.zeros(N, x.dtype))

        def newton_step(_, s):
            J = jax.jacfwd(lambda v: F(v, 0.0))(s)
            return s - jnp.linalg.solve(jnp.eye(N, dtype=s.dtype) - J, s - F(s, 0.0))

        s = jax.lax.fori_loop(0, newton, newton_step, s)
        JF = jax.jacfwd(lambda v: F(v, 0.0))(s)
        A = jnp.eye(N, dtype=s.dtype) - JF
        _, dF_dbeta = jax.jvp(lambda b: F(s, b), (jnp.asarray(0.0, s.dtype),), (jnp.asarray(1.0, s.dtype),))
        d_beta = jnp.linalg.solve(A, dF_dbeta)
        # ∂ℓ/∂b = (∂F/∂b)ᵀ A⁻ᵀ ∇ℓ with ∂F/∂b = D; δ_grad = −∂ℓ/∂b
        g = jnp.zeros(N, s.dtype).at[N - sizes[-1]:].set(layered.cost_grad(spec, s[None, N - sizes[-1]:], y1)[0])
        D = jnp.concatenate(homeostasis.neuron_slopes(spec, params, x1, homeostasis._unflat(s[None], sizes)),
                            axis=-1)[0]
        d_grad = -D * jnp.linalg.solve(A.T, g)
        return s, d_beta, d_grad, jnp.max(jnp.abs(s - F(s, 0.0)))

    return jax.vmap(one)(x, y)


def exact_error_vectors(spec: CircuitSpec, params: Params, x, y, *, newton: int = 8):
    """Reference error vectors of the ideal circuit, float64, by implicit differentiation.

    Returns (delta_beta, delta_grad, s_free, residual): per layer (batch, n_k)
    tuples of ds*/dβ at β = 0 (forward-mode: ∂F/∂β by ``jax.jvp``, then
    (I − ∂F/∂s)⁻¹) — what hEP estimates — and of δ_grad = −∂ℓ/∂b, the error
    vector whose rule (module docstring) gives the exact loss gradient; the free
    fixed point and its residual max |F(s) − s|. Dense Jacobians: small circuits.
    """
    _check_spec(spec)
    f64 = jnp.float64
    with float64_scope():
        p = jax.tree_util.tree_map(lambda t: jnp.asarray(t, f64), params)
        s, db, dg, res = _exact_jit(dataclasses.replace(spec, dtype="float64", asymmetry_angle=None), p,
                                    jnp.asarray(x, f64), jnp.asarray(y, f64), int(newton))
        sizes = spec.sizes[1:]
        return (homeostasis._unflat(db, sizes), homeostasis._unflat(dg, sizes), homeostasis._unflat(s, sizes),
                float(jnp.max(res)))


def exact_gradient(spec: CircuitSpec, params: Params, x, y) -> dict:
    """The batch-mean loss gradient of the ideal circuit (rule of :func:`hep_update` on δ_grad)."""
    _, dg, s, _ = exact_error_vectors(spec, params, x, y)
    with float64_scope():
        return hep_update(spec, jnp.asarray(x, jnp.float64), s, dg)


def layer_cosines(a: tuple, b: tuple) -> np.ndarray:
    """Cosine between two error vectors, per layer (flattened over the batch)."""
    out = []
    for u, v in zip(a, b):
        u = np.asarray(u, np.float64).ravel()
        v = np.asarray(v, np.float64).ravel()
        out.append(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-300)))
    return np.asarray(out)


# --- diagnostics ------------------------------------------------------------------------

def diagnostics(spec: CircuitSpec, params: Params, x, y, *, beta: float, n_points: int) -> dict:
    """Functional symmetry of the fixed-point Jacobian and error-vector cosines on one batch.

    ``functional_symmetry``: batch mean of ‖S‖/(‖S‖ + ‖A‖) of K = D^{1/2} W D^{1/2};
    ``cos_hep_grad``: per-layer cosine between the hEP error vector (N points,
    radius β, ideal relaxation) and the exact gradient's δ_grad;
    ``cos_hep_beta``: the same against ds*/dβ (what hEP estimates);
    ``cos_update``: cosine between the hEP weight update and the exact gradient.
    """
    x = jnp.asarray(x, _real_dtype(spec))
    y = jnp.asarray(y, _real_dtype(spec))
    hw = layered.build(spec, ideal_profile(), params, jax.random.PRNGKey(0))
    est = error_vector(spec, hw, x, y, jax.random.PRNGKey(1), beta=beta, n_points=n_points)
    u_hep = np.asarray(flatten_update(hep_update(spec, x, est.free, est.delta)), np.float64)
    db, dg, s, _ = exact_error_vectors(spec, params, x, y)
    with float64_scope():
        x64 = np.asarray(x, np.float64)
        K = homeostasis.circuit_jacobian(spec, jax.tree_util.tree_map(lambda t: jnp.asarray(t, jnp.float64),
                                                                      params), jnp.asarray(x64), s)
        u_ref = np.asarray(flatten_update(hep_update(spec, jnp.asarray(x64), s, dg)), np.float64)
        symmetry = float(jnp.mean(homeostasis.functional_symmetry(K)))
        asymmetry = float(jnp.mean(homeostasis.asymmetry_norm(K)))
    cos_u = float(u_hep @ u_ref / (np.linalg.norm(u_hep) * np.linalg.norm(u_ref)))
    return {"functional_symmetry": symmetry, "asymmetry": asymmetry,
            "cos_hep_grad": layer_cosines(est.delta, dg), "cos_hep_beta": layer_cosines(est.delta, db),
            "cos_update": cos_u}


__all__ = [
    "HEPEstimate", "diagnostics", "error_vector", "error_vector_continuous", "exact_error_vectors",
    "exact_gradient", "flatten_update", "hep_update", "layer_cosines", "nudge_points",
]
