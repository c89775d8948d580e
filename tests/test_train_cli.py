"""`anasim train` / `anasim report`: argument errors and plots (no training run here)."""

import numpy as np

from anasim.circuits import CircuitSpec
from anasim.cli import main
from anasim.learning import TrainConfig, history_dataset
from anasim.learning.checkpoint import METRICS


def test_train_errors_are_one_line_exit_2(capsys):
    assert main(["train", "--circuit", "circuits/does-not-exist.toml"]) == 2
    assert main(["train", "--circuit", "circuits/skew-small.toml", "--epochs", "0"]) == 2
    assert main(["train", "--circuit", "circuits/skew-small.toml", "--rule", "ep-centered", "--data", "subset"]) == 2
    assert main(["train", "--circuit", "circuits/tiny.toml", "--data", "subset"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4
    assert "does-not-exist.toml" in err[0] and "--epochs" in err[1]
    assert "training.rule" in err[2] and "784 inputs" in err[3]


def test_report_draws_learning_curves(tmp_path, capsys):
    hist = {k: list(np.linspace(0.1, 0.5, 3)) for k in METRICS}
    spec = CircuitSpec(sizes=(4, 3, 2), lam=0.0, name="t")
    path = tmp_path / "run.nc"
    history_dataset(hist, spec, TrainConfig(), "ideal").to_netcdf(path, engine="h5netcdf")
    assert main(["report", str(path), "--out", str(tmp_path / "c.png")]) == 0
    png = (tmp_path / "c.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    out = capsys.readouterr().out
    assert "test acc" in out and out.count("\n") >= 4
    assert main(["report", str(tmp_path / "missing.nc")]) == 2


def test_report_json_returns_the_plotted_per_epoch_values(tmp_path, capsys):
    import json

    hist = {k: list(np.linspace(0.1, 0.5, 3)) for k in METRICS}
    hist["lipschitz"] = [1.5, float("nan"), 2.5]          # a metric not measured in epoch 2
    spec = CircuitSpec(sizes=(4, 3, 2), lam=0.0, name="t")
    path = tmp_path / "run.nc"
    history_dataset(hist, spec, TrainConfig(), "ideal").to_netcdf(path, engine="h5netcdf")
    assert main(["report", str(path), "--out", str(tmp_path / "c.png"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "train" and info["plot"].endswith("c.png")
    assert [e["epoch"] for e in info["epochs"]] == [1, 2, 3]
    assert [e["test_accuracy"] for e in info["epochs"]] == list(np.linspace(0.1, 0.5, 3))
    assert [e["lipschitz"] for e in info["epochs"]] == [1.5, None, 2.5]
    assert set(METRICS) <= set(info["metrics"])


def test_report_json_of_another_result_returns_each_curve(tmp_path, capsys):
    import json

    import xarray as xr

    # a result file of an example (neither a training run nor a sweep): 1-D curves, one without
    # a coordinate, a 2-D variable (not plotted) and a NaN
    ds = xr.Dataset({"error": ("noise", [0.5, float("nan"), 0.25]), "gain": ("k", [1, 2]),
                     "map": (("noise", "k"), np.zeros((3, 2)))}, coords={"noise": [0.0, 0.1, 0.2]})
    path = tmp_path / "other.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    assert main(["report", str(path), "--out", str(tmp_path / "o.png"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "other" and set(info["metrics"]) == {"error", "gain"}
    back = xr.load_dataset(path, engine="h5netcdf")
    assert info["metrics"]["error"] == {"dim": "noise", "coords": list(back["noise"].values),
                                        "values": [0.5, None, 0.25]}
    assert info["metrics"]["gain"]["coords"] == [0, 1] and info["metrics"]["gain"]["values"] == [1, 2]


def test_classes_are_the_declared_ones_and_every_label_has_its_unit():
    import pytest

    from anasim.data import Split
    from anasim.devices import ideal_profile
    from anasim.errors import AnasimError
    from anasim.learning.controller import check_run

    def spec(n_out):
        return CircuitSpec(sizes=(4, 3, n_out), lam=0.0, name="t")

    x = np.zeros((6, 4), np.float32)
    first_five = Split(x, np.array([0, 1, 2, 3, 4, 4], np.int32), "ten-class data, first examples", classes=10)
    # declared 10 classes: a split holding only labels 0..4 fits 10 output units (not 5)
    check_run(spec(10), ideal_profile(), TrainConfig(), first_five)
    with pytest.raises(AnasimError, match=r"sizes\[-1\] = 5 output units but the data have 10 classes "
                                          r"\(as declared by ten-class data, first examples\)"):
        check_run(spec(5), ideal_profile(), TrainConfig(), first_five)
    # declared count kept by the first-n selection of train_size
    assert first_five.head(3).classes == 10 and len(first_five.head(3)) == 3
    # not declared: the largest label + 1, and a test label beyond the output units is refused
    three = Split(x, np.array([0, 1, 2, 0, 1, 2], np.int32), "synthetic")
    check_run(spec(3), ideal_profile(), TrainConfig(), three)
    with pytest.raises(AnasimError, match=r"have 3 classes \(the largest label \+ 1 in synthetic\)"):
        check_run(spec(4), ideal_profile(), TrainConfig(), three)
    beyond = Split(x, np.array([0, 1, 2, 3, 0, 0], np.int32), "synthetic test")
    with pytest.raises(AnasimError, match=r"have 4 classes \(the largest label \+ 1 in synthetic\)"):
        check_run(spec(3), ideal_profile(), TrainConfig(), three, test_set=beyond)
    declared = Split(x, three.y, "synthetic", classes=3)
    with pytest.raises(AnasimError, match=r"labels in 0..3, the network's 3 output units take 0..2"):
        check_run(spec(3), ideal_profile(), TrainConfig(), declared, test_set=beyond)
