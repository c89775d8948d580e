"""Training on the shipped subset, kill-and-resume, result files, configuration errors."""

import dataclasses

import h5py
import jax
import numpy as np
import pytest
import xarray as xr

from anasim.circuits import CircuitSpec
from anasim.devices import DeviceProfile, SLMCrossbar, ideal_profile
from anasim.errors import AnasimError, ProfileError
from anasim.learning import TrainConfig, checkpoint_path, load_train_config, train


def _opts(training):
    opts = dict(epochs=2, batch_size=32, beta=0.2, learning_rate=0.2)
    opts.update(training)
    return opts


def _small_spec(lam=0.0, **training):
    """(spec, TrainConfig) of the small 784-32-10 circuit."""
    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in _opts(training).items()}
    # fixed budget of 30 iterations (tol = 0): the skew circuit settles in ~12
    spec = CircuitSpec(sizes=(784, 32, 10), lam=lam, activations=("tempered_hard_sigmoid",), eta=0.5,
                       max_iters=30, tol=0.0, name="small")
    return spec, TrainConfig(**opts)


@pytest.mark.slow
def test_training_on_shipped_subset_beats_chance_and_accounts_cost(subset):
    # 784-32-10 skew-symmetric circuit, one epoch over the 2000 shipped images,
    # evaluated on the 500 held-out ones: chance is 0.10.
    spec, cfg = _small_spec(epochs=1)
    # an SLM crossbar with only shot noise (continuous levels, no leak, no TIA noise): its
    # read energy does not depend on the programmed state, so the run's cost is a hand count
    spec = dataclasses.replace(spec, backward="copy")
    slm = SLMCrossbar(bits=0, bandwidth_hz=25e6)
    profile = DeviceProfile(name="slm-shot", coupling=slm)
    r = train(spec, profile, cfg, *subset, progress=False)
    assert r.history["test_accuracy"][-1] > 0.5
    # the skew-symmetric hidden block keeps its Lipschitz constant at 1 (Høier et al. Table 1)
    assert r.history["lipschitz"][-1] == pytest.approx(1.0, abs=1e-6)
    steps, examples = 2000 // 32, 2000 // 32 * 32
    iters_per_step = r.history["iterations"][0]
    assert iters_per_step == 60      # tol = 0: free and nudged phases use the 30-iteration budget
    # every example relaxes for its batch's iteration count, one loop pass = 1/(2Δf) = 20 ns;
    # every step writes one SLM frame (1 ms) into the arrays side by side
    assert r.history["hardware_time_s"][0] == pytest.approx(
        iters_per_step * examples * 20e-9 + steps / slm.frame_rate_hz, rel=1e-9)
    # arrays: the free phase runs one compartment, the nudged one two (30 + 2 × 30); each
    # compartment-iteration reads θ_0 (32×784), θ_1 (10×32) and its copy θ_1ᵀ (32×10)
    t = 20e-9
    per_read = sum(n_in * slm.source_power_w * t / slm.wall_plug_efficiency + 2 * n_out * slm.receiver_power_w * t
                   for n_out, n_in in ((32, 784), (10, 32), (32, 10)))
    assert r.history["energy_arrays_j"][0] == pytest.approx(examples * 90 * per_read, rel=1e-9)
    # writes: one frame into each of the 2 SLMs of each of the 3 arrays per step
    assert r.history["energy_writes_j"][0] == pytest.approx(steps * 3 * 2 * slm.slm_power_w / slm.frame_rate_hz)
    assert np.isnan(r.history["energy_converters_j"][0])      # ideal converters: not modelled
    assert r.history["energy_j"][0] == pytest.approx(r.history["energy_arrays_j"][0] + r.history["energy_writes_j"][0])
    flops = 6 * (784 * 32 + 32 * 10)
    assert r.history["digital_energy_j"][0] == pytest.approx(examples * flops * 400 / 19.5e12)


class _Killed(Exception):
    pass


def _leaves(p):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(p)]


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_weights(tmp_path, subset):
    train_set, test_set = subset
    spec, cfg = _small_spec(epochs=2, train_size=320, test_size=100)
    full = train(spec, ideal_profile(), cfg, train_set, test_set, out=tmp_path / "a.nc", progress=False)

    def kill(epoch, metrics):
        if epoch == 1:
            raise _Killed

    with pytest.raises(_Killed):
        train(spec, ideal_profile(), cfg, train_set, test_set, out=tmp_path / "b.nc", progress=False,
              on_epoch=kill)
    with h5py.File(checkpoint_path(tmp_path / "b.nc")) as f:
        assert int(f.attrs["epoch"]) == 1
    resumed = train(spec, ideal_profile(), cfg, train_set, test_set, out=tmp_path / "b.nc", resume=True,
                    progress=False)
    for a, b in zip(_leaves(full.params), _leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert full.history["test_accuracy"] == resumed.history["test_accuracy"]
    # no temporary files left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt.h5", "a.nc", "b.ckpt.h5", "b.nc"]
    ds = xr.load_dataset(tmp_path / "b.nc", engine="h5netcdf")
    assert list(ds["epoch"].values) == [1, 2]
    assert ds.attrs["training.rule"] == "dyadic" and ds.attrs["circuit.name"] == "small"
    np.testing.assert_allclose(ds["test_accuracy"].values, full.history["test_accuracy"])


def test_resume_refuses_a_different_configuration(tmp_path, subset):
    spec, cfg = _small_spec(epochs=1, train_size=64, test_size=50)
    train(spec, ideal_profile(), cfg, *subset, out=tmp_path / "r.nc", progress=False)
    other = dataclasses.replace(cfg, learning_rate=0.1)
    with pytest.raises(AnasimError, match="different"):
        train(spec, ideal_profile(), other, *subset, out=tmp_path / "r.nc", resume=True, progress=False)
    with pytest.raises(AnasimError, match="no checkpoint"):
        train(spec, ideal_profile(), other, *subset, out=tmp_path / "none.nc", resume=True, progress=False)


@pytest.mark.parametrize(
    "training, lam, message",
    [
        (dict(rule="ep-centered"), 0.0, "symmetric"),
        (dict(write_mode="in-situ"), 0.0, "in-situ"),
        (dict(phases="twin"), 0.0, "twin"),
        (dict(layer_lr=[1.0, 2.0, 3.0]), 0.0, "layer_lr"),
        (dict(bias_init=[0.1]), 0.0, "bias_init"),
    ],
)
def test_incompatible_configurations_are_named(training, lam, message, subset):
    spec, cfg = _small_spec(lam=lam, **training)
    with pytest.raises(ProfileError, match=message):
        train(spec, ideal_profile(), cfg, *subset, progress=False)


@pytest.mark.parametrize("key, value, message", [
    ("rule", "backprop", "training.rule"), ("beta", -1.0, "training.beta"),
    ("optimizer", "adam", "unknown key 'training.optimizer'"), ("epochs", "three", "training.epochs"),
])
def test_bad_training_table(key, value, message, tmp_path):
    with pytest.raises(ProfileError, match=message):
        load_train_config({"training": _opts({key: value})})
    # a file's error names the file
    path = tmp_path / "bad.toml"
    path.write_text(f"[network]\nsizes = [4, 2]\n[training]\n{key} = {value!r}\n".replace("'", '"'))
    with pytest.raises(ProfileError, match=f"bad.toml: .*{message}"):
        load_train_config(path)


def test_load_train_config_takes_overrides_and_ignores_none():
    cfg = load_train_config({"training": {"epochs": 4, "layer_lr": [1, 2]}}, epochs=None, beta=0.3)
    assert cfg == TrainConfig(epochs=4, beta=0.3, layer_lr=(1.0, 2.0))
    assert load_train_config({}) == TrainConfig()


def test_input_size_mismatch_is_reported(subset):
    spec = CircuitSpec(sizes=(100, 8, 10), lam=0.0)
    with pytest.raises(AnasimError, match="784 inputs"):
        train(spec, ideal_profile(), TrainConfig(epochs=1), *subset, progress=False)


SMALL_SYM = """
name = "small-sym"
[network]
sizes = [784, 16, 10]
lam = 1.0
activation = "tempered_hard_sigmoid"
[relaxation]
eta = 0.5
max_iters = 40
tol = 0.0
[training]
epochs = 1
batch_size = 32
beta = 0.2
learning_rate = 0.2
train_size = 320
test_size = 50
"""


@pytest.fixture(scope="module")
def small_sym_run(tmp_path_factory, subset):
    """(spec file, spec, result) of one epoch of SMALL_SYM, its run at ``<dir>/run.nc``."""
    from anasim.circuits import load_circuit

    tmp = tmp_path_factory.mktemp("small-sym")
    path = tmp / "small-sym.toml"
    path.write_text(SMALL_SYM)
    spec = load_circuit(path)
    result = train(spec, ideal_profile(), load_train_config(path), *subset, out=tmp / "run.nc", progress=False)
    return path, spec, result


@pytest.mark.slow
def test_lipschitz_of_the_trained_chip(small_sym_run, capsys):
    """`anasim lipschitz --trained run.nc` analyses the chip the run left behind:
    its eq. 17 bound equals the one computed from the returned chip directly
    (‖(I − W)^{-1}‖₂ by numpy's SVD) and differs from the untrained chip's."""
    import json

    from anasim.circuits import effective_matrices
    from anasim.cli import main
    from anasim.learning import trained_chip

    path, spec, r = small_sym_run
    tmp_path = path.parent
    W = np.asarray(effective_matrices(spec, r.hardware).W, np.float64)
    expected = 1.0 / np.linalg.svd(np.eye(len(W)) - W, compute_uv=False).min()
    assert r.history["lipschitz"][-1] == pytest.approx(expected, rel=1e-6)

    assert main(["lipschitz", str(path), "--trained", str(tmp_path / "run.nc"), "--pairs", "0", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["trained_epochs"] == 1
    assert rep["linearized"]["hidden"] == pytest.approx(expected, rel=1e-6)
    assert main(["lipschitz", str(path), "--pairs", "0", "--json"]) == 0
    untrained = json.loads(capsys.readouterr().out)["linearized"]["hidden"]
    assert abs(untrained - expected) > 1e-3 * expected

    # the empirical estimate's pairs drawn around test images instead of uniform inputs
    emp = {}
    for data in ([], ["--data", "subset"]):
        assert main(["lipschitz", str(path), "--trained", str(tmp_path / "run.nc"), *data,
                     "--pairs", "4", "--ascent-steps", "0", "--json"]) == 0
        rep = json.loads(capsys.readouterr().out)
        emp[rep["inputs"].split(" (")[0]] = rep["empirical"]["hidden"]
        if rep["general"]["margin"] > 0:   # the proximal bound holds: no measured ratio exceeds it
            assert rep["empirical"]["hidden"] <= rep["general"]["current"] * (1 + 1e-9)
    assert set(emp) == {"uniform [0, 1]", "test images"}
    assert np.all(np.isfinite(list(emp.values()))) and emp["uniform [0, 1]"] != emp["test images"]

    epoch, hw = trained_chip(checkpoint_path(tmp_path / "run.nc"), spec, ideal_profile())
    assert epoch == 1
    for a, b in zip(_leaves(hw), _leaves(r.hardware), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_trained_chip_errors_name_the_file(tmp_path, small_sym_run, capsys, repo_root):
    from anasim.circuits import load_circuit
    from anasim.cli import main
    from anasim.learning import trained_chip

    path, _, _ = small_sym_run
    with pytest.raises(AnasimError, match="no checkpoint .*missing.ckpt.h5"):
        trained_chip(tmp_path / "missing.nc", load_circuit(path), ideal_profile())
    assert main(["lipschitz", str(path), "--trained", str(tmp_path / "missing.nc")]) == 2
    assert "missing.ckpt.h5" in capsys.readouterr().err
    tiny = str(repo_root / "circuits/tiny.toml")
    assert main(["lipschitz", tiny, "--data", "subset", "--pairs", "1"]) == 2
    assert "--data subset: images have 784 pixels" in capsys.readouterr().err
    wider = tmp_path / "wider.toml"
    wider.write_text(SMALL_SYM.replace("[784, 16, 10]", "[784, 20, 10]"))
    with pytest.raises(AnasimError, match=r"run.ckpt.h5: checkpoint array 'hw/.*' has shape"):
        trained_chip(path.parent / "run.nc", load_circuit(wider), ideal_profile())


def test_lipschitz_refuses_a_bad_training_table_like_train(tmp_path, capsys):
    from anasim.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL_SYM.replace("epochs = 1", "epochs = 1\noptimizer = \"adam\""))
    assert main(["lipschitz", str(bad), "--pairs", "0"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "unknown key 'training.optimizer'" in err
    assert main(["train", "--circuit", str(bad), "--out", str(tmp_path / "r.nc")]) == 2
    assert "unknown key 'training.optimizer'" in capsys.readouterr().err


def test_training_reproduces_the_run_recorded_before_the_package_layout(repo_root, subset):
    """The weights and history of a short run are bit for bit those recorded
    before the package layout changed (tests/data/reference_before_refactor.npz)."""
    ref = np.load(repo_root / "tests" / "data" / "reference_before_refactor.npz")
    spec, _ = _small_spec()
    cfg = TrainConfig(epochs=1, batch_size=32, beta=0.2, learning_rate=0.2, train_size=512, test_size=128)
    r = train(spec, ideal_profile(), cfg, *subset, progress=False)
    for k in ("train_accuracy", "train_loss", "test_accuracy", "test_loss"):
        np.testing.assert_array_equal(np.asarray(r.history[k]), ref[f"train_{k}"])
    for i, leaf in enumerate(_leaves(r.params)):
        np.testing.assert_array_equal(leaf, ref[f"train_param_{i}"])


def test_schedule_segments_restart_the_cosine_and_leave_one_segment_unchanged():
    from anasim.learning.optim import schedule_rates

    cfg = TrainConfig(epochs=3, learning_rate=0.5)
    plain = schedule_rates(cfg, 4)
    np.testing.assert_array_equal(schedule_rates(cfg, 4, [3]), plain)   # unextended: the same table
    ext = schedule_rates(dataclasses.replace(cfg, epochs=5), 4, [3, 5])
    np.testing.assert_array_equal(ext[:12], plain[:12])                 # the epochs already trained
    assert ext[12] == np.float32(0.5)                                   # a warm restart at the peak
    np.testing.assert_allclose(ext[12:21], 0.5 * 0.5 * (1 + np.cos(np.pi * np.arange(9) / 8)), rtol=1e-6)
    assert ext[-1] == 0.0
    const = dataclasses.replace(cfg, schedule="constant")
    assert set(schedule_rates(dataclasses.replace(const, epochs=5), 4, [3, 5])) == {np.float32(0.5)}


@pytest.mark.slow
def test_a_finished_run_is_extended_with_resume_and_more_epochs(tmp_path, subset):
    train_set, test_set = subset
    spec, cfg = _small_spec(epochs=2, train_size=64, test_size=50)   # 2 steps per epoch
    out = tmp_path / "r.nc"
    first = train(spec, ideal_profile(), cfg, train_set, test_set, out=out, progress=False)
    more = dataclasses.replace(cfg, epochs=4)

    def kill(epoch, metrics):
        if epoch == 3:
            raise _Killed

    with pytest.raises(_Killed):   # the extension, killed after its first epoch, resumes bit for bit
        train(spec, ideal_profile(), more, train_set, test_set, out=out, resume=True, progress=False, on_epoch=kill)
    with h5py.File(checkpoint_path(out)) as f:
        assert int(f.attrs["epoch"]) == 3 and f.attrs["schedule_segments"] == "[2, 4]"
    # resumed with the spec's own epochs (2): the run continues as planned, to 4
    ext = train(spec, ideal_profile(), cfg, train_set, test_set, out=out, resume=True, progress=False)
    straight = tmp_path / "s.nc"
    train(spec, ideal_profile(), cfg, train_set, test_set, out=straight, progress=False)
    direct = train(spec, ideal_profile(), more, train_set, test_set, out=straight, resume=True, progress=False)
    for a, b in zip(_leaves(ext.params), _leaves(direct.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ext.history["test_accuracy"][:2] == first.history["test_accuracy"]
    lr = ext.history["learning_rate"]   # 0.2 · ½(1 + cos(π t/T)) at each epoch's last step
    seg = [0.2 * 0.5 * (1 + np.cos(np.pi * 1 / 4)), 0.2 * 0.5 * (1 + np.cos(np.pi * 3 / 4))]
    np.testing.assert_allclose(lr, seg + seg, rtol=1e-6)   # the cosine restarted over epochs 3-4
    ds = xr.load_dataset(out, engine="h5netcdf")
    assert list(ds["epoch"].values) == [1, 2, 3, 4]
    assert ds.attrs["training.epochs"] == 4 and ds.attrs["training.schedule_segments"] == "[2, 4]"
    with pytest.raises(AnasimError, match=r"--epochs 3: .* planned for 4 epochs \(4 trained\); resume it "
                                          r"with --epochs 4, or more to extend it"):
        train(spec, ideal_profile(), dataclasses.replace(cfg, epochs=3), train_set, test_set, out=out,
              resume=True, progress=False)


def test_plan_resume_reads_segments_and_checkpoints_from_before_them(tmp_path):
    from anasim.learning.checkpoint import plan_resume

    fp = lambda epochs: f"run of {epochs}"   # noqa: E731
    legacy = tmp_path / "old.ckpt.h5"
    with h5py.File(legacy, "w") as f:       # a finished 2-epoch run, written before segments were recorded
        f.attrs["epoch"], f.attrs["fingerprint"] = 2, fp(2)
    assert plan_resume(legacy, 2, fp) == ([2], fp(2))
    assert plan_resume(legacy, 5, fp) == ([2, 5], fp(2))
    new = tmp_path / "new.ckpt.h5"
    with h5py.File(new, "w") as f:
        f.attrs["epoch"], f.attrs["fingerprint"], f.attrs["schedule_segments"] = 3, fp(2), "[2, 4]"
    assert plan_resume(new, 2, fp) == ([2, 4], fp(2))    # the spec's epochs: continue as planned
    assert plan_resume(new, 4, fp) == ([2, 4], fp(2))
    assert plan_resume(new, 6, fp) == ([2, 4, 6], fp(2))
    with pytest.raises(AnasimError, match="--epochs 3: .*planned for 4 epochs"):
        plan_resume(new, 3, fp)
    with pytest.raises(AnasimError, match="different circuit/device/training"):
        plan_resume(new, 4, lambda e: "another run")
