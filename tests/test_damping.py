"""The stable-damping bound of the skew-symmetric relaxation and the over-relaxation
of the symmetric one (anasim.circuits.damping).

References are numpy: the dense W, its SVD, the spectral radius of the damped
Gauss–Seidel / Jacobi iteration matrices built here from W, and the linear
fixed point (I − W)⁻¹(θ₀x + b) of an identity-activation circuit.
"""

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.circuits import CircuitSpec, Params, build, init_params, load_circuit, relax
from anasim.circuits.damping import SIGMA_MARGIN, block_tridiagonal_norm, stable_eta
from anasim.circuits.layered import LayeredEngine, relaxation_eta
from anasim.devices import ideal_profile, load_profile
from anasim.errors import ProfileError
from anasim.learning.step import StepKind, phases_and_rule


@pytest.fixture
def x64():
    """float64 for this test's own JAX computations (the library scopes its own)."""
    with jax.enable_x64(True):
        yield

SIZES = (3, 6, 5, 4)


def skew_params(scale: float, seed: int = 0) -> Params:
    rng = np.random.default_rng(seed)
    thetas = tuple(jnp.asarray(scale * rng.normal(size=(SIZES[k + 1], SIZES[k])) / np.sqrt(SIZES[k]))
                   for k in range(1, len(SIZES) - 1))
    return Params(theta0=jnp.asarray(rng.normal(size=(SIZES[1], SIZES[0]))), thetas=thetas,
                  biases=tuple(jnp.asarray(0.1 * rng.normal(size=n)) for n in SIZES[1:]))


def dense_skew(params: Params) -> tuple[np.ndarray, np.ndarray]:
    offs = np.concatenate([[0], np.cumsum(SIZES[1:])])
    W = np.zeros((offs[-1], offs[-1]))
    for k, th in enumerate(params.thetas):
        th = np.asarray(th, np.float64)
        W[offs[k + 1]:offs[k + 2], offs[k]:offs[k + 1]] = th
        W[offs[k]:offs[k + 1], offs[k + 1]:offs[k + 2]] = -th.T
    return W, offs


def iteration_radius(W: np.ndarray, offs: np.ndarray, eta: float, schedule: str) -> float:
    """Spectral radius of the damped linear iteration a ← (1−η)a + η W a (sync), or the
    same with even layers updated first and odd ones seeing them (async)."""
    N = W.shape[0]
    if schedule == "sync":
        return float(np.max(np.abs(np.linalg.eigvals((1 - eta) * np.eye(N) + eta * W))))
    layer = np.concatenate([np.full(offs[k + 1] - offs[k], k + 1) for k in range(len(offs) - 1)])
    even = np.diag((layer % 2 == 0).astype(float))
    odd = np.eye(N) - even
    first = np.eye(N) - even + even @ ((1 - eta) * np.eye(N) + eta * W)    # even rows updated
    second = np.eye(N) - odd + odd @ ((1 - eta) * np.eye(N) + eta * W)     # odd rows, from the new state
    return float(np.max(np.abs(np.linalg.eigvals(second @ first))))


@pytest.mark.parametrize("schedule", ["async", "sync"])
@pytest.mark.parametrize("scale", [0.5, 2.0, 6.0])
def test_stable_eta_is_the_fastest_contraction(schedule, scale):
    """η* minimizes the spectral radius of the linear skew iteration (numpy eigenvalues);
    async contracts at rate 1 − η up to η*, and the iteration stops contracting past the
    stability edge 2/(1 + σ) (async) or 2/(1 + σ²) (sync)."""
    W, offs = dense_skew(skew_params(scale))
    sigma = np.linalg.norm(W, 2)
    eta = float(stable_eta(sigma, schedule))
    rho = iteration_radius(W, offs, eta, schedule)
    assert rho < 1.0
    for other in (0.9 * eta, min(1.1 * eta, 1.0)):
        assert iteration_radius(W, offs, other, schedule) >= rho - 1e-6
    edge = 2 / (1 + sigma) if schedule == "async" else 2 / (1 + sigma**2)
    if schedule == "async":
        assert eta == pytest.approx(2 * (np.sqrt(1 + sigma**2) - 1) / sigma**2, rel=1e-5)
        assert iteration_radius(W, offs, 0.98 * eta, schedule) == pytest.approx(1 - 0.98 * eta, rel=1e-3)
    if 1.05 * edge <= 1.0:
        assert iteration_radius(W, offs, 0.95 * edge, schedule) < 1.0
        assert iteration_radius(W, offs, 1.05 * edge, schedule) > 1.0


def test_power_iteration_matches_svd():
    params = skew_params(3.0, seed=1)
    W, _ = dense_skew(params)
    sigma = block_tridiagonal_norm([jnp.asarray(t, jnp.float32) for t in params.thetas], -1.0, SIZES[1:],
                                   iters=200)
    assert float(sigma) == pytest.approx(np.linalg.norm(W, 2), rel=1e-3)
    # the default budget may only under-estimate, by less than the safety margin
    quick = float(block_tridiagonal_norm([jnp.asarray(t, jnp.float32) for t in params.thetas], -1.0, SIZES[1:]))
    assert np.linalg.norm(W, 2) / SIGMA_MARGIN < quick <= np.linalg.norm(W, 2) * (1 + 1e-6)


def linear_fixed_point(params: Params, W: np.ndarray, x) -> np.ndarray:
    """States (I − W)⁻¹(θ₀x + b) of an identity-activation circuit, shape (batch, Σ n_k)."""
    b = np.concatenate([np.asarray(v) for v in params.biases])
    inject = np.zeros((x.shape[0], W.shape[0]))
    inject[:, :SIZES[1]] = np.asarray(x) @ np.asarray(params.theta0).T
    return np.linalg.solve(np.eye(W.shape[0]) - W, (inject + b).T).T


def _spec(**kw) -> CircuitSpec:
    base = dict(sizes=SIZES, lam=0.0, activations=("identity",) * 3, eta=0.9, schedule="async",
                max_iters=3000, tol=1e-9, dtype="float64")
    base.update(kw)
    return CircuitSpec(**base)


@pytest.mark.slow
def test_eta_auto_converges_to_the_linear_fixed_point():
    """Strong skew couplings: η = 0.9 oscillates away, eta_auto reaches (I − W)⁻¹(θ₀x + b)."""
    params = skew_params(6.0)
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(4, SIZES[0])))
    W, _ = dense_skew(params)
    s_ref = linear_fixed_point(params, W, x)

    fixed = _spec()
    auto = replace(fixed, eta_auto=True)
    hw = build(fixed, ideal_profile(), params, jax.random.PRNGKey(0))
    eq_fixed = relax(fixed, hw, x, jax.random.PRNGKey(1))
    assert not bool(eq_fixed.converged)
    eta = float(relaxation_eta(auto, hw))
    assert eta < 0.9
    eq = relax(auto, hw, x, jax.random.PRNGKey(1))
    assert bool(eq.converged)
    s = np.concatenate([np.asarray(v) for v in eq.s_plus], axis=1)
    np.testing.assert_allclose(s, s_ref, atol=1e-7)
    # an explicit η overrides the spec's: the oscillating spec relaxes with η* (as a training
    # step passes the damping it computed once to each of its phases)
    eq_given = relax(fixed, hw, x, jax.random.PRNGKey(1), eta=eta)
    assert int(eq_given.iterations) == int(eq.iterations)
    np.testing.assert_allclose(np.concatenate([np.asarray(v) for v in eq_given.s_plus], axis=1), s_ref, atol=1e-7)


def symmetric_near_singular(rho: float, seed: int = 0) -> tuple[Params, np.ndarray, np.ndarray]:
    """λ = 1 couplings (W symmetric: θ below the diagonal, θᵀ above), scaled so that
    the Jacobi spectral radius ρ(W) is ``rho``."""
    params = skew_params(1.0, seed)
    W, offs = dense_skew(params)
    W = np.tril(W) + np.tril(W).T          # the same θ blocks below the diagonal, mirrored
    c = rho / np.max(np.abs(np.linalg.eigvalsh(W)))
    return replace(params, thetas=tuple(c * t for t in params.thetas)), c * W, offs


def test_symmetric_async_over_relaxation_follows_young():
    """Consistently ordered (even/odd layers) and I − W positive definite: Gauss–Seidel
    (η = 1) contracts at ρ_J², SOR fastest at η_opt = 2/(1 + √(1 − ρ_J²)) with rate
    η_opt − 1, and every η < 2 contracts (numpy eigenvalues of the iteration matrices)."""
    rho = 0.96
    _, W, offs = symmetric_near_singular(rho)
    assert iteration_radius(W, offs, 1.0, "async") == pytest.approx(rho**2, rel=1e-6)
    eta_opt = 2 / (1 + np.sqrt(1 - rho**2))
    best = iteration_radius(W, offs, eta_opt, "async")
    assert best == pytest.approx(eta_opt - 1, rel=1e-3)
    for other in (1.0, 0.97 * eta_opt, 1.03 * eta_opt):
        assert iteration_radius(W, offs, other, "async") > best
    assert iteration_radius(W, offs, 1.95, "async") < 1.0


def test_over_relaxed_symmetric_relaxation_reaches_the_fixed_point_sooner(x64):
    """The engine at η = 1.6 and at η = 1 reaches (I − W)⁻¹(θ₀x + b) of a linear symmetric
    circuit; SOR in fewer than half the iterations."""
    params, W, _ = symmetric_near_singular(0.96, seed=2)
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(4, SIZES[0])))
    s_ref = linear_fixed_point(params, W, x)
    iters = {}
    for eta in (1.0, 1.6):
        spec = _spec(lam=1.0, eta=eta)
        eq = relax(spec, build(spec, ideal_profile(), params, jax.random.PRNGKey(0)), x, jax.random.PRNGKey(1))
        assert bool(eq.converged)
        np.testing.assert_allclose(np.concatenate([np.asarray(v) for v in eq.s_plus], axis=1), s_ref, atol=1e-7)
        iters[eta] = int(eq.iterations)
    assert iters[1.6] < iters[1.0] / 2


def test_eta_auto_keeps_eta_when_couplings_are_weak():
    params = skew_params(0.05)
    spec = _spec(eta=0.5, eta_auto=True, dtype="float32")
    hw = build(spec, ideal_profile(), params, jax.random.PRNGKey(0))
    assert float(relaxation_eta(spec, hw)) == pytest.approx(0.5)


def test_eta_auto_validation(tmp_path):
    with pytest.raises(ProfileError, match="eta_auto.*lam = 0"):
        _spec(lam=0.5, eta_auto=True)
    with pytest.raises(ProfileError, match="eta_auto must be true or false"):
        _spec(eta_auto=1)
    f = tmp_path / "c.toml"
    f.write_text('[network]\nsizes = [4, 3, 2]\nlam = 0.0\n[relaxation]\neta_auto = true\n')
    assert load_circuit(f).eta_auto is True
    f.write_text('[network]\nsizes = [4, 3, 2]\nlam = 0.0\n[relaxation]\neta_auto = 1\n')
    with pytest.raises(ProfileError, match="relaxation.eta_auto"):
        load_circuit(f)


@dataclass(frozen=True)
class _OwnDampingEngine(LayeredEngine):
    """The layered engine without a shared damping: every relaxation works out its own η."""

    def damping(self, spec, hw):
        return None


@pytest.mark.parametrize("phases", ["single", "twin"])
def test_training_step_shares_one_damping_per_chip(repo_root, subset, phases):
    """A training step works out η once per chip (``Engine.damping``) and passes it to
    each relaxation: the phases, the rule's update and the iteration counts are those
    of relaxations that each compute η for themselves (the noisy SLM chip, eta_auto)."""
    spec = replace(load_circuit(repo_root / "circuits" / "skew-small.toml"), eta_auto=True).physics()
    profile = load_profile(repo_root / "devices" / "slm-10bit.toml")
    params = init_params(spec, jax.random.PRNGKey(0))
    hw = build(spec, profile, params, jax.random.PRNGKey(1))
    hw2 = build(spec, profile, params, jax.random.PRNGKey(2)) if phases == "twin" else None
    train_set, _ = subset
    x = jnp.asarray(train_set.x[:16], jnp.float32)
    y = jax.nn.one_hot(jnp.asarray(train_set.y[:16]), 10, dtype=jnp.float32)
    kind = StepKind(rule="dyadic", write_mode="shadow", phases=phases)
    shared, own = LayeredEngine(), _OwnDampingEngine()
    assert float(shared.damping(spec, hw)) == float(relaxation_eta(spec, hw))
    assert shared.damping(replace(spec, eta_auto=False), hw) is None
    key = jax.random.PRNGKey(3)

    def step(engine):
        return jax.jit(lambda h, h2: (lambda p: (p.update, p.iterations))(
            phases_and_rule(spec, kind, engine, h, h2, x, y, 0.05, key)))(hw, hw2)

    (ua, ia), (ub, ib) = step(shared), step(own)
    assert int(ia) == int(ib)
    for u, v in zip(jax.tree_util.tree_leaves(ua), jax.tree_util.tree_leaves(ub)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=0, atol=1e-6 * float(np.max(np.abs(v))))
