"""DC operating point of 1000 resistive Hopfield circuits (~100 nodes each): anasim vs ngspice.

Every circuit is the layered resistive Hopfield circuit (differential conductance
pairs, diode clamps to rails; sizes 20-20-10, 104 nodes, 2400 resistors, 120
diodes) with its own random weights and input. The same netlists go to ngspice
(one process, each circuit sourced and solved with ``op`` in turn, tight
tolerances reltol = 1e-9, vntol = 1e-12). anasim solves all 1000 in one batched
Newton solve (JAX, float64) with the same reltol and vntol: the linear stamps
are assembled once on the host (sparse products over the batch), the hidden
layer's nodes (mutually unconnected) are eliminated by their diagonal so each
iteration factors only a 20×20 Schur complement, and junction limiting keeps
it to ≤ 7 iterations. Prints both times (wall and CPU; anasim's the median of
``--repeat`` solves of all 1000, since one solve is short next to the load of
a shared machine), the ratios and the largest node-voltage difference, all
from this one run. The first anasim call (JIT compilation) is timed separately.

    .venv/bin/python benchmarks/nodal_vs_ngspice.py [--n 1000]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from anasim.nodal import LayeredWeights, NodalPhysics, hopfield_circuit, hopfield_values, ngspice, solve_op


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="number of circuits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="anasim solves timed (median reported)")
    args = ap.parse_args()
    sizes = (20, 20, 10)
    ph = NodalPhysics(kind="resistive", g_min_s=1e-6)
    hc = hopfield_circuit(sizes, ph)
    rng = np.random.default_rng(args.seed)
    n = args.n
    # per-circuit weights: a batch of conductance pairs (every circuit its own chip)
    th0 = rng.uniform(-1, 1, (n, 20, 20))
    th1 = rng.uniform(-1, 1, (n, 10, 20))
    x = rng.uniform(0, 1, (n, 20))
    vals = [hopfield_values(hc, LayeredWeights(theta0=th0[k], thetas=(th1[k],), bias=np.zeros(30)), x[k:k + 1])
            for k in range(n)]
    import jax
    batch = jax.tree_util.tree_map(lambda *a: np.concatenate([np.atleast_2d(v) if v.ndim == 2 else v[None]
                                                              for v in a]), *vals)
    c = hc.circuit
    print(f"circuit: {c.n_nodes} nodes, {len(c.resistors)} resistors, {len(c.diodes)} diodes, "
          f"{len(c.vsources)} sources, {c.layout.size} unknowns after eliminating grounded sources")

    t0 = time.perf_counter()
    tol = dict(reltol=1e-9, vntol=1e-12)  # the netlists' ngspice options
    solve_op(c, batch, **tol)  # compiles for this batch shape
    t_compile = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(args.repeat):  # the median: one batched solve is short next to load spikes
        t0, c0 = time.perf_counter(), time.process_time()
        op = solve_op(c, batch, **tol)
        walls.append(time.perf_counter() - t0), cpus.append(time.process_time() - c0)
    t_anasim, cpu_anasim = float(np.median(walls)), float(np.median(cpus))

    nets = [c.to_netlist(jax.tree_util.tree_map(lambda a: a[k], batch)) for k in range(n)]
    def child_cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    t0, c0 = time.perf_counter(), child_cpu()
    refs = ngspice.run_op(nets)  # writes the netlists, runs ngspice once, parses its output
    t_ngspice, cpu_ngspice = time.perf_counter() - t0, child_cpu() - c0

    worst = 0.0
    for k in range(n):
        d = op.as_dict(k)
        worst = max(worst, max(abs(d[name] - refs[k][name]) for name in refs[k] if name in d))
    print(f"anasim : {t_anasim:8.3f} s for {n} circuits ({1e3 * t_anasim / n:.3f} ms each; median of "
          f"{args.repeat} solves, range {min(walls):.3f}-{max(walls):.3f} s; "
          f"first call incl. JIT {t_compile:.2f} s), Newton iterations "
          f"{int(op.iterations.min())}-{int(op.iterations.max())}")
    print(f"ngspice: {t_ngspice:8.3f} s for {n} circuits ({1e3 * t_ngspice / n:.3f} ms each, one process)")
    print(f"CPU time: anasim {cpu_anasim:.3f} s, ngspice {cpu_ngspice:.3f} s "
          f"(wall and CPU differ when other processes share the cores)")
    print(f"ratio ngspice/anasim: {t_ngspice / t_anasim:.1f}x wall clock, {cpu_ngspice / cpu_anasim:.1f}x CPU time; "
          f"max |v_anasim - v_ngspice| = {worst:.2e} V")
    from _results import write_results
    write_results("nodal_vs_ngspice", {
        "circuits": (n, "", f"circuits ({c.n_nodes} nodes, {len(c.resistors)} resistors, {len(c.diodes)} diodes each)"),
        "anasim_wall": (t_anasim, "s", f"anasim wall time, one batched solve (median of {args.repeat})"),
        "anasim_cpu": (cpu_anasim, "s", "anasim CPU time"),
        "ngspice_wall": (t_ngspice, "s", "ngspice wall time, one process"),
        "ngspice_cpu": (cpu_ngspice, "s", "ngspice CPU time"),
        "wall_ratio": (t_ngspice / t_anasim, "×", "ngspice / anasim, wall clock"),
        "cpu_ratio": (cpu_ngspice / cpu_anasim, "×", "ngspice / anasim, CPU time"),
        "newton": (f"{int(op.iterations.min())}–{int(op.iterations.max())}", "", "Newton iterations"),
        "max_diff": (worst, "V", "largest node-voltage difference"),
        "compile": (t_compile, "s", "first call, JIT compilation included (not in the ratios)")}, {
        "title": f"DC operating point of {n} resistive Hopfield circuits, anasim vs ngspice",
        "command": "python benchmarks/nodal_vs_ngspice.py" + (f" --n {n}" if n != 1000 else "")})


if __name__ == "__main__":
    main()
