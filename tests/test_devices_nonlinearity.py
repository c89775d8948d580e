"""Neuron nonlinearities are non-expansive, with the stated (tight) Lipschitz constants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anasim.devices.nonlinearity import LIPSCHITZ, NONLINEARITIES


@pytest.fixture(autouse=True)
def _float64():
    """These tests check the device physics in float64 (their own arrays are float64):
    float64 on for each test (the library leaves the global flag alone)."""
    with jax.enable_x64(True):
        yield

_x = st.floats(-50, 50, allow_nan=False)


@settings(max_examples=60)
@given(x=_x, y=_x)
def test_non_expansive(x, y):
    for name, f in NONLINEARITIES.items():
        fx, fy = float(f(jnp.float64(x))), float(f(jnp.float64(y)))
        assert abs(fx - fy) <= LIPSCHITZ[name] * abs(x - y) * (1 + 1e-12) + 1e-15, name


def test_formulas_and_tightness():
    x = jnp.linspace(-3, 3, 601)
    xs = np.asarray(x)
    np.testing.assert_array_equal(NONLINEARITIES["hard_sigmoid"](x), np.minimum(1, np.maximum(0, xs)))
    np.testing.assert_array_equal(NONLINEARITIES["relu"](x), np.maximum(0, xs))
    np.testing.assert_array_equal(NONLINEARITIES["tempered_hard_sigmoid"](x), np.maximum(0, np.minimum(1, xs / 2)))
    np.testing.assert_array_equal(NONLINEARITIES["clamp"](x, -1.0, 2.0), np.clip(xs, -1, 2))
    for name, f in NONLINEARITIES.items():
        slope = np.max(np.abs(np.diff(np.asarray(f(x)))) / np.diff(xs))
        assert slope <= LIPSCHITZ[name] * (1 + 1e-9)
        assert slope >= 0.99 * LIPSCHITZ[name], name  # the constant is attained (tight)
    d = NONLINEARITIES["diode_clamp"](jnp.array([-1.0, 0.5, 2.0]), 0.01)
    np.testing.assert_allclose(d, [0.0, 0.5, 1.0], atol=1e-12)
