"""The controller driving the node-level circuits (training.engine = "nodal")."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import anasim  # noqa: F401
from anasim.circuits import layered
from anasim.circuits.resistive_hopfield import solve_layers, weights_from_hardware
from anasim.circuits.spec import CircuitSpec
from anasim.data import Split
from anasim.devices.gyrator import GyratorArray
from anasim.devices.profile import DeviceProfile
from anasim.errors import ProfileError
from anasim.learning import rules
from anasim.learning.controller import TrainConfig, local_update, train

SIZES = (4, 6, 3)


def _gyrator_chip():
    spec = CircuitSpec(sizes=SIZES, lam=0.0, backward="gyrator", dtype="float64", init_scale=2.0)
    prof = DeviceProfile(name="gyr", coupling=GyratorArray(w_max=2.0, epsilon=0.1))
    hw = layered.build(spec, prof, layered.init_params(spec, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    return spec, prof, hw


def test_local_update_on_the_gyrator_circuit_is_dyadic_on_its_dc_points():
    """The jitted controller path (host callback into the DC solver) gives the same
    update as the dyadic rule applied to the DC points solved directly."""
    spec, _, hw = _gyrator_chip()
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (5, SIZES[0]))
    y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], 5)]
    beta = 0.05
    cfg = TrainConfig(engine="nodal", rule="dyadic", beta=beta)
    got = local_update(spec, cfg, hw, x, y, jax.random.PRNGKey(4))
    w, ph = weights_from_hardware(spec, hw)
    sp, sm, _ = solve_layers(SIZES, ph, w, x, beta=(beta, beta), target=y)
    ref = rules.dyadic(x, sp, sm, beta, 0.0)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-10)


def test_training_the_gyrator_circuit_learns_a_separable_task():
    spec, prof, _ = _gyrator_chip()
    rng = np.random.default_rng(0)
    centers = np.array([[0.9, 0.1, 0.1, 0.5], [0.1, 0.9, 0.5, 0.1], [0.5, 0.5, 0.9, 0.9]])
    labels = rng.integers(0, 3, 240)
    xs = np.clip(centers[labels] + rng.normal(0, 0.08, (240, 4)), 0, 1)
    tr = Split(xs[:192], labels[:192].astype(np.int32), "synthetic")
    te = Split(xs[192:], labels[192:].astype(np.int32), "synthetic")
    cfg = TrainConfig(engine="nodal", rule="dyadic", beta=0.1, epochs=4, batch_size=16,
                      learning_rate=0.2, seed=1)
    res = train(spec, prof, cfg, tr, te, progress=False)
    acc = np.asarray(res.dataset()["test_accuracy"])
    assert acc[-1] >= 0.8, acc           # chance is 1/3


def test_nodal_engine_rejects_intermediate_lam():
    _, _, hw = _gyrator_chip()
    spec = CircuitSpec(sizes=SIZES, lam=0.5, dtype="float64")
    with pytest.raises(ProfileError, match="engine"):
        local_update(spec, TrainConfig(engine="nodal"), hw, np.zeros((1, 4)), np.zeros((1, 3)),
                     jax.random.PRNGKey(2))
    with pytest.raises(ProfileError, match="engine"):
        TrainConfig(engine="spice")
