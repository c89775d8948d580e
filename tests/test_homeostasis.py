"""Jacobian homeostasis: closed forms on random matrices, the circuit's Jacobian
against its dense construction, and the asymmetry-angle initialization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anasim.analysis import homeostasis as hm
from anasim.circuits import layered
from anasim.circuits.spec import CircuitSpec
from anasim.errors import ProfileError


@pytest.fixture(autouse=True)
def _float64():
    """These tests check the Jacobian identities in float64 (their own arrays are float64):
    float64 on for each test (the library leaves the global flag alone)."""
    with jax.enable_x64(True):
        yield


def _half_asym(J):
    return 0.5 * np.sum((J - J.T) ** 2)


def test_hutchinson_mean_matches_half_asymmetry_norm():
    rng = np.random.default_rng(0)
    J = rng.normal(size=(8, 8))
    eps = jax.random.normal(jax.random.PRNGKey(1), (40000, 8), jnp.float64)
    Jj = jnp.asarray(J)
    samples = np.asarray(hm.homeostatic_samples(lambda v: Jj @ v, lambda v: Jj.T @ v, eps))
    want = _half_asym(J)
    se = samples.std() / np.sqrt(len(samples))
    assert abs(samples.mean() - want) < 5 * se
    assert se < 0.05 * want           # the check has teeth


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_exact_expectation_is_half_asymmetry_norm(n, seed):
    J = np.random.default_rng(seed).normal(size=(n, n))
    assert abs(float(hm.homeostatic_loss_exact(J)) - _half_asym(J)) < 1e-10 * max(1.0, _half_asym(J))
    assert abs(float(hm.asymmetry_norm(J)) - _half_asym(J)) < 1e-10 * max(1.0, _half_asym(J))


def test_functional_symmetry_extremes():
    M = np.random.default_rng(2).normal(size=(6, 6))
    assert float(hm.functional_symmetry(M + M.T)) == pytest.approx(1.0, abs=1e-14)
    assert float(hm.functional_symmetry(M - M.T)) == pytest.approx(0.0, abs=1e-14)
    # S and A of equal norm: ½
    S, A = np.diag([3.0, 4.0]), np.array([[0.0, 5.0 / np.sqrt(2)], [-5.0 / np.sqrt(2), 0.0]])
    assert float(hm.functional_symmetry(S + A)) == pytest.approx(0.5, abs=1e-14)


def _dense_W(spec, p):
    sizes = spec.sizes[1:]
    off = np.concatenate([[0], np.cumsum(sizes)])
    W = np.zeros((off[-1], off[-1]))
    for k in range(len(sizes) - 1):
        W[off[k + 1]:off[k + 2], off[k]:off[k + 1]] = np.asarray(p.thetas[k])
        W[off[k]:off[k + 1], off[k + 1]:off[k + 2]] = np.asarray(p.backward[k])
    return W


@pytest.mark.slow
def test_circuit_jacobian_and_its_hutchinson_loss():
    spec = CircuitSpec(sizes=(4, 5, 6, 3), lam="asymmetric", backward="independent", activations=("sigmoid",),
                       dtype="float64", asymmetry_angle=50.0, init_scale=2.0)
    p = layered.init_params(spec, jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 4), jnp.float64)
    s = tuple(jax.random.uniform(jax.random.PRNGKey(2 + k), (2, n), jnp.float64) for k, n in enumerate(spec.sizes[1:]))
    W = _dense_W(spec, p)
    pre = np.concatenate([np.asarray(a) for a in layered.preactivation_map(spec, p, x, s)], -1)
    D = 1 / (1 + np.exp(-pre)) * (1 - 1 / (1 + np.exp(-pre)))
    K = np.asarray(hm.circuit_jacobian(spec, p, x, s))
    for b in range(2):
        r = np.sqrt(D[b])
        np.testing.assert_allclose(K[b], r[:, None] * W * r[None, :], atol=1e-14)
    want = np.mean([_half_asym(K[b]) for b in range(2)])
    loss = jax.jit(hm.circuit_homeostatic_loss, static_argnums=(0, 5))
    est = float(loss(spec, p, x, s, jax.random.PRNGKey(10), 2000))
    assert est == pytest.approx(want, rel=0.1)
    # its parameter gradient (fixed point and slopes held) is the closed form's
    g = jax.jit(jax.grad(loss, argnums=1), static_argnums=(0, 5))(spec, p, x, s, jax.random.PRNGKey(0), 4000)
    th = np.asarray(p.thetas[0])
    ps = np.asarray(p.backward[0])
    g_true = np.zeros_like(th)
    for b in range(2):
        r1, r2 = np.sqrt(D[b][:5]), np.sqrt(D[b][5:11])
        # ½‖r2 θ r1 − (r1 ψ r2)ᵀ‖² per block pair, twice (upper and lower block): d/dθ
        diff = r2[:, None] * th * r1[None, :] - (r1[:, None] * ps * r2[None, :]).T
        g_true += 2 * diff * r2[:, None] * r1[None, :] / 2
    err = np.linalg.norm(np.asarray(g.thetas[0]) - g_true) / np.linalg.norm(g_true)
    assert err < 0.1


@pytest.mark.parametrize("deg", [0.0, 30.0, 60.0, 90.0, 135.0])
def test_asymmetry_angle_initialization(deg):
    spec = CircuitSpec(sizes=(300, 400, 350), lam="asymmetric", backward="independent", asymmetry_angle=deg)
    p = layered.init_params(spec, jax.random.PRNGKey(3))
    wf = np.asarray(p.thetas[0], np.float64).T
    wb = np.asarray(p.backward[0], np.float64)
    cos = np.sum(wf * wb) / (np.linalg.norm(wf) * np.linalg.norm(wb))
    assert cos == pytest.approx(np.cos(np.radians(deg)), abs=0.01)
    if deg == 0.0:
        np.testing.assert_array_equal(wb, wf)
    # same scale as the forward couplings
    assert np.linalg.norm(wb) == pytest.approx(np.linalg.norm(wf), rel=0.02)


def test_asymmetry_angle_validation_and_study_path(tmp_path):
    with pytest.raises(ProfileError, match="asymmetry_angle"):
        CircuitSpec(sizes=(3, 4, 2), lam="asymmetric", backward="independent", asymmetry_angle=200.0)
    with pytest.raises(ProfileError, match="asymmetry_angle"):
        CircuitSpec(sizes=(3, 4, 2), lam=1.0, asymmetry_angle=10.0)
    from anasim.study.spec import resolve_path
    cfg = {"circuit": {"network": {"sizes": [3, 4, 2], "asymmetry_angle": 30.0}}, "device": {}}
    assert resolve_path(cfg, "circuit.asymmetry_angle", "parameter") == "circuit.network.asymmetry_angle"
    f = tmp_path / "c.toml"
    f.write_text('[network]\nsizes = [3, 4, 2]\nlam = "asymmetric"\nbackward = "independent"\n'
                 'asymmetry_angle = 45\n')
    from anasim.circuits.spec import load_circuit
    assert load_circuit(f).asymmetry_angle == 45.0
