"""Test accuracy against energy per training example, on every physical device profile.

Trains circuits/skew-small.toml (784-128-10, λ = 0, dyadic rule) briefly on each
shipped profile with a physical coupling (SLM, resistive, gyrator; the
backward direction each can realize: a second SLM, the transposed crossbar
read, the gyrator's own reverse OTA) and reports the test accuracy, the
energy per training example from the devices' physics (arrays, converters,
writes; anasim.learning.cost, docs/energy.md), the hardware time per example
and the energy the same training takes on the digital reference (an NVIDIA
A100 SXM at FP32). Writes examples/results/energy_per_example.json
(the command that wrote it is in the file).

Full: ``python examples/energy_per_example.py`` (the first 4000 training and
1000 test images, one epoch); ``--quick``: 640 training and 500 test images of
the shipped subset, one epoch (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROFILES = ("slm-10bit", "slm-10bit-adc8", "slm-10bit-500", "reram", "pcm", "gyrator-gmc")
BACKWARD = {"slm": "copy", "resistive": "transpose", "gyrator": "gyrator"}


def _num(v: float, digits: int = 3):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(f"{v:.{digits}g}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="640/500 images of the shipped subset")
    args = ap.parse_args(argv)

    import dataclasses  # noqa: PLC0415

    from anasim.circuits import load_circuit  # noqa: PLC0415
    from anasim.data import load_fashion_mnist  # noqa: PLC0415
    from anasim.devices import coupling_kind, load_profile  # noqa: PLC0415
    from anasim.learning import load_train_config, train  # noqa: PLC0415
    from anasim.learning.cost import DIGITAL_GPU  # noqa: PLC0415

    circuit = ROOT / "circuits" / "skew-small.toml"
    base = load_circuit(circuit)
    n_train, n_test = (640, 500) if args.quick else (4000, 1000)
    cfg = load_train_config(circuit, epochs=1, train_size=n_train, test_size=n_test)
    train_set, test_set = load_fashion_mnist("subset" if args.quick else None)
    rows = []
    t0 = time.time()
    for name in PROFILES:
        profile = load_profile(ROOT / "devices" / f"{name}.toml")
        spec = dataclasses.replace(base, backward=BACKWARD[coupling_kind(profile)])
        r = train(spec, profile, cfg, train_set, test_set, progress=False)
        h = {k: v[-1] for k, v in r.history.items()}
        n = (n_train // cfg.batch_size) * cfg.batch_size
        rows.append([name, _num(h["test_accuracy"]), _num(h["iterations"]),
                     _num(h["energy_j"] / n), _num(h["energy_arrays_j"] / n),
                     _num(h["energy_converters_j"] / n), _num(h["energy_writes_j"] / n),
                     _num(h["hardware_time_s"] / n), _num(h["digital_energy_j"] / n)])
        print(rows[-1], flush=True)
    doc = {
        "name": "energy_per_example",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "source": "measured by examples/energy_per_example.py",
        "command": "python examples/energy_per_example.py" + (" --quick" if args.quick else ""),
        "title": f"skew-small (784-128-10) one epoch on {n_train} training images, test on {n_test}",
        "notes": (f"Energies per training example in J, cumulative over the epoch ÷ examples; "
                  f"empty: not modelled (ideal converters). Digital: {DIGITAL_GPU}, 6 FLOPs per "
                  f"weight per example. {len(PROFILES)} runs in {(time.time() - t0) / 60:.1f} min."),
        "figures": {},
        "tables": {"main": {"columns": ["profile", "test accuracy", "iterations per step",
                                        "energy per example (J)", "arrays (J)", "converters (J)",
                                        "writes (J)", "hardware time per example (s)",
                                        "digital A100 energy per example (J)"],
                            "rows": rows}},
    }
    out = HERE / "results" / "energy_per_example.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
