"""examples/record_make_run.py turns a training run's result file into the manual's
make-run figures: the numbers it writes are the result file's own."""

import importlib.util
import json

import numpy as np
import xarray as xr

from anasim.circuits import CircuitSpec
from anasim.devices import ideal_profile
from anasim.learning import TrainConfig, train


def _load(repo_root, name):
    spec = importlib.util.spec_from_file_location(name, repo_root / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_record_make_run_copies_the_result_file(tmp_path, repo_root, subset, monkeypatch):
    spec = CircuitSpec(sizes=(784, 8, 10), lam=0.0, max_iters=30, tol=0.0, name="rec")
    cfg = TrainConfig(epochs=2, batch_size=16, train_size=64, test_size=32)
    run = tmp_path / "run.nc"
    train(spec, ideal_profile(), cfg, *subset, out=run, progress=False)
    rec = _load(repo_root, "record_make_run")
    monkeypatch.setattr(rec._results, "RESULTS", tmp_path)   # not the repository's file
    assert rec.main(["--run", str(run)]) == 0
    out = json.loads((tmp_path / "make_run.json").read_text())
    d = xr.load_dataset(run, engine="h5netcdf")
    rows = out["tables"]["per_epoch"]["rows"]
    assert [r[0] for r in rows] == [1, 2]
    np.testing.assert_allclose([r[1] for r in rows], d["test_accuracy"].values, atol=1e-4)
    assert out["figures"]["test_accuracy"]["value"] == round(float(d["test_accuracy"].values[-1]), 4)
    assert "128" not in out["title"] and "64 / 32 images" in out["title"]
    assert rec.main(["--run", str(tmp_path / "missing.nc")]) == 2
