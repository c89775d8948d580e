"""Test accuracy against energy per training example, on every physical device profile.

Trains circuits/skew-small.toml (784-128-10, λ = 0, dyadic rule) on each
shipped profile with a physical coupling (SLM, resistive, gyrator; the
backward direction each can realize: a second SLM, the transposed crossbar
read, the gyrator's own reverse OTA), and on the ideal profile for the
accuracy of the exact mathematics (it has no energy), and reports the test accuracy, the
energy per training example from the devices' physics (arrays, converters,
writes; anasim.learning.cost, docs/energy.md), the hardware time per example
and the energy the same training takes on the digital references (NVIDIA
A100 and H100 SXM at FP32). Writes examples/results/energy_per_example.json
and examples/figures/energy_per_example.png (accuracy against energy per
example, log x axis, the digital references as vertical lines).

    python examples/energy_per_example.py [--epochs 2] [--train-size 10000] [--test-size 2000]
    python examples/energy_per_example.py --quick      # 640 / 500 images of the shipped subset, 1 epoch
    python examples/energy_per_example.py --plot-only  # redraw the figure from the results file

Resumable: the results file is rewritten after every profile, and a rerun with
the same sizes skips the profiles it already holds (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
PROFILES = ("slm-10bit", "slm-10bit-adc8", "slm-10bit-500", "reram", "pcm", "gyrator-gmc", "ideal")
BACKWARD = {"slm": "copy", "resistive": "transpose", "gyrator": "gyrator", "ideal": "copy"}
NAME = "energy_per_example"
COLUMNS = ["profile", "test accuracy", "iterations per step", "energy per example (J)", "arrays (J)",
           "converters (J)", "writes (J)", "hardware time per example (s)",
           "digital A100 energy per example (J)", "digital H100 energy per example (J)"]


def _num(v: float | None, digits: int = 3):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(f"{v:.{digits}g}")


def _previous(path: Path, run: dict) -> list:
    """Rows of an earlier run with the same sizes (empty if none or different sizes)."""
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if doc.get("run") != run:
        return []
    return [r for r in doc.get("tables", {}).get("main", {}).get("rows", []) if len(r) == len(COLUMNS)]


def draw(doc: dict, png: Path) -> None:
    """Accuracy against energy per training example (log x), digital references as vertical lines."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = doc["tables"]["main"]["rows"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"slm": "o", "reram": "s", "pcm": "D", "gyrator": "^"}
    for r in rows:
        name, acc, energy = r[0], r[1], r[3]
        if acc is None:
            continue
        if energy is None:   # the ideal profile: no physics, its accuracy as a reference line
            ax.axhline(100 * acc, color="0.5", ls="-.", lw=1)
            ax.annotate(f"{name} (exact mathematics, no energy model)", (0.01, 100 * acc),
                        xycoords=("axes fraction", "data"), fontsize=8, va="bottom", color="0.3")
            continue
        m = next((v for k, v in markers.items() if name.startswith(k)), "o")
        ax.scatter(energy, 100 * acc, marker=m, s=50, zorder=3)
        ax.annotate(name, (energy, 100 * acc), textcoords="offset points", xytext=(6, 4), fontsize=8)
    for col, label, style in ((8, "A100 FP32", "--"), (9, "H100 FP32", ":")):
        vals = [r[col] for r in rows if r[col] is not None]
        if vals:
            ax.axvline(vals[0], color="k", ls=style, lw=1)
            ax.annotate(f"digital {label}", (vals[0], 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=8, ha="right", va="bottom")
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo, hi * 8)           # room for the labels of the rightmost points
    ax.set_xlabel("energy per training example (J)")
    ax.set_ylabel("test accuracy (%)")
    run = doc.get("run", {})
    ax.set_title(f"skew-small 784-128-10, {run.get('epochs')} epoch(s), "
                 f"{run.get('train_size')} / {run.get('test_size')} images", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    print(f"figure: {png}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="640/500 images of the shipped subset, 1 epoch")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--profiles", nargs="*", default=list(PROFILES), help="profile names in devices/")
    ap.add_argument("--fresh", action="store_true", help="ignore the rows of an earlier run")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from the results file")
    args = ap.parse_args(argv)

    import _results  # noqa: PLC0415  (examples/_results.py)

    out = _results.path(NAME, args.quick)
    png = HERE / "figures" / f"{NAME}{'_quick' if args.quick else ''}.png"
    if args.plot_only:
        draw(json.loads(out.read_text(encoding="utf-8")), png)
        return 0

    import dataclasses  # noqa: PLC0415

    from anasim.circuits import load_circuit  # noqa: PLC0415
    from anasim.data import load_fashion_mnist  # noqa: PLC0415
    from anasim.devices import coupling_kind, load_profile  # noqa: PLC0415
    from anasim.learning import load_train_config, train  # noqa: PLC0415
    from anasim.learning.cost import DIGITAL_GPU, DIGITAL_REFERENCES, digital_energy_j, digital_flops_per_example  # noqa: PLC0415

    circuit = ROOT / "circuits" / "skew-small.toml"
    base = load_circuit(circuit)
    epochs, n_train, n_test = (1, 640, 500) if args.quick else (args.epochs, args.train_size, args.test_size)
    run = {"epochs": epochs, "train_size": n_train, "test_size": n_test,
           "data": "subset" if args.quick else "default"}
    cfg = load_train_config(circuit, epochs=epochs, train_size=n_train, test_size=n_test)
    train_set, test_set = load_fashion_mnist("subset" if args.quick else None)
    rows = [] if args.fresh else _previous(out, run)
    done = {r[0] for r in rows}
    flops = digital_flops_per_example(base)
    h100 = digital_energy_j(base, 1, "H100")   # J per example

    def save(minutes: float) -> None:
        order = {p: i for i, p in enumerate(PROFILES)}
        rows.sort(key=lambda r: order.get(r[0], len(order)))
        doc_meta = {
            "title": f"skew-small (784-128-10) {epochs} epoch(s) on {n_train} training images, test on {n_test}",
            "run": run,
            "notes": (f"Energies per training example in J, cumulative over the run ÷ examples trained; "
                      f"empty: not modelled (ideal converters). Digital: {DIGITAL_GPU}, and "
                      f"{DIGITAL_REFERENCES['H100'][0]}; {flops} FLOPs per example (6 per weight). "
                      f"Last invocation: {minutes:.1f} min for its profiles (2 shared cores, measured under "
                      f"load). Profile defaults and their sources: docs/energy.md."),
        }
        _results.write(NAME, "energy_per_example.py", {}, doc_meta,
                       tables={"main": {"columns": COLUMNS, "rows": rows}}, quick=args.quick)
        draw(json.loads(out.read_text(encoding="utf-8")), png)

    t0 = time.time()
    for name in args.profiles:
        if name in done:
            print(f"{name}: already in {out.name}, skipped", flush=True)
            continue
        profile = load_profile(ROOT / "devices" / f"{name}.toml")
        spec = dataclasses.replace(base, backward=BACKWARD[coupling_kind(profile)])
        t1 = time.time()
        r = train(spec, profile, cfg, train_set, test_set, progress=False)
        h = {k: v[-1] for k, v in r.history.items()}
        n = epochs * (n_train // cfg.batch_size) * cfg.batch_size
        rows.append([name, _num(h["test_accuracy"]), _num(h["iterations"]),
                     _num(h["energy_j"] / n), _num(h["energy_arrays_j"] / n),
                     _num(h["energy_converters_j"] / n), _num(h["energy_writes_j"] / n),
                     _num(h["hardware_time_s"] / n), _num(h["digital_energy_j"] / n), _num(h100)])
        print(rows[-1], f"{(time.time() - t1) / 60:.1f} min", flush=True)
        save((time.time() - t0) / 60)
    if rows and len(rows) == len(done):   # nothing new: keep the file (and its timing note), redraw
        draw(json.loads(out.read_text(encoding="utf-8")), png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
