"""The divergence watch: a diverging or non-learning run stops within the step, exit 3."""

import h5py
import pytest

from anasim.cli import main
from anasim.learning.watch import DivergenceWatch


def _spec(tmp_path, network="", relaxation=""):
    path = tmp_path / "c.toml"
    path.write_text(f"""name = "c"
[network]
sizes = [784, 8, 10]
{network}
[relaxation]
{relaxation or "max_iters = 50"}
[training]
epochs = 2
batch_size = 32
train_size = 128
test_size = 32
data = "subset"
""")
    return str(path)


def test_watch_rules():
    w = DivergenceWatch()
    assert w.check(loss=0.5, finite=True, saturated=0.6, unsettled=0.0) is None
    # a single saturated or unsettled step after a healthy start passes
    assert w.check(loss=0.5, finite=True, saturated=0.97, unsettled=0.0) is None
    assert w.check(loss=0.5, finite=True, saturated=0.5, unsettled=0.95) is None
    # together they trip at once, with the measured figures
    msg = w.check(loss=0.5, finite=True, saturated=0.98, unsettled=1.0)
    assert msg == "98 % of units saturated and 100 % of examples unsettled; lower --lr or relaxation.eta"
    assert "non-finite loss" in DivergenceWatch().check(loss=float("nan"), finite=True, saturated=0, unsettled=0)
    w = DivergenceWatch()
    w.check(loss=1.0, finite=True, saturated=0.1, unsettled=0.0)
    assert w.check(loss=999.0, finite=True, saturated=0.1, unsettled=0.0) is None
    assert "loss per example 2e+03, 2e+03× the first step's 1" in w.check(
        loss=2000.0, finite=True, saturated=0.1, unsettled=0.0)
    # persistent saturation trips on its third step; tol = 0 never counts unsettled alone
    w = DivergenceWatch(unsettled_alone=False)
    assert w.check(loss=1.0, finite=True, saturated=0.5, unsettled=1.0) is None
    assert [w.check(loss=1.0, finite=True, saturated=0.96, unsettled=0.0) is None for _ in range(3)] \
        == [True, True, False]


@pytest.mark.parametrize("network, relaxation, flags, cause", [
    ("lam = 1.0\ninit_scale = 5.0", "eta = 1.9\nmax_iters = 50", [], "epoch 1, step 1: 100 % of examples unsettled"),
    pytest.param("lam = 1.0\nactivation = \"identity\"", "max_iters = 50\ntol = 0.0", ["--lr", "1000"],
                 "epoch 1, step 2: non-finite weights or states; lower --lr",
                 marks=pytest.mark.slow),
    pytest.param("lam = 0.0\nbackward = \"copy\"", "", ["--lr", "1e6"], "of units saturated",
                 marks=pytest.mark.slow),
    pytest.param("lam = 0.0\nbackward = \"copy\"", "", ["--beta", "1e6"],
                 "epoch 1, step 1: 100 % of examples unsettled; lower --beta", marks=pytest.mark.slow),
])
def test_divergence_stops_the_run_with_exit_3(tmp_path, capsys, network, relaxation, flags, cause):
    spec = _spec(tmp_path, network, relaxation)
    out = tmp_path / "run.nc"
    assert main(["train", "--circuit", spec, "--out", str(out), "--no-progress", *flags]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anasim train: error: training diverged in epoch 1, step ")
    assert cause in err[0]
    # the state written is the one before the step that tripped (step 1: the run's start)
    bad = int(err[0].split("step ")[1].split(":")[0])
    where = "epoch 0" if bad == 1 else f"epoch 0, step {bad - 1} of epoch 1"
    assert f"last good checkpoint, {where}: {tmp_path / 'run.ckpt.h5'}" in err[0]
    with h5py.File(tmp_path / "run.ckpt.h5", "r") as f:
        assert int(f.attrs["epoch"]) == 0 and int(f.attrs["step"]) == bad - 1
    # resuming from it runs the same step again: it trips again, at the same step
    assert main(["train", "--circuit", spec, "--out", str(out), "--no-progress", "--resume", *flags]) == 3
    again = capsys.readouterr().err.strip().splitlines()
    assert len(again) == 1 and f"epoch 1, step {bad}: " in again[0] and where in again[0]


@pytest.mark.slow
def test_keep_going_records_the_tripped_steps(tmp_path, capsys):
    spec = _spec(tmp_path, "lam = 1.0\ninit_scale = 5.0", "eta = 1.9\nmax_iters = 50")
    out = tmp_path / "run.nc"
    with pytest.warns(RuntimeWarning, match="epoch 1, step 1: 100 % of examples unsettled"):
        assert main(["train", "--circuit", spec, "--out", str(out), "--no-progress", "--keep-going",
                     "--epochs", "1"]) == 0
    with h5py.File(out, "r") as f:
        assert list(f["diverged_steps"][()]) == [4.0]   # every one of the 4 steps


def test_healthy_run_is_not_stopped(tmp_path, capsys):
    spec = _spec(tmp_path, "lam = 1.0")
    assert main(["train", "--circuit", spec, "--out", str(tmp_path / "r.nc"), "--no-progress", "--epochs", "1"]) == 0
    assert "final test accuracy" in capsys.readouterr().out
