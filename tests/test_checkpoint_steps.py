"""Checkpoints inside an epoch: a run stopped at any step and resumed is the
uninterrupted run, bit for bit (weights, optimizer state, chips, every metric
but the wall-clock times), and the result file never claims an epoch the
checkpoint does not hold."""

import json

import h5py
import jax
import numpy as np
import pytest
import xarray as xr

from anasim.circuits import CircuitSpec
from anasim.devices import ideal_profile, load_profile
from anasim.learning import TrainConfig, checkpoint_path, train
from anasim.learning.checkpoint import METRICS, checkpoint_position

WALL = ("wall_s", "train_wall_s")


def _setup(repo_root, **training):
    # 784-8-10 on the 10-bit SLM: programming errors and read noise draw from the run's keys,
    # and every energy part is modelled (the cost meter's sums are numbers, not NaN)
    spec = CircuitSpec(sizes=(784, 8, 10), lam=1.0, backward="copy", max_iters=40, tol=0.0,
                       name="ckpt")
    profile = load_profile(repo_root / "devices" / "slm-10bit-adc8.toml")
    opts = dict(epochs=2, batch_size=16, train_size=112, test_size=48, checkpoint_every_steps=2)
    opts.update(training)
    return spec, profile, TrainConfig(**opts)


def _arrays(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out


def _same_run(a, b):
    """Two result files and their checkpoints hold the same numbers (wall-clock times aside)."""
    da, db = xr.load_dataset(a, engine="h5netcdf"), xr.load_dataset(b, engine="h5netcdf")
    assert list(da["epoch"].values) == list(db["epoch"].values)
    for k in METRICS:
        if k not in WALL:
            np.testing.assert_array_equal(da[k].values, db[k].values, err_msg=k)
    ca, cb = _arrays(checkpoint_path(a)), _arrays(checkpoint_path(b))
    assert ca.keys() == cb.keys()
    for k in ca:
        assert ca[k].dtype == cb[k].dtype and np.array_equal(ca[k], cb[k], equal_nan=True), k


@pytest.mark.slow
def test_stopped_at_any_step_and_resumed_is_the_uninterrupted_run(tmp_path, repo_root, subset):
    spec, profile, cfg = _setup(repo_root)
    whole = train(spec, profile, cfg, *subset, out=tmp_path / "whole.nc", progress=False)
    out = tmp_path / "cut.nc"
    # 7 steps per epoch: stops inside epoch 1, at its end, inside epoch 2 (between two
    # checkpoints by count: the stop writes its own), then the rest
    for stop, (epoch, step) in zip((3, 7, 12), ((0, 3), (1, 0), (1, 5))):
        train(spec, profile, cfg, *subset, out=out, resume=stop != 3, progress=False, stop_after_steps=stop)
        pos = checkpoint_position(checkpoint_path(out))
        assert (pos.epoch, pos.step) == (epoch, step)
        with h5py.File(out, "r") as f:   # the result file holds the finished epochs only
            assert f["epoch"].shape == (epoch,)
        if step:
            assert set(pos.sums) == {"correct", "loss", "homeo", "iterations", "unsettled", "tripped"}
            assert pos.sums["iterations"] > 0 and np.isfinite(pos.meter["energy"]["arrays"])
    resumed = train(spec, profile, cfg, *subset, out=out, resume=True, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(resumed.params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for k in METRICS:
        if k not in WALL:
            assert whole.history[k] == resumed.history[k], k
    _same_run(tmp_path / "whole.nc", out)
    assert not list(tmp_path.glob(".*tmp"))


def test_checkpoint_by_time_and_its_attributes(tmp_path, repo_root, subset, monkeypatch, capsys):
    import anasim.learning.controller as controller

    # checkpoint_every_s tiny: after every step; by count off
    spec, _, cfg = _setup(repo_root, epochs=1, checkpoint_every_steps=0, checkpoint_every_s=1e-9)
    profile = ideal_profile()
    out = tmp_path / "r.nc"
    seen = []
    real = controller.save_checkpoint

    def spy(path, epoch, *a):
        seen.append((epoch, a[-1].step))   # the position is the last argument
        return real(path, epoch, *a)

    monkeypatch.setattr(controller, "save_checkpoint", spy)
    train(spec, profile, cfg, *subset, out=out, progress=False)
    assert seen == [(0, s) for s in range(1, 7)] + [(1, 0)]
    with h5py.File(checkpoint_path(out), "r") as f:
        assert int(f.attrs["epoch"]) == 1 and int(f.attrs["step"]) == 0
        partial = json.loads(f.attrs["partial"])
    assert partial["watch"]["steps_seen"] == 7 and partial["meter"]["examples"] == 7 * 16
    # report --json returns the values the result file holds (NaN: null)
    from anasim.cli import main

    assert main(["report", str(out), "--out", str(tmp_path / "r.png"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    ds = xr.load_dataset(out, engine="h5netcdf")
    for k in METRICS:
        want = [None if not np.isfinite(v) else float(v) for v in ds[k].values]
        assert [e[k] for e in info["epochs"]] == want, k


@pytest.mark.slow
def test_keep_going_counts_resume_exactly(tmp_path):
    # a circuit that never settles: every step trips the watch; with keep_going the run records
    # them, and a run stopped inside the epoch counts the same steps once resumed
    from anasim.cli import main

    spec = tmp_path / "c.toml"
    spec.write_text("""name = "c"
[network]
sizes = [784, 8, 10]
lam = 1.0
init_scale = 5.0
[relaxation]
eta = 1.9
max_iters = 50
[training]
epochs = 1
batch_size = 16
train_size = 96
test_size = 32
data = "subset"
keep_going = true
checkpoint_every_steps = 1
""")
    from anasim.circuits import load_circuit
    from anasim.data import load_fashion_mnist
    from anasim.learning import load_train_config

    circuit, cfg = load_circuit(spec), load_train_config(spec)
    data = load_fashion_mnist("subset")
    with pytest.warns(RuntimeWarning, match="epoch 1, step 1: .*100 % of examples unsettled"):
        train(circuit, ideal_profile(), cfg, *data, out=tmp_path / "cut.nc", progress=False, stop_after_steps=4)
    resumed = train(circuit, ideal_profile(), cfg, *data, out=tmp_path / "cut.nc", resume=True, progress=False)
    assert resumed.history["diverged_steps"] == [6.0]
    with pytest.warns(RuntimeWarning):
        assert main(["train", "--circuit", str(spec), "--out", str(tmp_path / "whole.nc"), "--no-progress"]) == 0
    _same_run(tmp_path / "whole.nc", tmp_path / "cut.nc")


def test_a_failed_write_inside_an_epoch_keeps_the_checkpoint_before(tmp_path, capsys, monkeypatch):
    import errno

    import anasim.learning.controller as controller
    from anasim.cli import main

    spec = tmp_path / "c.toml"
    spec.write_text('name = "c"\n[network]\nsizes = [784, 8, 10]\nlam = 1.0\n[relaxation]\nmax_iters = 30\n'
                    '[training]\nepochs = 1\nbatch_size = 16\ntrain_size = 128\ntest_size = 32\ndata = "subset"\n')
    real, calls = controller.save_checkpoint, []

    def full_disk(path, *a):
        calls.append(a[-1].step)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a)

    monkeypatch.setattr(controller, "save_checkpoint", full_disk)
    out = tmp_path / "r.nc"
    assert main(["train", "--circuit", str(spec), "--out", str(out), "--no-progress",
                 "--checkpoint-every-steps", "2"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'r.ckpt.h5'}: write failed at step 6 of epoch 1 (No space" in err[0]
    assert calls == [2, 4, 6]
    assert (checkpoint_position(checkpoint_path(out)).epoch, checkpoint_position(checkpoint_path(out)).step) == (0, 4)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.slow
def test_checkpoint_of_earlier_versions_resumes_to_the_same_run(tmp_path, repo_root, subset):
    """Earlier versions stored the SLM's stacked ``[W_eff; S]`` in each state's ``w_s`` slot
    (now empty) and a copy of the chip as ``hw2`` on one-chip runs (now none). A checkpoint
    rewritten into that layout resumes to the same run, bit for bit."""
    spec, profile, cfg = _setup(repo_root)
    whole = train(spec, profile, cfg, *subset, out=tmp_path / "whole.nc", progress=False)
    out = tmp_path / "old.nc"
    train(spec, profile, cfg, *subset, out=out, progress=False, stop_after_steps=3)
    ckpt = checkpoint_path(out)
    with h5py.File(ckpt, "r+") as f:
        assert len(f["hw2"]) == 0          # a one-chip run stores no second chip
        hw = f["hw"]
        empty = [k for k in sorted(hw) if hw[k].size == 0 and hw[k].ndim == 2]
        assert empty                         # the w_s slots (and nothing else is empty here)
        for k in empty:                      # the stacked matrix an earlier version kept there
            rows = int(hw[f"{int(k) - 1:05d}"].shape[0])
            data = np.concatenate([hw[f"{int(k) - 2:05d}"][()], hw[f"{int(k) - 1:05d}"][()]])
            assert data.shape[0] == 2 * rows
            del hw[k]
            hw.create_dataset(k, data=data)
        for k in sorted(hw):                 # the copy of the chip as hw2
            f["hw2"].create_dataset(k, data=hw[k][()])
    resumed = train(spec, profile, cfg, *subset, out=out, resume=True, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(resumed.params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert whole.history["test_accuracy"] == resumed.history["test_accuracy"]


def test_resume_with_stop_after_behind_the_checkpoint_warns(tmp_path, repo_root, subset):
    """A checkpoint inside epoch 2, resumed with stop_after = 1: nothing earlier is kept, so
    the run returns the checkpoint's state, and says so."""
    spec, _, cfg = _setup(repo_root)
    profile = ideal_profile()
    out = tmp_path / "r.nc"
    first = train(spec, profile, cfg, *subset, out=out, progress=False, stop_after_steps=10)
    with pytest.warns(UserWarning, match=r"epoch 1, step 3 of epoch 2, past stop_after = 1"):
        again = train(spec, profile, cfg, *subset, out=out, resume=True, progress=False, stop_after=1)
    for a, b in zip(jax.tree_util.tree_leaves(first.params), jax.tree_util.tree_leaves(again.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
