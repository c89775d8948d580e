"""Reduced-precision relaxation: bfloat16/float16 states and device reads with a
float32 integrator and residual, checked against the float64 fixed point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.circuits import layered
from anasim.circuits.spec import CircuitSpec
from anasim.devices.profile import ideal_profile
from anasim.errors import ProfileError


def _run(dtype, tol=1e-6, lam=0.0, nudge=(0.0, 0.0)):
    spec = CircuitSpec(sizes=(40, 50, 30, 10), lam=lam, activations=("hard_sigmoid",), dtype=dtype, tol=tol,
                       max_iters=300, stall_window=20 if dtype in ("bfloat16", "float16") else 0)
    params = layered.init_params(spec, jax.random.PRNGKey(0), dtype="float64")
    hw = layered.build(spec, ideal_profile(), params, jax.random.PRNGKey(1))
    with jax.enable_x64(True):   # the same float64 inputs for every format
        x = jax.random.uniform(jax.random.PRNGKey(2), (8, 40), jnp.float64)
    y = jnp.eye(10)[jnp.arange(8)]
    eq = layered.relax(spec, hw, x, jax.random.PRNGKey(3), nudge=nudge, target=y)
    return spec, eq


def _gap(a, b):
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
               for u, v in zip(a, b))


@pytest.mark.slow
@pytest.mark.parametrize("nudge", [(0.0, 0.0), (0.2, 0.2)], ids=["free", "dyadic"])
def test_reduced_precision_fixed_point_within_format_tolerance(nudge):
    _, ref = _run("float64", tol=1e-12, nudge=nudge)
    _, f32 = _run("float32", nudge=nudge)
    assert bool(ref.converged) and bool(f32.converged)
    assert _gap(f32.s_plus, ref.s_plus) < 1e-5
    for dtype, eps in (("bfloat16", 2.0 ** -8), ("float16", 2.0 ** -11)):
        spec, eq = _run(dtype, nudge=nudge)
        assert eq.s_plus[0].dtype == jnp.dtype(dtype)
        assert eq.a_plus[0].dtype == jnp.float32 and eq.residual.dtype == jnp.float32
        gap = max(_gap(eq.s_plus, ref.s_plus), _gap(eq.s_minus, ref.s_minus))
        # states in [0, 1] rounded to the format, propagated through the couplings (measured: 0.8-1 eps)
        assert gap < 2 * eps, (dtype, gap)
        # and the run really was in the reduced format
        assert gap > 1e-5
        # the float32 residual reports the rounding floor, not a rounded zero
        assert 1e-6 < float(eq.residual) < 8 * eps


@pytest.mark.slow
def test_float32_option_is_the_float32_engine():
    spec, eq = _run("float32")
    assert layered.engine_dtypes(spec) == (jnp.float32,) * 3
    leaves = [eq.residual, eq.trace] + list(eq.s_plus) + list(eq.a_plus)
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    # float32 shadow parameters by default in every format but float64
    for dtype, want in (("float32", jnp.float32), ("bfloat16", jnp.float32), ("float16", jnp.float32),
                        ("float64", jnp.float64)):
        s = CircuitSpec(sizes=(3, 4, 2), dtype=dtype)
        assert layered.init_params(s, jax.random.PRNGKey(0)).theta0.dtype == want


def test_unknown_dtype_is_rejected():
    with pytest.raises(ProfileError, match="dtype"):
        CircuitSpec(sizes=(3, 4, 2), dtype="int8")



def test_float64_spec_scopes_float64_itself():
    """A float64 spec relaxes in float64 although the global flag stays off (as import anasim leaves it)."""
    before = jax.config.jax_enable_x64
    spec = CircuitSpec(sizes=(5, 4, 3), lam=0.0, dtype="float64", tol=1e-12, max_iters=2000)
    params = layered.init_params(spec, jax.random.PRNGKey(0))
    hw = layered.build(spec, ideal_profile(), params, jax.random.PRNGKey(1))
    x = np.random.default_rng(0).uniform(0, 1, (2, 5))
    eq = layered.relax(spec, hw, x, jax.random.PRNGKey(2))
    assert jax.config.jax_enable_x64 == before
    assert params.theta0.dtype == np.float64 and hw.biases[0].dtype == np.float64
    assert all(s.dtype == np.float64 for s in eq.s_plus) and bool(eq.converged)
    sp, _ = layered.read_states(hw, eq, jax.random.PRNGKey(3))
    assert sp[0].dtype == np.float64
    f32 = layered.init_params(CircuitSpec(sizes=(5, 4, 3)), jax.random.PRNGKey(0))
    assert f32.theta0.dtype == np.float32
