"""On-device training of node-level Hopfield circuits: every phase is a DC operating point.

Two circuits learn Fashion-MNIST (the shipped class-balanced subset, images
averaged over 4×4 pixel blocks to 7×7 = 49 inputs) with a 49-32-10 layered
network whose relaxation is the Kirchhoff solve of the whole netlist
(:mod:`anasim.nodal.solver`, checked against ngspice in the tests):

* **EP** on the resistive circuit (λ = 1): inputs are voltage sources with
  inverted copies, signed weights differential conductance pairs, diode
  clamps the nonlinearity. The two nudged phases (±β: currents β g_unit V_fs
  (y − s) into the output nodes) are solved as one batch; the update is
  :func:`anasim.learning.rules.ep_centered` on the circuit's co-content: the
  Hopfield term plus, through ``leak``, the leak term of a passive network
  (:func:`~anasim.nodal.hopfield.cocontent_gradient`), which the
  tests check against implicit differentiation.
* **dyadic** learning on the gyrator circuit (λ = 0): couplings are gyrators,
  the two compartments two cross-coupled copies of the circuit in one solve;
  the update is :func:`anasim.learning.rules.dyadic` with λ = 0.

Both read the equilibria through the chip's ADCs, step an optax optimizer on a
digital shadow copy of the weights and write it back into the chip after each
step (shadow mode: :func:`anasim.circuits.layered.reprogram` re-derives the
conductances / transconductances). Accuracy is the argmax of the free
equilibrium's outputs on the test split. Prints one line per epoch; writes
``examples/results/nodal_training.nc`` and ``examples/figures/nodal_training.png``.

Then each trained chip is read at a sampling instant, when its nodes carry
their stationary thermal fluctuation about the DC point
(:func:`anasim.nodal.noise.thermal_fluctuation`: the resistors'
Johnson–Nyquist noise, the clamp diodes' shot noise and, on the gyrator chip,
its OTAs' noise with the array's γ = 2/3), for node capacitances C of 1, 0.1
and 0.01 fF (rms fluctuation of order √(k_B T / C): 2, 6 and 20 mV against a
1 V full scale). It prints the test accuracy (three draws) and the measured
rms node fluctuation for each C.

    .venv/bin/python examples/nodal_training.py            # 2000 train / 500 test, 6 epochs
    .venv/bin/python examples/nodal_training.py --quick    # 500 / 200, 2 epochs
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from anasim.circuits import layered
from anasim.circuits.spec import CircuitSpec
from anasim.nodal import NodalEngine, NodalPhysics, weights_from_hardware
from anasim.data import SHIPPED_DIR, load_fashion_mnist
from anasim.devices.gyrator import GyratorArray
from anasim.devices.profile import DeviceProfile
from anasim.learning import rules

HERE = Path(__file__).resolve().parent


def pooled(x: np.ndarray, block: int = 4) -> np.ndarray:
    """28×28 images (rows of 784) averaged over block×block pixels."""
    n = 28 // block
    return x.reshape(-1, n, block, n, block).mean((2, 4)).reshape(len(x), n * n)


def circuit(mode: str, sizes: tuple):
    """(spec, profile, physics) of the EP (resistive) or dyadic (gyrator) circuit."""
    if mode == "ep":
        spec = CircuitSpec(sizes=sizes, lam=1.0, dtype="float64", init_scale=1.0, engine="nodal")
        return spec, DeviceProfile(name="ideal-resistive"), NodalPhysics(kind="resistive", g_min_s=1e-7)
    spec = CircuitSpec(sizes=sizes, lam=0.0, backward="gyrator", dtype="float64", init_scale=1.0, engine="nodal")
    return spec, DeviceProfile(name="gyrator", coupling=GyratorArray(w_max=2.0)), NodalPhysics(kind="gyrator")


def update(mode, spec, hw, physics, x, y, beta, key):
    """Relax both nudged phases on the chip, read them through the ADCs, apply the local rule."""
    k_relax, k_read = jax.random.split(key)
    eq = NodalEngine(physics).relax(spec, hw, x, k_relax, nudge=(beta, beta), target=y)
    sp, sm = layered.read_states(hw, eq, k_read)
    sp, sm = tuple(np.asarray(s, np.float64) for s in sp), tuple(np.asarray(s, np.float64) for s in sm)
    if mode == "ep":
        w, _ = weights_from_hardware(spec, hw, physics)
        grads = rules.ep_centered(jnp.asarray(x), sm, sp, beta, leak=rules.coupling_signs(w.theta0, w.thetas))
    else:
        grads = rules.dyadic(jnp.asarray(x), sp, sm, beta, 0.0)
    return grads, int(eq.iterations)


def evaluate(spec, hw, physics, x, labels, batch=250, key=None):
    """(test accuracy, loss) of the free equilibria; with ``key`` and
    ``physics.node_capacitance_f`` each output carries a thermal draw."""
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        k = None if key is None else jax.random.fold_in(key, i)
        out = np.asarray(NodalEngine(physics).relax(spec, hw, x[i:i + batch], k).output)
        correct += int((out.argmax(1) == labels[i:i + batch]).sum())
        loss += float(np.sum((out - np.eye(10)[labels[i:i + batch]]) ** 2)) / 2
    return correct / len(x), loss / len(x)


def train(mode, xtr, ytr, xte, yte, *, epochs, batch, lr, beta, seed, hidden):
    sizes = (xtr.shape[1], hidden, 10)
    spec, profile, physics = circuit(mode, sizes)
    key = jax.random.PRNGKey(seed)
    k_init, k_build, key = jax.random.split(key, 3)
    params = layered.init_params(spec, k_init)
    hw = layered.build(spec, profile, params, k_build)
    opt = optax.adam(lr)
    opt_state = opt.init(params)
    rng = np.random.default_rng(seed)
    hist = {"test_accuracy": [], "test_loss": [], "newton_iterations": [], "epoch_wall_s": []}
    acc, lossv = evaluate(spec, hw, physics, xte, yte)
    print(f"[{mode}] epoch 0: test accuracy {acc:.3f}, loss {lossv:.4f}")
    hist["test_accuracy"].append(acc), hist["test_loss"].append(lossv)
    hist["newton_iterations"].append(0.0), hist["epoch_wall_s"].append(0.0)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(xtr))
        its = []
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            key, k_step, k_write = jax.random.split(key, 3)
            grads, it = update(mode, spec, hw, physics, xtr[idx], np.eye(10)[ytr[idx]], beta, k_step)
            g = layered.Params(theta0=jnp.asarray(grads["theta0"]),
                               thetas=tuple(jnp.asarray(t) for t in grads["thetas"]),
                               biases=tuple(jnp.asarray(b) for b in grads["biases"]))
            upd, opt_state = opt.update(g, opt_state, params)
            params = optax.apply_updates(params, upd)
            hw = layered.reprogram(spec, hw, params, k_write)   # shadow copy → device conductances
            its.append(it)
        wall = time.perf_counter() - t0
        acc, lossv = evaluate(spec, hw, physics, xte, yte)
        print(f"[{mode}] epoch {epoch}: test accuracy {acc:.3f}, loss {lossv:.4f}, "
              f"Newton iterations per solve {np.mean(its):.1f}, {wall:.1f} s")
        hist["test_accuracy"].append(acc), hist["test_loss"].append(lossv)
        hist["newton_iterations"].append(float(np.mean(its))), hist["epoch_wall_s"].append(wall)
    return hist, sizes, (spec, hw, physics)


CAPACITANCES_F = (1e-15, 1e-16, 1e-17)


def thermal_readout(spec, hw, physics, x, labels, *, draws=3, seed=0):
    """Test accuracy (capacitance, draw) of a trained chip read with its nodes' thermal
    fluctuation, and the rms fluctuation (V) of every node state, per capacitance."""
    acc = np.zeros((len(CAPACITANCES_F), draws))
    rms = np.zeros(len(CAPACITANCES_F))
    quiet = NodalEngine(physics).relax(spec, hw, x, None)
    for i, cap in enumerate(CAPACITANCES_F):
        noisy_physics = replace(physics, node_capacitance_f=cap)
        for d in range(draws):
            acc[i, d], _ = evaluate(spec, hw, noisy_physics, x, labels, key=jax.random.PRNGKey(1000 * seed + d))
        eq = NodalEngine(noisy_physics).relax(spec, hw, x, jax.random.PRNGKey(7))
        dv = np.concatenate([np.asarray(a) - np.asarray(b) for a, b in zip(eq.s_plus, quiet.s_plus)], 1)
        rms[i] = physics.v_fs_v * np.sqrt(np.mean(dv ** 2))
    return acc, rms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 train / 200 test images, 2 epochs")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--test-size", type=int, default=500)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--beta", type=float, default=0.2)
    ap.add_argument("--lr-ep", type=float, default=0.02)
    ap.add_argument("--lr-dyadic", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="ep,dyadic")
    ap.add_argument("--out", default=None, help="netCDF result (default examples/results/nodal_training[_quick].nc)")
    ap.add_argument("--plot", default=None, help="figure (default examples/figures/nodal_training[_quick].png)")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.train_size, args.test_size = 2, 500, 200
    # a quick run never replaces the full run's files
    stem = "nodal_training_quick" if args.quick else "nodal_training"
    args.out = args.out or str(HERE / "results" / f"{stem}.nc")
    args.plot = args.plot or str(HERE / "figures" / f"{stem}.png")
    train_set, test_set = load_fashion_mnist(SHIPPED_DIR)
    xtr, ytr = pooled(train_set.x[:args.train_size]).astype(np.float64), train_set.y[:args.train_size]
    xte, yte = pooled(test_set.x[:args.test_size]).astype(np.float64), test_set.y[:args.test_size]
    print(f"Fashion-MNIST shipped subset: {len(xtr)} train / {len(xte)} test images, 7x7 inputs; "
          f"chance accuracy 0.100")
    results, noisy = {}, {}
    for mode in args.modes.split(","):
        lr = args.lr_ep if mode == "ep" else args.lr_dyadic
        results[mode], sizes, chip = train(mode, xtr, ytr, xte, yte, epochs=args.epochs, batch=args.batch,
                                           lr=lr, beta=args.beta, seed=args.seed, hidden=args.hidden)
        noisy[mode] = thermal_readout(*chip, xte, yte, seed=args.seed)
        for cap, a, r in zip(CAPACITANCES_F, *noisy[mode]):
            print(f"[{mode}] read with thermal noise, C = {cap * 1e15:g} fF: rms node fluctuation "
                  f"{r * 1e3:.2f} mV, test accuracy {a.mean():.3f} ± {a.std():.3f} (noiseless "
                  f"{results[mode]['test_accuracy'][-1]:.3f})")
    modes = list(results)
    ds = xr.Dataset(
        {k: (("mode", "epoch"), np.asarray([results[m][k] for m in modes]))
         for k in ("test_accuracy", "test_loss", "newton_iterations", "epoch_wall_s")},
        coords={"mode": modes, "epoch": np.arange(args.epochs + 1)},
        attrs={"sizes": str(sizes), "beta": args.beta, "batch": args.batch, "lr_ep": args.lr_ep,
               "lr_dyadic": args.lr_dyadic, "train_size": len(xtr), "test_size": len(xte),
               "seed": args.seed, "circuits": "ep: resistive (lam = 1); dyadic: gyrator (lam = 0)",
               "write_mode": "shadow", "data": "fashion-mnist shipped subset, 4x4 average pooled"})
    ds["thermal_test_accuracy"] = (("mode", "node_capacitance_f", "draw"),
                                   np.asarray([noisy[m][0] for m in modes]))
    ds["thermal_rms_v"] = (("mode", "node_capacitance_f"), np.asarray([noisy[m][1] for m in modes]))
    ds = ds.assign_coords(node_capacitance_f=np.asarray(CAPACITANCES_F))
    ds["thermal_rms_v"].attrs["units"] = "V"
    ds["node_capacitance_f"].attrs["units"] = "F"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(args.out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for m in modes:
        label = {"ep": "EP, resistive (λ = 1)", "dyadic": "dyadic, gyrator (λ = 0)"}[m]
        ax.plot(ds.epoch, ds.test_accuracy.sel(mode=m), marker="o", label=label)
    ax.axhline(0.1, color="gray", lw=0.8, ls="--", label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(np.arange(args.epochs + 1))
    ax.set_title(f"node-level circuits {sizes[0]}-{sizes[1]}-{sizes[2]}, Fashion-MNIST subset", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    print(f"wrote {args.out} and {args.plot}")
    for m in modes:
        print(f"final test accuracy {m}: {float(ds.test_accuracy.sel(mode=m)[-1]):.3f}")

    from _results import write  # noqa: PLC0415  (examples/ is on sys.path)
    from anasim.nodal.circuit import K_BOLTZMANN  # noqa: PLC0415

    def fF(c):
        return f"{c * 1e15:g} fF"

    labels = {"ep": "EP, resistive chip", "dyadic": "dyadic, gyrator chip"}
    figures = {f"{m}_noiseless": (round(float(results[m]["test_accuracy"][-1]), 3), "",
                                  f"{labels.get(m, m)}, noiseless test accuracy") for m in modes}
    figures["ktc"] = (round(1e3 * float(np.sqrt(K_BOLTZMANN * chip[2].temperature_k / CAPACITANCES_F[0])), 2), "mV",
                      f"√(kT/C) at {fF(CAPACITANCES_F[0])}")
    rows = [[fF(cap), " / ".join(f"{1e3 * noisy[m][1][i]:.2f}" for m in modes) + " mV"]
            + [f"{noisy[m][0][i].mean():.3f} ± {noisy[m][0][i].std():.3f}" for m in modes]
            for i, cap in enumerate(CAPACITANCES_F)]
    chips = {"ep": "resistive", "dyadic": "gyrator"}
    write("nodal_training", "nodal_training.py", figures, {
        "title": f"Node-level {sizes[0]}-{sizes[1]}-{sizes[2]} circuits trained {args.epochs} epochs on the subset, "
                 f"then read under thermal noise ({noisy[modes[0]][0].shape[1]} draws, {len(xte)} test images)"},
        tables={"noise": {"columns": ["node C", "rms node fluctuation, " + " / ".join(chips.get(m, m) for m in modes)]
                          + [f"test accuracy {'EP' if m == 'ep' else m}" for m in modes], "rows": rows}},
        quick=args.quick)


if __name__ == "__main__":
    # The whole run in float64 (the shadow weights, the optimizer, the rules), as the
    # float64 specs ask; the node-level solves scope float64 for themselves anyway.
    with jax.enable_x64(True):
        main()
