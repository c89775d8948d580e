"""DAC/ADC: quantization bounds, levels, clipping, fixed-pattern DNL, ideal reduction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anasim.devices import ADC, DAC, IdealConverter


@pytest.fixture(autouse=True)
def _float64():
    """These tests check the device physics in float64 (their own arrays are float64):
    float64 on for each test (the library leaves the global flag alone)."""
    with jax.enable_x64(True):
        yield

KEY = jax.random.key(0)


@settings(max_examples=15)
@given(bits=st.integers(1, 12), lo=st.floats(-2, 0.5), span=st.floats(0.1, 3),
       xs=st.lists(st.floats(0, 1), min_size=16, max_size=16))
def test_quantization_error_at_most_half_lsb_inside_range(bits, lo, span, xs):
    hi = lo + span
    x = lo + span * np.asarray(xs)
    lsb = span / (2**bits - 1)
    for conv in (ADC(bits=bits, v_min=lo, v_max=hi), DAC(bits=bits, v_min=lo, v_max=hi)):
        y = np.asarray(conv.convert(conv.fabricate(KEY, x.shape), jnp.asarray(x), KEY))
        assert np.all(np.abs(y - x) <= lsb / 2 * (1 + 1e-9) + 1e-12)
        # outputs are levels: lo + k·LSB with integer k in [0, 2^bits − 1]
        k = (y - lo) / lsb
        assert np.allclose(k, np.round(k), atol=1e-6)
        assert k.min() > -1e-6 and k.max() < 2**bits - 1 + 1e-6


def test_clipping_and_level_count():
    adc = ADC(bits=3)
    x = jnp.linspace(-1.0, 2.0, 1001)
    y = np.asarray(adc.convert(adc.fabricate(KEY, x.shape), x, KEY))
    assert y.min() == 0.0 and y.max() == 1.0
    assert len(np.unique(y)) == 8


def test_zeroed_converters_equal_the_ideal():
    x = jax.random.normal(KEY, (7, 5)) * 3
    for conv in (ADC(bits=0, clip=False), DAC(bits=0, clip=False)):
        y = conv.convert(conv.fabricate(KEY, (5,)), x, KEY)
        assert np.array_equal(np.asarray(y), np.asarray(IdealConverter().convert(None, x, KEY)))


def test_dtype_is_preserved():
    adc = ADC(bits=8, dnl_lsb=0.2, inl_lsb=0.5, noise_lsb=0.3, gain_sigma=0.01, offset_sigma_lsb=0.2)
    inst = adc.fabricate(KEY, (4,))
    x = jnp.linspace(0, 1, 12, dtype=jnp.float32).reshape(3, 4)
    assert jax.jit(adc.convert)(inst, x, KEY).dtype == jnp.float32
    dac = DAC(bits=8, dnl_lsb=0.2, inl_lsb=0.5, noise_lsb=0.3)
    assert jax.jit(dac.convert)(dac.fabricate(KEY, (4,)), x, KEY).dtype == jnp.float32


def test_gain_and_offset_errors():
    # unquantized: output = x (1 + gain) + offset · span (1 LSB = the span when bits = 0)
    adc = ADC(bits=0, clip=False, gain_error=0.05, offset_lsb=0.01)
    x = jnp.linspace(0, 1, 11)
    y = adc.convert(adc.fabricate(KEY, x.shape), x, KEY)
    assert np.allclose(np.asarray(y), np.asarray(x) * 1.05 + 0.01, atol=1e-12)


def test_dnl_is_a_fixed_monotonic_pattern_without_missing_codes():
    adc = ADC(bits=5, dnl_lsb=0.3)
    inst = adc.fabricate(jax.random.key(3), (2,))
    assert inst.dnl.shape == (2, 31) and float(jnp.abs(inst.dnl).max()) <= 0.45
    x = jnp.linspace(-0.01, 1.01, 20001)[:, None] * jnp.ones((1, 2))
    y = np.asarray(adc.convert(inst, x, KEY))
    lsb = 1 / 31
    assert np.all(np.diff(y, axis=0) >= 0)  # monotonic transfer
    assert all(len(np.unique(y[:, c])) == 32 for c in range(2))  # every code appears
    # each code's width is 1 LSB plus the difference of its two boundary deviations
    widths = np.array([(y[:, 0] == (k * lsb)).sum() for k in range(1, 31)]) * (1.02 / 20000)
    d = np.asarray(inst.dnl[0])
    assert np.allclose(widths / lsb, 1 + d[1:] - d[:-1], atol=0.02)
    # the same chip gives the same pattern; another chip a different one
    assert np.array_equal(np.asarray(adc.fabricate(jax.random.key(3), (2,)).dnl), np.asarray(inst.dnl))
    assert not np.array_equal(np.asarray(adc.fabricate(jax.random.key(4), (2,)).dnl), np.asarray(inst.dnl))


def test_inl_bow_bends_the_transfer_at_mid_scale():
    bits, inl = 6, 3.0
    adc = ADC(bits=bits, inl_lsb=inl)
    top = 2**bits - 1
    lsb = 1 / top
    x = jnp.array([0.0, 0.5, 1.0])
    y = np.asarray(adc.convert(adc.fabricate(KEY, x.shape), x, KEY))
    # thresholds moved up by INL(u) = inl·4u(1−u) LSB: mid-scale reads ≈ inl LSB low, ends exact
    assert y[0] == 0 and y[2] == 1
    assert abs((0.5 - y[1]) / lsb - inl) <= 0.5 + 1e-9
    dac = DAC(bits=bits, inl_lsb=inl)
    yd = np.asarray(dac.convert(dac.fabricate(KEY, x.shape), x, KEY))
    code = round(0.5 / lsb)
    assert yd[1] == pytest.approx((code + inl * 4 * (code / top) * (1 - code / top)) * lsb)


def test_noise_std_in_lsb_and_seeds():
    adc = ADC(bits=0, clip=False, noise_lsb=0.01)  # unquantized: 1 LSB = the span
    x = jnp.zeros((100_000,))
    inst = adc.fabricate(KEY, x.shape)
    a = np.asarray(adc.convert(inst, x, jax.random.key(1)))
    assert abs(a.std() / 0.01 - 1) < 0.02
    assert np.array_equal(a, np.asarray(adc.convert(inst, x, jax.random.key(1))))
    assert not np.array_equal(a, np.asarray(adc.convert(inst, x, jax.random.key(2))))


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError):
        ADC(v_min=1.0, v_max=0.0)
    with pytest.raises(ValueError):
        DAC(bits=0, inl_lsb=1.0)
