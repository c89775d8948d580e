"""Kill and resume: `anasim train` killed with SIGKILL at random moments and resumed.

A small run (784-8-10 on the shipped subset, 2 epochs of 120 steps, a
checkpoint after every step: ``--checkpoint-every-steps 1``) is started as a
subprocess, killed with SIGKILL (seeded random delays after its first
checkpoint of that start; one kill while a checkpoint is being written -- its
atomic writer's temporary file exists -- and one while the result file is
being written at an epoch's end), then resumed with ``--resume``, again and
again, and finally resumed to the end. Checked against an uninterrupted run:

* every number of the result file (but the wall-clock times) and every array
  of the checkpoint is the same, bit for bit;
* no temporary file is left after the finishing run; the checkpoint loads
  after every kill (its ``epoch``/``step`` attributes are read back).

Measured per kill: the work lost, as the seconds from the last checkpoint
written (its file's modification time) to the kill, and that time in steps
(divided by the median time between two checkpoints of the same start).

Run: ``python benchmarks/kill_resume.py [--kills N] [--seed S]`` (writes
``benchmarks/results/kill_resume.json``). ``tests/test_kill_resume.py`` runs
the same harness with fewer kills.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent

SPEC = """name = "kill"
[network]
sizes = [784, 8, 10]
lam = 1.0
[relaxation]
max_iters = 50
[training]
epochs = 2
batch_size = 8
train_size = 960
test_size = 64
data = "subset"
"""
STEPS_PER_EPOCH = 120
EPOCHS = 2
WALL = ("wall_s", "train_wall_s")


def _env(cache: Path) -> dict:
    # the compiled relaxations are shared by every start (ANASIM_JAX_CACHE): only the first compiles
    return dict(os.environ, PYTHONPATH=str(REPO), ANASIM_JAX_CACHE=str(cache))


def start(spec: Path, out: Path, cache: Path, *, resume: bool) -> subprocess.Popen:
    """``anasim train`` on ``spec`` into ``out``, a checkpoint after every step."""
    argv = [sys.executable, "-m", "anasim.cli", "train", "--circuit", str(spec), "--out", str(out),
            "--no-progress", "--checkpoint-every-steps", "1"] + (["--resume"] if resume else [])
    return subprocess.Popen(argv, cwd=REPO, env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _temporaries(path: Path, pid: int) -> list[Path]:
    return [p for p in path.parent.glob(f".{path.name}.{pid}.*.tmp")]


def position(ckpt: Path) -> tuple[int, int]:
    """(finished epochs, steps done of the next) of a checkpoint: it must load."""
    with h5py.File(ckpt, "r") as f:
        return int(f.attrs["epoch"]), int(f.attrs.get("step", 0))


def kill_once(spec: Path, out: Path, cache: Path, rng: random.Random, mode: str, resume: bool,
              timeout: float = 120.0) -> dict:
    """Start a run and SIGKILL it: ``mode`` "random" (a seeded random delay of 0 to 0.25 s after
    this start's first checkpoint), "checkpoint" (while a checkpoint is being written) or
    "result" (while the result file is being written). Returns what happened and the work lost."""
    ckpt = out.with_name(out.stem + ".ckpt.h5")
    before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    proc = start(spec, out, cache, resume=resume)
    t_start = time.time()
    stamps: list[int] = []   # modification times of this start's checkpoints
    target = {"checkpoint": ckpt, "result": out}.get(mode)
    deadline = None
    killed_in_write = False
    while proc.poll() is None and time.time() - t_start < timeout:
        if ckpt.exists():
            m = ckpt.stat().st_mtime_ns
            if m != before and (not stamps or m != stamps[-1]):
                stamps.append(m)
        if target is not None:
            if stamps and _temporaries(target, proc.pid):
                proc.send_signal(signal.SIGKILL)
                killed_in_write = True
                break
            time.sleep(0.0002)
            continue
        if stamps and deadline is None:
            deadline = time.time() + rng.uniform(0.0, 0.25)
        if deadline is not None and time.time() >= deadline:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    t_kill = time.time()
    code = proc.wait()
    err = proc.stderr.read().decode()
    if code not in (0, -signal.SIGKILL):
        raise RuntimeError(f"anasim train exited with {code}: {err}")
    last = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    if last is not None and last != (stamps[-1] if stamps else None) and last != before:
        stamps.append(last)
    intervals = np.diff(stamps) / 1e9 if len(stamps) > 1 else np.array([])
    step_s = float(statistics.median(intervals)) if len(intervals) else float("nan")
    where = position(ckpt)
    # killed after the run's last checkpoint (while it exits): a resume has nothing to redo
    finished = where == (EPOCHS, 0)
    lost_s = t_kill - last / 1e9 if (code != 0 and last is not None and not finished) else 0.0
    return {"mode": mode, "killed": code != 0, "after_end": finished and code != 0, "in_write": killed_in_write,
            "position": where,
            "lost_s": lost_s, "step_s": step_s, "stale": [p.name for p in out.parent.glob(".*.tmp")]}


def compare(reference: Path, resumed: Path) -> None:
    """Raise AssertionError unless the two runs' result files and checkpoints hold the same numbers."""
    import xarray as xr

    a, b = xr.load_dataset(reference, engine="h5netcdf"), xr.load_dataset(resumed, engine="h5netcdf")
    assert list(a["epoch"].values) == list(b["epoch"].values), "epochs differ"
    assert a.attrs == b.attrs, "attributes differ"
    for k in a.data_vars:
        if k not in WALL:
            np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)

    def arrays(path):
        out = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
            out["@epoch"], out["@step"] = f.attrs["epoch"], f.attrs["step"]
        return out

    ca, cb = (arrays(p.with_name(p.stem + ".ckpt.h5")) for p in (reference, resumed))
    assert ca.keys() == cb.keys(), "checkpoint groups differ"
    for k in ca:
        assert np.asarray(ca[k]).dtype == np.asarray(cb[k]).dtype and np.array_equal(ca[k], cb[k]), k


def kill_and_resume(workdir: Path, kills: int, seed: int = 0, cache: Path | None = None) -> dict:
    """The whole procedure in ``workdir``: reference run, ``kills`` kills (the first two while
    a checkpoint is written and while the result file is written, the rest at random), the
    finishing resume, the comparison. Returns the kills' records and the wall times."""
    workdir.mkdir(parents=True, exist_ok=True)
    cache = cache or workdir / "jax-cache"
    spec = workdir / "kill.toml"
    spec.write_text(SPEC)
    t0 = time.perf_counter()
    ref = workdir / "whole.nc"
    proc = start(spec, ref, cache, resume=False)
    if proc.wait() != 0:
        raise RuntimeError(proc.stderr.read().decode())
    t_ref = time.perf_counter() - t0
    rng = random.Random(seed)
    out = workdir / "cut.nc"
    modes = (["checkpoint", "result"] + ["random"] * kills)[:kills]
    records = []
    for i, mode in enumerate(modes):
        records.append(kill_once(spec, out, cache, rng, mode, resume=i > 0))
    proc = start(spec, out, cache, resume=True)
    if proc.wait() != 0:
        raise RuntimeError(proc.stderr.read().decode())
    compare(ref, out)
    stale = sorted(p.name for p in workdir.rglob("*.tmp"))
    assert not stale, f"temporary files left after the finishing run: {stale}"
    assert position(out.with_name("cut.ckpt.h5")) == (EPOCHS, 0)
    # work lost in steps: the seconds lost over the median time of a step (checkpoint included)
    step_s = statistics.median(r["step_s"] for r in records if np.isfinite(r["step_s"]))
    for r in records:
        r["lost_steps"] = r["lost_s"] / step_s
    return {"records": records, "step_s": step_s, "reference_s": t_ref, "total_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _results import write_results

    with tempfile.TemporaryDirectory() as tmp:
        res = kill_and_resume(Path(tmp), args.kills, args.seed)
    recs = res["records"]
    killed = [r for r in recs if r["killed"] and not r["after_end"]]
    lost_s = [r["lost_s"] for r in killed]
    lost_steps = [r["lost_steps"] for r in killed]
    rows = [[i + 1, r["mode"], ("after the run's end" if r["after_end"] else "yes") if r["killed"] else
             "finished first", "yes" if r["in_write"] else "no",
             f"{r['position'][0]}, {r['position'][1]}", round(r["lost_s"], 3), round(r["lost_steps"], 2)]
            for i, r in enumerate(recs)]
    for row in rows:
        print(*row, sep="\t")
    write_results("kill_resume", {
        "kills": (len(killed), "", "kills survived during the run (SIGKILL, then --resume)"),
        "identical": (1, "", "resumed run bit-identical to the uninterrupted one (1 = yes)"),
        "lost_s_median": (statistics.median(lost_s), "s", "work lost per kill, median"),
        "lost_s_max": (max(lost_s), "s", "work lost per kill, largest"),
        "lost_steps_median": (statistics.median(lost_steps), "steps", "work lost per kill in steps, median"),
        "lost_steps_max": (max(lost_steps), "steps", "work lost per kill in steps, largest"),
        "step_s": (res["step_s"], "s", "time per step with a checkpoint after every step, median"),
    }, {"title": "Kill and resume: SIGKILL at random moments, checkpoint after every step",
        "command": f"python benchmarks/kill_resume.py --kills {args.kills} --seed {args.seed}",
        "notes": "784-8-10 on the shipped subset, 2 epochs x 120 steps of 8 examples; work lost = "
                 "seconds from the last checkpoint written to the kill; in steps: divided by the "
                 "median time between two checkpoints"},
        tables={"kills": {"columns": ["kill", "when", "killed", "during a write", "checkpoint (epoch, step)",
                                      "lost [s]", "lost [steps]"], "rows": rows}})


if __name__ == "__main__":
    main()
