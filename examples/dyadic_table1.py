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

The SLM column over several sittings: ``--devices slm --resume [--stop-after N]``
continues each model from its checkpoint beside its netCDF; every SLM run also
leaves ``<name>.chip.json`` (the trained chip's Lipschitz constants, eq. 17 and
empirical). The ``slm_column`` table is rebuilt from those files after every
run, or alone with ``--table-only``: per model the SLM test accuracy at its
last epoch, the ideal run's at the same epoch (its netCDF in ``--out-dir``,
else the ``per_epoch`` table already in the results file), the chip's
Lipschitz constants and the fraction of unsettled examples. The
``slm_per_epoch`` table and ``examples/figures/dyadic_table1_slm.png`` give
every finished epoch of each SLM run beside its ideal run.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from anasim.analysis.lipschitz import linearized_bound, lipschitz_report
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
    if device == "slm":
        write_chip_report(spec, result.hardware, out, len(h["test_accuracy"]), args.lipschitz_pairs)
    return {"model": model, "lam": MODELS[model], "device": profile.name, "epochs": len(h["test_accuracy"]),
            "test_accuracy": h["test_accuracy"][-1], "best_test_accuracy": max(h["test_accuracy"]),
            "lipschitz_hidden": lip.hidden, "lipschitz_output": lip.output,
            "wall_s": time.perf_counter() - t0, "result": str(out),
            "test_accuracy_per_epoch": h["test_accuracy"], "lipschitz_per_epoch": h["lipschitz"],
            "iterations_per_epoch": h.get("iterations", [])}


def write_chip_report(spec, hw, out: Path, epochs: int, n_pairs: int) -> Path:
    """``<out>.chip.json``: the trained chip's hidden Lipschitz constant, eq. 17
    (‖(I − W)⁻¹‖₂ of the realized couplings) and measured (largest ratio over
    ``n_pairs`` random input pairs and their adversarial refinement).

    ``hw`` is the chip of the run's checkpoint, which a run killed inside an epoch
    and resumed with a smaller ``--stop-after`` leaves ``step`` steps past its last
    finished epoch; the report records that position."""
    import h5py  # noqa: PLC0415
    import jax  # noqa: PLC0415

    step = 0
    if checkpoint_path(out).exists():   # no checkpoint: the chip is the finished run's
        with h5py.File(checkpoint_path(out), "r") as f:
            step = int(f.attrs.get("step", 0)) if int(f.attrs.get("epoch", epochs)) == epochs else 0
    rep = lipschitz_report(spec, hw, jax.random.key(0), n_pairs=n_pairs)
    doc = {"epochs": epochs, "step": step, "lipschitz_eq17": rep["linearized"]["hidden"],
           "lipschitz_empirical": (rep["empirical"] or {}).get("hidden"), "n_pairs": n_pairs}
    path = out.with_suffix(".chip.json")
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def _history(path: Path) -> dict | None:
    """Per-epoch metrics of a run's netCDF (None if there is none)."""
    if not path.exists():
        return None
    import xarray as xr  # noqa: PLC0415

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return {k: np.asarray(ds[k].values).tolist() for k in ("test_accuracy", "unsettled", "lipschitz") if k in ds}


def _ideal_percent(out_dir: Path, model: str, ideal_old: dict) -> list:
    """The ideal run's test accuracy [%] per epoch: its netCDF in ``out_dir``, else the
    ``per_epoch`` table of the results file (``ideal_old``); [] if neither has it."""
    ideal = _history(out_dir / f"{model}-4x500.nc")
    if ideal:
        return [_pct(a) for a in ideal["test_accuracy"]]
    name = f"{NAMES[model]} [%]"
    if ideal_old and name in ideal_old["columns"]:
        col = ideal_old["columns"].index(name)
        return [r[col] for r in ideal_old["rows"]]
    return []


def _slm_runs(out_dir: Path, old_tables: dict) -> dict:
    """Per model: its SLM run's history (None if none), its ideal run's test accuracy [%]
    per epoch (:func:`_ideal_percent`) and its SLM chip report ({} if none)."""
    runs = {}
    for model in MODELS:
        chip_file = out_dir / f"{model}-4x500-slm.chip.json"
        runs[model] = (_history(out_dir / f"{model}-4x500-slm.nc"),
                       _ideal_percent(out_dir, model, old_tables.get("per_epoch") or {}),
                       json.loads(chip_file.read_text()) if chip_file.exists() else {})
    return runs


def slm_column(runs: dict) -> dict:
    """The ``slm_column`` table (module docstring) from :func:`_slm_runs`."""
    rows = []
    for model, (slm, ideal, chip) in runs.items():
        epochs = len(slm["test_accuracy"]) if slm else 0
        ideal_acc = ideal[epochs - 1] if epochs and len(ideal) >= epochs else None
        lip = (lambda v: None if v is None else float(f"{v:.5g}"))
        same = chip.get("epochs") == epochs
        # eq. 17 at the epoch's end is in the run's netCDF; the measured constant is the chip report's
        eq17 = slm["lipschitz"][-1] if epochs and slm.get("lipschitz") else chip.get("lipschitz_eq17") if same else None
        where = (f"epoch {epochs}" + (f" + {chip['step']} steps" if chip.get("step") else "")) if same else None
        rows.append([NAMES[model], epochs or None, _pct(slm["test_accuracy"][-1]) if epochs else None, ideal_acc,
                     lip(eq17), lip(chip.get("lipschitz_empirical")) if same else None, where,
                     round(slm["unsettled"][-1], 4) if slm and slm.get("unsettled") else None])
    return {"columns": ["model", "epochs", "SLM test accuracy [%]", "ideal at the same epoch [%]",
                        "hidden Lipschitz, eq. 17", "hidden Lipschitz, measured", "measured on the chip after",
                        "unsettled fraction"],
            "rows": rows}


def slm_per_epoch(runs: dict) -> dict | None:
    """Test accuracy [%] per epoch of every SLM run of :func:`_slm_runs`, each beside its
    ideal run up to the same epoch (None when no SLM run has an epoch)."""
    series = {}
    for model, (slm, ideal, _) in runs.items():
        if not slm or not slm["test_accuracy"]:
            continue
        series[f"{NAMES[model]} SLM [%]"] = [_pct(a) for a in slm["test_accuracy"]]
        series[f"{NAMES[model]} ideal [%]"] = ideal[:len(slm["test_accuracy"])]
    return _merge_columns(None, "epoch", series) if series else None


def plot_slm_per_epoch(table: dict, path: Path) -> None:
    """The ``slm_per_epoch`` table as curves: SLM solid, ideal dashed, one colour per model."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cols = table["columns"]
    epochs = [r[0] for r in table["rows"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for model in MODELS:
        name = NAMES[model]
        if f"{name} SLM [%]" not in cols:
            continue
        color = None
        for device, style in (("SLM", "s-"), ("ideal", "o--")):
            col = cols.index(f"{name} {device} [%]")
            pts = [(e, r[col]) for e, r in zip(epochs, table["rows"]) if r[col] is not None]
            if pts:
                line, = ax.plot(*zip(*pts), style, ms=3, color=color, label=f"{name}, {device}")
                color = line.get_color()
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy [%]")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Fashion-MNIST, 784-4×500-10: slm-10bit-500 (solid) against ideal (dashed)", fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def slm_tables(out_dir: Path, old_tables: dict, figure: Path | None = None) -> dict:
    """``slm_column`` and ``slm_per_epoch`` rebuilt from the files in ``out_dir`` (the latter
    also drawn into ``figure`` when given), replacing the per-model ``<model>_<E>epochs``
    tables that partial runs of the schedule used to leave; other tables are kept."""
    tables = {k: v for k, v in old_tables.items() if not re.fullmatch(r"(skew|ff|sym)_\d+epochs", k)}
    runs = _slm_runs(out_dir, old_tables)
    tables["slm_column"] = slm_column(runs)
    per_epoch = slm_per_epoch(runs)
    if per_epoch:
        tables["slm_per_epoch"] = per_epoch
        if figure is not None:
            plot_slm_per_epoch(per_epoch, figure)
    return tables


def slm_figure(quick: bool) -> Path:
    """Where the SLM column's per-epoch figure goes (the manual publishes ``examples/figures``)."""
    return ROOT / "examples" / "figures" / f"dyadic_table1_slm{'_quick' if quick else ''}.png"


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


NAMES = {"skew": "skew", "ff": "feedforward", "sym": "symmetric"}


def _pct(v):
    return round(100 * v, 2)


def _merge_rows(old: dict | None, columns: list, rows: list, key: int = 1) -> dict:
    """``rows`` replace, in place, the rows of ``old`` whose first ``key`` cells (model, β) agree;
    the others stay, new ones go last."""
    new = {tuple(r[:key]): r for r in rows}
    out = [new.pop(tuple(r[:key]), r) for r in (old or {}).get("rows", [])] \
        if old and old.get("columns") == columns else []
    return {"columns": columns, "rows": out + list(new.values())}


def _merge_columns(old: dict | None, index: str, series: dict) -> dict:
    """Columns ``series`` (name → values per ``index``) replace those of ``old``; the others stay."""
    cols = {c: list(v) for c, v in zip((old or {}).get("columns", [])[1:],
                                        zip(*[r[1:] for r in (old or {}).get("rows", [])]))}
    cols.update(series)
    n = max(len(v) for v in cols.values())
    rows = [[i + 1] + [v[i] if i < len(v) else None for v in cols.values()] for i in range(n)]
    return {"columns": [index, *cols], "rows": rows}


def write_results(rows: list, args, name: str = "dyadic_table1") -> None:
    """The manual's tables from this run, merged into ``examples/results/<name>[_quick].json``,
    whose tables gather several invocations (one model per process, ideal and SLM runs):

    * ``dyadic_table1`` with ``--devices ideal``: the rows of ``summary`` and the
      columns of ``per_epoch`` of the models that ran;
    * ``dyadic_table1`` with ideal and SLM runs, one epoch: ``slm_<N>k`` (N thousand training
      images); any SLM run: ``slm_column`` and ``slm_per_epoch`` rebuilt from the files
      in ``--out-dir`` (:func:`slm_tables`);
    * ``strong_nudging``: the rows of ``main`` (model, β) of the models that ran, β
      ``growing`` with ``--beta-growth`` > 0, else the constant β.
    Tables and rows this run did not measure are kept from the file it replaces.
    """
    from _results import previous_tables, write  # noqa: PLC0415  (examples/ is on sys.path)

    old = previous_tables(name, args.quick)
    tables = dict(old)
    ideal = [r for r in rows if r["device"] == "ideal"]
    other = [r for r in rows if r["device"] != "ideal"]
    if name == "strong_nudging":
        label = "growing" if args.beta_growth else f"{args.beta if args.beta is not None else 0.05:g}"
        n = max(r["epochs"] for r in rows)
        columns = ["model", "β"] + [f"epoch {e}" for e in range(1, n + 1)]
        new = [[NAMES[r["model"]], label] + [round(a, 3) for a in r["test_accuracy_per_epoch"]]
               + [None] * (n - r["epochs"]) for r in rows]
        tables["main"] = _merge_rows(old.get("main"), columns, new, key=2)
        title = (f"Strong nudging: β growing by {args.beta_growth:g} per epoch against constant β, "
                 f"{args.train_size or 'all'} / {args.test_size or 'all'} images")
    elif not other:
        columns = ["model", "λ", "schedule", "test accuracy [%]", "best [%]", "paper [%]", "hidden Lipschitz",
                   "wall [s]"]
        new = [[NAMES[r["model"]], r["lam"], f"{r['epochs']} epochs", _pct(r["test_accuracy"]),
                _pct(r["best_test_accuracy"]), PAPER[r["model"]][0],
                f"{r['lipschitz_hidden']:.4f}" if r["lipschitz_hidden"] < 10 else round(r["lipschitz_hidden"]),
                round(r["wall_s"])] for r in ideal]
        tables["summary"] = _merge_rows(old.get("summary"), columns, new)
        tables["per_epoch"] = _merge_columns(old.get("per_epoch"), "epoch", {
            f"{NAMES[r['model']]} [%]": [_pct(a) for a in r["test_accuracy_per_epoch"]] for r in ideal})
        title = "Table 1 of Høier et al. on Fashion-MNIST, ideal profile, and the 10-bit SLM column"
    else:
        by = {(r["model"], r["device"]): r for r in rows}
        dev = other[0]["device"]
        if max(r["epochs"] for r in rows) == 1:
            n = args.train_size or 60000

            def lip(r):
                return f"{r['lipschitz_hidden']:.5g}"

            new = []
            for m in dict.fromkeys(r["model"] for r in rows):
                i, s = by.get((m, "ideal")), by.get((m, dev))
                new.append([NAMES[m], _pct(i["test_accuracy"]) if i else None, _pct(s["test_accuracy"]) if s else None,
                            f"{lip(s)} ({lip(i)})" if i and s else None,
                            f"{i['iterations_per_epoch'][-1]:.0f} / {s['iterations_per_epoch'][-1]:.0f}"
                            if i and s and i["iterations_per_epoch"] and s["iterations_per_epoch"] else None,
                            f"{i['wall_s']:.0f} s / {s['wall_s']:.0f} s" if i and s else None])
            tables[f"slm_{round(n / 1000)}k"] = {
                "columns": ["model", "ideal [%]", f"{dev} [%]", "its Lipschitz (ideal)",
                            "iterations per step (ideal / SLM)", "wall (ideal / SLM)"], "rows": new}
        title = "Table 1 of Høier et al. on Fashion-MNIST, ideal profile, and the 10-bit SLM column"
    if name == "dyadic_table1" and other:
        tables = slm_tables(Path(args.out_dir), tables, slm_figure(args.quick))
    write(name, f"{name}.py", {}, {"title": title,
                                   "notes": "Tables and rows this run did not measure are kept from the "
                                            "previous file."}, tables=tables, quick=args.quick)


def main(argv=None, results: str = "dyadic_table1") -> int:
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
    ap.add_argument("--lipschitz-pairs", type=int, default=16,
                    help="input pairs of the trained SLM chip's measured Lipschitz constant (0: eq. 17 only)")
    ap.add_argument("--table-only", action="store_true",
                    help="train nothing: rebuild the slm_column table from the files in --out-dir")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = args.epochs or 1
        args.train_size = args.train_size or 1000
        args.test_size = args.test_size or 500
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    if args.table_only:
        from _results import previous_tables, write  # noqa: PLC0415
        old = previous_tables(results, args.quick)
        tables = slm_tables(Path(args.out_dir), old, slm_figure(args.quick))
        write(results, f"{results}.py", {}, {"title": "Table 1 of Høier et al. on Fashion-MNIST, ideal profile, "
                                                      "and the 10-bit SLM column",
                                             "notes": "Tables and rows this run did not measure are kept from the "
                                                      "previous file."}, tables=tables, quick=args.quick)
        print(json.dumps(tables["slm_column"], indent=1, ensure_ascii=False))
        return 0
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
    write_results(rows, args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
