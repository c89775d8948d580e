"""The SLM column of Table 1 is rebuilt from the run files alone (examples/dyadic_table1.py).

The runs' netCDFs are written here by hand with known per-epoch accuracies, so
every cell of the rebuilt tables is checked against the numbers put into the
files, not against what the builder happens to return.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import xarray as xr


@pytest.fixture(scope="module")
def table1(repo_root):
    path = repo_root / "examples" / "dyadic_table1.py"
    sys.path.insert(0, str(path.parent))   # the example imports its sibling _results
    try:
        spec = importlib.util.spec_from_file_location("dyadic_table1_under_test", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


def _run_file(path, test_accuracy, unsettled=None, lipschitz=None):
    n = len(test_accuracy)
    data = {"test_accuracy": ("epoch", np.asarray(test_accuracy, float))}
    if unsettled is not None:
        data["unsettled"] = ("epoch", np.asarray(unsettled, float))
    if lipschitz is not None:
        data["lipschitz"] = ("epoch", np.asarray(lipschitz, float))
    xr.Dataset(data, coords={"epoch": np.arange(1, n + 1)}).to_netcdf(path, engine="h5netcdf")


def test_slm_tables_come_from_the_run_files(table1, tmp_path):
    skew_slm = [0.70, 0.75, 0.8123]
    skew_ideal = [0.72, 0.78, 0.83, 0.85, 0.86]
    _run_file(tmp_path / "skew-4x500-slm.nc", skew_slm, unsettled=[0.1, 0.02, 0.0125], lipschitz=[1.0, 1.01, 1.0111111])
    _run_file(tmp_path / "skew-4x500.nc", skew_ideal)
    (tmp_path / "skew-4x500-slm.chip.json").write_text(
        json.dumps({"epochs": 3, "step": 25, "lipschitz_eq17": 1.0123456, "lipschitz_empirical": 0.41}))
    # feedforward: an SLM run with 2 epochs, its ideal run only in the results file's per_epoch table
    _run_file(tmp_path / "ff-4x500-slm.nc", [0.66, 0.77])
    (tmp_path / "ff-4x500-slm.chip.json").write_text(json.dumps({"epochs": 1, "lipschitz_eq17": 5.0}))
    old = {"per_epoch": {"columns": ["epoch", "feedforward [%]"], "rows": [[1, 80.0], [2, 81.5], [3, 82.0]]},
           "summary": {"columns": ["model"], "rows": [["skew"]]},
           "skew_3epochs": {"columns": ["epoch"], "rows": [[1]]},
           "ff_6epochs": {"columns": ["epoch"], "rows": [[1]]}}
    figure = tmp_path / "fig.png"
    tables = table1.slm_tables(tmp_path, old, figure)

    # stale per-model tables of partial runs go; unrelated tables stay
    assert "skew_3epochs" not in tables and "ff_6epochs" not in tables
    assert tables["summary"] == old["summary"] and tables["per_epoch"] == old["per_epoch"]

    rows = {r[0]: r for r in tables["slm_column"]["rows"]}
    # skew: last SLM epoch, the ideal netCDF at the same epoch, eq. 17 at the epoch's end from
    # the netCDF, the measured constant from the chip report with where that chip stood
    assert rows["skew"] == ["skew", 3, 81.23, 83.0, 1.0111, 0.41, "epoch 3 + 25 steps", 0.0125]
    # feedforward: the ideal value from the results file; the chip report is of another epoch
    # and the netCDF has no Lipschitz constants
    assert rows["feedforward"] == ["feedforward", 2, 77.0, 81.5, None, None, None, None]
    # symmetric: no run yet
    assert rows["symmetric"][1:] == [None] * 7

    per = tables["slm_per_epoch"]
    assert per["columns"] == ["epoch", "skew SLM [%]", "skew ideal [%]", "feedforward SLM [%]",
                              "feedforward ideal [%]"]
    # the ideal columns stop where their SLM run stops
    assert per["rows"] == [[1, 70.0, 72.0, 66.0, 80.0], [2, 75.0, 78.0, 77.0, 81.5], [3, 81.23, 83.0, None, None]]
    assert figure.stat().st_size > 0


def test_slm_tables_without_slm_runs_leave_no_per_epoch_table(table1, tmp_path):
    tables = table1.slm_tables(tmp_path, {}, tmp_path / "fig.png")
    assert "slm_per_epoch" not in tables
    assert all(r[1:] == [None] * 7 for r in tables["slm_column"]["rows"])
    assert not (tmp_path / "fig.png").exists()
