"""The shipped resistive node-level circuit trained with and without its thermal noise.

``circuits/resistive-nodal.toml``: a resistive 784-32-10 Hopfield circuit at
node level (differential conductance pairs, ± input sources, diode clamps),
trained with centered EP by the controller on the ``"nodal"`` engine, every
phase the circuit's DC point (block updates of its layers). Two runs of the
spec's own training (first 1000 training and 500 test images, 5 epochs, batch
20, lr 0.3, seed 0):

* ``thermal noise, 0.1 fF``: the spec as shipped, every equilibrium read with
  its nodes' stationary thermal fluctuation (Johnson–Nyquist and clamp-diode
  shot noise, √(k_B T / C) = 6.4 mV rms against the 1 V full scale);
* ``noiseless``: the same spec with ``node_capacitance_f`` removed.

Prints one line per epoch and writes ``examples/results/resistive_nodal.json``
(test accuracy per epoch, the fraction of units at a rail and seconds per
epoch) and ``examples/figures/resistive_nodal.png``. Each run keeps its
netCDF result and checkpoint in ``out/resistive_nodal/``; rerunning resumes.

    .venv/bin/python examples/resistive_nodal.py            # 1000 / 500 images, 5 epochs
    .venv/bin/python examples/resistive_nodal.py --quick    # 200 / 100 images, 2 epochs
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

from anasim.circuits import load_circuit  # noqa: E402
from anasim.circuits.engine import engine_for  # noqa: E402
from anasim.data import load_fashion_mnist  # noqa: E402
from anasim.devices import ideal_profile  # noqa: E402
from anasim.learning.config import load_train_config  # noqa: E402
from anasim.learning.controller import train  # noqa: E402
from anasim.tables import read_tables  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "circuits" / "resistive-nodal.toml"
FIGURES = ROOT / "examples" / "figures"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 / 100 images, 2 epochs")
    args = ap.parse_args()
    spec = load_circuit(str(SPEC))
    tables, _ = read_tables(str(SPEC))
    overrides = dict(train_size=200, test_size=100, epochs=2) if args.quick else {}
    cfg = load_train_config(tables, where=str(SPEC), **overrides)
    train_set, test_set = load_fashion_mnist(cfg.data or None)
    noisy = engine_for(spec, tables)
    runs = {"thermal noise, 0.1 fF": noisy,
            "noiseless": replace(noisy, physics=replace(noisy.physics, node_capacitance_f=None))}
    state = ROOT / "out" / ("resistive_nodal_quick" if args.quick else "resistive_nodal")
    state.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for label, engine in runs.items():
        out = state / f"{label.split(',')[0].replace(' ', '_')}.nc"
        print(f"{label}: {cfg.train_size} / {cfg.test_size} images, {cfg.epochs} epochs "
              f"(solver {engine.physics.solver}, C = {engine.physics.node_capacitance_f} F)", flush=True)
        result = train(spec, ideal_profile(), cfg, train_set, test_set, engine=engine, out=out,
                       resume=out.exists(), progress=sys.stderr.isatty(),
                       on_epoch=lambda e, m: print(f"  epoch {e}: test accuracy {m['test_accuracy']:.3f}, "
                                                   f"saturated {m['saturated']:.2f}, {m['wall_s']:.1f} s",
                                                   flush=True))
        h = result.history
        curves[label] = h["test_accuracy"]
        rows.append([label, *[round(float(a), 3) for a in h["test_accuracy"]], round(float(h["saturated"][-1]), 3),
                     _results.span(h["wall_s"][1:] or h["wall_s"], "{:.0f}")])
    columns = ["run", *[f"epoch {e + 1}" for e in range(cfg.epochs)], "saturated, last epoch",
               "s per epoch (after the first)"]
    for label, acc in zip(runs, (r[1:1 + cfg.epochs] for r in rows)):
        print(f"{label}: test accuracy per epoch {acc}")
    _results.write("resistive_nodal", "resistive_nodal.py", {}, {
        "title": (f"circuits/resistive-nodal.toml: resistive 784-32-10 trained with centered EP at node level, "
                  f"{cfg.train_size} / {cfg.test_size} images"),
        "notes": ("Test accuracy after each epoch; one seed per run. The first epoch's time includes compilation "
                  "and is left out of the span."),
    }, tables={"main": {"columns": columns, "rows": rows}}, quick=args.quick)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, acc in curves.items():
        ax.plot(range(1, len(acc) + 1), acc, marker="o", label=label)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("resistive 784-32-10 at node level, centered EP")
    ax.legend()
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / f"resistive_nodal{'_quick' if args.quick else ''}.png", dpi=120)


if __name__ == "__main__":
    main()
