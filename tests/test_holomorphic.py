"""Holomorphic EP against forward-mode implicit differentiation of the same ideal circuit.

The reference error vector ds*/dβ is (I − ∂F/∂s)⁻¹ ∂F/∂β with ∂F/∂β from
``jax.jvp`` at a Newton-polished fixed point; the estimator only sees complex
equilibria of the relaxation engine. The exact loss gradient of the
asymmetric circuit comes from anasim.analysis.gradients (its own solver and
implicit differentiation), so the local rule is checked independently.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.analysis import homeostasis
from anasim.analysis.gradients import reference_gradient
from anasim.circuits import layered
from anasim.circuits.spec import CircuitSpec
from anasim.devices.profile import ideal_profile
from anasim.errors import AnasimError
from anasim.learning import TrainConfig, local_update, train
from anasim.learning import holomorphic as hep

SIZES = (5, 6, 7, 4)


@pytest.fixture(autouse=True)
def x64():
    """The estimator is checked against float64 references on float64 circuits."""
    with jax.enable_x64(True):
        yield


def _circuit(asym: bool, act="sigmoid"):
    spec = CircuitSpec(sizes=SIZES, lam="asymmetric" if asym else 1.0,
                       backward="independent" if asym else "transpose", activations=(act,),
                       dtype="float64", tol=1e-14, max_iters=3000, init_scale=1.5,
                       asymmetry_angle=60.0 if asym else None)
    params = layered.init_params(spec, jax.random.PRNGKey(0))
    hw = layered.build(spec, ideal_profile(), params, jax.random.PRNGKey(1))
    x = jax.random.uniform(jax.random.PRNGKey(2), (3, SIZES[0]), jnp.float64)
    y = jnp.eye(SIZES[-1])[jnp.array([0, 2, 3])]
    return spec, params, hw, x, y


def _rel(a, b):
    num = sum(float(jnp.sum((u - v) ** 2)) for u, v in zip(a, b))
    return np.sqrt(num / sum(float(jnp.sum(v ** 2)) for v in b))


@pytest.mark.slow
@pytest.mark.parametrize("asym", [False, True], ids=["symmetric", "asymmetric"])
def test_n_point_estimate_error_falls_as_beta_to_the_n(asym):
    spec, params, hw, x, y = _circuit(asym)
    d_beta, _, _, res = hep.exact_error_vectors(spec, params, x, y)
    assert res < 1e-13
    radii = np.array([0.4, 0.2, 0.1])
    for n in (1, 2, 3):
        errs = [_rel(hep.error_vector(spec, hw, x, y, jax.random.PRNGKey(3), beta=b, n_points=n).delta, d_beta)
                for b in radii]
        slope = np.polyfit(np.log(radii), np.log(errs), 1)[0]
        assert abs(slope - n) < 0.15, (n, slope, errs)
    assert errs[-1] < 1e-4


@pytest.mark.slow
def test_two_points_are_centered_ep():
    spec, _, hw, x, y = _circuit(True)
    b = 0.2
    up = layered.relax(spec, hw, x, jax.random.PRNGKey(0), nudge=(b, 0.0), target=y).s_plus
    dn = layered.relax(spec, hw, x, jax.random.PRNGKey(0), nudge=(-b, 0.0), target=y).s_plus
    centered = tuple((u - d) / (2 * b) for u, d in zip(up, dn))
    est = hep.error_vector(spec, hw, x, y, jax.random.PRNGKey(0), beta=b, n_points=2)
    assert _rel(est.delta, centered) < 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("asym", [False, True], ids=["symmetric", "asymmetric"])
def test_rule_on_exact_error_vector_is_the_implicit_gradient(asym):
    spec, params, _, x, y = _circuit(asym)
    p = {"theta0": params.theta0, "thetas": params.thetas, "biases": params.biases}
    if asym:
        p["backs"] = params.backward
    _, g, res = reference_gradient(p, x, y, lam=1.0, act=jax.nn.sigmoid)
    assert res < 1e-10
    u = hep.exact_gradient(spec, params, x, y)
    np.testing.assert_allclose(u["theta0"], g["theta0"], atol=1e-12)
    for a, b in zip(u["thetas"], g["thetas"]):
        np.testing.assert_allclose(a, b, atol=1e-12)
    for a, b in zip(u["biases"], g["biases"]):
        np.testing.assert_allclose(a, b, atol=1e-12)
    for a, b in zip(u["backward"], g.get("backs", ())):
        np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("asym", [False, True], ids=["symmetric", "asymmetric"])
def test_hep_targets_J_inverse_where_the_gradient_needs_J_transpose(asym):
    spec, params, _, x, y = _circuit(asym)
    d_beta, d_grad, s, _ = hep.exact_error_vectors(spec, params, x, y)
    K = homeostasis.circuit_jacobian(spec, params, x, s)
    D = jnp.concatenate(homeostasis.neuron_slopes(spec, params, x, s), axis=-1)
    e = jnp.zeros_like(D).at[:, -SIZES[-1]:].set(s[-1] - y)          # ∇ℓ on the output
    N = D.shape[1]
    J = K - jnp.eye(N)
    r = jnp.sqrt(D)
    want_beta = r * jnp.linalg.solve(J, (r * e)[..., None])[..., 0]
    want_grad = r * jnp.linalg.solve(jnp.swapaxes(J, 1, 2), (r * e)[..., None])[..., 0]
    np.testing.assert_allclose(jnp.concatenate(d_beta, -1), want_beta, atol=1e-12)
    np.testing.assert_allclose(jnp.concatenate(d_grad, -1), want_grad, atol=1e-12)
    cos = hep.layer_cosines(d_beta, d_grad)
    if asym:
        assert cos[0] < 0.9            # the bias of hEP without weight symmetry
    else:
        np.testing.assert_allclose(cos, 1.0, atol=1e-12)


@pytest.mark.slow
def test_continuous_rotation_converges_with_the_period():
    spec, params, hw, x, y = _circuit(True)
    d_beta, _, _, _ = hep.exact_error_vectors(spec, params, x, y)
    errs = [_rel(hep.error_vector_continuous(spec, hw, x, y, jax.random.PRNGKey(0), beta=0.1, period=T,
                                             periods=1).delta, d_beta) for T in (40, 80)]
    assert errs[1] < 0.05
    assert errs[1] < 0.5 * errs[0]


def test_complex_nudge_rejects_a_non_holomorphic_activation():
    spec, _, hw, x, y = _circuit(True, act="hard_sigmoid")
    with pytest.raises(AnasimError, match="hard_sigmoid"):
        layered.relax(spec, hw, x, jax.random.PRNGKey(0), nudge=(0.1j, 0.0), target=y)


def test_hep_needs_non_interacting_compartments_and_valid_points():
    spec = CircuitSpec(sizes=SIZES, lam=0.0, activations=("sigmoid",), dtype="float64")
    with pytest.raises(AnasimError, match="lam"):
        hep.hep_update(spec, jnp.zeros((1, SIZES[0])), (), ())
    with pytest.raises(AnasimError, match="n_points"):
        hep.nudge_points(0.1, 0)


@pytest.mark.slow
def test_hep_rule_in_the_controller_measures_the_gradient_of_a_symmetric_circuit():
    # On a symmetric circuit hEP's error vector is the gradient's (J = Jᵀ): the
    # update the controller measures with rule "hep" is the exact loss gradient.
    spec, params, hw, x, y = _circuit(False)
    upd = local_update(spec, TrainConfig(rule="hep", hep_points=4, beta=0.05), hw, x, y, jax.random.PRNGKey(3))
    ref = hep.exact_gradient(spec, params, x, y)
    u, r = hep.flatten_update(upd), hep.flatten_update(ref)
    assert float(u @ r / (jnp.linalg.norm(u) * jnp.linalg.norm(r))) > 0.999
    np.testing.assert_allclose(u, r, atol=1e-3 * float(jnp.abs(r).max()))


def test_hep_rule_needs_compartments_that_do_not_interact():
    spec, _, hw, x, y = _circuit(False)
    skew = CircuitSpec(sizes=SIZES, lam=0.0, activations=("sigmoid",), dtype="float64")
    with pytest.raises(AnasimError, match="hep"):
        local_update(skew, TrainConfig(rule="hep"), hw, x, y, jax.random.PRNGKey(0))
    with pytest.raises(AnasimError, match="homeostasis"):
        TrainConfig(rule="dyadic", homeostasis=1.0)


@pytest.mark.slow
def test_hep_training_with_homeostasis_through_the_controller(subset):
    """hEP trains an asymmetric circuit through the controller's loop; Jacobian
    homeostasis makes the trained circuit functionally more symmetric than the
    same run without it, and its loss is recorded per epoch."""
    train_set, test_set = subset
    spec = CircuitSpec(sizes=(784, 16, 10), lam="asymmetric", backward="independent",
                       activations=("sigmoid", "identity"), cost="cross_entropy", eta=0.5, schedule="async",
                       max_iters=100, tol=1e-5, asymmetry_angle=90.0, name="hep-small")
    runs = {}
    for lam_h in (0.0, 1.0):
        cfg = TrainConfig(rule="hep", hep_points=2, beta=0.1, homeostasis=lam_h, epochs=3, batch_size=32,
                          learning_rate=0.1, schedule="constant", train_size=512, test_size=200)
        with jax.enable_x64(False):      # the run at the library's float32
            runs[lam_h] = train(spec, ideal_profile(), cfg, train_set, test_set, progress=False)
    assert runs[0.0].history["test_accuracy"][-1] > 0.3          # chance: 0.1
    assert runs[0.0].history["homeostatic_loss"] == [0.0] * 3
    assert min(runs[1.0].history["homeostatic_loss"]) > 0.0
    xp = test_set.x[:16]
    yp = np.eye(10)[test_set.y[:16]]
    sym = {k: hep.diagnostics(spec, r.params, xp, yp, beta=0.1, n_points=2)["functional_symmetry"]
           for k, r in runs.items()}
    assert sym[1.0] > sym[0.0]
