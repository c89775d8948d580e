"""Local rules against implicit differentiation of the same ideal circuit.

The reference (anasim.analysis.gradients) differentiates the loss at the free
fixed point of W_λ by the implicit-function theorem in float64; the rules only
see exact equilibrium states. The states come from a separate Newton solve of
the nudged dynamics (Høier et al. eq. 8 / EP phases), so agreement is not built
in: it is the claim of each paper.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.scipy.special import xlogy

from anasim.analysis.gradients import (
    dyadic_equilibrium,
    hard_sigmoid,
    phase_equilibrium,
    reference_gradient,
)
from anasim.errors import AnasimError
from anasim.learning import rules


@pytest.fixture(autouse=True)
def x64():
    """The rules are checked against float64 implicit-differentiation references, in float64."""
    with jax.enable_x64(True):
        yield

SIZES = (6, 8, 7, 4)
sigmoid = jax.nn.sigmoid


def _circuit(seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    p = {
        "theta0": rng.normal(0, scale, (SIZES[1], SIZES[0])),
        "thetas": tuple(rng.normal(0, scale, (SIZES[k + 1], SIZES[k])) for k in range(1, len(SIZES) - 1)),
        "biases": tuple(rng.normal(0.3, 0.2, (n,)) for n in SIZES[1:]),
    }
    x = rng.uniform(0, 1, (5, SIZES[0]))
    y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], 5)]
    return p, x, y


def _rel_err(u, g):
    a, b = rules.flatten(u), rules.flatten(g)
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _slope(betas, errs):
    return np.polyfit(np.log(betas), np.log(errs), 1)[0]


@pytest.mark.parametrize(
    "lam, act",
    [(0.0, sigmoid), (0.5, sigmoid), (1.0, sigmoid), (0.3, sigmoid), (0.0, hard_sigmoid)],
    ids=["skew-sigmoid", "ff-sigmoid", "sym-sigmoid", "0.3-sigmoid", "skew-hard"],
)
def test_dyadic_matches_implicit_gradient_for_every_lambda(lam, act):
    p, x, y = _circuit()
    _, g, res = reference_gradient(p, x, y, lam=lam, act=act)
    assert res < 1e-10
    # small enough that no unit crosses a kink of the piecewise-linear hard sigmoid
    betas = (0.01, 0.005, 0.0025) if act is sigmoid else (1e-3, 5e-4, 2.5e-4)
    errs = []
    for beta in betas:
        sp, sm, r = dyadic_equilibrium(p, x, y, beta, lam=lam, act=act)
        assert r < 1e-10
        u = rules.dyadic(jnp.asarray(x), sp, sm, beta, lam)
        assert rules.cosine(u, g) >= 0.99
        errs.append(_rel_err(u, g))
    # Dyadic learning is centered (even in β): error ∝ β², unless it vanishes
    # outright (λ = 1 with piecewise-linear f: the two phases decouple and the
    # response is exactly linear in β until a kink is crossed).
    if min(errs) > 1e-7:
        assert _slope(betas, errs) == pytest.approx(2.0, abs=0.15)


def test_ep_one_sided_error_is_linear_and_centered_quadratic_in_beta():
    p, x, y = _circuit(seed=1)
    X = jnp.asarray(x)
    _, g, _ = reference_gradient(p, x, y, lam=1.0, act=sigmoid)
    free, _ = phase_equilibrium(p, x, y, beta=0.0, act=sigmoid)
    betas = np.array([0.04, 0.02, 0.01, 0.005])
    errs = {"positive": [], "negative": [], "centered": []}
    for beta in betas:
        sp, _ = phase_equilibrium(p, x, y, beta=beta, act=sigmoid)
        sm, _ = phase_equilibrium(p, x, y, beta=-beta, act=sigmoid)
        est = {
            "positive": rules.ep_positive(X, free, sp, beta),
            "negative": rules.ep_negative(X, sm, free, beta),
            "centered": rules.ep_centered(X, sm, sp, beta),
        }
        for k, u in est.items():
            assert rules.cosine(u, g) >= 0.99, k
            errs[k].append(_rel_err(u, g))
    assert _slope(betas, errs["positive"]) == pytest.approx(1.0, abs=0.1)
    assert _slope(betas, errs["negative"]) == pytest.approx(1.0, abs=0.1)
    assert _slope(betas, errs["centered"]) == pytest.approx(2.0, abs=0.1)
    # The dyadic rule at λ = 1 *is* centered EP: same states, same numbers.
    sp, sm, _ = dyadic_equilibrium(p, x, y, 0.01, lam=1.0, act=sigmoid)
    sp2, _ = phase_equilibrium(p, x, y, beta=0.01, act=sigmoid)
    np.testing.assert_allclose(np.asarray(sp[-1]), np.asarray(sp2[-1]), atol=1e-12)
    np.testing.assert_allclose(
        rules.flatten(rules.dyadic(X, sp, sm, 0.01, 1.0)), rules.flatten(rules.ep_centered(X, sm, sp, 0.01)),
        atol=1e-12)


def _phi(act):
    """Φ with Φ' = f⁻¹: the neuron term of the Hopfield energy whose stationary
    points are the fixed points s = f(W s + θ_0 x + b)."""
    if act is sigmoid:
        return lambda s: xlogy(s, s) + xlogy(1 - s, 1 - s)      # 0 log 0 = 0 at a clamp to 0 or 1
    return lambda s: 0.5 * s ** 2          # hard sigmoid: f = clip, box [0, 1]


def _energy(p, x, s, act):
    """Batch-mean Hopfield energy Σ Φ(s) − Σ s_{k+1}ᵀθ_k s_k − s_1ᵀθ_0 x − Σ b_kᵀ s_k (λ = 1)."""
    phi = _phi(act)
    e = sum(jnp.sum(phi(sk), axis=1) for sk in s)
    e = e - jnp.einsum("bi,ij,bj->b", s[0], p["theta0"], x)
    e = e - sum(jnp.einsum("bi,ij,bj->b", s[k + 1], p["thetas"][k], s[k]) for k in range(len(s) - 1))
    e = e - sum(sk @ b for sk, b in zip(s, p["biases"]))
    return float(jnp.mean(e))


def _shift(p, v, eps):
    return {k: (p[k] + eps * v[k] if k == "theta0" else tuple(a + eps * b for a, b in zip(p[k], v[k])))
            for k in ("theta0", "thetas", "biases")}


def _directional(objective, p, v, eps=1e-5):
    """Central difference of objective(θ) along v, every equilibrium solved anew at θ ± εv."""
    return (objective(_shift(p, v, eps)) - objective(_shift(p, v, -eps))) / (2 * eps)


def _directions(p, n, seed):
    rng = np.random.default_rng(seed)
    return [{"theta0": rng.normal(size=p["theta0"].shape),
             "thetas": tuple(rng.normal(size=t.shape) for t in p["thetas"]),
             "biases": tuple(rng.normal(size=b.shape) for b in p["biases"])} for _ in range(n)]


def _dot(u, v):
    return float(jnp.dot(rules.flatten(u), rules.flatten(v)))


def _gap(p, x, clamp, act):
    """Ẽ(θ; c) − Ẽ_free(θ): energy of the output-clamped equilibrium above the free one."""
    free, r1 = phase_equilibrium(p, x, act=act)
    clamped, r2 = phase_equilibrium(p, x, clamp=clamp, act=act)
    assert max(r1, r2) < 1e-10
    return _energy(p, x, clamped, act) - _energy(p, x, free, act)


@pytest.mark.slow
@pytest.mark.parametrize("act", [sigmoid, hard_sigmoid], ids=["sigmoid", "hard"])
def test_contrastive_learning_is_the_gradient_of_the_clamped_energy_gap(act):
    # CL is not an estimator of the loss gradient: by the envelope theorem it is
    # exactly ∇_θ [Ẽ(θ; y) − Ẽ_free(θ)], checked by finite differences of the
    # energies of equilibria solved anew for every perturbed θ.
    p, x, y = _circuit(seed=3)
    X = jnp.asarray(x)
    free, _ = phase_equilibrium(p, x, act=act)
    cl, _ = phase_equilibrium(p, x, clamp=y, act=act)
    u = rules.contrastive(X, free, cl)
    for v in _directions(p, 3, seed=0):
        fd = _directional(lambda q: _gap(q, x, y, act), p, v)
        assert _dot(u, v) == pytest.approx(fd, rel=1e-5, abs=1e-9)
    # A clamp equal to the free output changes nothing: the update is exactly zero.
    same, _ = phase_equilibrium(p, x, clamp=free[-1], act=act)
    assert float(jnp.max(jnp.abs(rules.flatten(rules.contrastive(X, free, same))))) < 1e-12


@pytest.mark.slow
def test_coupled_learning_is_the_gradient_of_its_energy_gap():
    # With the clamp values c± = (1 ∓ β) o* ± β y held fixed, CpL P/N/C are the
    # exact gradients of [Ẽ(c+) − Ẽ_free]/β, [Ẽ_free − Ẽ(c−)]/β, [Ẽ(c+) − Ẽ(c−)]/(2β).
    p, x, y = _circuit(seed=4)
    X = jnp.asarray(x)
    beta = 0.05      # small enough that both clamps stay inside the sigmoid's range (0, 1)
    free, _ = phase_equilibrium(p, x, act=sigmoid)
    cp_val = rules.coupled_clamp(free[-1], y, beta)
    cn_val = rules.coupled_clamp(free[-1], y, -beta)
    cp, _ = phase_equilibrium(p, x, clamp=cp_val, act=sigmoid)
    cn, _ = phase_equilibrium(p, x, clamp=cn_val, act=sigmoid)
    cases = {
        "P": (rules.coupled(X, cp, free, beta, "P"), lambda q: _gap(q, x, cp_val, sigmoid) / beta),
        "N": (rules.coupled(X, free, cn, beta, "N"), lambda q: -_gap(q, x, cn_val, sigmoid) / beta),
        "C": (rules.coupled(X, cp, cn, beta, "C"),
              lambda q: (_gap(q, x, cp_val, sigmoid) - _gap(q, x, cn_val, sigmoid)) / (2 * beta)),
    }
    for name, (u, objective) in cases.items():
        for v in _directions(p, 2, seed=1):
            assert _dot(u, v) == pytest.approx(_directional(objective, p, v), rel=1e-5, abs=1e-9), name


def _output_hessian(p, x, o, act, eps=1e-5):
    """H = ∂²Ẽ/∂c² at c = o per example, (batch, n_L, n_L): central differences of
    ∂Ẽ/∂c = f⁻¹(c) − θ_{L−1} s_{L−1}(c) − b_L over output-clamped equilibria."""
    def grad_c(c):
        s, r = phase_equilibrium(p, x, clamp=c, act=act)
        assert r < 1e-10
        finv = jnp.log(c) - jnp.log1p(-c) if act is sigmoid else c
        return finv - s[-2] @ p["thetas"][-1].T - p["biases"][-1]

    n = o.shape[1]
    cols = [(grad_c(o + eps * np.eye(n)[j]) - grad_c(o - eps * np.eye(n)[j])) / (2 * eps) for j in range(n)]
    return jnp.stack(cols, axis=-1)


def test_coupled_learning_small_beta_limit_is_the_hessian_weighted_loss_gradient():
    # As β → 0, CpL → (y − o*)ᵀ ∂_c∂_θẼ, while dℓ/dθ = −(∂_c∂_θẼ)ᵀ H⁻¹ (o* − y)
    # (H = ∂²Ẽ/∂c², the output Hessian of the reduced energy). So CpL estimates
    # the gradient of ½ (o* − y)ᵀ H (o* − y) with H frozen: the squared-loss
    # gradient for the moved target y' = o* − H (o* − y), computed here by
    # implicit differentiation. Errors fall as β² (C) and β (P).
    p, x, y = _circuit(seed=5)
    X = jnp.asarray(x)
    free, _ = phase_equilibrium(p, x, act=sigmoid)
    o = free[-1]
    H = _output_hessian(p, x, o, sigmoid)
    y_moved = o - jnp.einsum("bij,bj->bi", H, o - y)
    _, g_h, res = reference_gradient(p, x, y_moved, lam=1.0, act=sigmoid)
    _, g, _ = reference_gradient(p, x, y, lam=1.0, act=sigmoid)
    assert res < 1e-10
    betas = np.array([0.02, 0.01, 0.005])
    errs = {"P": [], "C": []}
    for beta in betas:
        cp, _ = phase_equilibrium(p, x, clamp=rules.coupled_clamp(o, y, beta), act=sigmoid)
        cn, _ = phase_equilibrium(p, x, clamp=rules.coupled_clamp(o, y, -beta), act=sigmoid)
        for name, u in (("P", rules.coupled(X, cp, free, beta, "P")), ("C", rules.coupled(X, cp, cn, beta, "C"))):
            assert rules.cosine(u, g_h) >= 0.999, name
            errs[name].append(_rel_err(u, g_h))
    assert errs["C"][-1] < 1e-4
    assert _slope(betas, errs["P"]) == pytest.approx(1.0, abs=0.15)
    assert _slope(betas, errs["C"]) == pytest.approx(2.0, abs=0.15)
    # Sigmoid neurons have Φ'' = 1/(s(1 − s)) ≥ 4, so H ⪰ 4 I roughly and the CpL
    # step is several times the squared-loss gradient: not an unbiased estimator.
    ratio = float(jnp.linalg.norm(rules.flatten(u)) / jnp.linalg.norm(rules.flatten(g)))
    assert ratio > 2.0


def test_asymmetric_reference_counts_backward_matrix_separately():
    # With independent backward couplings set to (2λ−1)θᵀ the free point is the
    # same, and dℓ/dθ_k(W_λ) = dℓ/dθ_k|fwd + (2λ−1) (dℓ/dψ_k)ᵀ by the chain rule.
    p, x, y = _circuit(seed=2)
    lam = 0.2
    q = dict(p, backs=tuple((2 * lam - 1) * t.T for t in p["thetas"]))
    _, g, _ = reference_gradient(p, x, y, lam=lam, act=sigmoid)
    _, ga, _ = reference_gradient(q, x, y, lam=lam, act=sigmoid)
    for k in range(len(p["thetas"])):
        np.testing.assert_allclose(g["thetas"][k], ga["thetas"][k] + (2 * lam - 1) * ga["backs"][k].T,
                                   rtol=1e-9, atol=1e-12)


def test_rule_input_validation():
    x = jnp.zeros((3, 4))
    s = [jnp.zeros((3, 5)), jnp.zeros((3, 2))]
    with pytest.raises(AnasimError, match="lam"):
        rules.dyadic(x, s, s, 0.1, 1.5)
    with pytest.raises(AnasimError, match="beta"):
        rules.dyadic(x, s, s, 0.0, 0.5)
    with pytest.raises(AnasimError, match="batch"):
        rules.dyadic(x, s, [jnp.zeros((2, 5)), jnp.zeros((2, 2))], 0.1, 0.5)
    with pytest.raises(AnasimError, match="nudge"):
        rules.ep(x, s, s, 0.1, 0.1)
    with pytest.raises(AnasimError, match="variant"):
        rules.coupled(x, s, s, 0.1, "Q")


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), g_min=st.floats(0.0, 0.5))
def test_leak_term_is_the_autodiff_gradient_of_the_passive_cocontent(seed, g_min):
    """``energy_gradient(..., leak=coupling_signs(θ))`` is ∂/∂θ of the co-content of the
    differential-pair network, written here as the physical sum over conductances
    (G⁺ = g_min + max(w, 0) between like nodes, G⁻ = g_min + max(−w, 0) between
    opposite ones, per unit conductance, over 2) minus the bias currents, and
    differentiated by jax.grad; it differs from the Hopfield energy's."""
    rng = np.random.default_rng(seed)
    sizes = (3, 4, 2)
    x = jnp.asarray(rng.uniform(0, 1, (5, sizes[0])))
    s = tuple(jnp.asarray(rng.uniform(-1, 1, (5, n))) for n in sizes[1:])
    w0 = jnp.asarray(rng.uniform(-1, 1, (sizes[1], sizes[0])))
    w1 = jnp.asarray(rng.uniform(-1, 1, (sizes[2], sizes[1])))
    b = tuple(jnp.asarray(rng.normal(0, 1, n)) for n in sizes[1:])

    def cocontent(w0, w1, b1, b2):
        total = 0.0
        for w, up, lo in ((w0, s[0], x), (w1, s[1], s[0])):
            gp, gn = g_min + jnp.maximum(w, 0), g_min + jnp.maximum(-w, 0)
            diff = up[:, :, None] - lo[:, None, :]
            summ = up[:, :, None] + lo[:, None, :]
            total = total + 0.5 * jnp.sum(gp * diff ** 2 + gn * summ ** 2) / x.shape[0]
        return total - (jnp.sum(s[0] @ b1) + jnp.sum(s[1] @ b2)) / x.shape[0]

    ref = jax.grad(cocontent, argnums=(0, 1, 2, 3))(w0, w1, *b)
    got = rules.energy_gradient(x, s, leak=rules.coupling_signs(w0, (w1,)))
    np.testing.assert_allclose(got["theta0"], ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["thetas"][0], ref[1], rtol=1e-12, atol=1e-12)
    for a, r in zip(got["biases"], ref[2:]):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
    hop = rules.energy_gradient(x, s)
    assert np.abs(np.asarray(hop["theta0"] - ref[0])).max() > 1e-3


def test_leak_refused_where_it_has_no_meaning():
    x = jnp.ones((2, 3))
    s = (jnp.ones((2, 4)), jnp.ones((2, 2)))
    with pytest.raises(AnasimError, match="leak: only the lam = 1"):
        rules.dyadic(x, s, s, 0.1, 0.5, leak=rules.coupling_signs(jnp.ones((4, 3)), (jnp.ones((2, 4)),)))
    with pytest.raises(AnasimError, match="leak: expected signs for 2"):
        rules.energy_gradient(x, s, leak=rules.coupling_signs(jnp.ones((4, 3)), ()))
