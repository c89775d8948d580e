"""Deep resistive networks (DRNs) trained with equilibrium propagation on Fashion-MNIST.

The networks of Scellier, "A fast algorithm to simulate nonlinear resistive
networks" (ICML 2024): DRN-XS 784-100-10 and DRN-1H 784-1024-10, inputs as
± voltage-source pairs (gain 100 V and 480 V), conductances ≥ 0, diode clamps
on the hidden nodes, linear outputs read as volts, centered EP with β = 1,
SGD at 0.006 (× 0.99 per epoch), batch 4, the reference's initialization.
Every equilibrium is the network's DC operating point, solved exactly by block
coordinate descent (:mod:`anasim.nodal.blocks`) to 1e-4 V.

Runs (``--runs``, comma-separated groups):

* ``table``: both sizes on the first 2000/500 and 10000/2000 images, 3 epochs,
  with ideal diodes (the reference's model) and with Shockley diodes;
* ``nonideal``: DRN-1H with ideal parts against the same network built from
  ``devices/reram.toml`` devices (G in [50, 225] µS with device spread,
  programming and read noise, soft-bounded noisy in-situ writes) and clamp
  diodes with 50 mV knee mismatch (assumed), and the same parts programmed from
  a digital copy before every step instead of written in situ;
* ``parts``: DRN-XS 2000/500 with one group of device non-idealities at a time
  (the writes' soft bounds and asymmetry apart, and programmed writes), with
  the fraction of devices each run leaves at G_min;
* ``seeds``: DRN-1H 2000/500 with ideal diodes for seeds 0–5, with what each
  trained network looks like (hidden nodes inactive on every test image, the
  summed hidden-to-output conductance): why a seed falls behind; and the same
  seeds trained as the reference trains (4 sweeps per phase, warm-started free
  phases), to show the spread is not the exact solver's;
* ``remedy``: both sizes on both image counts, seeds 0–5, ideal diodes, with the
  output coupling learning at half and at a quarter of the rate
  (``layer_lr = [1, 0.5]``, ``[1, 0.25]``), and DRN-1H at a quarter with
  Shockley diodes: the remedy the ``seeds`` group points to;
* ``validation``: DRN-XS 10000 images, epoch 1, seeds 0–5, with β, the learning
  rate or the per-coupling rates changed one at a time, scored on 2000 training
  images no run here trains on (``VALIDATION``): what moves the first epoch;
* ``selected``: the variant with the best mean on that validation split, trained
  3 epochs on the 10000/2000 split like the ``table`` rows (run ``validation`` first);
* ``diagnosis``: DRN-XS 2000/500 with one ingredient of the old
  ``circuits/resistive-nodal.toml`` circuit at a time (1 V inputs, no inverted
  input copies, learning rate 0.3, knee at −0.6 V…), to show which costs accuracy.

Writes ``examples/results/drn_fashion.json`` (tables ``runs``, ``per_epoch``)
and ``examples/figures/drn_fashion.png``. Each run checkpoints after every
epoch in ``examples/results/drn_fashion_state/`` (ignored by git); rerunning
the same command resumes where it stopped, and finished runs are not redone.

    python examples/drn_fashion.py --runs table            # the 8 table runs
    python examples/drn_fashion.py --runs nonideal --train 10000 --test 2000
    python examples/drn_fashion.py --runs parts --redo parts   # the parts runs again from scratch
    python examples/drn_fashion.py --quick                  # 400/200 images, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

from anasim.data import load_fashion_mnist  # noqa: E402
from anasim.devices.profile import load_profile  # noqa: E402
from anasim.nodal import blocks as bl  # noqa: E402
from anasim.nodal import drn_devices as dd  # noqa: E402
from anasim.outputs import atomic_write  # noqa: E402

HERE = Path(__file__).resolve().parent
# the device runs draw millions of Gaussians per step: their keys use the faster (not
# splittable-safe) generator, chosen per key rather than for the whole process
KEY_IMPL = "unsafe_rbg"
STATE = HERE / "results" / "drn_fashion_state"
MODELS = {"DRN-XS": (100, 100.0), "DRN-1H": (1024, 480.0)}   # hidden nodes, input gain (V)
BATCH, BETA, LR, DECAY = 4, 1.0, 0.006, 0.99
MISMATCH_V = 0.05     # assumed: 50 mV rms spread of the clamp diodes' knees
# training images 50000-51999: the validation split of the `validation` group (its runs train on
# the first 10000; only the full-data `nonideal` runs ever see these)
VALIDATION = (50000, 2000)
# the `validation` group's variants of the reference's settings (label, config changes)
VARIANTS = [("reference settings", {}), ("β = 0.3", {"beta": 0.3}), ("β = 0.5", {"beta": 0.5}),
            ("β = 0.7", {"beta": 0.7}), ("learning rate × 2", {"lr": 2 * LR}),
            ("input coupling's rate × 2", {"layer_lr": [2.0, 1.0]}),
            ("output coupling's rate × 2", {"layer_lr": [1.0, 2.0]}),
            ("output coupling's rate × 3", {"layer_lr": [1.0, 3.0]})]

# the reference's figures on this machine (CPU, 2 threads): s/epoch and test accuracy after epochs 1-3
REFERENCE = {("DRN-XS", 2000): ("4.3–4.9", [0.646, 0.732, 0.750]),
             ("DRN-1H", 2000): ("28–30", [0.574, 0.686, 0.704]),
             ("DRN-XS", 10000): ("17–22", [0.779, 0.784, 0.818]),
             ("DRN-1H", 10000): ("158–169", [0.750, 0.813, 0.816])}


def encoder(physics, single_ended: bool):
    """Pixels (B, 784) → input source voltages: ± pairs (the reference), or +x only."""
    if single_ended:
        return lambda x: physics.input_gain_v * x
    return lambda x: bl.input_voltages(x, physics)


def make_epoch(physics, devices, g_max, encode, beta=BETA, sweeps=None, warm=False, layer_lr=None,
               program_writes=False):
    """A jitted epoch: scan of EP steps over (steps, B, 784) images and (steps, B, 10) targets.

    ``sweeps``: a fixed number of sweeps per phase instead of solving to ``tol_v``;
    ``warm``: each free phase starts from the previous batch's free state (the
    first from 0 V) instead of 0 V. Both together are the reference's training
    (4 coordinate-descent iterations per phase, the network left where the last
    batch put it). ``layer_lr``: a factor on the learning rate per coupling
    (input→hidden, hidden→output), for its conductances and for the biases of
    the layer it feeds; default 1 each. ``program_writes``: the carried weights
    are a digital copy, updated exactly; before each step every device is
    programmed from it (program-and-verify, with the programming noise) instead
    of written in situ."""
    def step(carry, batch):
        p, key, lr_scale, state = carry
        factors = layer_lr or (1.0,) * len(p.w)
        x, y = batch
        vin = encode(x)
        init = state if warm else None
        if devices is None:
            seen = p
        elif program_writes:
            key, kp, kr = jax.random.split(key, 3)
            seen = dd.read(devices, dd.program(devices, g_max, p, kp), kr)
        else:
            key, kr, kw = jax.random.split(key, 3)
            # one read-noise draw per step: the three phases follow each other within microseconds,
            # and the 1/f and telegraph noise the profile's read-noise figure describes is slow
            # against that; the update is an in-situ write
            seen = dd.read(devices, p, kr)
        g, free = bl.ep_gradient(seen, vin, y, physics, beta, max_sweeps=sweeps, init=init)
        rates = [lr_scale * f for f in factors]   # × 1.0 is exact: the default runs keep their bits
        if devices is None or program_writes:
            p = bl.DrnParams(tuple(jnp.maximum(w - r * gw, 0.0) for w, gw, r in zip(p.w, g.w, rates)),
                             tuple(b - r * gb for b, gb, r in zip(p.b, g.b, rates)), p.knee)
        else:
            p = dd.write(devices, g_max, p, tuple(-r * gw for gw, r in zip(g.w, rates)), kw)
            p = p._replace(b=tuple(b - r * gb for b, gb, r in zip(p.b, g.b, rates)))
        return (p, key, lr_scale, free), None

    @jax.jit
    def epoch(p, key, lr, xs, ys):
        state = tuple(jnp.zeros((xs.shape[1], w.shape[1]), xs.dtype) for w in p.w)
        (p, key, _, _), _ = jax.lax.scan(step, (p, key, lr, state), (xs, ys))
        return p, key
    return epoch


def make_eval(physics, devices, encode, sweeps=None):
    @jax.jit
    def predict(p, x, key):
        if devices is not None:
            p = dd.read(devices, p, key)
        layers, n, _ = bl.solve(p, encode(x), physics, max_sweeps=sweeps)
        return jnp.argmax(layers[-1], -1), n
    return predict


#: a hidden node whose voltage stays within this of 0 V on every test image is "inactive":
#: its clamp diode conducts throughout (ideal diodes hold it at exactly 0 V; Shockley
#: clamps biased at 0.6 V hold it within tens of mV), so it passes nothing to the outputs
INACTIVE_V = 0.05


def anatomy(physics, encode, p, x) -> dict:
    """What a trained ideal-part network looks like on test images ``x``: the fraction of
    hidden nodes inactive on all of them (:data:`INACTIVE_V`) and the summed
    hidden-to-output conductance per output node (normalized units, mean over outputs)."""
    layers, _, _ = bl.solve(p, encode(x), physics)
    hidden = np.abs(np.asarray(layers[0]))
    return {"inactive_hidden": float(np.mean(np.all(hidden < INACTIVE_V, axis=0))),
            "output_g_sum": float(np.mean(np.sum(np.asarray(p.w[-1]), axis=0)))}


#: a device "at the floor": within this fraction of its range (G_max − G_min) above G_min
FLOOR_BAND = 0.02


def at_floor(devices, p) -> list:
    """Per coupling, the fraction of devices whose conductance lies within
    :data:`FLOOR_BAND` of the range above G_min (normalized weights G/g_unit)."""
    x, gu = devices.xbar, devices.g_unit_s
    edge = (x.g_min_s + FLOOR_BAND * (x.g_max_s - x.g_min_s)) / gu
    return [round(float(np.mean(np.asarray(w) <= edge)), 3) for w in p.w]


def accuracy(predict, p, x, y, key, chunk=500):
    hits, sweeps = 0, 0
    for i in range(0, len(x), chunk):
        pred, s = predict(p, x[i:i + chunk], jax.random.fold_in(key, i))
        hits += int(np.sum(np.asarray(pred) == y[i:i + chunk]))
        sweeps = max(sweeps, int(s))
    return hits / len(x), sweeps


def run(cfg: dict, data, epochs: int, seed: int, state: Path = STATE) -> dict:
    """Train one configuration, resuming from its checkpoint; returns its history."""
    tr, te = data
    hidden, gain = MODELS[cfg["model"]]
    ntr, nte = cfg["train"], cfg["test"]
    xtr, ytr, xte, yte = tr.x[:ntr], tr.y[:ntr], te.x[:nte], te.y[:nte]
    if cfg.get("validation"):   # score on held-out training images, not on the test split
        v0 = VALIDATION[0]
        if ntr > v0:
            raise ValueError(f"{cfg['name']}: a validation run trains on at most {v0} images, got {ntr}")
        xte, yte = tr.x[v0:v0 + nte], tr.y[v0:v0 + nte]
    physics = bl.DrnPhysics(diode=cfg["diode"], input_gain_v=cfg.get("gain", gain), tol_v=1e-4,
                            diode_bias_v=cfg.get("diode_bias_v", 0.6))
    key = jax.random.key(seed, impl=KEY_IMPL)
    k_init, k_fab, k_prog, k_mis, k_train, k_eval = jax.random.split(key, 6)
    params = bl.init_params((784, hidden, 10), k_init, gain=cfg.get("init_gain", 1.0))
    single = bool(cfg.get("single_ended"))
    if single:   # no inverted copies: 784 input nodes, the reference's initial scale for them
        w0 = bl.init_params((392, hidden, 10), k_init, gain=cfg.get("init_gain", 1.0)).w[0]
        params = params._replace(w=(w0,) + params.w[1:])
    encode = encoder(physics, single)
    devices = g_max = None
    if cfg.get("devices"):
        xbar = load_profile(HERE.parent / cfg["devices"]).coupling
        if cfg.get("overrides"):   # switch some of the profile's non-idealities off
            xbar = replace(xbar, **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["overrides"].items()})
        # one device type for every layer: G_max is the weight 2/√(2·784) (twice the largest initial one)
        devices = dd.DrnDevices(xbar, float(xbar.g_max_s * np.sqrt(2 * 784) / 2))
        physics = replace(physics, g_unit_s=devices.g_unit_s)
        g_max = dd.fabricate(devices, params, k_fab)
        if not cfg.get("program_writes"):   # in situ: the carried weights are the devices' own
            params = dd.program(devices, g_max, params, k_prog)
    if cfg.get("mismatch_v"):
        params = dd.diode_mismatch(params, cfg["mismatch_v"], k_mis)
    epoch_fn = make_epoch(physics, devices, g_max, encode, cfg.get("beta", BETA), cfg.get("sweeps"),
                          bool(cfg.get("warm")), tuple(cfg["layer_lr"]) if cfg.get("layer_lr") else None,
                          bool(cfg.get("program_writes")))

    def on_chip(p, ep):
        """The weights the devices hold: programmed from the digital copy, or the devices' own."""
        return dd.program(devices, g_max, p, jax.random.fold_in(k_prog, ep)) if cfg.get("program_writes") else p
    predict = make_eval(physics, devices, encode, cfg.get("sweeps"))
    rng = np.random.default_rng(seed)
    ckpt = state / f"{cfg['name']}.npz"
    hist = {"test_accuracy": [], "epoch_s": [], "load_1min": [], "sweeps": []}
    start = 0
    if ckpt.is_file():
        z = np.load(ckpt, allow_pickle=True)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(z[f"p{i}"]) for i in range(len(leaves))])
        hist = json.loads(str(z["hist"]))
        rng.bit_generator.state = json.loads(str(z["rng"]))
        k_train = jax.random.wrap_key_data(jnp.asarray(z["key"]), impl=KEY_IMPL)
        start = len(hist["test_accuracy"])
    if cfg.get("anatomy") and start == 0:
        hist["at_init"] = anatomy(physics, encode, params, xte[:500])
    lr = cfg.get("lr", LR) * DECAY ** start
    for ep in range(start + 1, epochs + 1):
        perm = rng.permutation(ntr)
        xs = xtr[perm].reshape(-1, BATCH, 784)
        ys = np.eye(10, dtype=np.float32)[ytr[perm]].reshape(-1, BATCH, 10)
        if not hasattr(epoch_fn, "lower"):
            pass
        else:   # compile outside the timed epoch (the reference's figures have no compile time either)
            epoch_fn = epoch_fn.lower(params, k_train, jnp.float32(lr), xs, ys).compile()
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        params, k_train = epoch_fn(params, k_train, jnp.float32(lr), xs, ys)
        jax.block_until_ready(params)
        dt = time.perf_counter() - t0
        chip = on_chip(params, ep)
        acc, sweeps = accuracy(predict, chip, xte, yte, jax.random.fold_in(k_eval, ep))
        hist["test_accuracy"].append(acc), hist["epoch_s"].append(dt)
        hist["load_1min"].append(load), hist["sweeps"].append(sweeps)
        if cfg.get("anatomy"):
            for k, v in anatomy(physics, encode, params, xte[:500]).items():
                hist.setdefault(k, []).append(v)
        if devices is not None:
            hist.setdefault("at_floor", []).append(at_floor(devices, chip))
        print(f"[{cfg['name']}] epoch {ep}: test accuracy {acc:.3f}, {dt:.2f} s/epoch "
              f"(load {load:.2f}), ≤ {sweeps} sweeps", flush=True)
        lr *= DECAY
        leaves = jax.tree_util.tree_leaves(params)
        arrays = {f"p{i}": np.asarray(a) for i, a in enumerate(leaves)}

        def save(tmp, arrays=arrays, hist=hist):
            with open(tmp, "wb") as fh:
                np.savez(fh, hist=json.dumps(hist), rng=json.dumps(rng.bit_generator.state),
                         key=np.asarray(jax.random.key_data(k_train)), **arrays)
        atomic_write(ckpt, save)
    return hist


def groups(args) -> dict:
    """Run configurations by group (names are checkpoint names: keep them stable)."""
    q = args.quick
    sizes = [(400, 200)] if q else [(2000, 500), (10000, 2000)]
    table = [dict(name=f"{m.lower()}_{d}_{a}" + (f"_s{seed}" if seed else ""), model=m, train=a, test=b,
                  diode=d, seed=seed)
             for seed in range(args.seeds) for a, b in sizes for m in MODELS for d in ("ideal", "shockley")]
    ntr, nte = (400, 200) if q else (args.train, args.test)
    non = [dict(name=f"nonideal_ideal_{ntr}", model="DRN-1H", train=ntr, test=nte, diode="ideal"),
           dict(name=f"nonideal_shockley_{ntr}", model="DRN-1H", train=ntr, test=nte, diode="shockley"),
           dict(name=f"nonideal_reram_{ntr}", model="DRN-1H", train=ntr, test=nte, diode="shockley",
                devices="devices/reram.toml", mismatch_v=MISMATCH_V),
           # the same parts, every step programming the devices from a digital copy (see `parts`)
           dict(name=f"nonideal_programmed_{ntr}", model="DRN-1H", train=ntr, test=nte, diode="shockley",
                devices="devices/reram.toml", mismatch_v=MISMATCH_V, program_writes=True)]
    a, b = (400, 200) if q else (2000, 500)
    base = dict(model="DRN-XS", train=a, test=b, diode="ideal")
    diag = [dict(base, name="diag_reference", what="the reference's encoding (±100 V inputs, lr 0.006)"),
            dict(base, name="diag_1v_inputs", gain=1.0, what="inputs at 1 V full scale (the old circuit's V_fs)"),
            dict(base, name="diag_single_ended", single_ended=True, what="no inverted input copies"),
            dict(base, name="diag_lr_0.3", lr=0.3, what="learning rate 0.3 (the old circuit's)"),
            dict(base, name="diag_knee_1v", gain=1.0, diode="shockley", diode_bias_v=0.0,
                 what="1 V inputs and Shockley clamps with the knee at ∓0.6 V (no bias source)"),
            dict(base, name="diag_knee_100v", diode="shockley", diode_bias_v=0.0,
                 what="Shockley clamps with the knee at ∓0.6 V, 100 V inputs"),
            dict(base, name="diag_beta_0.2", beta=0.2, what="nudge β = 0.2 (the old circuit's)"),
            dict(base, name="diag_init_x10", init_gain=10.0, what="initial conductances × 10"),
            dict(base, name="diag_old_ingredients", gain=1.0, lr=0.3, beta=0.2,
                 what="1 V inputs, learning rate 0.3 and β = 0.2 together")]
    off = dict(d2d_sigma=0.0, prog_noise=[0.0, 0.0, 0.0], read_noise=0.0, soft_bounds=False,
               gain_depression=1.0, cycle_noise=0.0)
    dev = dict(base, diode="shockley", devices="devices/reram.toml")
    parts = [dict(base, name="parts_none", diode="shockley", what="none (Shockley diodes, ideal conductances)"),
             dict(dev, name="parts_gmin", overrides=off, what="conductance range 50–225 µS only"),
             dict(dev, name="parts_writes", overrides=dict(off, soft_bounds=True, gain_depression=0.6),
                  what="range + soft-bounded, asymmetric writes"),
             # the two halves of the writes' model apart: which one costs the accuracy
             dict(dev, name="parts_writes_symmetric", overrides=dict(off, soft_bounds=True, gain_depression=1.0),
                  what="range + soft-bounded, symmetric writes"),
             dict(dev, name="parts_writes_linear", overrides=dict(off, soft_bounds=False, gain_depression=0.6),
                  what="range + linear (not soft-bounded), asymmetric writes"),
             dict(dev, name="parts_cycle", overrides=dict(off, soft_bounds=True, gain_depression=0.6, cycle_noise=0.3),
                  what="range + writes + 30 % cycle-to-cycle write noise"),
             dict(dev, name="parts_noise", overrides=dict(off, soft_bounds=False, gain_depression=1.0,
                                                          d2d_sigma=0.05, prog_noise=[0.02, 0.0, 0.0],
                                                          read_noise=0.01),
                  what="range + device spread, programming and read noise"),
             dict(dev, name="parts_all", what="all of devices/reram.toml"),
             dict(dev, name="parts_all_programmed", program_writes=True,
                  what="all of reram.toml, but every step programs the devices from a digital copy"),
             dict(base, name="parts_mismatch", diode="shockley", mismatch_v=MISMATCH_V,
                  what=f"diode knee mismatch only ({MISMATCH_V * 1e3:.0f} mV rms)"),
             dict(dev, name="parts_all_mismatch", mismatch_v=MISMATCH_V, what="all of reram.toml + diode mismatch")]
    n_seeds = 2 if q else 6
    seeds = [dict(name=f"seeds_s{seed}", model="DRN-1H", train=a, test=b, diode="ideal", seed=seed, anatomy=True)
             for seed in range(n_seeds)]
    # the same seeds trained as the reference trains: 4 sweeps per phase, each free phase
    # from the previous batch's state, tested after 4 sweeps from 0 V
    seeds += [dict(name=f"seeds4_s{seed}", model="DRN-1H", train=a, test=b, diode="ideal", seed=seed,
                   sweeps=4, warm=True) for seed in range(n_seeds)]
    # the remedy for the seeds that lag (table `seeds`): the output coupling learns at a fraction of
    # the rate, so its conductances to clamped hidden nodes grow that much slower
    # (a half and a quarter; names without the factor are the half's, the first made)
    remedy = [dict(name=f"remedy{'' if f == 0.5 else '25'}_{m.lower()}_{a}_s{seed}", model=m, train=a, test=b,
                   diode="ideal", seed=seed, layer_lr=[1.0, f])
              for f in (0.5, 0.25) for seed in range(n_seeds) for a, b in sizes for m in MODELS]
    remedy += [dict(name=f"remedy25_drn-1h_shockley_{a}_s{seed}", model="DRN-1H", train=a, test=b,
                    diode="shockley", seed=seed, layer_lr=[1.0, 0.25])
               for seed in range(n_seeds) for a, b in sizes]
    va, vb = (400, 200) if q else (10000, VALIDATION[1])
    validation = [dict(change, name=f"val_drn-xs_{i}_s{seed}", model="DRN-XS", train=va, test=vb, diode="ideal",
                       seed=seed, validation=True, epochs=1, variant=label)
                  for i, (label, change) in enumerate(VARIANTS) for seed in range(n_seeds)]
    return {"table": table, "nonideal": non, "diagnosis": diag, "parts": parts, "seeds": seeds, "remedy": remedy,
            "validation": validation}


def selected(runs: dict, args) -> list:
    """The ``selected`` group: the variant of the ``validation`` group with the best mean
    epoch-1 accuracy on the validation split, trained on the 10000/2000 split for every seed."""
    scores = {}
    for r in runs.values():
        if r["group"] == "validation" and r["hist"]["test_accuracy"]:
            scores.setdefault(r["variant"], []).append(r["hist"]["test_accuracy"][0])
    if not scores:
        raise SystemExit("drn_fashion: --runs selected needs the validation group's results; "
                         "run --runs validation first")
    order = [label for label, _ in VARIANTS]
    best = max(scores, key=lambda v: (float(np.mean(scores[v])), -order.index(v)))
    change = dict(VARIANTS)[best]
    a, b = (400, 200) if args.quick else (10000, 2000)
    return [dict(change, name=f"sel_drn-xs_{order.index(best)}_s{seed}", model="DRN-XS", train=a, test=b,
                 diode="ideal", seed=seed, variant=best) for seed in range(2 if args.quick else 6)]


def figure(runs: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.0))
    colors = dict(zip(REFERENCE, ("C0", "C1", "C2", "C3")))
    for (m, n), (_, acc) in REFERENCE.items():
        axes[0].plot([1, 2, 3], acc, ls="--", color=colors[(m, n)], marker="s", ms=3, lw=1,
                     label=f"reference {m} {n}")
        got = [r["hist"]["test_accuracy"] for r in runs.values()
               if r.get("group") == "table" and r["model"] == m and r["train"] == n and r["diode"] == "ideal"]
        if got:
            k = min(len(g) for g in got)
            axes[0].plot(range(1, k + 1), np.mean([g[:k] for g in got], 0), color=colors[(m, n)], marker="o", ms=3,
                         label=f"anasim {m} {n} (ideal, mean of {len(got)})")
    for name, r in runs.items():
        if name.startswith("nonideal"):
            lab, size = name.split("_")[1], f" ({r['train']}/{r['test']})"
            # colour: the parts; line style: the number of training images
            style = {2000: ":", 10000: "--"}.get(r["train"], "-")
            axes[1].plot(range(1, len(r["hist"]["test_accuracy"]) + 1), r["hist"]["test_accuracy"], marker="o",
                         ms=3, ls=style, color={"ideal": "C0", "shockley": "C1", "reram": "C3",
                                                "programmed": "C2"}[lab],
                         label={"ideal": "ideal diodes and conductances",
                                "shockley": "Shockley diodes, ideal conductances",
                                "reram": "ReRAM devices + diode mismatch",
                                "programmed": "the same, programmed from a digital copy"}[lab] + size)
    axes[0].set(xlabel="epoch", ylabel="test accuracy", title="DRNs on Fashion-MNIST vs the reference")
    axes[1].set(xlabel="epoch", ylabel="test accuracy", title="DRN-1H: ideal vs non-ideal parts")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    # the right panel's twelve curves would hide under their legend: it goes below the axes
    axes[1].legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="table,nonideal,diagnosis,parts,seeds,remedy,validation,selected",
                    help="groups: table, nonideal, diagnosis, parts, seeds, remedy, validation, selected "
                         "(none: rewrite the results only)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=2000, help="training images of the nonideal runs")
    ap.add_argument("--test", type=int, default=500, help="test images of the nonideal runs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the nonideal and diagnosis runs")
    ap.add_argument("--seeds", type=int, default=1, help="table runs: seeds 0 … seeds−1 (rows give the mean)")
    ap.add_argument("--redo", default="", help="groups whose finished runs start again from scratch "
                                               "(their checkpoints removed), e.g. after a change to what they record")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    epochs = 1 if args.quick else args.epochs
    data = load_fashion_mnist("debian" if Path("/usr/share/datasets/fashion-mnist").is_dir() else None)
    prev = _results.previous_tables("drn_fashion", args.quick).get("runs_json", {}).get("rows", [])
    runs = {row[0]: json.loads(row[1]) for row in prev}
    all_groups = groups(args)
    state = STATE / "quick" if args.quick else STATE
    for g in [g for g in args.redo.split(",") if g]:
        if g not in all_groups:
            raise SystemExit(f"drn_fashion: --redo: unknown group {g!r}; groups: {', '.join(all_groups)}")
        for cfg in all_groups[g]:
            runs.pop(cfg["name"], None)
            state.joinpath(f"{cfg['name']}.npz").unlink(missing_ok=True)
    for g in [g for g in args.runs.split(",") if g != "none"]:
        if g not in all_groups and g != "selected":
            raise SystemExit(f"drn_fashion: --runs: unknown group {g!r}; groups: {', '.join([*all_groups, 'selected'])}")
        for cfg in all_groups[g] if g != "selected" else selected(runs, args):
            n_ep = min(epochs, cfg.get("epochs", epochs))
            if cfg["name"] in runs and len(runs[cfg["name"]]["hist"]["test_accuracy"]) >= n_ep:
                continue
            hist = run(cfg, data, n_ep, cfg.get("seed", args.seed), state)
            runs[cfg["name"]] = dict(cfg, group=g, hist=hist)
            write(runs, args)   # after every run: an interrupted invocation keeps what it finished
    write(runs, args)


def write(runs: dict, args) -> None:
    rows, diag, parts, seeds, per_epoch, table, four, remedy = [], [], [], [], [], {}, {}, {}
    val, sel = {}, {}
    for name, r in runs.items():
        h = r["hist"]
        acc = [round(a, 3) for a in h["test_accuracy"]] + [None] * (3 - len(h["test_accuracy"]))
        s = float(np.median(h["epoch_s"])) if h["epoch_s"] else None
        load = float(np.mean(h["load_1min"])) if h["load_1min"] else None
        for e, (a, t, ld) in enumerate(zip(h["test_accuracy"], h["epoch_s"], h["load_1min"]), 1):
            per_epoch.append([name, e, a, t, ld, h["sweeps"][e - 1]])
        if r["group"] == "table":
            table.setdefault((r["model"], r["diode"], r["train"], r["test"]), []).append((acc[:3], s, load))
        elif r["group"] == "remedy":
            remedy.setdefault((r["layer_lr"][1], r["model"], r["diode"], r["train"], r["test"]), []).append(acc[:3])
        elif r["group"] == "validation":
            val.setdefault(r["variant"], []).append(acc[0])
        elif r["group"] == "selected":
            sel.setdefault(r["variant"], []).append(acc[:3])
        elif r["group"] == "diagnosis":
            diag.append([r["what"], *acc[:3]])
        elif r["group"] == "parts":
            floor = h.get("at_floor")
            parts.append([r["what"], *acc[:3], " / ".join(f"{f:.2f}" for f in floor[-1]) if floor else None])
        elif r["group"] == "seeds" and r.get("sweeps"):
            four[r["seed"]] = acc[:3]
        elif r["group"] == "seeds" and h.get("inactive_hidden"):
            init = h.get("at_init", {})
            seeds.append([r["seed"], *acc[:3], round(init.get("inactive_hidden", float("nan")), 3),
                          round(h["inactive_hidden"][-1], 3), round(init.get("output_g_sum", float("nan")), 1),
                          round(h["output_g_sum"][-1], 1)])
    for (m, d, a, b), got in table.items():
        acc = [None if any(g[0][e] is None for g in got) else round(float(np.mean([g[0][e] for g in got])), 3)
               for e in range(3)]
        last = [g[0][2] for g in got if g[0][2] is not None]
        rows.append([f"anasim {m} ({d} diodes, mean of {len(got)} seed{'s' if len(got) > 1 else ''})",
                     f"{a} / {b}", round(float(np.median([g[1] for g in got])), 2), *acc,
                     round(float(np.median(last)), 3) if last else None,
                     f"{min(last):.3f}–{max(last):.3f}" if last else None,
                     round(float(np.mean([g[2] for g in got])), 2)])
    remedy_rows = []
    for (f, m, d, a, b), got in sorted(remedy.items(), key=lambda kv: (-kv[0][0], kv[0][1:])):
        ref = REFERENCE[(m, a)][1]
        done = [g for g in got if None not in g]
        if not done:
            continue
        mean = [round(float(np.mean([g[e] for g in done])), 3) for e in range(3)]
        last = [g[2] for g in done]
        remedy_rows.append([f"{m} ({d} diodes)", f, f"{a} / {b}", len(done), *mean, round(float(np.median(last)), 3),
                            f"{min(last):.3f}–{max(last):.3f}", *ref])
    val_rows = [[label, len(got), round(float(np.mean(got)), 4), f"{min(got):.3f}–{max(got):.3f}"]
                for label, _ in VARIANTS if (got := [g for g in val.get(label, []) if g is not None])]
    ref_xs = REFERENCE[("DRN-XS", 10000)][1]
    sel_rows = [[label, len(got), *[round(float(np.mean([g[e] for g in got])), 3) for e in range(3)],
                 f"{min(g[0] for g in got):.3f}–{max(g[0] for g in got):.3f}", *ref_xs]
                for label, accs in sel.items() if (got := [g for g in accs if None not in g])]
    ref_rows = [[f"reference {m} {'784-100-10' if m == 'DRN-XS' else '784-1024-10'}",
                 f"{n} / {n // 4 if n == 2000 else n // 5}", s, *a, None, None, None]
                for (m, n), (s, a) in REFERENCE.items()]
    non = [[name.split("_")[1], f"{r['train']} / {r['test']}",
            *[round(a, 3) for a in r["hist"]["test_accuracy"]]] for name, r in runs.items()
           if r["group"] == "nonideal"]
    order = ["ideal", "shockley", "reram", "programmed"]
    non.sort(key=lambda row: (int(row[1].split(" / ")[0]), order.index(row[0]) if row[0] in order else len(order)))
    width = max([len(x) for x in non], default=2)
    non = [x + [None] * (width - len(x)) for x in non]
    tables = {
        "table": {"columns": ["model", "images train / test", "s per epoch", "acc. epoch 1", "acc. epoch 2",
                              "acc. epoch 3", "epoch 3: median", "epoch 3: range", "load (1 min)"],
                  "rows": ref_rows + sorted(rows, key=lambda r: (r[1] != "2000 / 500", r[0]))},
        "diagnosis": {"columns": ["DRN-XS 2000/500, ideal diodes, changed ingredient", "acc. epoch 1",
                                  "acc. epoch 2", "acc. epoch 3"], "rows": diag},
        "nonideal": {"columns": ["DRN-1H parts", "images train / test"]
                     + [f"acc. epoch {e}" for e in range(1, width - 1)], "rows": non},
        "parts": {"columns": ["DRN-XS 2000/500, non-idealities on", "acc. epoch 1", "acc. epoch 2",
                              "acc. epoch 3", "devices at G_min after the last epoch: input / output coupling"],
                  "rows": parts},
        "seeds": {"columns": ["DRN-1H 2000/500, ideal diodes: seed", "acc. epoch 1", "acc. epoch 2", "acc. epoch 3",
                              "hidden nodes inactive on every test image: at init", "after epoch 3",
                              "hidden-to-output conductance per output: at init", "after epoch 3",
                              "the reference's 4 warm sweeps per phase: acc. epoch 1", "acc. epoch 2",
                              "acc. epoch 3"],
                  "rows": sorted(row + four.get(row[0], [None] * 3) for row in seeds)},
        "remedy": {"columns": ["model", "output coupling's learning-rate factor", "images train / test",
                               "seeds", "mean acc. epoch 1", "epoch 2", "epoch 3", "epoch 3: median", "epoch 3: range",
                               "reference epoch 1", "epoch 2", "epoch 3"], "rows": remedy_rows},
        "validation": {"columns": ["DRN-XS, 10000 training images, ideal diodes: variant", "seeds",
                                   "mean validation acc. after epoch 1", "range"], "rows": val_rows},
        "selected": {"columns": ["DRN-XS 10000 / 2000, ideal diodes: best variant on validation", "seeds",
                                 "mean test acc. epoch 1", "epoch 2", "epoch 3", "epoch 1 range",
                                 "reference epoch 1", "epoch 2", "epoch 3"], "rows": sel_rows},
        "per_epoch": {"columns": ["run", "epoch", "test accuracy", "s per epoch (train)", "load (1 min)",
                                  "max sweeps (test)"], "rows": per_epoch},
        "runs_json": {"columns": ["run", "json"], "rows": [[k, json.dumps(v)] for k, v in runs.items()]},
    }
    notes = ("First Fashion-MNIST images (train/test sizes per row); batch 4, beta 1, SGD 0.006 x 0.99/epoch, "
             "centered EP, every phase solved to 1e-4 V by block coordinate descent in float32 on the CPU "
             "(2 cores shared with other work: s per epoch measured under the load shown, one training pass "
             "without the test evaluation). Reference rows: its public implementation on this machine "
             "(figures given by the project). Non-ideal runs: DRN-1H on the sizes shown, devices/reram.toml "
             f"conductances (one device per coupling, G_max at weight 2/sqrt(1568)) and {MISMATCH_V * 1e3:.0f} mV "
             "rms diode-knee mismatch (assumed).")
    figs = {}
    for name, r in runs.items():
        if r["group"] == "table" and r["hist"]["epoch_s"]:
            figs[f"{name}_s_per_epoch"] = (float(np.median(r["hist"]["epoch_s"])), "s",
                                           f"{r['model']} {r['diode']} {r['train']}/{r['test']}: s per epoch")
    _results.write("drn_fashion", "drn_fashion.py", figs, {"title": "Deep resistive networks on Fashion-MNIST",
                                                           "notes": notes}, tables=tables, quick=args.quick)
    figure(runs, HERE / "figures" / f"drn_fashion{'_quick' if args.quick else ''}.png")


if __name__ == "__main__":
    main()
