"""Resistive crossbar: ideal reduction, reciprocity, noise statistics, drift, write response bounds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anasim.devices import IdealCoupling, ResistiveCrossbar


@pytest.fixture(autouse=True)
def _float64():
    """These tests check the device physics in float64 (their own arrays are float64):
    float64 on for each test (the library leaves the global flag alone)."""
    with jax.enable_x64(True):
        yield

K = 1.380649e-23


def _w(shape, scale=0.2, seed=1, dtype=jnp.float64):
    return (scale * jax.random.normal(jax.random.key(seed), shape)).astype(dtype)


def test_zeroed_crossbar_equals_the_ideal_and_is_reciprocal():
    dev = ResistiveCrossbar(w_max=1.0)
    w = _w((4, 6))
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    ideal = IdealCoupling()
    si = ideal.program(None, None, w)
    x = jax.random.uniform(jax.random.key(2), (3, 6))
    y = jax.random.uniform(jax.random.key(3), (3, 4))
    np.testing.assert_allclose(dev.effective(s), w, atol=1e-15)
    np.testing.assert_allclose(dev.mvm(s, x, None), ideal.mvm(si, x, None), atol=1e-14)
    np.testing.assert_allclose(dev.mvm_t(s, y, None), ideal.mvm_t(si, y, None), atol=1e-14)
    jaxpr = str(jax.make_jaxpr(dev.mvm)(s, x, jax.random.key(0)))
    assert "random" not in jaxpr and jaxpr.count("dot_general") == 1


def test_conductances_stay_in_range_and_quantize_to_half_a_step():
    bits = 4
    dev = ResistiveCrossbar(w_max=0.5, g_min_s=50e-6, g_max_s=225e-6, bits=bits)
    w = jnp.clip(_w((4, 6), 0.2), -0.5, 0.5)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    g = np.asarray(s.g)
    assert g.min() >= 50e-6 and g.max() <= 225e-6 * (1 + 1e-12)
    step_w = 0.5 / (2**bits - 1)
    assert np.abs(np.asarray(s.w_eff - w)).max() <= step_w / 2 * (1 + 1e-9)
    assert len(np.unique(np.round(g / 1e-9))) <= 2**bits


def test_programming_noise_follows_the_pcm_polynomial():
    p = (0.26 / 25, 1.97 / 25, -1.17 / 25)
    dev = ResistiveCrossbar(w_max=1.0, g_min_s=0.25e-6, g_max_s=25e-6, prog_noise=p)
    frac = 0.5  # target G⁺ = G_min + 0.5 (G_max − G_min)
    w = jnp.full((200, 200), frac)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(1), w)
    g0 = 0.25e-6 + frac * (25e-6 - 0.25e-6)
    x = g0 / 25e-6
    sigma = (0.26 + 1.97 * x - 1.17 * x * x) * 1e-6  # the published fit, in siemens
    sample = np.asarray(s.g[0]).ravel()
    assert abs(sample.std() / sigma - 1) < 4 / math.sqrt(2 * sample.size)
    assert abs(sample.mean() - g0) < 5 * sigma / math.sqrt(sample.size)


def test_read_and_thermal_noise_std_match_closed_form():
    g_min, g_max, w_max, rn, v_read, df, temp = 10e-6, 110e-6, 0.5, 0.02, 0.3, 1e9, 300.0
    dev = ResistiveCrossbar(w_max=w_max, g_min_s=g_min, g_max_s=g_max, read_noise=rn, v_read_v=v_read,
                            bandwidth_hz=df, temperature_k=temp)
    w = _w((4, 6), 0.2)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    x = jnp.linspace(0.2, 1.0, 6)
    g = np.asarray(s.g)
    # independent SI computation of one column's current noise
    v = v_read * np.asarray(x)
    var_read = ((rn * g[0]) ** 2 + (rn * g[1]) ** 2) @ (v * v)
    var_th = 4 * K * temp * df * (g[0] + g[1]).sum(1)
    unit = v_read * (g_max - g_min) / w_max  # amperes per normalized unit
    sigma = np.sqrt(var_read + var_th) / unit
    keys = jax.random.split(jax.random.key(4), 20000)
    ys = np.asarray(jax.vmap(lambda k: dev.mvm(s, x, k))(keys))
    assert np.all(np.abs(ys.std(0) / sigma - 1) < 4 / math.sqrt(2 * 20000))
    np.testing.assert_allclose(ys.mean(0), np.asarray(w @ x), atol=5 * sigma.max() / math.sqrt(20000))
    # the transposed read uses the same devices: rows collect their own thermal noise
    yt = np.asarray(jax.vmap(lambda k: dev.mvm_t(s, jnp.ones(4), k))(keys))
    var_t = (((rn * g[0]) ** 2 + (rn * g[1]) ** 2).T @ np.full(4, v_read**2)) + 4 * K * temp * df * (g[0] + g[1]).sum(0)
    assert np.all(np.abs(yt.std(0) / (np.sqrt(var_t) / unit) - 1) < 4 / math.sqrt(2 * 20000))


def test_drift_power_law():
    dev = ResistiveCrossbar(w_max=1.0, g_min_s=0.0, g_max_s=25e-6, drift_nu=0.07, drift_t0_s=2.0)
    w = jnp.abs(_w((4, 6), 0.3))
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    aged = dev.drift(s, 998.0)  # t = t0 + 998 s = 1000 s
    np.testing.assert_allclose(aged.g, np.asarray(s.g) * (1000.0 / 2.0) ** -0.07, rtol=1e-12)
    np.testing.assert_allclose(aged.w_eff, np.asarray(s.w_eff) * 500.0 ** -0.07, rtol=1e-12)


_updates = st.lists(
    st.tuples(st.sampled_from([-100.0, -1.0, -0.1, -1e-3, 0.0, 1e-3, 0.1, 1.0, 100.0]),
              st.integers(0, 2**16)),
    min_size=1, max_size=12)


_DEVICES = [
    ResistiveCrossbar(w_max=0.5, g_min_s=50e-6, g_max_s=225e-6, bits=0, d2d_sigma=0.3,
                      soft_bounds=True, gain_potentiation=1.3, gain_depression=0.4, cycle_noise=1.5),
    ResistiveCrossbar(w_max=0.5, g_min_s=50e-6, g_max_s=225e-6, bits=3, d2d_sigma=0.3,
                      soft_bounds=False, gain_potentiation=1.3, gain_depression=0.4, cycle_noise=1.5),
    ResistiveCrossbar(w_max=0.5, g_min_s=50e-6, g_max_s=225e-6, bits=8),
]


@settings(max_examples=10)
@given(seq=_updates, which=st.sampled_from([0, 1, 2]))
def test_write_response_stays_inside_bounds(seq, which):
    g_min = 50e-6
    dev = _DEVICES[which]
    inst = dev.fabricate(jax.random.key(0), (4, 6))
    s = dev.program(inst, jax.random.key(1), jnp.zeros((4, 6)))
    g_dev_max = np.asarray(inst.g_max)
    for scale, seed in seq:
        dw = scale * jax.random.normal(jax.random.key(seed), (4, 6))
        s = dev.apply_update(s, jax.random.key(seed + 1), dw)
        g = np.asarray(s.g)
        assert np.all(g >= g_min) and np.all(g <= g_dev_max) and np.all(np.isfinite(g))
        assert np.all(g_dev_max <= 225e-6 * (1 + 5 * 0.3) + 1e-12)


def test_write_response_soft_bounds_and_asymmetry():
    g_min, g_max, w_max = 0.0, 100e-6, 1.0
    dev = ResistiveCrossbar(w_max=w_max, g_min_s=g_min, g_max_s=g_max, soft_bounds=True,
                            gain_potentiation=1.0, gain_depression=0.5)
    s = dev.program(dev.fabricate(jax.random.key(0), (1, 1)), jax.random.key(0), jnp.zeros((1, 1)))
    # a positive request with G⁻ at G_min potentiates G⁺: a full step at the lower bound
    dw = 0.2
    s1 = dev.apply_update(s, None, jnp.full((1, 1), dw))
    g_plus = float(s1.g[0, 0, 0])
    assert g_plus == pytest.approx(dw * g_max) and float(s1.g[1, 0, 0]) == 0.0
    # the next equal request moves less (soft bound: step ∝ (G_max − G)/range)
    s2 = dev.apply_update(s1, None, jnp.full((1, 1), dw))
    assert float(s2.g[0, 0, 0]) - g_plus == pytest.approx(dw * g_max * (g_max - g_plus) / g_max)
    # an equal negative request depresses G⁺ (which has room), by gain_d · (G − G_min)/range
    s3 = dev.apply_update(s1, None, jnp.full((1, 1), -dw))
    assert float(s3.g[0, 0, 0]) == pytest.approx(g_plus - 0.5 * dw * g_max * g_plus / g_max)
    assert float(s3.g[1, 0, 0]) == 0.0
    # a larger negative request empties G⁺ first, then potentiates G⁻ with the rest
    s4 = dev.apply_update(s1, None, jnp.full((1, 1), -3 * dw))
    assert float(s4.g[1, 0, 0]) > 0.0


def test_zeroed_write_response_adds_the_update_exactly():
    dev = ResistiveCrossbar(w_max=0.5)
    w = _w((4, 6), 0.1)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), jnp.full_like(w, 0.25) * jnp.sign(w))
    dw = _w((4, 6), 0.01, seed=7)
    s2 = dev.apply_update(s, jax.random.key(3), dw)
    np.testing.assert_allclose(s2.w_eff, np.asarray(s.w_eff + dw), atol=1e-15)
    # and across zero: the pair hands over from one device to the other
    s3 = dev.apply_update(s, jax.random.key(3), -0.4 * jnp.sign(w))
    np.testing.assert_allclose(s3.w_eff, np.asarray(-0.15 * jnp.sign(w)), atol=1e-15)
    assert np.all(np.asarray(s3.g).min(0) == dev.g_min_s)


def test_float32_and_seeds():
    dev = ResistiveCrossbar(read_noise=0.01, prog_noise=(0.02, 0.0, 0.0), d2d_sigma=0.05, cycle_noise=0.2)
    w = _w((4, 6), 0.1, dtype=jnp.float32)
    inst = dev.fabricate(jax.random.key(0), w.shape)
    s = jax.jit(dev.program)(inst, jax.random.key(1), w)
    assert s.g.dtype == jnp.float32 and s.w_eff.dtype == jnp.float32
    x = jnp.ones((2, 6), jnp.float32)
    f = jax.jit(dev.mvm)
    assert f(s, x, jax.random.key(0)).dtype == jnp.float32
    assert np.array_equal(np.asarray(f(s, x, jax.random.key(0))), np.asarray(f(s, x, jax.random.key(0))))
    assert not np.array_equal(np.asarray(f(s, x, jax.random.key(0))), np.asarray(f(s, x, jax.random.key(1))))
    s2 = jax.jit(dev.apply_update)(s, jax.random.key(2), jnp.full((4, 6), 0.01, jnp.float32))
    assert s2.g.dtype == jnp.float32


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError):
        ResistiveCrossbar(g_min_s=1e-4, g_max_s=1e-5)
    with pytest.raises(ValueError):
        ResistiveCrossbar(prog_noise=(0.0, -0.1, 0.0))
