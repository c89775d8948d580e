"""Noise primitives against their closed forms, and sample statistics against them."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.devices import noise


@pytest.fixture(autouse=True)
def _float64():
    """These tests check the device physics in float64 (their own arrays are float64):
    float64 on for each test (the library leaves the global flag alone)."""
    with jax.enable_x64(True):
        yield

K = 1.380649e-23  # J/K, CODATA 2018 (exact)
Q = 1.602176634e-19  # C, CODATA 2018 (exact)


def test_constants_are_codata_2018():
    assert noise.K_B == K and noise.Q_E == Q


@pytest.mark.parametrize("g,t,df", [(1e-3, 300.0, 1e6), (50e-6, 77.0, 25e6), (2.0, 4.2, 1.0)])
def test_closed_forms(g, t, df):
    assert float(noise.johnson_current_std(g, t, df)) == pytest.approx(math.sqrt(4 * K * t * g * df), rel=1e-12)
    assert float(noise.johnson_voltage_std(1 / g, t, df)) == pytest.approx(math.sqrt(4 * K * t * df / g), rel=1e-12)
    i = g * 1e-3
    assert float(noise.shot_current_std(i, df)) == pytest.approx(math.sqrt(2 * Q * i * df), rel=1e-12)
    assert float(noise.shot_current_std(-i, df)) == float(noise.shot_current_std(i, df))
    assert float(noise.ktc_voltage_std(1e-12, t)) == pytest.approx(math.sqrt(K * t / 1e-12), rel=1e-12)


def test_sample_std_matches_closed_forms():
    n = 200_000
    tol = 4 / math.sqrt(2 * n)  # 4 σ of a sample standard deviation
    g, t, df = 1e-4, 300.0, 1e8
    s = np.asarray(noise.johnson_current_noise(jax.random.key(1), g, t, df, shape=(n,)))
    assert abs(s.std() / math.sqrt(4 * K * t * g * df) - 1) < tol
    assert abs(s.mean()) < 5 * s.std() / math.sqrt(n)
    r = 1e3
    v = np.asarray(noise.johnson_voltage_noise(jax.random.key(2), r, t, df, shape=(n,)))
    assert abs(v.std() / math.sqrt(4 * K * t * r * df) - 1) < tol
    i = 1e-6
    sh = np.asarray(noise.shot_noise(jax.random.key(3), i, df, shape=(n,)))
    assert abs(sh.std() / math.sqrt(2 * Q * i * df) - 1) < tol


def test_samplers_broadcast_keep_dtype_and_are_reproducible():
    g = jnp.array([1e-3, 2e-3], jnp.float32)
    a = noise.johnson_current_noise(jax.random.key(0), g, 300.0, 1e6, shape=(5, 2), dtype=jnp.float32)
    b = noise.johnson_current_noise(jax.random.key(0), g, 300.0, 1e6, shape=(5, 2), dtype=jnp.float32)
    c = noise.johnson_current_noise(jax.random.key(1), g, 300.0, 1e6, shape=(5, 2), dtype=jnp.float32)
    assert a.shape == (5, 2) and a.dtype == jnp.float32
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
