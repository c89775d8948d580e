"""The iterative relaxation engine against independent references.

References are computed here with numpy from the parameters (dense W_λ,
feedforward passes, box-constrained energy minimization with scipy), never
with the engine's own helper functions.
"""

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from anasim.circuits import (
    CircuitSpec,
    Params,
    build,
    check,
    cost,
    cost_grad,
    fixed_point_map,
    init_params,
    read_states,
    relax,
    reprogram,
)
from anasim.devices import DeviceProfile, IdealCoupling, ideal_profile
from anasim.errors import AnasimError, ConvergenceError
from anasim.testing import layered_specs, seeds


@pytest.fixture
def x64():
    """float64 for this test's own JAX computations (the library scopes its own)."""
    with jax.enable_x64(True):
        yield

IDEAL = ideal_profile()


def dense(spec, params):
    """W_λ over stacked s_1..s_L, the injected current matrix and biases, numpy float64."""
    sizes = spec.sizes
    offs = np.concatenate([[0], np.cumsum(sizes[1:])])
    N = offs[-1]
    W = np.zeros((N, N))
    coef = 2 * spec.lam_mix - 1
    for k, th in enumerate(params.thetas):
        th = np.asarray(th, np.float64)
        W[offs[k + 1]:offs[k + 2], offs[k]:offs[k + 1]] = th
        W[offs[k]:offs[k + 1], offs[k + 1]:offs[k + 2]] = coef * th.T
    T0 = np.zeros((N, sizes[0]))
    T0[:sizes[1]] = np.asarray(params.theta0, np.float64)
    b = np.concatenate([np.asarray(v, np.float64) for v in params.biases])
    return W, T0, b, offs


def np_act(name, a):
    return {"hard_sigmoid": lambda v: np.clip(v, 0, 1), "relu": lambda v: np.maximum(v, 0),
            "tempered_hard_sigmoid": lambda v: np.clip(v / 2, 0, 1), "identity": lambda v: v}[name](a)


def np_map(spec, params, x, s):
    W, T0, b, offs = dense(spec, params)
    a = s @ W.T + x @ T0.T + b
    return np.concatenate([np_act(spec.activations[k], a[:, offs[k]:offs[k + 1]])
                           for k in range(spec.n_layers)], axis=1)


def stack(states):
    return np.concatenate([np.asarray(s, np.float64) for s in states], axis=1)


def setup(spec, seed=0, batch=3):
    params = init_params(spec, jax.random.key(seed))
    hw = build(spec, IDEAL, params, jax.random.key(seed + 1))
    x = np.random.default_rng(seed).uniform(0, 1, (batch, spec.n_in))
    return params, hw, x


@pytest.mark.slow
@settings(max_examples=4)
@given(spec=layered_specs(init_scale=st.floats(0.2, 1.0), sizes=(4, 5, 4, 3)), seed=seeds())
def test_sync_residual_is_the_fixed_point_residual(spec, seed):
    """With the sync schedule the reported residual is max|f(W s + θ0 x + b) − s| of the state returned."""
    spec = replace(spec, schedule="sync", tol=1e-9)
    params, hw, x = setup(spec, seed % 1000)
    eq = relax(spec, hw, x, jax.random.key(seed))
    assume(not bool(eq.diverged))
    s = stack(eq.s_plus)
    fp = np.max(np.abs(np_map(spec, params, x, s) - s))
    assert abs(fp - float(eq.residual)) <= 1e-12
    assume(bool(eq.converged))
    assert fp <= spec.tol


@pytest.mark.slow
@settings(max_examples=4)
@given(spec=layered_specs(init_scale=st.floats(0.2, 1.0), sizes=(4, 5, 4, 3)), seed=seeds())
def test_async_fixed_point_satisfies_map(spec, seed):
    spec = replace(spec, schedule="async", tol=1e-10)
    params, hw, x = setup(spec, seed % 1000)
    eq = relax(spec, hw, x, jax.random.key(seed))
    assume(bool(eq.converged))
    s = stack(eq.s_plus)
    # Gauss-Seidel residual bounds the Jacobi one through one more coupling read
    W, *_ = dense(spec, params)
    slack = float(eq.residual) * (1 + np.linalg.norm(W, np.inf))
    assert np.max(np.abs(np_map(spec, params, x, s) - s)) <= slack + 1e-12


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_beta_zero_gives_equal_compartments(lam):
    spec = CircuitSpec(sizes=(6, 5, 4, 3), lam=lam, eta=0.4, max_iters=3000, tol=1e-11, dtype="float64")
    params, hw, x = setup(spec, 3)
    y = np.eye(3)[[0, 1, 2]]
    zero = jnp.asarray(0.0)  # a traced zero: the engine runs both compartments
    eq2 = relax(spec, hw, x, jax.random.key(0), nudge=(zero, zero), target=y)
    eq1 = relax(spec, hw, x, jax.random.key(0))
    for sp, sm, s1 in zip(eq2.s_plus, eq2.s_minus, eq1.s_plus):
        np.testing.assert_array_equal(np.asarray(sp), np.asarray(sm))
        np.testing.assert_allclose(np.asarray(sp), np.asarray(s1), atol=1e-9)
    assert bool(eq2.converged) and bool(eq1.converged)


def feedforward(spec, params, x):
    s, out = np.asarray(x, np.float64), []
    mats = [params.theta0, *params.thetas]
    for k, (m, b) in enumerate(zip(mats, params.biases)):
        s = np_act(spec.activations[k], s @ np.asarray(m, np.float64).T + np.asarray(b, np.float64))
        out.append(s)
    return out


@pytest.mark.slow
def test_feedforward_reduction_as_beta_vanishes():
    """λ = ½: the free equilibrium is the feedforward pass, and nudged compartments approach it like β."""
    spec = CircuitSpec(sizes=(8, 7, 6, 4), lam=0.5, activations=("relu",), eta=1.0,
                       schedule="sync", max_iters=500, tol=1e-12, dtype="float64")
    params, hw, x = setup(spec, 5, batch=4)
    params = replace(params, biases=tuple(jnp.full_like(b, 0.1) for b in params.biases))
    hw = reprogram(spec, hw, params, jax.random.key(9))
    ff = feedforward(spec, params, x)
    free = relax(spec, hw, x, jax.random.key(1))
    for s, r in zip(free.s_plus, ff):
        np.testing.assert_allclose(np.asarray(s), r, atol=1e-12)
    # an undamped sync feedforward pass settles in L iterations (+1 to measure)
    assert int(free.iterations) <= spec.n_layers + 1
    y = np.eye(4)[[0, 1, 2, 3]]
    devs = []
    for beta in (1e-2, 1e-3, 1e-4):
        eq = relax(spec, hw, x, jax.random.key(1), nudge=(beta, beta), target=y)
        assert bool(eq.converged)
        d = max(np.max(np.abs(np.asarray(sp) - r)) for sp, r in zip(eq.s_plus + eq.s_minus, ff + ff))
        devs.append(d)
        assert d <= 20 * beta
    assert devs[0] > devs[1] > devs[2]
    assert devs[1] / devs[2] == pytest.approx(10, rel=0.2)  # linear in β


def energy_minimizer(W, u, offs, y, beta):
    """argmin over [0,1]^N of ½‖s‖² − ½ sᵀWs − uᵀs + β·½‖s_L − y‖² (scipy L-BFGS-B)."""
    N = W.shape[0]

    def fun(s):
        sl = s[offs[-2]:]
        e = 0.5 * s @ s - 0.5 * s @ W @ s - u @ s + beta * 0.5 * np.sum((sl - y) ** 2)
        g = s - W @ s - u
        g[offs[-2]:] += beta * (sl - y)
        return e, g

    res = scipy.optimize.minimize(fun, np.full(N, 0.5), jac=True, method="L-BFGS-B",
                                  bounds=[(0, 1)] * N, options=dict(ftol=1e-15, gtol=1e-13, maxiter=10000))
    return res.x


@pytest.mark.slow
def test_symmetric_splits_into_two_independent_minimizations():
    """λ = 1: s⁺ minimizes E + βℓ and s⁻ minimizes E − βℓ, each ignoring the other compartment."""
    spec = CircuitSpec(sizes=(5, 6, 5, 3), lam=1.0, eta=0.5, schedule="async", max_iters=5000,
                       tol=1e-12, dtype="float64")
    params, hw, x = setup(spec, 11, batch=2)
    W, T0, b, offs = dense(spec, params)
    scale = 0.5 / np.linalg.norm(W, 2)       # ‖W‖ = 0.5: both energies strictly convex
    params = replace(params, thetas=tuple(t * scale for t in params.thetas),
                     biases=tuple(jnp.full_like(v, 0.2) for v in params.biases))
    hw = reprogram(spec, hw, params, jax.random.key(0))
    W, T0, b, offs = dense(spec, params)
    y = np.eye(3)[[0, 2]]
    beta = 0.2
    eq = relax(spec, hw, x, jax.random.key(2), nudge=(beta, beta), target=y)
    assert bool(eq.converged)
    for i in range(2):
        u = T0 @ x[i] + b
        sp = energy_minimizer(W, u, offs, y[i], beta)
        sm = energy_minimizer(W, u, offs, y[i], -beta)
        np.testing.assert_allclose(stack(eq.s_plus)[i], sp, atol=1e-6)
        np.testing.assert_allclose(stack(eq.s_minus)[i], sm, atol=1e-6)
    # independence: start the − compartment elsewhere, s⁺ follows the same trajectory
    spec_fixed = replace(spec, tol=0.0, max_iters=40)
    a = relax(spec_fixed, hw, x, jax.random.key(2), nudge=(beta, beta), target=y)
    moved = replace(a, a_minus=tuple(v + 3.0 for v in a.a_minus))
    start = replace(a, a_minus=tuple(jnp.zeros_like(v) for v in a.a_minus))
    r1 = relax(spec_fixed, hw, x, jax.random.key(2), nudge=(beta, beta), target=y, state0=start)
    r2 = relax(spec_fixed, hw, x, jax.random.key(2), nudge=(beta, beta), target=y, state0=moved)
    for p1, p2 in zip(r1.s_plus, r2.s_plus):
        np.testing.assert_array_equal(np.asarray(p1), np.asarray(p2))
    assert any(np.any(np.asarray(m1) != np.asarray(m2)) for m1, m2 in zip(r1.s_minus, r2.s_minus))


def test_nudge_signs():
    """λ = 1, convex energies: ℓ(s_β) is non-increasing in β (compare the optimality of
    s_β and s_0 in E + βℓ and in E), so the + compartment improves and the − one worsens."""
    spec = CircuitSpec(sizes=(6, 8, 4), lam=1.0, eta=0.5, max_iters=4000, tol=1e-11, dtype="float64",
                       init_scale=0.3)
    params, hw, x = setup(spec, 2, batch=4)
    W, *_ = dense(spec, params)
    assert np.linalg.norm(W, 2) < 0.7
    y = np.eye(4)
    free = relax(spec, hw, x, jax.random.key(0))
    eq = relax(spec, hw, x, jax.random.key(0), nudge=(0.2, 0.2), target=y)
    l_free = np.asarray(cost(spec, free.s_plus[-1], y))
    assert np.all(np.asarray(cost(spec, eq.s_plus[-1], y)) <= l_free + 1e-12)
    assert np.all(np.asarray(cost(spec, eq.s_minus[-1], y)) >= l_free - 1e-12)
    assert np.mean(np.asarray(cost(spec, eq.s_plus[-1], y))) < np.mean(l_free)


def test_clamped_output():
    spec = CircuitSpec(sizes=(6, 8, 4), lam=0.0, eta=0.3, max_iters=4000, tol=1e-11, dtype="float64")
    params, hw, x = setup(spec, 2, batch=4)
    # clamp the + output: it holds the value, hidden layers sit at their map given it
    c = np.full((4, 4), 0.25)
    cl = relax(spec, hw, x, jax.random.key(0), clamp=(c, None))
    assert bool(cl.converged)
    np.testing.assert_array_equal(np.asarray(cl.s_plus[-1]), c)
    s = stack(cl.s_plus)
    # λ = 0: the + compartment's hidden layer reads the − compartment's output (λ̄ s⁻)
    W, T0, b, offs = dense(spec, params)
    s_mix = stack(cl.s_minus)
    a1 = s_mix @ W.T + x @ T0.T + b
    np.testing.assert_allclose(s[:, :offs[1]], np.clip(a1, 0, 1)[:, :offs[1]], atol=1e-9)


def test_divergence_is_flagged_and_raised():
    spec = CircuitSpec(sizes=(3, 4, 2), lam=1.0, activations=("relu",), eta=1.0, schedule="sync",
                       max_iters=500, tol=1e-9, dtype="float64")
    params = init_params(spec, jax.random.key(0))
    params = replace(params, thetas=(jnp.full((2, 4), 3.0),), biases=tuple(jnp.ones_like(b) for b in params.biases))
    hw = build(spec, IDEAL, params, jax.random.key(1))
    eq = relax(spec, hw, np.ones((2, 3)), jax.random.key(0))
    assert bool(eq.diverged) and not bool(eq.converged)
    assert eq.status() == "diverged"
    with pytest.raises(ConvergenceError, match="diverged"):
        check(eq)
    eq_nan = relax(spec, hw, np.full((1, 3), np.nan), jax.random.key(0))
    assert bool(eq_nan.diverged)


def test_limit_cycle_is_flagged_oscillating():
    """s1 = clip(0.5 − 10 s2), s2 = clip(10 s1), synchronous and undamped: a period-4 cycle."""
    spec = CircuitSpec(sizes=(1, 1, 1), lam=0.0, eta=1.0, schedule="sync", max_iters=64, tol=1e-6,
                       dtype="float64")
    params = Params(theta0=jnp.ones((1, 1)), thetas=(jnp.full((1, 1), 10.0),),
                    biases=(jnp.zeros(1), jnp.zeros(1)))
    hw = build(spec, IDEAL, params, jax.random.key(0))
    eq = relax(spec, hw, np.full((1, 1), 0.5), jax.random.key(0))
    assert not bool(eq.converged) and not bool(eq.diverged)
    assert bool(eq.oscillating) and eq.status() == "oscillating"
    assert int(eq.iterations) == 64 and float(eq.residual) >= 0.5
    with pytest.raises(ConvergenceError, match="not converged"):
        check(eq, require_convergence=True)
    # damped, the same loop converges to the unique fixed point s1 = 0.5/101, s2 = 5/101
    # (eigenvalues ±10i: the damped iteration contracts for η < 2/101)
    eq2 = relax(replace(spec, eta=0.01, max_iters=6000), hw, np.full((1, 1), 0.5), jax.random.key(0))
    assert bool(eq2.converged)
    s1, s2 = float(eq2.s_plus[0][0, 0]), float(eq2.s_plus[1][0, 0])
    assert s1 == pytest.approx(0.5 / 101, abs=1e-6) and s2 == pytest.approx(5 / 101, abs=1e-6)


# --- the device chain ---------------------------------------------------------------

@dataclass(frozen=True)
class NoisyCoupling(IdealCoupling):
    """An exact matrix plus Gaussian read noise of std ``sigma`` per output (test device)."""

    sigma: float = 0.0

    def mvm(self, state, x, key):
        y = x @ state.w.T
        return y + self.sigma * jax.random.normal(key, y.shape, y.dtype)

    def mvm_t(self, state, y, key):
        x = y @ state.w
        return x + self.sigma * jax.random.normal(key, x.shape, x.dtype)


@dataclass(frozen=True)
class QuarterDAC:
    """A DAC with levels k/4 (test device)."""

    def fabricate(self, key, shape):
        return None

    def convert(self, instance, x, key):
        return jnp.round(x * 4) / 4


@pytest.mark.slow
def test_noise_free_device_reduces_to_ideal_and_noise_is_reproducible():
    spec = CircuitSpec(sizes=(5, 6, 3), lam=0.0, eta=0.4, max_iters=300, tol=1e-6)
    params, hw, x = setup(spec, 4)
    ref = relax(spec, hw, x, jax.random.key(0))
    hw0 = build(spec, DeviceProfile(name="noisy0", coupling=NoisyCoupling(0.0)), params, jax.random.key(1))
    eq0 = relax(spec, hw0, x, jax.random.key(0))
    for a, b in zip(ref.s_plus, eq0.s_plus):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    hwn = build(spec, DeviceProfile(name="noisy", coupling=NoisyCoupling(0.01)), params, jax.random.key(1))
    n1 = relax(spec, hwn, x, jax.random.key(7))
    n2 = relax(spec, hwn, x, jax.random.key(7))
    n3 = relax(spec, hwn, x, jax.random.key(8))
    np.testing.assert_array_equal(np.asarray(n1.s_plus[0]), np.asarray(n2.s_plus[0]))
    assert np.any(np.asarray(n1.s_plus[0]) != np.asarray(n3.s_plus[0]))
    # temporal noise sets a residual floor far above tol: not converged, flagged
    assert not bool(n1.converged) and float(n1.residual) > 1e-3 and bool(n1.oscillating)


def test_states_pass_through_the_dac_each_iteration():
    spec = CircuitSpec(sizes=(4, 5, 3), lam=0.0, eta=0.3, schedule="sync", max_iters=2000,
                       tol=1e-10, dtype="float64")
    params, _, x = setup(spec, 6)
    prof = DeviceProfile(name="dac", dac=QuarterDAC())
    hw = build(spec, prof, params, jax.random.key(1))
    eq = relax(spec, hw, x, jax.random.key(0))
    assert bool(eq.converged)
    q = lambda v: np.round(np.asarray(v) * 4) / 4
    th0, th1 = (np.asarray(params.theta0), np.asarray(params.thetas[0]))
    s1, s2 = (np.asarray(v) for v in eq.s_plus)
    np.testing.assert_allclose(s1, np.clip(q(x) @ th0.T - q(s2) @ th1, 0, 1), atol=1e-9)
    np.testing.assert_allclose(s2, np.clip(q(s1) @ th1.T, 0, 1), atol=1e-9)
    # the ADC of the ideal profile reads exactly what the circuit holds
    sp, sm = read_states(hw, eq, jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(sp[0]), s1)


@pytest.mark.slow
def test_backward_realizations_agree_on_the_ideal_device():
    base = CircuitSpec(sizes=(5, 6, 4, 3), lam=0.3, eta=0.4, max_iters=3000, tol=1e-11, dtype="float64")
    params, hw, x = setup(base, 8)
    y = np.eye(3)[[0, 1, 2]]
    ref = relax(base, hw, x, jax.random.key(0), nudge=(0.3, 0.1), target=y)
    copy = replace(base, backward="copy")
    eq = relax(copy, build(copy, IDEAL, params, jax.random.key(1)), x, jax.random.key(0),
               nudge=(0.3, 0.1), target=y)
    for a, b in zip(ref.s_plus + ref.s_minus, eq.s_plus + eq.s_minus):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-12)
    # asymmetric with ψ_k = θ_kᵀ is the symmetric circuit, nudged phases included
    sym = replace(base, lam=1.0)
    asym = replace(base, lam="asymmetric", backward="independent")
    p_asym = replace(params, backward=tuple(t.T for t in params.thetas))
    e1 = relax(sym, build(sym, IDEAL, params, jax.random.key(1)), x, jax.random.key(0), nudge=(0.3, 0.1), target=y)
    e2 = relax(asym, build(asym, IDEAL, p_asym, jax.random.key(1)), x, jax.random.key(0), nudge=(0.3, 0.1), target=y)
    for a, b in zip(e1.s_plus + e1.s_minus, e2.s_plus + e2.s_minus):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-12)


def test_fixed_point_map_matches_dense_reference_and_is_differentiable(x64):
    spec = CircuitSpec(sizes=(5, 6, 4, 3), lam=0.25, activations=("relu", "hard_sigmoid", "tempered_hard_sigmoid"),
                       dtype="float64")
    params = init_params(spec, jax.random.key(0))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 5))
    s = tuple(rng.uniform(0, 1, (2, n)) for n in spec.sizes[1:])
    np.testing.assert_allclose(stack(fixed_point_map(spec, params, x, s)), np_map(spec, params, x, stack(s)),
                               atol=1e-14)
    g = jax.jit(jax.grad(lambda p: jnp.sum(fixed_point_map(spec, p, x, s)[-1])))(params)
    assert np.all(np.isfinite(np.asarray(g.theta0)))


@pytest.mark.parametrize("kind", ["squared", "cross_entropy"])
def test_cost_gradient_is_the_autodiff_gradient(kind):
    spec = CircuitSpec(sizes=(2, 4), cost=kind, dtype="float64")
    rng = np.random.default_rng(1)
    s = jnp.asarray(rng.uniform(0, 1, (3, 4)))
    y = jnp.asarray(np.eye(4)[[0, 3, 1]])
    auto = jax.grad(lambda v: jnp.sum(cost(spec, v, y)))(s)
    np.testing.assert_allclose(np.asarray(cost_grad(spec, s, y)), np.asarray(auto), atol=1e-12)


def test_bad_call_arguments_raise_one_line_errors():
    spec = CircuitSpec(sizes=(3, 4, 2))
    params, hw, x = setup(spec)
    with pytest.raises(AnasimError, match="x must have shape"):
        relax(spec, hw, np.ones((2, 5)), jax.random.key(0))
    with pytest.raises(AnasimError, match="needs a target"):
        relax(spec, hw, x, jax.random.key(0), nudge=(0.1, 0.1))
    with pytest.raises(AnasimError, match="target must have shape"):
        relax(spec, hw, x, jax.random.key(0), nudge=(0.1, 0.1), target=np.ones((3, 3)))
