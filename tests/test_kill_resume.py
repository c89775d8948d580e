"""SIGKILL at random moments, then --resume: the finished run is the uninterrupted one.

`anasim train` (a checkpoint after every step) and `anasim sweep` run as
subprocesses and are killed with SIGKILL -- at seeded random moments, and
while a checkpoint, the result file or a sweep point is being written (its
atomic writer's temporary file exists) -- then resumed with ``--resume``. The
harness is ``benchmarks/kill_resume.py``, which also measures the work lost
per kill for the manual.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

REPO_ROOT = Path(__file__).resolve().parents[1]


def _harness():
    spec = importlib.util.spec_from_file_location("kill_resume", REPO_ROOT / "benchmarks" / "kill_resume.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_train_killed_four_times_resumes_bit_identical(tmp_path):
    kr = _harness()
    # kill_and_resume checks: result file and checkpoint bit-identical to an uninterrupted run
    # (wall-clock times aside), no temporary file after the finishing run, the final position
    res = kr.kill_and_resume(tmp_path, kills=4, seed=1)
    recs = res["records"]
    assert [r["mode"] for r in recs] == ["checkpoint", "result", "random", "random"]
    # the first two landed inside a write and left its temporary file, which the next start removed
    assert recs[0]["killed"] and recs[0]["in_write"] and any(".cut.ckpt.h5." in s for s in recs[0]["stale"])
    assert recs[1]["killed"] and recs[1]["in_write"] and any(".cut.nc." in s for s in recs[1]["stale"])
    # the checkpoint loaded after every kill, and the run moved forward between kills
    positions = [r["position"] for r in recs]
    assert positions == sorted(positions) and positions[0] >= (0, 1)
    for i, r in enumerate(recs, 1):
        print(f"kill {i} ({r['mode']}): checkpoint at epoch {r['position'][0]}, step {r['position'][1]}; "
              f"lost {r['lost_s']:.3f} s = {r['lost_steps']:.2f} steps")


def _sweep(spec, out, *extra):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-m", "anasim.cli", "sweep", str(spec), "--out", str(out), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sweep_killed_inside_a_point_write_resumes_without_stale_files(tmp_path):
    from anasim.study import open_sweep, run_sweep
    from anasim.study.spec import load_sweep
    from anasim.study import store_path

    spec = tmp_path / "kill.toml"
    spec.write_text('measurement = "synthetic"\n[fixed]\n"synthetic.work" = 200\n[parameters]\n'
                    '"synthetic.bits" = [3, 5, 7, 9]\nseed = [0, 1]\n')
    out = tmp_path / "kill.nc"
    store = store_path(out)
    proc = _sweep(spec, out)
    deadline = time.time() + 120
    caught = False
    while proc.poll() is None and time.time() < deadline:
        if store.is_dir() and list(store.glob(f".*.{proc.pid}.*.tmp")):
            proc.send_signal(signal.SIGKILL)
            caught = True
            break
        time.sleep(0.0002)
    proc.wait()
    assert caught, "the kill should land inside a point's write"
    assert list(store.glob(".*.tmp")), "the killed write leaves its temporary file"
    done = len(list(store.glob("*.h5")))
    assert done < 8
    proc = _sweep(spec, out, "--resume")
    assert proc.wait() == 0, proc.stderr.read().decode()
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*tmp*"))
    assert len(list(store.glob("*.h5"))) == 8
    fresh = run_sweep(load_sweep(spec), None, progress=False).dataset
    xr.testing.assert_equal(open_sweep(out), fresh)
