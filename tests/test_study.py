"""Sweeps: spec validation, labelled results, resume after a kill, dask == in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from anasim.cli import main as cli_main
from anasim.errors import AnasimError
from anasim.study import (
    Measurement,
    evaluate,
    expand_values,
    get_measurement,
    open_sweep,
    parse_sweep,
    register_measurement,
    run_sweep,
    store_path,
)
from anasim.study.measurements import SYNTHETIC
from anasim.study.store import PointStore, point_key

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


class _Counter:
    """Counts calls of a measurement and raises after ``fail_after`` of them (a simulated kill)."""

    calls = 0
    fail_after: int | None = None


def _counted(config):
    if _Counter.fail_after is not None and _Counter.calls >= _Counter.fail_after:
        raise KeyboardInterrupt("simulated kill")
    _Counter.calls += 1
    return SYNTHETIC.fn(config)


COUNTED = register_measurement(
    Measurement(
        name="test-counted",
        fn=_counted,
        outputs=SYNTHETIC.outputs,
        defaults=SYNTHETIC.defaults,
        validate=SYNTHETIC.validate,
    ),
    replace=True,
)


@pytest.fixture(autouse=True)
def _reset_counter():
    _Counter.calls = 0
    _Counter.fail_after = None
    yield


def _spec(measurement="synthetic", **extra):
    d = {
        "measurement": measurement,
        "title": "2x2x2",
        "fixed": {"synthetic.epochs": 3, "synthetic.lr": 0.2},
        "parameters": {
            "synthetic.bits": [2, 6],
            "noise": {"start": 0.0, "stop": 0.2, "num": 2},
            "seed": [3, 7],
        },
    }
    d.update(extra)
    return parse_sweep(d)


# --------------------------------------------------------------------------- values


def test_ranges_expand_to_the_values_they_name():
    assert expand_values([4, 6, 8], "k") == (4, 6, 8)
    assert expand_values({"start": 4, "stop": 10, "step": 2}, "k") == (4, 6, 8, 10)
    assert expand_values({"start": 0, "stop": 1, "num": 5}, "k") == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert expand_values({"start": 0, "stop": 10, "num": 3}, "k") == (0, 5, 10)
    assert all(isinstance(v, int) for v in expand_values({"start": 0, "stop": 10, "num": 3}, "k"))
    np.testing.assert_allclose(
        expand_values({"start": 1e-3, "stop": 1e-1, "num": 3, "scale": "log"}, "k"), [1e-3, 1e-2, 1e-1]
    )
    # A stop off the grid is not included; a float step lands on its stop despite rounding.
    assert expand_values({"start": 0, "stop": 7, "step": 3}, "k") == (0, 3, 6)
    assert expand_values({"start": 0.0, "stop": 0.3, "step": 0.1}, "k")[-1] == pytest.approx(0.3)
    assert len(expand_values({"start": 0.0, "stop": 0.3, "step": 0.1}, "k")) == 4
    assert expand_values({"start": 1, "stop": -1, "step": -1}, "k") == (1, 0, -1)


# --------------------------------------------------------------------------- the result


def test_2x2x2_sweep_has_dims_coords_attrs_and_each_value_at_its_point(tmp_path):
    spec = _spec()
    res = run_sweep(spec, tmp_path / "s.nc", progress=False)
    ds = res.dataset
    assert res.points == 8 and res.computed == 8 and res.reused == 0
    assert dict(ds.sizes) == {"synthetic.bits": 2, "noise": 2, "seed": 2, "epoch": 3}
    assert ds["loss"].dims == ("synthetic.bits", "noise", "seed", "epoch")
    assert ds["final_loss"].dims == ("synthetic.bits", "noise", "seed")
    assert list(ds["synthetic.bits"].values) == [2, 6]
    assert list(ds["noise"].values) == [0.0, 0.2]
    assert list(ds["seed"].values) == [3, 7]
    assert list(ds["epoch"].values) == [1, 2, 3]
    # Every fixed parameter is an attribute; swept ones are not.
    assert ds.attrs["anasim_kind"] == "sweep"
    assert ds.attrs["synthetic.epochs"] == 3 and ds.attrs["synthetic.lr"] == 0.2
    assert ds.attrs["synthetic.size"] == 16 and ds.attrs["synthetic.work"] == 0
    assert "synthetic.bits" not in ds.attrs and "seed" not in ds.attrs
    assert json.loads(ds.attrs["anasim_swept"]) == [
        ["synthetic.bits", "synthetic.bits"], ["noise", "synthetic.noise"], ["seed", "seed"]
    ]
    # Each value sits at the coordinates of the configuration that produced it:
    # recompute two points from hand-written configurations.
    for bits, noise, seed in [(2, 0.2, 7), (6, 0.0, 3)]:
        cfg = {"seed": seed, "synthetic": {"bits": bits, "noise": noise, "size": 16, "epochs": 3, "lr": 0.2, "work": 0}}
        direct = evaluate((SYNTHETIC,), cfg)
        got = ds.sel({"synthetic.bits": bits, "noise": noise, "seed": seed})
        np.testing.assert_array_equal(got["loss"].values, direct["loss"])
        assert float(got["final_loss"]) == direct["loss"][-1]
    # The file on disk is the same Dataset.
    xr.testing.assert_identical(open_sweep(tmp_path / "s.nc"), ds)


def test_quantization_and_noise_show_in_the_result(tmp_path):
    # Independent expectation: 2-bit weights cannot fit as well as 6-bit ones,
    # whatever the seed; the noiseless 6-bit fit improves epoch over epoch.
    ds = run_sweep(_spec(), None, progress=False).dataset
    fl = ds["final_loss"]
    assert bool((fl.sel({"synthetic.bits": 2}) > fl.sel({"synthetic.bits": 6})).all())
    loss = ds["loss"].sel({"synthetic.bits": 6, "noise": 0.0})
    assert bool((loss.diff("epoch") < 0).all())


def test_zip_shares_one_dimension():
    spec = parse_sweep({
        "measurement": "synthetic",
        "combine": "zip",
        "parameters": {"bits": [2, 4, 8], "seed": [0, 1, 2]},
    })
    ds = run_sweep(spec, None, progress=False).dataset
    assert ds["final_loss"].dims == ("bits",)
    assert list(ds["seed"].values) == [0, 1, 2] and ds["seed"].dims == ("bits",)


def test_swept_epochs_pad_with_nan(tmp_path):
    spec = parse_sweep({"measurement": "synthetic", "parameters": {"epochs": [2, 4]}})
    ds = run_sweep(spec, None, progress=False).dataset
    assert ds.sizes["epoch"] == 4
    assert np.isnan(ds["loss"].sel(epochs=2).values[2:]).all()
    assert np.isfinite(ds["loss"].sel(epochs=4).values).all()


# --------------------------------------------------------------------------- resume


def test_killed_sweep_resumes_only_missing_points_and_equals_uninterrupted(tmp_path):
    spec = _spec("test-counted")
    whole = run_sweep(spec, tmp_path / "whole.nc", progress=False).dataset
    assert _Counter.calls == 8

    _Counter.calls, _Counter.fail_after = 0, 3
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "cut.nc", progress=False)
    assert len(list(store_path(tmp_path / "cut.nc").glob("*.h5"))) == 3
    partial = open_sweep(tmp_path / "cut.nc")  # written on the way out
    assert int(np.isfinite(partial["final_loss"]).sum()) == 3
    assert partial.attrs["anasim_points_done"] == 3

    _Counter.calls, _Counter.fail_after = 0, None
    res = run_sweep(spec, tmp_path / "cut.nc", progress=False)
    assert _Counter.calls == 5 and res.computed == 5 and res.reused == 3
    xr.testing.assert_identical(res.dataset, whole)
    xr.testing.assert_identical(open_sweep(tmp_path / "cut.nc"), whole)

    # A finished sweep is never recomputed.
    _Counter.calls = 0
    again = run_sweep(spec, tmp_path / "cut.nc", progress=False)
    assert _Counter.calls == 0 and again.computed == 0
    xr.testing.assert_identical(again.dataset, whole)


_SHARED: dict = {}


def _other_process_meanwhile(config):
    """On its first call, plays a second process that shares the point store and
    finishes the last point of the sweep first."""
    _Counter.calls += 1
    if _SHARED.pop("pending", False):
        spec, out = _SHARED["spec"], _SHARED["out"]
        last = spec.point_config(list(spec.points())[-1])
        PointStore(store_path(out)).write(point_key([("test-sharing", 1)], last), last, SYNTHETIC.fn(last))
    return SYNTHETIC.fn(config)


def test_points_another_process_finished_meanwhile_are_not_recomputed(tmp_path):
    register_measurement(Measurement(name="test-sharing", fn=_other_process_meanwhile,
                                     outputs=SYNTHETIC.outputs, defaults=SYNTHETIC.defaults,
                                     validate=SYNTHETIC.validate), replace=True)
    spec = _spec("test-sharing")
    _SHARED.update(spec=spec, out=tmp_path / "s.nc", pending=True)
    res = run_sweep(spec, tmp_path / "s.nc", progress=False)
    assert _Counter.calls == 7 and res.computed == 7 and res.reused == 1
    whole = run_sweep(_spec(), None, progress=False).dataset
    np.testing.assert_array_equal(res.dataset["final_loss"].values, whole["final_loss"].values)


def test_changed_fixed_value_is_a_new_point_not_a_stale_reuse(tmp_path):
    run_sweep(_spec("test-counted"), tmp_path / "s.nc", progress=False)
    _Counter.calls = 0
    spec2 = _spec("test-counted", fixed={"synthetic.epochs": 3, "synthetic.lr": 0.1})
    res = run_sweep(spec2, tmp_path / "s.nc", progress=False)
    assert _Counter.calls == 8 and res.reused == 0
    assert res.dataset.attrs["synthetic.lr"] == 0.1


@pytest.mark.slow
def test_sigkilled_cli_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    spec_file = tmp_path / "kill.toml"
    spec_file.write_text(
        'measurement = "synthetic"\n'
        "[fixed]\n"
        '"synthetic.work" = 400\n'
        "[parameters]\n"
        '"synthetic.bits" = [3, 5, 7]\n'
        "seed = [0, 1]\n"
    )
    out = tmp_path / "kill.nc"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [PY, "-m", "anasim.cli", "sweep", str(spec_file), "--out", str(out), "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    store = store_path(out)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if len(list(store.glob("*.h5"))) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(store.glob("*.h5")))
    assert 1 <= done < 6, "the kill should land mid-sweep"

    from anasim.study import load_sweep

    spec = load_sweep(spec_file)
    res = run_sweep(spec, out, progress=False)
    assert res.reused == done and res.computed == 6 - done
    fresh = run_sweep(spec, None, progress=False).dataset
    xr.testing.assert_equal(res.dataset, fresh)
    # a torn temporary file of the killed process is never taken for a point, and the next run
    # over the same store removes it (its writer is dead)
    assert {p.suffix for p in store.iterdir()} <= {".h5"}
    assert len(PointStore(store).keys()) == 6 and all(len(k) == 24 for k in PointStore(store).keys())


# --------------------------------------------------------------------------- dask


@pytest.mark.slow
def test_two_worker_local_dask_cluster_equals_in_process(tmp_path):
    spec = _spec()
    local = run_sweep(spec, tmp_path / "local.nc", progress=False).dataset
    res = run_sweep(spec, tmp_path / "dask.nc", workers=2, progress=False)
    assert res.computed == 8
    xr.testing.assert_identical(res.dataset, local)
    xr.testing.assert_identical(open_sweep(tmp_path / "dask.nc"), local)


# --------------------------------------------------------------------------- bad specs


@pytest.mark.parametrize(
    "change, key",
    [
        ({"parameters": {"synthetic.bitz": [2, 4]}}, "synthetic.bitz"),
        ({"parameters": {"slm.bits": [2, 4]}}, "slm.bits"),
        ({"parameters": {"bits": []}}, "bits"),
        ({"parameters": {"noise": {"start": 0.2, "stop": 0.0, "step": 0.1}}}, "noise"),
        ({"parameters": {"noise": {"start": 0.0, "stop": 1.0, "num": 0}}}, "noise"),
        ({"parameters": {"bits": [4, 40]}}, "bits"),
        ({"parameters": {"noise": [0.1, -0.5]}}, "noise"),
        ({"parameters": {"seed": [0, -1]}}, "seed"),
        ({"parameters": {"bits": 4}}, "bits"),
        ({"combine": "zip", "parameters": {"bits": [2, 4], "seed": [0, 1, 2]}}, "seed"),
        ({"fixed": {"synthetic.size": 0}}, "size"),
        ({"measurement": "nonesuch"}, "measurement"),
        ({"parameterz": {}}, "parameterz"),
    ],
)
def test_bad_specs_fail_before_any_work_with_one_line_naming_the_key(tmp_path, change, key):
    d = {"measurement": "test-counted", "parameters": {"bits": [2, 4]}}
    d.update(change)
    with pytest.raises(AnasimError) as info:
        parse_sweep(d, source="bad.toml")
    msg = str(info.value)
    assert "\n" not in msg and key in msg and msg.startswith("bad.toml")
    assert _Counter.calls == 0


def test_cli_bad_spec_prints_one_line_and_exits_2(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text('measurement = "synthetic"\n[parameters]\n"synthetic.bits" = [4, 99]\n')
    assert cli_main(["sweep", str(f), "--out", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "synthetic.bits" in err and "bad.toml" in err
    assert not (tmp_path / "o.nc").exists() and not store_path(tmp_path / "o.nc").exists()


def test_cli_sweep_json_and_dry_run(tmp_path, capsys):
    f = tmp_path / "ok.toml"
    f.write_text(
        'measurement = "synthetic"\n[parameters]\nbits = { start = 2, stop = 6, step = 2 }\nseed = [0, 1]\n'
    )
    out = tmp_path / "ok.nc"
    assert cli_main(["sweep", str(f), "--out", str(out), "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["points"] == 6 and dry["done"] == 0 and dry["dims"] == {"bits": 3, "seed": 2}
    assert not out.exists()
    assert cli_main(["sweep", str(f), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["computed"] == 6 and info["dims"] == {"bits": 3, "seed": 2, "epoch": 5}
    ds = open_sweep(out)
    assert list(ds["bits"].values) == [2, 4, 6]
    assert ds.attrs["anasim_spec"] == f.read_text()


def test_measurement_registry_names_builtin():
    assert get_measurement("synthetic") is SYNTHETIC


def test_report_sweep_draws_the_standard_plots(tmp_path):
    from anasim.study.plots import report_sweep

    spec = parse_sweep({
        "measurement": "synthetic",
        "parameters": {"bits": [2, 4], "noise": [0.0, 0.3], "epochs": [2, 3], "seed": [0, 1]},
    })
    run_sweep(spec, tmp_path / "r.nc", progress=False)
    paths = report_sweep(tmp_path / "r.nc")
    assert [p.name for p in paths] == ["r.png", "r-heatmap.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_final_epoch_is_the_last_finished_one():
    from anasim.study.plots import _final

    da = xr.DataArray([[1.0, 2.0, np.nan], [4.0, 5.0, 6.0]], dims=("epochs", "epoch"))
    np.testing.assert_array_equal(_final(da).values, [2.0, 6.0])


def test_report_command_recognizes_a_sweep_file(tmp_path, capsys):
    spec = parse_sweep({"measurement": "synthetic", "parameters": {"bits": [2, 4], "seed": [0, 1]}})
    run_sweep(spec, tmp_path / "s.nc", progress=False)
    assert cli_main(["report", str(tmp_path / "s.nc"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    plots = info["plots"]
    assert [Path(p).name for p in plots] == ["s.png"]
    # the values plotted, read from the file: one per swept value, averaged over nothing
    assert info["kind"] == "sweep" and info["metrics"]
    ds = open_sweep(tmp_path / "s.nc")
    for name, m in info["metrics"].items():
        assert m["dims"] == list(ds[name].dims)
        assert m["coords"]["bits"] == [2, 4]
        np.testing.assert_allclose(np.asarray(m["values"], float), ds[name].values)
    assert Path(plots[0]).stat().st_size > 1000


def test_load_sweep_overrides_replace_parameters_and_update_fixed(tmp_path):
    from anasim.study import load_sweep

    f = tmp_path / "s.toml"
    f.write_text('measurement = "synthetic"\n[parameters]\nbits = [2, 4, 6]\nseed = [0, 1]\n'
                 '[fixed]\nnoise = 0.1\n')
    spec = load_sweep(f, parameters={"bits": [8]}, fixed={"epochs": 2})
    assert [(a.name, a.values) for a in spec.axes] == [("bits", (8,))]
    assert dict(spec.fixed) == {"synthetic.noise": 0.1, "synthetic.epochs": 2}
    with pytest.raises(AnasimError, match="bits"):
        load_sweep(f, parameters={"bits": []})
