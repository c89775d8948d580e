"""A small convolutional Hopfield classifier on Fashion-MNIST, four structures, trained
on-device with the dyadic rule (Scellier et al., "Energy-based learning algorithms
for analog computing", deep convolutional Hopfield networks; Nest & Høier on
dyadic learning in asymmetric convnets).

Circuit: 28×28×1 input → squeeze → 3×3 conv, C1 channels (14×14) → squeeze →
3×3 conv, C2 channels (7×7) → dense 10 (squared cost on one-hot targets).
Structures: symmetric (λ = 1), skew (λ = 0), feedforward (λ = ½), asymmetric
(independent backward kernels ψ, updated with θ's transposed update). Each is
trained on the ideal profile and on the 10-bit SLM profile (devices/slm-10bit.toml;
optics is not reciprocal, so the backward direction is a second tile bank
programmed with the transposed kernel, ``backward = "copy"``; every copy of every
kernel weight is its own pixel with its own gain error). Shadow-copy training:
Adam on digital kernels, reprogrammed into the chip after each step.

    python examples/conv_classifier.py --quick     # minutes
    python examples/conv_classifier.py             # the run in the README

Writes ``examples/results/conv_classifier[_quick].nc`` and
``examples/figures/conv_classifier[_quick].png``, prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anasim.circuits import conv as cv
from anasim.data import load_fashion_mnist
from anasim.devices import ideal_profile, load_profile
from anasim.learning.conv_rules import dyadic_step

ROOT = Path(__file__).resolve().parent.parent
STRUCTURES = {"symmetric": 1.0, "skew": 0.0, "feedforward": 0.5, "asymmetric": "asymmetric"}


def make_spec(lam, c1: int, c2: int, backward: str, max_iters: int) -> cv.ConvCircuitSpec:
    return cv.ConvCircuitSpec(
        input_shape=(28, 28, 1),
        layers=(cv.ConvLayer("conv", c1, 3, pool=True), cv.ConvLayer("conv", c2, 3, pool=True),
                cv.ConvLayer("dense", 10)),
        lam=lam, activations=("tempered_hard_sigmoid",) * 3, cost="squared", eta=0.5, schedule="async",
        max_iters=max_iters, tol=1e-3, stall_window=10, backward=backward, init_scale=1.0)


def evaluate(spec, hw, x, y, key, batch):
    correct, iters, conv = 0, [], []
    for i in range(0, len(y), batch):
        eq = cv.relax(spec, hw, x[i:i + batch], jax.random.fold_in(key, i))
        correct += int(jnp.sum(jnp.argmax(cv.output(spec, eq), -1) == y[i:i + batch]))
        iters.append(int(eq.iterations))
        conv.append(bool(eq.converged) or bool(eq.oscillating))
    return correct / len(y), float(np.mean(iters)), float(np.mean(conv))


def train_one(spec, profile, data, args, seed):
    (xtr, ytr), (xte, yte) = data
    key = jax.random.key(seed)
    k_init, k_build, k_loop = jax.random.split(key, 3)
    params = cv.init_params(spec, k_init)
    hw = cv.build(spec, profile, params, k_build)
    opt = optax.adam(args.lr)
    state = opt.init(params)
    rng = np.random.default_rng(seed)
    history = []
    t0 = time.perf_counter()
    it_train = []
    for epoch in range(args.epochs):
        order = rng.permutation(len(ytr))
        for j, start in enumerate(range(0, len(ytr) - args.batch + 1, args.batch)):
            sel = order[start:start + args.batch]
            kk = jax.random.fold_in(k_loop, epoch * 100000 + j)
            k_step, k_prog = jax.random.split(kk)
            y1 = jax.nn.one_hot(ytr[sel], 10)
            grads, eq = dyadic_step(spec, hw, xtr[sel], y1, k_step, args.beta)
            it_train.append(int(eq.iterations))
            upd, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, upd)
            hw = cv.reprogram(spec, hw, params, k_prog)
        acc, it_test, conv = evaluate(spec, hw, xte, yte, jax.random.fold_in(k_loop, 10**7 + epoch), 250)
        history.append(acc)
        print(f"    epoch {epoch + 1}: test accuracy {acc:.4f}  (free iters {it_test:.0f}, "
              f"nudged iters {np.mean(it_train):.0f}, settled {conv:.2f}, {time.perf_counter() - t0:.0f} s)",
              flush=True)
    return history, float(np.mean(it_train)), it_test, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (minutes)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--train-size", type=int)
    ap.add_argument("--test-size", type=int)
    ap.add_argument("--channels", type=int, nargs=2, metavar=("C1", "C2"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--beta", type=float, default=0.2)
    ap.add_argument("--max-iters", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--structures", nargs="+", default=list(STRUCTURES), choices=list(STRUCTURES))
    ap.add_argument("--profiles", nargs="+", default=["ideal", "slm-10bit"])
    args = ap.parse_args(argv)
    q = args.quick
    args.epochs = args.epochs or (1 if q else 2)
    args.train_size = args.train_size or (600 if q else 3000)
    args.test_size = args.test_size or (250 if q else 1000)
    c1, c2 = args.channels or ((4, 8) if q else (8, 16))

    train, test = load_fashion_mnist()
    data = ((train.x[:args.train_size].reshape(-1, 28, 28, 1), train.y[:args.train_size]),
            (test.x[:args.test_size].reshape(-1, 28, 28, 1), test.y[:args.test_size]))
    print(f"Fashion-MNIST from {train.source}: {args.train_size} train / {args.test_size} test images; "
          f"channels {c1}, {c2}; {args.epochs} epoch(s)")
    rows = []
    for pname in args.profiles:
        profile = ideal_profile() if pname == "ideal" else load_profile(ROOT / "devices" / f"{pname}.toml")
        backward = "transpose" if pname == "ideal" or hasattr(profile.coupling, "mvm_t") else "copy"
        for sname in args.structures:
            spec = make_spec(STRUCTURES[sname], c1, c2, backward, args.max_iters)
            print(f"  {sname} on {profile.name}", flush=True)
            hist, it_tr, it_te, wall = train_one(spec, profile, data, args, args.seed)
            rows.append(dict(structure=sname, profile=profile.name, acc=hist[-1], history=hist,
                             iters_nudged=it_tr, iters_free=it_te, wall=wall))

    print("\nstructure     profile      test accuracy  free iters  nudged iters  wall [s]")
    for r in rows:
        print(f"{r['structure']:13s} {r['profile']:12s} {r['acc']:13.4f} {r['iters_free']:11.0f} "
              f"{r['iters_nudged']:13.0f} {r['wall']:9.0f}")

    import xarray as xr
    profs = list(dict.fromkeys(r["profile"] for r in rows))
    structs = list(dict.fromkeys(r["structure"] for r in rows))
    acc = np.full((len(structs), len(profs), args.epochs), np.nan)
    its = np.full((len(structs), len(profs)), np.nan)
    for r in rows:
        i, j = structs.index(r["structure"]), profs.index(r["profile"])
        acc[i, j, :len(r["history"])] = r["history"]
        its[i, j] = r["iters_free"]
    ds = xr.Dataset({"test_accuracy": (("structure", "profile", "epoch"), acc),
                     "free_iterations": (("structure", "profile"), its)},
                    coords={"structure": structs, "profile": profs, "epoch": np.arange(1, args.epochs + 1)},
                    attrs=dict(channels=f"{c1},{c2}", train_size=args.train_size, test_size=args.test_size,
                               lr=args.lr, beta=args.beta, batch=args.batch, max_iters=args.max_iters,
                               seed=args.seed, rule="dyadic (centered)", quick=int(q)))
    suffix = "_quick" if q else ""
    (ROOT / "examples" / "results").mkdir(parents=True, exist_ok=True)
    out = ROOT / "examples" / "results" / f"conv_classifier{suffix}.nc"
    ds.to_netcdf(out)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    w = 0.8 / len(profs)
    for j, p in enumerate(profs):
        ax.bar(np.arange(len(structs)) + (j - (len(profs) - 1) / 2) * w, acc[:, j, -1], w, label=p)
    ax.set_xticks(np.arange(len(structs)), structs)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"conv Hopfield classifier, {args.train_size} images, {args.epochs} epoch(s)")
    ax.legend()
    fig.tight_layout()
    fig_path = ROOT / "examples" / "figures" / f"conv_classifier{suffix}.png"
    fig.savefig(fig_path, dpi=110)
    print(f"wrote {out} and {fig_path}")

    from _results import write  # noqa: PLC0415  (examples/ is on sys.path)

    def cell(i, j):
        h = acc[i, j]
        if np.all(np.isnan(h)):
            return None
        v = round(float(h[-1]), 3)
        notes = []
        best = int(np.nanargmax(h))
        if h[best] - h[-1] > 0.05:
            notes.append(f"{h[best]:.3f} after epoch {best + 1}, then collapsed")
        if its[i, j] >= args.max_iters:
            notes.append(f"free phase not settled in {args.max_iters} iterations")
        return f"{v} ({'; '.join(notes)})" if notes else v

    names = {"ideal": "ideal", "slm-10bit": "10-bit SLM"}
    write("conv_classifier", "conv_classifier.py", {}, {
        "title": f"Convolutional classifier: test accuracy after {args.epochs} epoch(s) on {args.train_size} images, "
                 f"{args.test_size} test images",
        "notes": f"{sum(r['wall'] for r in rows) / 60:.0f} min of training and testing."},
        tables={"main": {"columns": ["structure"] + [names.get(p, p) for p in profs],
                         "rows": [[s] + [cell(i, j) for j in range(len(profs))] for i, s in enumerate(structs)]}},
        quick=q)


if __name__ == "__main__":
    main()
