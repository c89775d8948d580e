"""Iterations to reach a given residual: asynchronous vs synchronous schedule.

Symmetric (λ = 1, EP) 784-500-500-500-500-10 network of circuits/sym-4x500.toml
on the ideal profile, free phase, batch 64 of uniform random inputs, float32.
Counts the iterations until the fixed-point residual max|f(target) − s| first
falls below each threshold (from the residual trace of one relaxation), for
the same damping η (the spec's, then undamped η = 1, where the synchronous
update of a symmetric network can fall into a 2-cycle while the asynchronous
one is block-coordinate descent on the energy). Run: ``python benchmarks/relax_async_vs_sync.py``.
"""

from dataclasses import replace
from pathlib import Path

import jax
import numpy as np

from anasim.circuits import build, init_params, load_circuit, relax
from anasim.devices import ideal_profile

ROOT = Path(__file__).resolve().parent.parent


def first_below(trace: np.ndarray, n: int, r: float) -> int | None:
    hit = np.nonzero(trace[:n] <= r)[0]
    return int(hit[0]) + 1 if hit.size else None


def main() -> None:
    spec = load_circuit(ROOT / "circuits" / "sym-4x500.toml")
    spec = replace(spec, max_iters=600, tol=1e-5)
    params = init_params(spec, jax.random.key(0))
    hw = build(spec, ideal_profile(), params, jax.random.key(1))
    x = np.asarray(jax.random.uniform(jax.random.key(2), (64, spec.n_in)), np.float32)
    thresholds = (1e-2, 1e-3, 1e-4, 1e-5)
    print(f"network {'-'.join(map(str, spec.sizes))}, lam = {spec.lam}, batch 64, free phase, float32")
    rows = []
    for eta in (spec.eta, 1.0):
        counts = {}
        for schedule in ("sync", "async"):
            s = replace(spec, schedule=schedule, eta=eta)
            eq = relax(s, hw, x, jax.random.key(3))
            n = int(eq.iterations)
            counts[schedule] = [first_below(np.asarray(eq.trace), n, r) for r in thresholds]
            print(f"eta = {eta}: {schedule:5s} {n} iterations, final residual {float(eq.residual):.2e}, "
                  f"status {eq.status()}")
        print("  residual   sync  async  sync/async")
        for r, a, b in zip(thresholds, counts["sync"], counts["async"]):
            ratio = f"{a / b:.2f}" if a and b else "-"
            print(f"  {r:8.0e}  {a if a else '>600':>5}  {b if b else '>600':>5}  {ratio:>10}")
            rows.append([eta, f"{r:.0e}", a, b, a / b if a and b else None])
    from _results import write_table
    write_table("relax_async_vs_sync", ["η", "residual", "sync iterations", "async iterations", "sync / async"], rows, {
        "title": "Iterations to a residual, sync vs async schedule, symmetric 4×500, free phase, batch 64, float32",
        "command": "python benchmarks/relax_async_vs_sync.py"})

if __name__ == "__main__":
    main()
