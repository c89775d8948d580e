"""Sweep throughput: 1 worker vs 2 workers, and the dask overhead per cheap point.

Prints ratios measured in this run:

1. costly points (the ``synthetic`` measurement with extra arithmetic, ~0.3 s
   each): points per second in-process (1 worker) and on 2 local dask workers,
   end to end (cluster start included) and on an already running cluster;
2. cheap points (~1 ms each): seconds per point in-process and through a
   1-worker dask cluster that is already running; the difference is the
   per-point overhead of the dask path (submit, schedule, transfer, store).

Every sweep writes its netCDF result and per-point store, as a real one does.
Run: ``python benchmarks/sweep_throughput.py [--points N] [--work W]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

from anasim.study import parse_sweep, run_sweep
from anasim.study.runner import worker_env


def _spec(n_points: int, work: int, seed0: int = 0):
    return parse_sweep({
        "measurement": "synthetic",
        "fixed": {"synthetic.work": work, "synthetic.epochs": 5},
        "parameters": {"seed": {"start": seed0, "stop": seed0 + n_points - 1, "step": 1}},
    })


def _timed(spec, tmp, name, **kw) -> float:
    t0 = time.perf_counter()
    res = run_sweep(spec, os.path.join(tmp, f"{name}.nc"), progress=False, **kw)
    dt = time.perf_counter() - t0
    assert res.computed == len(spec)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=8, help="costly points per sweep")
    ap.add_argument("--work", type=int, default=1500, help="256x256 products per costly point")
    ap.add_argument("--cheap", type=int, default=64, help="cheap points per sweep")
    args = ap.parse_args()

    from distributed import LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        # Warm the in-process compilation cache (the workers warm their own below).
        run_sweep(_spec(1, args.work, 10_000), None, progress=False)
        run_sweep(_spec(1, 0, 10_000), None, progress=False)

        costly = _spec(args.points, args.work)
        t1 = _timed(costly, tmp, "one")
        t2_cold = _timed(costly, tmp, "two-cold", workers=2)

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, env=worker_env(),
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster:
            addr = cluster.scheduler_address
            run_sweep(_spec(2, args.work, 20_000), None, scheduler=addr, progress=False)  # warm workers
            t2_warm = _timed(costly, tmp, "two-warm", scheduler=addr)

        cheap = _spec(args.cheap, 0)
        c1 = _timed(cheap, tmp, "cheap-one")
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, env=worker_env(),
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster:
            addr = cluster.scheduler_address
            run_sweep(_spec(2, 0, 30_000), None, scheduler=addr, progress=False)  # warm the worker
            cd = _timed(cheap, tmp, "cheap-dask", scheduler=addr)

    n, m = args.points, args.cheap
    print(f"machine: {os.cpu_count()} cores")
    print(f"costly points ({n} x synthetic, work={args.work}):")
    print(f"  1 worker (in-process)            {n / t1:7.2f} points/s  ({t1 / n:.3f} s/point)")
    print(f"  2 workers, cluster start incl.   {n / t2_cold:7.2f} points/s  ratio to 1 worker: {t1 / t2_cold:.2f}x")
    print(f"  2 workers, running cluster       {n / t2_warm:7.2f} points/s  ratio to 1 worker: {t1 / t2_warm:.2f}x")
    print(f"cheap points ({m} x synthetic, work=0):")
    print(f"  in-process                       {1e3 * c1 / m:7.2f} ms/point")
    print(f"  dask, 1 running worker           {1e3 * cd / m:7.2f} ms/point")
    print(f"  dask overhead                    {1e3 * (cd - c1) / m:7.2f} ms/point  (ratio {cd / c1:.2f}x)")
    from _results import write_results
    write_results("sweep_throughput", {
        "costly_point": (t1 / n, "s", "costly point, in-process"),
        "two_warm": (t1 / t2_warm, "×", "2 workers on a running cluster, throughput relative to 1 worker"),
        "two_cold": (t1 / t2_cold, "×", "2 workers including cluster start, relative to 1 worker"),
        "cheap_inproc": (1e3 * c1 / m, "ms", "cheap point, in-process"),
        "cheap_dask": (1e3 * cd / m, "ms", "cheap point, one running dask worker"),
        "overhead": (1e3 * (cd - c1) / m, "ms", "dask overhead per point"),
        "overhead_ratio": (cd / c1, "×", "dask / in-process, cheap points")}, {
        "title": "Sweep throughput: 1 vs 2 workers, dask overhead per cheap point",
        "command": "python benchmarks/sweep_throughput.py"})


if __name__ == "__main__":  # dask starts worker processes that import this module
    main()
