"""The controller driving the node-level circuits (relaxation.engine = "nodal")."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from anasim.circuits.engine import engine_for
from anasim.circuits.spec import CircuitSpec
from anasim.nodal import K_BOLTZMANN, solve_layers, weights_from_hardware
from anasim.data import Split
from anasim.devices.gyrator import GyratorArray
from anasim.devices.profile import DeviceProfile
from anasim.errors import ProfileError
from anasim.learning import rules
from anasim.learning.controller import TrainConfig, local_update, train

SIZES = (4, 6, 3)


def _gyrator_chip():
    spec = CircuitSpec(sizes=SIZES, lam=0.0, backward="gyrator", dtype="float64", init_scale=2.0, engine="nodal")
    prof = DeviceProfile(name="gyr", coupling=GyratorArray(w_max=2.0, epsilon=0.1))
    engine = engine_for(spec)   # builds in float64, as the float64 spec asks
    hw = engine.build(spec, prof, engine.init_params(spec, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    return spec, prof, hw


@pytest.mark.slow
def test_local_update_on_the_gyrator_circuit_is_dyadic_on_its_dc_points():
    """The jitted controller path (host callback into the DC solver) gives the same
    update as the dyadic rule applied to the DC points solved directly."""
    spec, _, hw = _gyrator_chip()
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (5, SIZES[0]))
    y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], 5)]
    beta = 0.05
    cfg = TrainConfig(rule="dyadic", beta=beta)
    got = local_update(spec, cfg, hw, x, y, jax.random.PRNGKey(4))
    w, ph = weights_from_hardware(spec, hw)
    sp, sm, _ = solve_layers(SIZES, ph, w, x, beta=(beta, beta), target=y)
    with jax.enable_x64(True):   # the reference in float64, as the float64 spec's update
        ref = rules.dyadic(x, sp, sm, beta, 0.0)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-10)


@pytest.mark.slow
def test_training_the_gyrator_circuit_learns_a_separable_task():
    spec, prof, _ = _gyrator_chip()
    rng = np.random.default_rng(0)
    centers = np.array([[0.9, 0.1, 0.1, 0.5], [0.1, 0.9, 0.5, 0.1], [0.5, 0.5, 0.9, 0.9]])
    labels = rng.integers(0, 3, 240)
    xs = np.clip(centers[labels] + rng.normal(0, 0.08, (240, 4)), 0, 1)
    tr = Split(xs[:192], labels[:192].astype(np.int32), "synthetic")
    te = Split(xs[192:], labels[192:].astype(np.int32), "synthetic")
    cfg = TrainConfig(rule="dyadic", beta=0.1, epochs=4, batch_size=16,
                      learning_rate=0.2, seed=1)
    res = train(spec, prof, cfg, tr, te, progress=False)
    acc = np.asarray(res.dataset()["test_accuracy"])
    assert acc[-1] >= 0.8, acc           # chance is 1/3


def test_nodal_engine_rejects_intermediate_lam():
    with pytest.raises(ProfileError, match="engine"):
        CircuitSpec(sizes=SIZES, lam=0.5, dtype="float64", engine="nodal")
    with pytest.raises(ProfileError, match="engine"):
        CircuitSpec(sizes=SIZES, lam=1.0, engine="spice")


@pytest.mark.slow
def test_nodal_table_puts_thermal_noise_into_the_controllers_equilibria():
    """``[nodal] node_capacitance_f`` reaches the controller's relaxation: on the
    resistive circuit (a resistor network, its clamp diodes off at interior
    states) every node fluctuates by k_B T / C about the noiseless DC point
    (equipartition), which is what the free phase's states show over 2000
    draws; without the table the equilibrium is deterministic."""
    from anasim.devices import ideal_profile

    k_b = K_BOLTZMANN
    temperature, cap, v_fs = 300.15, 1e-15, 1.0
    quiet = CircuitSpec(sizes=SIZES, lam=1.0, dtype="float64", init_scale=0.5, engine="nodal")
    noisy = quiet
    quiet_engine = engine_for(quiet)
    noisy_engine = engine_for(noisy, {"nodal": {"node_capacitance_f": cap, "temperature_k": temperature}})
    assert "thermal_noise" in noisy_engine.abilities and "thermal_noise" not in quiet_engine.abilities
    prof = ideal_profile()
    params = quiet_engine.init_params(quiet, jax.random.PRNGKey(0))
    # biases lift the states off the lower rail, where the clamp diodes conduct
    params = dataclasses.replace(params, biases=tuple(np.full(np.shape(b), 0.4) for b in params.biases))
    hw = quiet_engine.build(quiet, prof, params, jax.random.PRNGKey(1))
    x = np.tile(np.random.default_rng(5).uniform(0.3, 0.7, (1, SIZES[0])), (2000, 1))
    dc = np.concatenate([np.asarray(s) for s in quiet_engine.relax(quiet, hw, x, jax.random.PRNGKey(2)).s_plus], 1)
    again = np.concatenate([np.asarray(s) for s in quiet_engine.relax(quiet, hw, x, jax.random.PRNGKey(3)).s_plus], 1)
    np.testing.assert_array_equal(dc, again)
    s = np.concatenate([np.asarray(s) for s in noisy_engine.relax(noisy, hw, x, jax.random.PRNGKey(2)).s_plus], 1)
    interior = np.all((dc > 0.1) & (dc < 0.9), axis=0)
    assert interior.sum() >= 3, dc[0]
    var = np.var(s[:, interior] * v_fs, axis=0)
    np.testing.assert_allclose(var, k_b * temperature / cap, rtol=0.15)
    np.testing.assert_allclose(s.mean(axis=0), dc[0], atol=5 * np.sqrt(k_b * temperature / cap) / np.sqrt(2000))


@pytest.mark.slow
def test_nodal_training_of_a_784_input_circuit_finishes(tmp_path, repo_root):
    """A training step of a full-width (784-input) node-level circuit used to wait
    forever: the Newton solve's compiled loop ran inside the jitted step through
    a host callback. Run in a subprocess with a time limit, so a hang fails."""
    import subprocess
    import sys

    import xarray as xr

    root = repo_root
    spec = (root / "circuits/resistive-nodal.toml").read_text()
    spec = spec.replace('device = "devices/ideal.toml"', f'device = "{root}/devices/ideal.toml"')
    spec = spec.replace("sizes = [784, 32, 10]", "sizes = [784, 8, 10]")
    for key, value in (("epochs", 1), ("train_size", 40), ("test_size", 20)):
        spec = "\n".join(f"{key} = {value}" if line.startswith(f"{key} =") else line
                         for line in spec.splitlines())
    path = tmp_path / "rn.toml"
    path.write_text(spec)
    out = tmp_path / "run.nc"
    proc = subprocess.run([sys.executable, "-m", "anasim.cli", "train", "--circuit", str(path), "--data", "subset",
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ds = xr.load_dataset(out, engine="h5netcdf")
    assert list(ds["epoch"].values) == [1]
    assert ds.attrs["circuit.engine"] == "nodal"
    assert np.isfinite(ds["test_accuracy"].values).all()
