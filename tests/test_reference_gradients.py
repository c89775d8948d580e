"""Reference gradients of asymmetric circuits use the circuit's own backward couplings ψ.

``anasim.analysis.gradients`` takes :class:`~anasim.circuits.layered.Params`,
whose independent backward couplings are the field ``backward``. The
reference gradient must be the gradient of the loss at the free equilibrium
of THAT circuit: checked against autodiff through an unrolled damped
iteration of the ideal fixed-point map (:func:`anasim.circuits.fixed_point_map`),
and it must move when only ψ moves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.analysis.gradients import as_dict, reference_gradient
from anasim.circuits import CircuitSpec, Params, fixed_point_map, init_params


def _asymmetric_circuit():
    spec = CircuitSpec(sizes=(5, 6, 3), lam="asymmetric", backward="independent", dtype="float64",
                       init_scale=1.2, activations=("sigmoid",))
    params = init_params(spec, jax.random.PRNGKey(0))
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (3, 5)), np.float64)
    y = np.eye(3)[[0, 2, 1]]
    return spec, params, x, y


def _unrolled_gradient(spec, params, x, y, iters=400, eta=0.5):
    """d/dθ of the batch-mean ½‖s_L − y‖² at the free fixed point, by autodiff through
    ``iters`` damped iterations of the ideal map (contracting here)."""
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        xj, yj = jnp.asarray(x), jnp.asarray(y)

        def loss(p):
            s0 = tuple(jnp.zeros((x.shape[0], n)) for n in spec.sizes[1:])

            def step(_, s):
                new = fixed_point_map(spec, p, xj, s)
                return tuple((1 - eta) * a + eta * b for a, b in zip(s, new))

            s = jax.lax.fori_loop(0, iters, step, s0)
            return jnp.mean(0.5 * jnp.sum((s[-1] - yj) ** 2, axis=-1))

        g = jax.grad(loss)(p64)
        return jax.tree_util.tree_map(np.asarray, g)


def test_params_backward_is_read_as_psi():
    _, params, _, _ = _asymmetric_circuit()
    p = as_dict(params)
    assert "backs" in p and len(p["backs"]) == 1
    np.testing.assert_array_equal(np.asarray(p["backs"][0]), np.asarray(params.backward[0]))
    assert p["backs"][0].dtype == jnp.float64
    sym = as_dict(Params(theta0=params.theta0, thetas=params.thetas, biases=params.biases))
    assert "backs" not in sym


@pytest.mark.slow
def test_asymmetric_reference_gradient_is_the_gradient_of_that_circuit():
    spec, params, x, y = _asymmetric_circuit()
    _, g, res = reference_gradient(params, x, y, lam=1.0, act=jax.nn.sigmoid, iters=3000)
    assert res < 1e-10
    ref = _unrolled_gradient(spec, params, x, y)
    np.testing.assert_allclose(np.asarray(g["theta0"]), ref.theta0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(g["thetas"][0]), ref.thetas[0], atol=1e-9)
    np.testing.assert_allclose(np.asarray(g["biases"][1]), ref.biases[1], atol=1e-9)
    np.testing.assert_allclose(np.asarray(g["backs"][0]), ref.backward[0], atol=1e-9)


def test_asymmetric_reference_gradient_moves_with_psi():
    _, params, x, y = _asymmetric_circuit()
    other = Params(theta0=params.theta0, thetas=params.thetas, biases=params.biases,
                   backward=tuple(-2.0 * b for b in params.backward))
    _, g1, _ = reference_gradient(params, x, y, lam=1.0, act=jax.nn.sigmoid)
    _, g2, _ = reference_gradient(other, x, y, lam=1.0, act=jax.nn.sigmoid)
    assert np.max(np.abs(np.asarray(g1["thetas"][0]) - np.asarray(g2["thetas"][0]))) > 1e-4


def test_reference_gradient_leaves_the_global_float_format_alone():
    _, params, x, y = _asymmetric_circuit()
    before = jax.config.jax_enable_x64
    _, g, _ = reference_gradient(params, x, y, lam=1.0, act=jax.nn.sigmoid)
    assert jax.config.jax_enable_x64 == before
    assert np.asarray(g["theta0"]).dtype == np.float64
