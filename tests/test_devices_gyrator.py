"""Gyrator array: exact skew symmetry at ε = 0, symmetric part ∝ ε, realized blocks, noise."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anasim.devices import GyratorArray, IdealCoupling


@pytest.fixture(autouse=True)
def _float64():
    """These tests check the device physics in float64 (their own arrays are float64):
    float64 on for each test (the library leaves the global flag alone)."""
    with jax.enable_x64(True):
        yield


K = 1.380649e-23


def _theta(shape=(4, 6), seed=1, scale=0.2, dtype=jnp.float64):
    return (scale * jax.random.normal(jax.random.key(seed), shape)).astype(dtype)


def _prog(dev, th, seed=0):
    return dev.program(dev.fabricate(jax.random.key(seed), th.shape), jax.random.key(seed), th)


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), transpose=st.booleans())
def test_exactly_skew_at_zero_mismatch(seed, transpose):
    dev = GyratorArray(w_max=0.5, offset_sigma_a=1e-6, bits=6)  # offsets and levels don't break skewness
    shape = (6, 4) if transpose else (4, 6)
    s = _prog(dev, _theta(shape, seed), seed)
    m = np.asarray(dev.effective(s))
    assert m.shape == (10, 10)
    assert np.array_equal(m, -m.T)


@pytest.mark.parametrize("eps", [1e-3, 1e-2, 0.1, -0.05])
def test_symmetric_part_norm_proportional_to_mismatch(eps):
    th = _theta()
    s = _prog(GyratorArray(epsilon=eps), th)
    m = np.asarray(GyratorArray(epsilon=eps).effective(s))
    sym = (m + m.T) / 2
    # symmetric part: ε θ / 2 in the (b, a) block and its transpose
    assert np.linalg.norm(sym) == pytest.approx(abs(eps) * np.linalg.norm(np.asarray(th)) / math.sqrt(2), rel=1e-12)
    skew = (m - m.T) / 2
    assert np.linalg.norm(skew) == pytest.approx((1 + eps / 2) * np.linalg.norm(np.asarray(th)) * math.sqrt(2), rel=1e-12)


def test_blocks_match_the_reads_and_output_conductance_is_diagonal():
    dev = GyratorArray(epsilon=0.02, epsilon_sigma=0.05, g_out_s=2e-6, g_max_s=100e-6, w_max=0.5)
    th = _theta()
    s = _prog(dev, th, 3)
    n_b, n_a = th.shape
    m = np.asarray(dev.effective(s))
    eps = np.asarray(dev.fabricate(jax.random.key(3), th.shape).eps)
    np.testing.assert_allclose(m[n_a:, :n_a], (1 + eps) * np.asarray(th), rtol=1e-14)
    np.testing.assert_array_equal(m[:n_a, n_a:], -np.asarray(th).T)
    np.testing.assert_array_equal(np.asarray(dev.forward(s)), m[n_a:, :n_a])
    np.testing.assert_array_equal(np.asarray(dev.backward(s)), m[:n_a, n_a:])
    r = 2e-6 / 100e-6  # output conductance per unit of transconductance (1 / intrinsic gain)
    np.testing.assert_allclose(np.diag(m)[:n_a], -r * np.abs(np.asarray(th)).sum(0), rtol=1e-12)
    np.testing.assert_allclose(np.diag(m)[n_a:], -r * np.abs((1 + eps) * np.asarray(th)).sum(1), rtol=1e-12)
    assert np.count_nonzero(m[:n_a, :n_a] - np.diag(np.diag(m)[:n_a])) == 0
    x = jax.random.uniform(jax.random.key(5), (3, n_a))
    y = jax.random.uniform(jax.random.key(6), (3, n_b))
    np.testing.assert_allclose(dev.mvm(s, x, None), np.asarray(x) @ m[n_a:, :n_a].T, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dev.mvm_t(s, y, None), np.asarray(y) @ m[:n_a, n_a:].T, rtol=1e-12, atol=1e-15)


def test_zeroed_gyrator_equals_the_ideal_skew_pair():
    dev = GyratorArray()
    th = _theta()
    s = _prog(dev, th)
    ideal = IdealCoupling()
    si = ideal.program(None, None, th)
    x = jax.random.uniform(jax.random.key(5), (3, 6))
    y = jax.random.uniform(jax.random.key(6), (3, 4))
    np.testing.assert_array_equal(dev.mvm(s, x, None), ideal.mvm(si, x, None))
    np.testing.assert_array_equal(dev.mvm_t(s, y, None), -ideal.mvm_t(si, y, None))
    jaxpr = str(jax.make_jaxpr(dev.mvm)(s, x, jax.random.key(0)))
    assert "random" not in jaxpr and jaxpr.count("dot_general") == 1


def test_ota_noise_std_matches_closed_form():
    g_max, v_fs, w_max, gamma, df, temp = 50e-6, 0.4, 0.5, 2.0, 1e9, 300.0
    dev = GyratorArray(w_max=w_max, g_max_s=g_max, v_fs_v=v_fs, noise_factor=gamma, bandwidth_hz=df,
                       temperature_k=temp)
    th = _theta()
    s = _prog(dev, th)
    g = np.abs(np.asarray(th)) * g_max / w_max  # transconductances in S
    unit = g_max * v_fs / w_max  # amperes per normalized unit
    sig_b = np.sqrt(4 * K * temp * gamma * df * g.sum(1)) / unit
    sig_a = np.sqrt(4 * K * temp * gamma * df * g.sum(0)) / unit
    keys = jax.random.split(jax.random.key(1), 20000)
    x = jnp.ones(6)
    yb = np.asarray(jax.vmap(lambda k: dev.mvm(s, x, k))(keys))
    ya = np.asarray(jax.vmap(lambda k: dev.mvm_t(s, jnp.ones(4), k))(keys))
    tol = 4 / math.sqrt(2 * 20000)
    assert np.all(np.abs(yb.std(0) / sig_b - 1) < tol) and np.all(np.abs(ya.std(0) / sig_a - 1) < tol)


def test_quantized_levels_symmetric_with_zero():
    dev = GyratorArray(w_max=0.5, bits=3)
    s = _prog(dev, jnp.linspace(-1, 1, 41).reshape(1, 41))
    levels = np.unique(np.asarray(s.theta))
    step = 0.5 / 3
    np.testing.assert_allclose(levels, step * np.arange(-3, 4), atol=1e-15)


def test_float32_jit_and_seeds():
    dev = GyratorArray(epsilon_sigma=0.01, offset_sigma_a=1e-7, bandwidth_hz=1e8)
    th = _theta(dtype=jnp.float32)
    s = jax.jit(dev.program)(dev.fabricate(jax.random.key(0), th.shape), jax.random.key(0), th)
    assert s.fwd.dtype == jnp.float32
    x = jnp.ones((2, 6), jnp.float32)
    f = jax.jit(dev.mvm)
    a, b, c = f(s, x, jax.random.key(1)), f(s, x, jax.random.key(1)), f(s, x, jax.random.key(2))
    assert a.dtype == jnp.float32 and jax.jit(dev.mvm_t)(s, jnp.ones((2, 4), jnp.float32), jax.random.key(1)).dtype == jnp.float32
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.slow
def test_output_conductance_leak_from_the_ota_physics_in_si_units(repo_root):
    """The node leak derived in amperes from the profile's physical numbers.

    Each OTA's output conductance follows its bias like its transconductance:
    g_o = g · (g_out at full scale / g_max). The current the OTAs driving one
    node sink at node voltage v = s · v_fs, divided by the current unit
    g_max · v_fs / w_max, is the normalized leak G · s.
    """
    from anasim.devices import load_profile

    dev = load_profile(repo_root / "devices" / "gyrator-gmc.toml").coupling
    g_max, g_out, w_max, v_fs = 100e-6, 2e-6, 0.5, 0.5  # the file's numbers, restated
    assert (dev.g_max_s, dev.g_out_s, dev.w_max, dev.v_fs_v) == (g_max, g_out, w_max, v_fs)
    n_b, n_a = 128, 784
    th = np.asarray(jax.random.uniform(jax.random.key(0), (n_b, n_a), jnp.float64, -1, 1)) / math.sqrt(n_a)
    s = _prog(dev, jnp.asarray(th))
    fwd = np.asarray(s.fwd)
    g_link_b = np.abs(fwd) * g_max / w_max            # S, the OTAs whose outputs are on layer b
    g_link_a = np.abs(th) * g_max / w_max             # S, those on layer a
    r_o_b = (1 / g_out) * g_max / g_link_b            # Ω: r_o ∝ 1 / I_bias ∝ 1 / g
    r_o_a = (1 / g_out) * g_max / g_link_a
    state = 0.7
    i_b = (state * v_fs / r_o_b).sum(1)               # A sunk on each b node
    i_a = (state * v_fs / r_o_a).sum(0)
    unit = g_max * v_fs / w_max
    g_a, g_b = (np.asarray(v) for v in dev.output_conductance(s))
    np.testing.assert_allclose(g_b * state, i_b / unit, rtol=1e-12)
    np.testing.assert_allclose(g_a * state, i_a / unit, rtol=1e-12)
    # a full-scale link leaks 1 / (g_m r_o) = g_out / g_max of its coupling w_max
    one = _prog(dev, jnp.full((1, 1), w_max))
    assert float(dev.output_conductance(one)[0][0]) == pytest.approx(w_max * g_out / g_max, rel=1e-12)
    # a hidden node of a 784-input layer at initialization leaks ≈ 784 · E|θ| / 50,
    # far below the ≈ 7.8 of 784 OTAs each kept at 500 kΩ
    assert g_b.mean() == pytest.approx(n_a * 0.5 / math.sqrt(n_a) * g_out / g_max, rel=0.02)
    assert g_b.max() < 0.5 < n_a * w_max * g_out / g_max


def test_unbiased_links_load_nothing():
    dev = GyratorArray(g_out_s=2e-6, epsilon_sigma=0.05)
    th = jnp.zeros((3, 5)).at[1, 2].set(0.25)
    g_a, g_b = dev.output_conductance(_prog(dev, th))
    assert np.count_nonzero(np.asarray(g_a)) == 1 and np.count_nonzero(np.asarray(g_b)) == 1
