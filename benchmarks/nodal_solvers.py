"""The ``"nodal"`` engine's two solvers on the resistive circuit: block updates against Newton.

The resistive node-level Hopfield circuit (``circuits/resistive-nodal.toml``:
differential conductance pairs, ± input sources, diode clamps) relaxes on the
``"nodal"`` engine. Its DC point comes from exact updates of one layer at a
time (``[nodal] solver = "blocks"``, :mod:`anasim.nodal.hopfield_blocks`, the
default for resistive circuits) or from one Newton solve of the whole netlist
(``solver = "newton"``). Two measurements, the machine's 1-minute load printed
with each (wall-clock on a shared CPU):

* one relaxation of 20 examples, free and nudged (both compartments, β = ±0.2,
  as one EP step solves them), for hidden layers of 32, 100 and 1024 nodes on
  an untrained chip; the median of ``--repeat`` calls after a warm-up, and the
  largest difference of the two solvers' states (V);
* two training epochs of ``anasim train`` on the shipped circuit (784-32-10,
  centered EP, batch 20, ``--train`` images), noiseless and with the spec's
  thermal noise (0.1 fF nodes), for each solver: the ``wall_s`` of each epoch
  in the result file (training and evaluation; the first epoch also compiles
  what the process runs, about 6 s here).

Writes ``benchmarks/results/nodal_solvers.json``.

    python benchmarks/nodal_solvers.py [--repeat 5] [--train 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from anasim.circuits import load_circuit
from anasim.devices import ideal_profile
from anasim.nodal.engine import NodalEngine
from anasim.nodal.physics import load_nodal_physics

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "circuits" / "resistive-nodal.toml"
HIDDEN = (32, 100, 1024)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def time_relax(engine, spec, hw, x, y, repeat):
    """(median free s, median nudged s, the two equilibria)."""
    def free():
        return jax.block_until_ready(engine.relax(spec, hw, x, jax.random.key(2)).s_plus)

    def nudged():
        return jax.block_until_ready(engine.relax(spec, hw, x, jax.random.key(3), nudge=(0.2, 0.2), target=y).s_plus)

    out = (free(), nudged())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        free()
        t1 = time.perf_counter()
        nudged()
        times.append((t1 - t0, time.perf_counter() - t1))
    t = np.median(np.asarray(times), axis=0)
    return float(t[0]), float(t[1]), out


def train_epochs(solver: str, noisy: bool, train: int) -> list[float]:
    """``wall_s`` of two epochs of ``anasim train`` on a copy of the shipped spec (the
    first compiles what the process runs)."""
    text = SPEC.read_text()
    if not noisy:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("node_capacitance_f"))
    text = text.replace('device = "devices/ideal.toml"', f'device = "{ROOT / "devices" / "ideal.toml"}"')
    assert text.rfind("[nodal]") == text.rfind("\n[") + 1, f"{SPEC}: [nodal] must be the last table"
    text += f"\nsolver = \"{solver}\"\n"
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.toml"
        spec.write_text(text)
        out = Path(tmp) / "run.nc"
        subprocess.run([str(Path(sys.executable).parent / "anasim"), "train", "--circuit", str(spec), "--epochs", "2",
                        "--train-size", str(train), "--out", str(out), "--no-progress"], check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL)
        with xr.open_dataset(out) as ds:
            return [float(w) for w in ds["wall_s"].values]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--train", type=int, default=1000, help="training images of the epoch timings")
    args = ap.parse_args()
    base = load_circuit(str(SPEC))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (20, 784))
    y = np.eye(10)[np.arange(20) % 10]
    figures, rows = {}, []
    for hidden in HIDDEN:
        spec = replace(base, sizes=(784, hidden, 10))
        eqs, row = {}, [f"784-{hidden}-10"]
        for solver in ("newton", "blocks"):
            physics = load_nodal_physics({"network": {"lam": 1.0}, "nodal": {"g_min_s": 1e-7, "solver": solver}})
            engine = NodalEngine(physics)
            params = engine.init_params(spec, jax.random.key(0))
            hw = engine.build(spec, ideal_profile(), params, jax.random.key(1))
            l0 = load()
            free, nudged, eqs[solver] = time_relax(engine, spec, hw, x, y, args.repeat)
            print(f"784-{hidden}-10, {solver}: free {free * 1e3:.1f} ms, nudged {nudged * 1e3:.1f} ms "
                  f"(load {l0} → {load()})", flush=True)
            row += [round(free * 1e3, 2), round(nudged * 1e3, 2)]
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for pa, pb in zip(eqs["newton"], eqs["blocks"]) for a, b in zip(pa, pb)) * physics.v_fs_v
        speed = (row[1] + row[2]) / (row[3] + row[4])
        print(f"   blocks ÷ newton time {1 / speed:.3f} (×{speed:.0f} faster); states differ by ≤ {diff:.1e} V")
        figures[f"speedup_{hidden}"] = (speed, "", f"784-{hidden}-10: Newton's free + nudged time ÷ the blocks'")
        rows.append(row + [f"{diff:.1e}", load()])
    epochs = []
    for noisy in (False, True):
        for solver in ("newton", "blocks"):
            l0 = load()
            walls = train_epochs(solver, noisy, args.train)
            what = "thermal noise, 0.1 fF" if noisy else "noiseless"
            print(f"anasim train, 784-32-10, {args.train} images, {what}, {solver}: {walls[0]:.1f} s for epoch 1, "
                  f"{walls[1]:.1f} s for epoch 2 (load {l0} → {load()})", flush=True)
            epochs.append([what, solver, args.train, round(walls[0], 1), round(walls[1], 1), l0, load()])
    from _results import write_results
    write_results("nodal_solvers", figures, {
        "title": "The nodal engine's solvers on the resistive circuit: block updates and Newton",
        "command": "python benchmarks/nodal_solvers.py",
        "notes": ("Wall-clock on a shared CPU, JAX on the CPU, float64. Relaxations: 20 examples of an untrained "
                  "chip (ideal devices, g_min 0.1 uS), median of repeated calls after a warm-up; nudged = both "
                  "compartments (beta = +-0.2) in one call. Epochs: anasim train on circuits/resistive-nodal.toml "
                  "with [nodal] solver set, the result file's wall_s per epoch (epoch 1 includes compilation)."),
    }, tables={
        "relaxation": {"columns": ["circuit", "newton free [ms]", "newton nudged [ms]", "blocks free [ms]",
                                   "blocks nudged [ms]", "largest state difference [V]", "load"], "rows": rows},
        "epochs": {"columns": ["noise", "solver", "training images", "s, epoch 1 (with compilation)",
                               "s, epoch 2", "load before", "load after"],
                   "rows": epochs}})


if __name__ == "__main__":
    main()
