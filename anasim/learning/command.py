"""The ``anasim train`` and ``anasim report`` commands (argument handling lives in
:mod:`anasim.cli`; this module does the work and prints)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from anasim.circuits import load_circuit, resolve_device_path
from anasim.circuits.engine import engine_for
from anasim.data import load_fashion_mnist
from anasim.devices import ideal_profile, load_profile
from anasim.errors import AnasimError, WriteFailed
from anasim.learning.config import load_train_config
from anasim.learning.controller import check_run, train
from anasim.learning.plots import plot_generic, plot_learning_curves
from anasim.outputs import check_writable
from anasim.tables import read_tables

_COLUMNS = (
    ("epoch", "{:>5d}", 5), ("train acc", "{:>9.4f}", 9), ("train loss", "{:>10.4f}", 10),
    ("test acc", "{:>8.4f}", 8), ("test loss", "{:>9.4f}", 9), ("Lipschitz", "{:>9.4f}", 9),
    ("saturated", "{:>9.3f}", 9), ("iters", "{:>6.1f}", 6), ("unsettled", "{:>9.3f}", 9),
    ("hw time [s]", "{:>11.3e}", 11), ("energy [J]", "{:>10.3e}", 10), ("GPU [J]", "{:>9.2e}", 9),
    ("wall [s]", "{:>8.1f}", 8),
)
_KEYS = ("epoch", "train_accuracy", "train_loss", "test_accuracy", "test_loss", "lipschitz", "saturated",
         "iterations", "unsettled", "hardware_time_s", "energy_j", "digital_energy_j", "wall_s")


def load_profile_for(spec, device: str | None):
    """The device profile for ``spec``: ``device`` (CLI) or the spec's own; ideal if neither."""
    path = resolve_device_path(spec, device)
    if path is None:
        return ideal_profile()
    if not Path(path).exists():
        raise AnasimError(f"{path}: no such device profile")
    return load_profile(path)


def _header() -> str:
    return "  ".join(f"{name:>{w}}" for name, _, w in _COLUMNS)


def _row(epoch: int, m: dict) -> str:
    vals = [epoch] + [m.get(k, float("nan")) for k in _KEYS[1:]]   # older results lack newer metrics
    out = []
    for (_, fmt, w), v in zip(_COLUMNS, vals):
        out.append(f"{'nan':>{w}}" if isinstance(v, float) and math.isnan(v) else fmt.format(v))
    return "  ".join(out)


def _enable_compilation_cache() -> None:
    """Keep compiled relaxations between runs (``$ANASIM_JAX_CACHE``, default
    ``~/.cache/anasim/jax``; set it empty to disable): a second run of the same
    circuit and device skips the compilation that dominates short runs."""
    path = os.environ.get("ANASIM_JAX_CACHE", str(Path.home() / ".cache" / "anasim" / "jax"))
    if not path:
        return
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
    except OSError:
        pass  # a read-only home only costs the cache


def run_train(args) -> int:
    for name in ("epochs", "batch_size", "train_size", "test_size"):
        v = getattr(args, name, None)
        if v is not None and v < (0 if name.endswith("size") and name != "batch_size" else 1):
            raise AnasimError(f"--{name.replace('_', '-')}: expected a positive integer, got {v}")
    spec = load_circuit(args.circuit)
    tables, _ = read_tables(args.circuit)
    profile = load_profile_for(spec, args.device)
    _enable_compilation_cache()
    cfg = load_train_config(
        tables, where=spec.source or args.circuit, epochs=args.epochs, rule=args.rule, beta=args.beta, learning_rate=args.lr,
        batch_size=args.batch_size, seed=args.seed, train_size=args.train_size,
        test_size=args.test_size, data=args.data, write_mode=args.write_mode, phases=args.phases,
        keep_going=True if getattr(args, "keep_going", False) else None,
        checkpoint_every_steps=getattr(args, "checkpoint_every_steps", None),
        checkpoint_every_s=getattr(args, "checkpoint_every_s", None))
    train_set, test_set = load_fashion_mnist(cfg.data or None)
    engine = engine_for(spec, tables)
    check_run(spec, profile, cfg, train_set, engine, test_set)
    human = not args.json
    if human:
        n_tr = min(cfg.train_size or len(train_set), len(train_set))
        n_te = min(cfg.test_size or len(test_set), len(test_set))
        print(f"training {spec.name} ({'-'.join(map(str, spec.sizes))}, λ = {spec.lam}) on {profile.name}: "
              f"rule {cfg.rule}, β = {cfg.beta:g}, lr = {cfg.learning_rate:g}, batch {cfg.batch_size}, "
              f"{cfg.write_mode} writes, {n_tr} train / {n_te} test examples from {train_set.source}")
        print(_header(), flush=True)

    def on_epoch(epoch, m):
        if human:
            print(_row(epoch, m), flush=True)

    t0 = time.perf_counter()
    result = train(spec, profile, cfg, train_set, test_set, engine=engine, out=args.out, resume=args.resume,
                   progress=not args.no_progress and sys.stderr.isatty(), on_epoch=on_epoch)
    if args.resume and human:
        done = len(result.history["test_accuracy"])
        print(f"(resumed; {done} epochs in {args.out})")
    if args.plot:
        try:
            plot_learning_curves(result.dataset(), args.plot)
        except OSError as err:
            raise WriteFailed(f"--plot {args.plot}: write failed ({err.strerror or err}); the run's "
                              f"results are in {args.out}") from None
    if args.json:
        json.dump({"circuit": spec.name, "device": profile.name, "out": args.out, "plot": args.plot,
                   "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                   "epochs": [dict(epoch=i + 1, **{k: v[i] for k, v in result.history.items()})
                              for i in range(len(result.history["test_accuracy"]))],
                   "wall_s": time.perf_counter() - t0}, sys.stdout, indent=2, default=list)
        sys.stdout.write("\n")
    else:
        h = result.history
        print(f"final test accuracy {h['test_accuracy'][-1]:.4f}; results in {args.out}"
              + (f", curves in {args.plot}" if args.plot else ""))
    return 0


def _finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _curve(ds, name: str) -> dict:
    """A one-dimensional variable as JSON: its dimension, the coordinate's values (the index
    where the file has none) and its values (NaN or ±inf: null)."""
    dim = ds[name].dims[0]
    xs = ds[dim].values if dim in ds.coords else np.arange(ds[name].size)
    plain = [x.item() if hasattr(x, "item") else x for x in np.asarray(xs).ravel()]
    coords = [_finite_or_none(x) if isinstance(x, float) else x for x in plain]
    return {"dim": dim, "coords": coords, "values": [_finite_or_none(v) for v in np.asarray(ds[name].values)]}


def run_report(args) -> int:
    path = Path(args.result)
    if not path.is_file():
        raise AnasimError(f"{path}: no such result file")
    try:
        ds = xr.load_dataset(path, engine="h5netcdf")
    except Exception as err:  # noqa: BLE001 -- any read failure is the user's file
        raise AnasimError(f"{path}: not a readable netCDF/HDF5 result ({type(err).__name__})") from None
    out = Path(args.out) if args.out else path.with_suffix(".png")
    check_writable(out, "--out")
    if "epoch" in ds.dims:
        plot_learning_curves(ds, out)
    else:
        plot_generic(ds, out)
    if getattr(args, "json", False):
        info = {"result": str(path), "plot": str(out)}
        if "epoch" in ds.dims:
            # the per-epoch values the curves show, as the file holds them (NaN: not measured → null)
            names = [k for k in ds.data_vars if ds[k].dims == ("epoch",)]
            info.update(kind="train", metrics=names, epochs=[
                {"epoch": int(e), **{k: _finite_or_none(ds[k].values[i]) for k in names}}
                for i, e in enumerate(ds["epoch"].values)])
        else:
            # every curve plot_generic draws: the variable against its coordinate
            info.update(kind=str(ds.attrs.get("anasim.kind", "other")), metrics={
                k: _curve(ds, k) for k in ds.data_vars
                if ds[k].ndim == 1 and np.issubdtype(ds[k].dtype, np.number)})
        print(json.dumps(info, indent=2))
    else:
        if "epoch" in ds.dims and "test_accuracy" in ds:
            print(_header())
            for i, e in enumerate(ds["epoch"].values):
                print(_row(int(e), {k: float(ds[k].values[i]) for k in _KEYS[1:] if k in ds}))
        print(f"wrote {out}")
    return 0
