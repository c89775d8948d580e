"""Running a sweep: in-process, on a local dask cluster, or on an existing one.

:func:`run_sweep` evaluates every point of a :class:`~anasim.study.spec.SweepSpec`
that the point store does not hold yet, stores each result as it arrives, and
assembles the labelled result (:func:`assemble`): an :class:`xarray.Dataset`
with one dimension per swept parameter (plus the measurements' own dimensions,
e.g. ``epoch``), the swept values as coordinates and every fixed parameter as
an attribute, written to netCDF (h5netcdf engine) as points finish.

Execution never changes the numbers: each point's randomness comes from its
own seed only, so one worker, N local workers and a remote cluster give
identical Datasets.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import anasim
from anasim.errors import AnasimError
from anasim.outputs import atomic_write, remove_stale_temporaries
from anasim.study.measurements import Measurement, evaluate
from anasim.study.registry import get_measurement
from anasim.study.spec import SweepSpec
from anasim.study.store import PointStore, point_key

SWEEP_KIND = "sweep"


@dataclass(frozen=True)
class SweepResult:
    """What a sweep returns: the Dataset, where it was written, and what was (re)used."""

    dataset: xr.Dataset
    out: str | None
    points: int
    computed: int
    reused: int
    wall_s: float
    workers: int
    scheduler: str | None


class _MemoryStore:
    """The point store of a sweep run without an output file (nothing to resume)."""

    def __init__(self):
        self._data: dict[str, dict] = {}

    def keys(self) -> set[str]:
        return set(self._data)

    def has(self, key: str) -> bool:
        return key in self._data

    def write(self, key, config, outputs, meta=None) -> None:
        self._data[key] = {k: np.asarray(v, dtype=np.float64) for k, v in outputs.items()}

    def read(self, key: str) -> dict:
        return self._data[key]


def store_path(out: str | Path) -> Path:
    """The per-point store that belongs to result file ``out``."""
    return Path(str(out) + ".points")


def worker_env() -> dict[str, str]:
    """Environment for dask worker processes: one compute thread each.

    With N single-threaded workers on N cores, BLAS/OpenMP/XLA thread pools in
    every worker would oversubscribe the cores (docs/design.md, “Facts of the development machine”: competing thread
    pools slowed a kernel 8×). On a GPU, workers must not each preallocate most
    of its memory.
    """
    xla = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in xla:
        xla = (xla + " --xla_cpu_multi_thread_eigen=false").strip()
    return {
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "XLA_FLAGS": xla,
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    }


def run_sweep(
    spec: SweepSpec,
    out: str | Path | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    write_every_s: float = 5.0,
) -> SweepResult:
    """Compute the missing points of ``spec`` and return the assembled result.

    ``out``: netCDF result file; its point store ``out + ".points"`` makes the
    sweep resumable (``None``: keep results in memory, write nothing).
    ``workers``: 1 runs an in-process loop; N > 1 starts a local dask cluster of
    N single-threaded worker processes. ``scheduler``: address of an existing
    dask.distributed scheduler (``tcp://host:8786``); the sweep runs there
    unchanged and ``workers`` is ignored. The netCDF file is rewritten at most
    every ``write_every_s`` seconds while points finish, and at the end.
    """
    if workers < 1:
        raise AnasimError(f"workers: expected an integer >= 1, got {workers}")
    t0 = time.perf_counter()
    measurements = tuple(get_measurement(n) for n in spec.measurements)
    mkey = [(m.name, m.version) for m in measurements]
    store = PointStore(store_path(out)) if out is not None else _MemoryStore()
    if out is not None:   # the torn files of a killed writer (a live one's stay)
        remove_stale_temporaries(out, [store_path(out)])

    points = list(spec.points())
    configs = [spec.point_config(p) for p in points]
    keys = [point_key(mkey, c) for c in configs]
    have = store.keys()
    todo: dict[str, dict] = {}
    for k, c in zip(keys, configs):
        if k not in have and k not in todo:
            todo[k] = c
    reused = sum(1 for k in keys if k in have)

    last_write = [time.perf_counter()]

    def write_nc(force: bool) -> None:
        if out is None:
            return
        now = time.perf_counter()
        if force or now - last_write[0] >= write_every_s:
            _write_netcdf(assemble(spec, store, keys), Path(out))
            last_write[0] = time.perf_counter()

    bar = _progress(len(set(keys)), len(set(keys)) - len(todo), progress, spec)
    shared = 0
    try:
        if not todo:
            pass
        elif scheduler is None and workers == 1:
            for k, cfg in todo.items():
                if store.has(k):  # another process sharing the store finished it meanwhile
                    shared += 1
                    bar.update(1)
                    continue
                outputs = evaluate(measurements, cfg)
                store.write(k, cfg, outputs)
                bar.update(1)
                write_nc(False)
        else:
            _run_dask(measurements, todo, store, bar, write_nc, workers, scheduler)
    finally:
        bar.close()
        # Also on error or Ctrl-C: the file then holds every finished point.
        ds = assemble(spec, store, keys)
        if out is not None:
            _write_netcdf(ds, Path(out))
    return SweepResult(
        dataset=ds,
        out=str(out) if out is not None else None,
        points=len(points),
        computed=len(todo) - shared,
        reused=reused + shared,
        wall_s=time.perf_counter() - t0,
        workers=workers,
        scheduler=scheduler,
    )


def _progress(total: int, done: int, enabled: bool, spec: SweepSpec):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=done,
        desc=spec.title or "sweep",
        unit="pt",
        disable=not enabled,
        dynamic_ncols=True,
    )


def _run_dask(measurements, todo, store, bar, write_nc, workers, scheduler) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - dask is a declared dependency
        raise AnasimError("--workers/--scheduler need dask.distributed (pip install distributed)") from None

    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise AnasimError(f"--scheduler: cannot connect to {scheduler} ({err})") from None
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            env=worker_env(),
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    futures = {}
    try:
        # Points that differ only in their seed usually share compiled code (the
        # circuit spec and device profile are static arguments of jitted
        # functions): prefer one worker per such group, so each worker compiles
        # fewer configurations. Idle workers may still take any point.
        addrs = sorted(client.scheduler_info().get("workers", {}))
        groups: dict[str, int] = {}
        for k, cfg in todo.items():
            group = json.dumps({a: b for a, b in cfg.items() if a != "seed"}, sort_keys=True)
            gi = groups.setdefault(group, len(groups))
            where = {"workers": [addrs[gi % len(addrs)]], "allow_other_workers": True} if addrs else {}
            fut = client.submit(evaluate, measurements, cfg, key=f"anasim-point-{k}", pure=False, **where)
            futures[fut] = (k, cfg)
        for fut in as_completed(futures):
            k, cfg = futures[fut]
            outputs = fut.result()  # re-raises the point's error here
            store.write(k, cfg, outputs)
            bar.update(1)
            write_nc(False)
    finally:
        for fut in futures:
            fut.cancel()
        client.close()
        if cluster is not None:
            cluster.close()


# --------------------------------------------------------------------------- assembly


def assemble(spec: SweepSpec, store, keys: list[str] | None = None) -> xr.Dataset:
    """The labelled Dataset of a sweep from whatever points ``store`` holds (NaN elsewhere)."""
    measurements = tuple(get_measurement(n) for n in spec.measurements)
    points = list(spec.points())
    if keys is None:
        mkey = [(m.name, m.version) for m in measurements]
        keys = [point_key(mkey, spec.point_config(p)) for p in points]
    have = store.keys()
    loaded = {k: store.read(k) for k in set(keys) if k in have}

    outputs: dict[str, tuple[str, ...]] = {}
    for m in measurements:
        outputs.update(m.outputs)
    # Inner dimension lengths: the largest over stored points (e.g. swept epochs).
    inner_len: dict[str, int] = {}
    for res in loaded.values():
        for name, dims in outputs.items():
            if name in res:
                for d, n in zip(dims, np.shape(res[name])):
                    inner_len[d] = max(inner_len.get(d, 0), n)
    for dims in outputs.values():
        for d in dims:
            inner_len.setdefault(d, 0)

    sdims, sshape = spec.dims, spec.shape
    data_vars = {}
    for name, dims in outputs.items():
        arr = np.full(sshape + tuple(inner_len[d] for d in dims), np.nan)
        for p, k in zip(points, keys):
            res = loaded.get(k)
            if res is None or name not in res:
                continue
            v = np.asarray(res[name], dtype=np.float64)
            arr[p.index + tuple(slice(0, n) for n in v.shape)] = v
        data_vars[name] = (sdims + dims, arr)

    coords: dict[str, Any] = {}
    if spec.combine == "zip":
        for a in spec.axes:
            coords[a.dim] = (sdims[0], _coord(a.values))
    else:
        for a in spec.axes:
            coords[a.dim] = (a.dim, _coord(a.values))
    for d, n in inner_len.items():
        coords[d] = (d, np.arange(1, n + 1) if d == "epoch" else np.arange(n))

    ds = xr.Dataset(data_vars=data_vars, coords=coords)
    ds.attrs.update(sweep_attrs(spec, done=sum(1 for k in keys if k in loaded)))
    return ds


def _coord(values) -> np.ndarray:
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=str)
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int8)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=np.float64)


def sweep_attrs(spec: SweepSpec, done: int) -> dict[str, Any]:
    """Attributes: what this file is, how it was swept, and every fixed parameter."""
    swept = {a.path for a in spec.axes}
    attrs: dict[str, Any] = {
        "anasim_kind": SWEEP_KIND,
        "anasim_version": anasim.__version__,
        "anasim_measurements": ",".join(spec.measurements),
        "anasim_combine": spec.combine,
        "anasim_swept": json.dumps([[a.dim, a.path] for a in spec.axes]),
        "anasim_points": int(math.prod(spec.shape)),
        "anasim_points_done": int(done),
        "anasim_config": spec.base_json,
        "anasim_spec_source": spec.source,
        "anasim_spec": spec.text,
        "title": spec.title,
    }
    for path, value in _leaves(spec.base_config()):
        if any(path == s or path.startswith(s + ".") for s in swept):
            continue
        enc = _attr_value(value)
        if enc is not None:
            attrs[path] = enc
    return attrs


def _leaves(cfg: Mapping, prefix: str = ""):
    for k, v in cfg.items():
        if isinstance(v, Mapping):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _attr_value(v: Any):
    # netCDF attributes hold numbers, strings and 1-D numeric arrays only.
    if v is None:
        return "none"
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, str)):
        return v
    if isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return np.asarray(v)
    return json.dumps(v)


def _write_netcdf(ds: xr.Dataset, out: Path) -> None:
    """Write ``ds`` to ``out`` atomically (temporary file, then rename)."""
    atomic_write(out, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))


def open_sweep(path: str | Path) -> xr.Dataset:
    """Load a sweep result file fully into memory (the file is closed afterwards)."""
    p = Path(path)
    if not p.is_file():
        raise AnasimError(f"{p}: no such result file")
    try:
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise AnasimError(f"{p}: not a readable netCDF result ({err})") from None
    if ds.attrs.get("anasim_kind") != SWEEP_KIND:
        raise AnasimError(f"{p}: not a sweep result (attribute anasim_kind != 'sweep')")
    return ds


def is_sweep_file(path: str | Path) -> bool:
    """True when ``path`` is a netCDF file written by :func:`run_sweep`."""
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.attrs.get("anasim_kind") == SWEEP_KIND
    except Exception:  # noqa: BLE001 - any unreadable file is simply "not a sweep"
        return False


def measurement_outputs(spec: SweepSpec) -> dict[str, tuple[str, ...]]:
    outs: dict[str, tuple[str, ...]] = {}
    for n in spec.measurements:
        m: Measurement = get_measurement(n)
        outs.update(m.outputs)
    return outs
