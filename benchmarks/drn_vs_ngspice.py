"""DC points of trained deep resistive networks against ngspice, node by node.

A network of each size (DRN-XS 784-100-10 at 100 V inputs, DRN-1H 784-1024-10
at 480 V inputs) is trained for a few EP steps on random images with the block
solver (float64), then one or more of its operating points is solved twice: by
block coordinate descent (:func:`anasim.nodal.drn.block_operating_point`, to
1e-13 V) and by ngspice's ``.op`` on the exported netlist
(:func:`anasim.nodal.drn.drn_netlist`). The figure is the largest deviation
over every hidden and output node; the claim is below 1 µV.

These netlists are large (≈ 80 k resistors for DRN-XS, ≈ 0.8 M for DRN-1H:
minutes of ngspice on 2 cores), so the check lives here rather than in the test
suite; ``tests/test_drn.py`` runs the same comparison on a 49-20-10 network.

    python benchmarks/drn_vs_ngspice.py [--models DRN-XS,DRN-1H] [--examples 1]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from anasim.circuits.precision import float64_scope
from anasim.nodal import blocks as bl
from anasim.nodal import drn, ngspice

MODELS = {"DRN-XS": ((784, 100, 10), 100.0), "DRN-1H": ((784, 1024, 10), 480.0)}
TIGHT = dict(tol_v=1e-13, max_sweeps=2000, newton_steps=40)
EP_STEPS = 5


def trained(sizes, gain_v: float, steps: int = EP_STEPS, seed: int = 0):
    """(params, images): a float64 network after ``steps`` EP steps of batch 4 on random images."""
    ph = bl.DrnPhysics(input_gain_v=gain_v, tol_v=1e-4)
    p = bl.init_params(sizes, jax.random.PRNGKey(seed))
    x = jax.random.uniform(jax.random.PRNGKey(seed + 1), (steps, 4, sizes[0]))
    y = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(seed + 2), (steps, 4), 0, sizes[-1]), sizes[-1])
    for k in range(steps):
        p, _ = bl.sgd_step(p, bl.input_voltages(x[k], ph), y[k], ph, 1.0, 0.006)
    return p, np.asarray(x[0], np.float64)


def max_deviation_v(sizes, gain_v: float, n_examples: int = 1, timeout_s: float = 3600.0) -> float:
    """Largest |V_block − V_ngspice| (V) over the hidden and output nodes of ``n_examples`` inputs."""
    with float64_scope(True):
        p, x = trained(sizes, gain_v)
        ph = bl.DrnPhysics(input_gain_v=gain_v, **TIGHT)
        vin = np.asarray(bl.input_voltages(x[:n_examples], ph), np.float64)
        op, _ = drn.block_operating_point(p, vin, ph)
        refs = ngspice.run_op([drn.drn_netlist(p, ph, vin[k]) for k in range(len(vin))], timeout=timeout_s)
        worst = 0.0
        for k, ref in enumerate(refs):
            got = op.as_dict(k)
            worst = max(worst, max(abs(got[n] - ref[n.lower()]) for n in got if n.startswith("l")))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="DRN-XS,DRN-1H", help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--examples", type=int, default=1, help="operating points per model")
    args = ap.parse_args()
    if not ngspice.available():
        raise SystemExit("ngspice is not installed (make setup installs it)")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad:
        ap.error(f"--models: unknown {bad}; expected some of {list(MODELS)}")
    rows = []
    for name in names:
        sizes, gain = MODELS[name]
        t0 = time.perf_counter()
        dev = max_deviation_v(sizes, gain, args.examples)
        wall = time.perf_counter() - t0
        print(f"{name:7s} {'-'.join(map(str, sizes)):13s} max |ΔV| = {dev:.3e} V  ({wall:.0f} s)", flush=True)
        rows.append([name, "-".join(map(str, sizes)), gain, args.examples, dev, round(wall)])
    from _results import write_results

    write_results("drn_vs_ngspice", {}, dict(
        title="Trained deep resistive networks: block solver against ngspice",
        command="python benchmarks/drn_vs_ngspice.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        notes=f"float64, block solver to 1e-13 V; networks after {EP_STEPS} EP steps (batch 4) on random images; "
              "deviation over every hidden and output node."),
        tables={"main": {"columns": ["model", "sizes", "input gain (V)", "operating points",
                                     "max |ΔV| (V)", "wall (s)"], "rows": rows}})


if __name__ == "__main__":
    main()
