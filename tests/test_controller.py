"""The controller's measurement path (relax → ADC read → rule) against the
float64 references, and its write modes and twin chips on exact devices."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.analysis.gradients import hard_sigmoid, phase_equilibrium, reference_gradient
from anasim.circuits import CircuitSpec, Params, build, effective_matrices, load_circuit, relax, resolve_device_path
from anasim.devices import IdealCoupling, IdealCouplingState, ideal_profile, load_profile
from anasim.errors import ProfileError
from anasim.learning import rules
from anasim.learning import TrainConfig, initial_params, load_train_config, local_update, train
from anasim.learning.step import settled_examples as _settled
SIZES = (6, 8, 7, 4)


@pytest.fixture
def x64():
    """float64 for the references of the float64 circuits (the library keeps float32 otherwise)."""
    with jax.enable_x64(True):
        yield


def _tiny(lam):
    return CircuitSpec(sizes=SIZES, lam=lam, activations=("hard_sigmoid",), eta=0.2, schedule="sync",
                       max_iters=4000, tol=1e-13, dtype="float64")


def _params(seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    return Params(
        theta0=jnp.asarray(rng.normal(0, scale, (SIZES[1], SIZES[0]))),
        thetas=tuple(jnp.asarray(rng.normal(0, scale, (SIZES[k + 1], SIZES[k]))) for k in (1, 2)),
        biases=tuple(jnp.asarray(rng.normal(0.3, 0.2, (n,))) for n in SIZES[1:]),
    ), rng.uniform(0, 1, (5, SIZES[0])), np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], 5)]


@pytest.mark.parametrize("lam, rule", [(0.0, "dyadic"), (1.0, "dyadic"), (1.0, "ep-centered"),
                                       (1.0, "ep-positive"), (1.0, "ep-negative")])
@pytest.mark.slow
def test_measured_update_on_ideal_chip_matches_implicit_gradient(lam, rule, x64):
    spec = _tiny(lam)
    params, x, y = _params()
    hw = build(spec, ideal_profile(), params, jax.random.PRNGKey(0))
    cfg = TrainConfig(rule=rule, beta=1e-4)
    upd = local_update(spec, cfg, hw, x, y, jax.random.PRNGKey(1))
    _, g, _ = reference_gradient(params, x, y, lam=lam, act=hard_sigmoid)
    assert rules.cosine(upd, g) >= 0.99
    np.testing.assert_allclose(rules.flatten(upd), rules.flatten(g), atol=2e-3 * float(jnp.abs(rules.flatten(g)).max()))


@pytest.mark.slow
def test_coupled_learning_phases_match_reference_clamped_states(x64):
    spec = _tiny(1.0)
    params, x, y = _params(seed=3)
    hw = build(spec, ideal_profile(), params, jax.random.PRNGKey(0))
    beta = 0.2
    upd = local_update(spec, TrainConfig(rule="cpl-c", beta=beta), hw, x, y, jax.random.PRNGKey(1))
    free, _ = phase_equilibrium(params, x)
    o = free[-1]
    cp, _ = phase_equilibrium(params, x, clamp=rules.coupled_clamp(o, y, beta))
    cn, _ = phase_equilibrium(params, x, clamp=rules.coupled_clamp(o, y, -beta))
    ref = rules.coupled(jnp.asarray(x), cp, cn, beta, "C")
    np.testing.assert_allclose(rules.flatten(upd), rules.flatten(ref), atol=1e-9)


@dataclasses.dataclass(frozen=True)
class _AdditiveIdeal(IdealCoupling):
    """An exact device with an ideal write response: the increment lands as given."""

    in_situ_write = True

    def apply_update(self, state, key, dw):
        del key
        return IdealCouplingState(w=state.w + dw)


def _small_spec(lam, **training):
    # A fixed iteration budget (tol = 0): runs that should agree do not drift
    # apart through a relaxation stopping one iteration earlier.
    opts = dict(epochs=1, batch_size=32, beta=0.2, learning_rate=0.2, train_size=256, test_size=100)
    opts.update(training)
    spec = CircuitSpec(sizes=(784, 32, 10), lam=lam, activations=("tempered_hard_sigmoid",), eta=0.5,
                       max_iters=30, tol=0.0, name="small")
    return spec, TrainConfig(**opts)


@pytest.mark.slow
def test_in_situ_with_ideal_write_response_equals_shadow(subset):
    # In-situ writes through a perfect device must reduce exactly to the shadow copy.
    additive = dataclasses.replace(ideal_profile(), name="additive", coupling=_AdditiveIdeal())
    (spec_s, cfg_s), (spec_i, cfg_i) = _small_spec(0.0), _small_spec(0.0, write_mode="in-situ")
    shadow = train(spec_s, ideal_profile(), cfg_s, *subset, progress=False)
    insitu = train(spec_i, additive, cfg_i, *subset, progress=False)
    ws = effective_matrices(spec_s, shadow.hardware)
    wi = effective_matrices(spec_i, insitu.hardware)
    np.testing.assert_allclose(wi.theta0, np.asarray(shadow.params.theta0), atol=1e-5)
    np.testing.assert_allclose(wi.W, ws.W, atol=1e-5)
    assert insitu.history["test_accuracy"] == pytest.approx(shadow.history["test_accuracy"], abs=0.02)


@pytest.mark.slow
def test_twin_chips_reduce_to_one_chip_when_exact(subset):
    # With exact devices the twin's fixed-pattern errors are zero: the two EP phases
    # on two chips give the one-chip result (up to the relaxation tolerance).
    one, cfg1 = _small_spec(1.0, rule="ep-centered", beta=0.1, learning_rate=0.1)
    two, cfg2 = _small_spec(1.0, rule="ep-centered", beta=0.1, learning_rate=0.1, phases="twin")
    a = train(one, ideal_profile(), cfg1, *subset, progress=False)
    b = train(two, ideal_profile(), cfg2, *subset, progress=False)
    np.testing.assert_allclose(np.asarray(a.params.theta0), np.asarray(b.params.theta0), atol=5e-3)
    # twin phases cost one relaxation per chip: the iteration count is counted on both
    assert b.history["iterations"][0] >= a.history["iterations"][0]


def test_bias_init_sets_the_initial_biases_and_keeps_the_couplings():
    from anasim.circuits import init_params

    spec = CircuitSpec(sizes=(5, 4, 3), lam=0.0)
    cfg = TrainConfig(bias_init=(0.25, -0.5), seed=7)
    key = jax.random.split(jax.random.PRNGKey(7), 4)[0]     # the run's initialization key
    p, q = initial_params(spec, cfg), init_params(spec, key)
    np.testing.assert_array_equal(p.biases[0], np.full(4, 0.25, np.float32))
    np.testing.assert_array_equal(p.biases[1], np.full(3, -0.5, np.float32))
    np.testing.assert_array_equal(p.theta0, q.theta0)
    np.testing.assert_array_equal(p.thetas[0], q.thetas[0])


@pytest.mark.slow
def test_discard_unsettled_averages_over_the_settled_examples_only(x64):
    """With a relaxation budget that some examples settle within and others not, the
    update is centered EP over the settled examples alone, at their exact equilibria."""
    params, x, y = _params(seed=5)
    x = np.concatenate([x, 40.0 * x])          # strong inputs settle more slowly
    y = np.concatenate([y, y])
    beta = 0.05
    spec = dataclasses.replace(_tiny(1.0), eta=0.5, max_iters=60, tol=1e-10)
    hw = build(spec, ideal_profile(), params, jax.random.PRNGKey(0))
    cfg = TrainConfig(rule="ep-centered", beta=beta, discard_unsettled=True)
    eq_f = relax(spec, hw, x, jax.random.PRNGKey(2))
    eq = relax(spec, hw, x, jax.random.PRNGKey(2), nudge=(beta, beta), target=y, state0=eq_f)
    settled = np.asarray((eq_f.residual_per_sample <= spec.tol) & (eq.residual_per_sample <= spec.tol))
    assert 0 < settled.sum() < len(x), "the budget must split the batch"
    upd = local_update(spec, cfg, hw, x, y, jax.random.PRNGKey(1))
    sp, _ = phase_equilibrium(params, x[settled], y[settled], beta=beta)
    sm, _ = phase_equilibrium(params, x[settled], y[settled], beta=-beta)
    ref = rules.ep_centered(jnp.asarray(x[settled]), sm, sp, beta)
    np.testing.assert_allclose(rules.flatten(upd), rules.flatten(ref), atol=1e-6)
    # the same measurement without the check is a different update
    plain = local_update(spec, dataclasses.replace(cfg, discard_unsettled=False), hw, x, y, jax.random.PRNGKey(1))
    assert float(jnp.abs(rules.flatten(plain) - rules.flatten(ref)).max()) > 1e-3
    # no example settles: no update at all
    none = local_update(dataclasses.replace(spec, max_iters=2), cfg, hw, x, y, jax.random.PRNGKey(1))
    assert float(jnp.abs(rules.flatten(none)).max()) == 0.0


def test_settled_on_a_residual_floor_is_judged_against_the_batch_median():
    """A phase that stopped on a floor (stall window, residual no longer falling)
    keeps the examples within FLOOR_SPREAD of the batch median; without a floor
    stop, or without a stall window, only ``tol`` counts."""
    r = jnp.asarray([1.0, 1.2, 0.9, 1.1, 5.0]) * 1e-3      # median 1.1e-3: limit 2.2e-3

    def phase(oscillating):
        return types.SimpleNamespace(residual_per_sample=r, oscillating=jnp.asarray(oscillating))

    noisy = dataclasses.replace(_tiny(1.0), tol=1e-4, stall_window=10)
    np.testing.assert_array_equal(_settled(noisy, [phase(True)]), [True, True, True, True, False])
    np.testing.assert_array_equal(_settled(noisy, [phase(False)]), [False] * 5)
    np.testing.assert_array_equal(_settled(dataclasses.replace(noisy, stall_window=0), [phase(True)]), [False] * 5)
    # tol above every residual needs no floor; an outlier in one of two phases is out
    np.testing.assert_array_equal(_settled(dataclasses.replace(noisy, tol=0.01), [phase(False)]), [True] * 5)
    np.testing.assert_array_equal(_settled(noisy, [phase(True), phase(False)]), [False] * 5)


@pytest.mark.slow
def test_discard_unsettled_on_a_noisy_device_keeps_the_examples_on_the_noise_floor(subset, repo_root):
    # skew-small on slm-10bit: every phase ends on the photodetector floor (≈ 7e-3, above
    # tol = 1e-3) through its stall window; the examples there count as settled
    path = repo_root / "circuits" / "skew-small.toml"
    spec = load_circuit(path)
    profile = load_profile(resolve_device_path(spec))
    cfg = load_train_config(path, epochs=1, train_size=1024, test_size=200, discard_unsettled=True)
    run = train(spec, profile, cfg, *subset, progress=False)
    assert run.history["unsettled"][0] < 0.02
    assert run.history["test_accuracy"][0] > 0.4


def test_discard_unsettled_is_validated(tmp_path, subset):
    # an engine without settling (a DC operating point) refuses it when a run starts
    @dataclasses.dataclass(frozen=True)
    class NoSettling:
        name: str = "dc"
        abilities: frozenset = frozenset({"jit"})

    spec, cfg = _small_spec(0.0, discard_unsettled=True)
    with pytest.raises(ProfileError, match="discard_unsettled.*'dc'"):
        train(spec, ideal_profile(), cfg, *subset, engine=NoSettling(), progress=False)
    with pytest.raises(ProfileError, match="x.toml.*training.discard_unsettled"):
        load_train_config({"training": {"discard_unsettled": "yes"}}, where="x.toml")


@pytest.mark.slow
def test_discard_unsettled_warns_when_most_examples_never_settle(subset):
    # tol = 0: no relaxation ever settles, so nothing may be written, whatever the rate
    runs = []
    for lr in (0.2, 0.1):
        spec, cfg = _small_spec(0.0, discard_unsettled=True, learning_rate=lr)
        with pytest.warns(RuntimeWarning, match="discard_unsettled left out 100%"):
            runs.append(train(spec, ideal_profile(), cfg, *subset, progress=False))
    assert runs[0].history["unsettled"] == [1.0]
    for a, b in zip(jax.tree_util.tree_leaves(runs[0].params), jax.tree_util.tree_leaves(runs[1].params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    spec, cfg = _small_spec(0.0)
    moved = train(spec, ideal_profile(), cfg, *subset, progress=False)
    assert not np.allclose(np.asarray(moved.params.theta0), np.asarray(runs[0].params.theta0))
