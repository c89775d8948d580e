"""Table 1 of Høier et al., "Dyadic learning in recurrent and feedforward models":
784-500-500-500-500-10 networks with λ = 0 (skew-symmetric), ½ (feedforward) and
1 (symmetric), tempered hard sigmoid, weak centered nudging, trained with the
dyadic rule on Fashion-MNIST; accuracy and hidden-layer Lipschitz constant
‖(I − W)⁻¹‖₂ of the trained network (eq. 17). The same three models are also
trained on the 10-bit SLM profile, with its quantization and noise, to put the
hardware's accuracy next to the ideal one.

Full run (hours on a CPU): ``python examples/dyadic_table1.py``
Check that it works (minutes): ``python examples/dyadic_table1.py --quick``

Hyper-parameters come from the circuit specs' ``[training]`` tables
(``circuits/{skew,ff,sym}-4x500[-slm].toml``); the options below override them.
Results go to ``--out-dir`` (one netCDF per model, a JSON summary and a table).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from anasim.analysis.lipschitz import linearized_bound
from anasim.circuits import effective_matrices, load_circuit, resolve_device_path
from anasim.data import load_fashion_mnist
from anasim.devices import ideal_profile, load_profile
from anasim.learning import checkpoint_path, load_train_config, train

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"skew": 0.0, "ff": 0.5, "sym": 1.0}
PAPER = {"skew": (89.45, 1.0), "ff": (89.11, None), "sym": (89.16, None)}  # test accuracy [%], Lipschitz


def run_one(model: str, device: str, args, data) -> dict:
    name = f"{model}-4x500" + ("-slm" if device == "slm" else "")
    spec_path = ROOT / "circuits" / f"{name}.toml"
    spec = load_circuit(spec_path)
    path = resolve_device_path(spec)
    profile = ideal_profile() if path is None else load_profile(path)
    overrides = dict(epochs=args.epochs, learning_rate=args.lr, beta=args.beta, batch_size=args.batch_size,
                     seed=args.seed, train_size=args.train_size, test_size=args.test_size,
                     beta_growth=args.beta_growth)
    cfg = load_train_config(spec_path, **overrides)
    out = Path(args.out_dir) / f"{name}.nc"
    t0 = time.perf_counter()

    log = Path(args.out_dir) / "epochs.jsonl"

    def show(epoch, m):
        print(f"  {name:16s} epoch {epoch:3d}  train {m['train_accuracy']:.4f}  test {m['test_accuracy']:.4f}"
              f"  Lipschitz {m['lipschitz']:.4f}  iters {m['iterations']:.0f}  ({m['wall_s']:.0f} s)", flush=True)
        # one line per finished epoch: a run stopped early still leaves its numbers
        with open(log, "a") as fh:
            fh.write(json.dumps({"model": name, "epoch": epoch, **m}) + "\n")

    result = train(spec, profile, cfg, *data, out=out, resume=args.resume and checkpoint_path(out).exists(),
                   progress=not args.no_progress, on_epoch=show, stop_after=args.stop_after)
    lip = linearized_bound(effective_matrices(spec, result.hardware))
    h = result.history
    return {"model": model, "lam": MODELS[model], "device": profile.name, "epochs": len(h["test_accuracy"]),
            "test_accuracy": h["test_accuracy"][-1], "best_test_accuracy": max(h["test_accuracy"]),
            "lipschitz_hidden": lip.hidden, "lipschitz_output": lip.output,
            "wall_s": time.perf_counter() - t0, "result": str(out),
            "test_accuracy_per_epoch": h["test_accuracy"], "lipschitz_per_epoch": h["lipschitz"]}


def plot_rows(rows: list, path: Path) -> None:
    """Test accuracy per epoch of every model, the paper's values as dashed lines."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, r in enumerate(rows):
        acc = 100 * np.asarray(r["test_accuracy_per_epoch"])
        line, = ax.plot(np.arange(1, len(acc) + 1), acc, "o-" if r["device"] == "ideal" else "s--",
                        label=f"{r['model']} (λ = {r['lam']:g}, {r['device']})")
        ax.axhline(PAPER[r["model"]][0], color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy [%]")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Fashion-MNIST, 784-4×500-10, dyadic rule (dotted: paper)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 epoch on 1000 training / 500 test images: checks the pipeline, not the paper")
    ap.add_argument("--stop-after", type=int, help="stop after this many epochs of the schedule (resumable)")
    ap.add_argument("--models", default="skew,ff,sym", help="comma list of skew, ff, sym")
    ap.add_argument("--devices", default="ideal,slm", help="comma list of ideal, slm")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--beta", type=float)
    ap.add_argument("--beta-growth", type=float, help="added to β after each epoch (strong nudging: 0.05)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--train-size", type=int)
    ap.add_argument("--test-size", type=int)
    ap.add_argument("--data", default=None, help="IDX directory (default: Debian package, else shipped subset)")
    ap.add_argument("--out-dir", default="out/table1")
    ap.add_argument("--resume", action="store_true", help="continue runs from their checkpoints")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = args.epochs or 1
        args.train_size = args.train_size or 1000
        args.test_size = args.test_size or 500
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    data = load_fashion_mnist(args.data)
    rows = []
    for device in args.devices.split(","):
        for model in args.models.split(","):
            rows.append(run_one(model, device, args, data))
    lines = [f"{'model':6s} {'λ':>4s} {'device':10s} {'epochs':>6s} {'test acc [%]':>12s} {'paper [%]':>9s} "
             f"{'Lipschitz':>9s} {'wall [s]':>8s}"]
    for r in rows:
        lines.append(f"{r['model']:6s} {r['lam']:4.1f} {r['device']:10s} {r['epochs']:6d} "
                     f"{100 * r['test_accuracy']:12.2f} {PAPER[r['model']][0]:9.2f} "
                     f"{r['lipschitz_hidden']:9.4f} {r['wall_s']:8.0f}")
    table = "\n".join(lines)
    print(table)
    (Path(args.out_dir) / "table1.txt").write_text(table + "\n")
    (Path(args.out_dir) / "table1.json").write_text(json.dumps(rows, indent=2))
    plot_rows(rows, Path(args.out_dir) / "table1.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
