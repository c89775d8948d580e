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

from anasim.analysis.gradients import (
    dyadic_equilibrium,
    hard_sigmoid,
    phase_equilibrium,
    reference_gradient,
)
from anasim.errors import AnasimError
from anasim.learning import rules

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


def test_contrastive_and_coupled_learning_align_with_gradient_for_smooth_neurons():
    # CL and CpL clamp output *states*; their small-β limit is (y − o*)ᵀ ∂_c∂_θẼ
    # while the squared-loss gradient carries the extra preconditioner H⁻¹ of the
    # reduced energy's output Hessian, so direction agrees, magnitude does not
    # (measured here: cosine ≈ 0.994 CpL, 0.991 CL with sigmoid neurons).
    p, x, y = _circuit()
    X = jnp.asarray(x)
    _, g, _ = reference_gradient(p, x, y, lam=1.0, act=sigmoid)
    free, _ = phase_equilibrium(p, x, act=sigmoid)
    o = free[-1]
    beta = 0.01
    cp, _ = phase_equilibrium(p, x, clamp=rules.coupled_clamp(o, y, beta), act=sigmoid)
    cn, _ = phase_equilibrium(p, x, clamp=rules.coupled_clamp(o, y, -beta), act=sigmoid)
    cl, _ = phase_equilibrium(p, x, clamp=y, act=sigmoid)
    for u in (rules.coupled(X, cp, free, beta, "P"), rules.coupled(X, free, cn, beta, "N"),
              rules.coupled(X, cp, cn, beta, "C"), rules.contrastive(X, free, cl)):
        assert rules.cosine(u, g) >= 0.99
    # A clamp equal to the free output changes nothing: the update is exactly zero.
    same, _ = phase_equilibrium(p, x, clamp=o, act=sigmoid)
    assert float(jnp.max(jnp.abs(rules.flatten(rules.contrastive(X, free, same))))) < 1e-12


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
