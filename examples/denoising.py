"""Denoising with convolutional Hopfield circuits: four structures vs training-set size
(the denoising study of the convolutional dyadic-learning work: Nest & Høier on
dyadic learning in asymmetric convnets; cf. Scellier et al.'s deep convolutional
Hopfield networks).

Task: Fashion-MNIST images scaled to [−1, 1]; each image gets Gaussian noise of
its own strength σ ~ U[0, 1] (x = clean + σ ε); the circuit sees the noisy
image and its output layer is nudged towards the clean one (squared cost).
Test error: mean squared error per pixel of the free equilibrium's output
against the clean test images (same scale [−1, 1]; the noisy input itself
scores E[σ²] = 1/3).

Layout (as we read the paper): the output layer sits next to the input. Layers

    x (28×28×1, clamped) ─5×5 conv→ s_1 (28×28×1, the reconstruction, hard_tanh ∈ [−1, 1])
                         ─5×5 conv→ s_2 (28×28×C2, hard sigmoid)
       ─squeeze 2×2, 5×5 conv→ s_3 (14×14×C3, hard sigmoid)
       ─squeeze 2×2, dense→     s_4 (D units, hard sigmoid)

The paper's sizes are C2 = 32, C3 = 64, D = 512 (``--paper-size``); the
default run shrinks them to 4, 8, 64 to fit a 2-core CPU (``--channels``). The
pooling before the C3 layer and before the dense layer is our choice
(squeeze: a lossless permutation, so every coupling stays linear). The deeper
layers act on the reconstruction only through the backward couplings, so the
structure decides how much they help: feedforward (λ = ½) inference is one
5×5 filter of the input; symmetric (λ = 1), skew (λ = 0) and asymmetric
(independent ψ) circuits feed the deep layers' state back into s_1.

Training: the dyadic rule (centered nudging β, the λ-formula of each
structure; ψ of the asymmetric circuit gets θ's transposed update), Adam,
on a fixed budget of ``--steps`` minibatches for every training fraction, so
that the small fractions revisit few images many times (the data-limited
regime the study probes). Fractions 0.5 %, 5 %, 25 %, 95 % are taken of a
pool of the first ``--pool`` training images (the paper: of all 60 000; the
full set does not fit this machine's budget: see the README for what ran).

    python examples/denoising.py --quick      # minutes
    python examples/denoising.py              # the README run

Writes ``examples/results/denoising[_quick].nc`` and
``examples/figures/denoising[_quick].png``.
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
FRACTIONS = (0.005, 0.05, 0.25, 0.95)


def make_spec(lam, c2, c3, dense, backward, max_iters, dtype="float32"):
    return cv.ConvCircuitSpec(
        input_shape=(28, 28, 1),
        layers=(cv.ConvLayer("conv", 1, 5), cv.ConvLayer("conv", c2, 5), cv.ConvLayer("conv", c3, 5, pool=True),
                cv.ConvLayer("dense", dense, pool=True)),
        lam=lam, activations=("hard_tanh", "hard_sigmoid", "hard_sigmoid", "hard_sigmoid"), output_layer=1,
        cost="squared", eta=0.5, schedule="async", max_iters=max_iters, tol=1e-3, stall_window=10,
        backward=backward, init_scale=1.0, dtype=dtype)


def noisy(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0.0, 1.0, size=(clean.shape[0], 1, 1, 1))
    return (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32)


def evaluate(spec, hw, x_noisy, clean, key, batch=100):
    se, iters, settled, bad = 0.0, [], [], 0
    recon = []
    for i in range(0, len(clean), batch):
        eq = cv.relax(spec, hw, x_noisy[i:i + batch], jax.random.fold_in(key, i))
        out = np.asarray(cv.output(spec, eq))
        if not np.all(np.isfinite(out)):
            bad += len(out)
            out = np.nan_to_num(out)
        se += float(np.sum((out - clean[i:i + batch]) ** 2))
        iters.append(int(eq.iterations))
        settled.append(bool(eq.converged) or bool(eq.oscillating))
        bad += int(bool(eq.diverged)) * len(out)
        recon.append(out)
    return (se / clean.size, float(np.mean(iters)), float(np.mean(settled)), bad / len(clean),
            np.concatenate(recon))


def train_one(spec, profile, x_pool, n_train, test, args, seed):
    key = jax.random.key(seed)
    k_init, k_build, k_loop, k_eval = jax.random.split(key, 4)
    params = cv.init_params(spec, k_init)
    hw = cv.build(spec, profile, params, k_build)
    opt = optax.adam(args.lr)
    state = opt.init(params)
    rng = np.random.default_rng(seed)
    clean_tr = x_pool[:n_train]
    t0 = time.perf_counter()
    diverged_steps, it_train = 0, []
    order = rng.permutation(n_train)
    pos = 0
    for step in range(args.steps):
        b = min(args.batch, n_train)
        if pos + b > n_train:
            order, pos = rng.permutation(n_train), 0
        sel = order[pos:pos + b]
        pos += b
        clean = clean_tr[sel]
        x = noisy(clean, rng)                    # fresh noise every visit
        k_step, k_prog = jax.random.split(jax.random.fold_in(k_loop, step))
        grads, eq = dyadic_step(spec, hw, x, clean, k_step, args.beta)
        it_train.append(int(eq.iterations))
        if bool(eq.diverged) or not all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads)):
            diverged_steps += 1
            continue                             # a diverged relaxation gives no update
        upd, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, upd)
        hw = cv.reprogram(spec, hw, params, k_prog)
    x_te, clean_te = test
    mse, it_te, settled, bad, recon = evaluate(spec, hw, x_te, clean_te, k_eval)
    return dict(mse=mse, iters_free=it_te, iters_nudged=float(np.mean(it_train)), settled=settled,
                diverged_test=bad, diverged_steps=diverged_steps, wall=time.perf_counter() - t0, recon=recon[:6])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (minutes)")
    ap.add_argument("--paper-size", action="store_true", help="C2, C3, D = 32, 64, 512 (slow on a CPU)")
    ap.add_argument("--channels", type=int, nargs=3, metavar=("C2", "C3", "D"))
    ap.add_argument("--pool", type=int, help="training images the fractions are taken of")
    ap.add_argument("--steps", type=int, help="minibatch steps per run (same for every fraction)")
    ap.add_argument("--test-size", type=int)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--max-iters", type=int, help="relaxation budget (default 30 quick, 40 full)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="ideal", help="device profile name in devices/ (default ideal)")
    ap.add_argument("--structures", nargs="+", default=list(STRUCTURES), choices=list(STRUCTURES))
    ap.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    args = ap.parse_args(argv)
    q = args.quick
    c2, c3, dense = args.channels or ((32, 64, 512) if args.paper_size else (4, 8, 64))
    args.pool = args.pool or (1000 if q else 4000)
    args.steps = args.steps or (25 if q else 100)
    args.max_iters = args.max_iters or (30 if q else 40)
    args.test_size = args.test_size or (200 if q else 400)

    train, test = load_fashion_mnist()
    x_pool = (2.0 * train.x[:args.pool] - 1.0).reshape(-1, 28, 28, 1).astype(np.float32)
    clean_te = (2.0 * test.x[:args.test_size] - 1.0).reshape(-1, 28, 28, 1).astype(np.float32)
    x_te = noisy(clean_te, np.random.default_rng(12345))
    base = float(np.mean((x_te - clean_te) ** 2))
    base_clip = float(np.mean((np.clip(x_te, -1, 1) - clean_te) ** 2))
    profile = ideal_profile() if args.profile == "ideal" else load_profile(ROOT / "devices" / f"{args.profile}.toml")
    backward = "transpose" if args.profile == "ideal" or hasattr(profile.coupling, "mvm_t") else "copy"
    sizes = [max(1, int(round(f * args.pool))) for f in args.fractions]
    print(f"Fashion-MNIST from {train.source}; pool {args.pool} images, fractions {args.fractions} → "
          f"{sizes} images; {args.steps} steps of {args.batch}; channels 1, {c2}, {c3}, dense {dense}; "
          f"profile {profile.name}; test {args.test_size} images")
    print(f"noisy input MSE {base:.4f} (clipped to [−1, 1]: {base_clip:.4f})")

    rows = []
    for sname in args.structures:
        spec = make_spec(STRUCTURES[sname], c2, c3, dense, backward, args.max_iters)
        for f, n in zip(args.fractions, sizes):
            r = train_one(spec, profile, x_pool, n, (x_te, clean_te), args, args.seed)
            r.update(structure=sname, fraction=f, n_train=n)
            rows.append(r)
            print(f"  {sname:12s} fraction {100 * f:5.1f} % ({n:5d} images): test MSE {r['mse']:.4f}  "
                  f"free iters {r['iters_free']:.0f}  settled {r['settled']:.2f}  diverged test {r['diverged_test']:.2f}"
                  f"  skipped steps {r['diverged_steps']}  ({r['wall']:.0f} s)", flush=True)

    structs = list(dict.fromkeys(r["structure"] for r in rows))
    fr = list(args.fractions)
    M = np.full((len(structs), len(fr)), np.nan)
    extra = {k: np.full_like(M, np.nan) for k in ("iters_free", "settled", "diverged_test", "diverged_steps")}
    for r in rows:
        i, j = structs.index(r["structure"]), fr.index(r["fraction"])
        M[i, j] = r["mse"]
        for k in extra:
            extra[k][i, j] = r[k]
    print("\ntest MSE (per pixel, images in [−1, 1])")
    print("structure    " + "".join(f"{100 * f:>9.1f} %" for f in fr))
    for i, s in enumerate(structs):
        print(f"{s:12s} " + "".join(f"{v:11.4f}" for v in M[i]))
    print(f"noisy input  {base:.4f}")

    import xarray as xr
    ds = xr.Dataset({"test_mse": (("structure", "fraction"), M),
                     **{k: (("structure", "fraction"), v) for k, v in extra.items()}},
                    coords={"structure": structs, "fraction": fr, "n_train": ("fraction", sizes)},
                    attrs=dict(channels=f"1,{c2},{c3}", dense=dense, pool=args.pool, steps=args.steps,
                               batch=args.batch, lr=args.lr, beta=args.beta, max_iters=args.max_iters,
                               test_size=args.test_size, profile=profile.name, seed=args.seed,
                               noisy_input_mse=base, noisy_input_clipped_mse=base_clip,
                               optimizer="adam", rule="dyadic (centered)", quick=int(q)))
    suffix = "_quick" if q else ""
    (ROOT / "examples" / "results").mkdir(parents=True, exist_ok=True)
    out = ROOT / "examples" / "results" / f"denoising{suffix}.nc"
    ds.to_netcdf(out)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(10, 3.8))
    ax = fig.add_axes([0.07, 0.14, 0.38, 0.76])
    for i, s in enumerate(structs):
        ax.plot(np.asarray(fr) * 100, M[i], "o-", label=s)
    ax.axhline(base, color="grey", ls=":", label="noisy input")
    ax.set_xscale("log")
    ax.set_xlabel(f"training fraction [%] of {args.pool} images")
    ax.set_ylabel("test MSE per pixel")
    ax.set_title(f"denoising, {profile.name}, {args.steps} steps")
    ax.legend(fontsize=8)
    last = [r for r in rows if r["fraction"] == fr[-1]]
    ncol = 2 + len(last)
    for c in range(ncol):
        for rr in range(2):
            a = fig.add_axes([0.5 + c * 0.49 / ncol, 0.52 - rr * 0.42, 0.47 / ncol, 0.38])
            img = clean_te[rr] if c == 0 else x_te[rr] if c == 1 else last[c - 2]["recon"][rr]
            a.imshow(np.clip(img[..., 0], -1, 1), cmap="gray", vmin=-1, vmax=1)
            a.set_xticks([])
            a.set_yticks([])
            if rr == 0:
                a.set_title(["clean", "noisy"][c] if c < 2 else last[c - 2]["structure"], fontsize=8)
    fig_path = ROOT / "examples" / "figures" / f"denoising{suffix}.png"
    fig.savefig(fig_path, dpi=110)
    print(f"wrote {out} and {fig_path}")

    from _results import write  # noqa: PLC0415  (examples/ is on sys.path)

    write("denoising", "denoising.py", {}, {
        "title": f"Denoising: test MSE per pixel ({args.test_size} test images) by fraction of a {args.pool}-image "
                 f"pool, {args.steps} Adam steps, {profile.name} profile",
        "notes": f"Layers C2, C3, D = {c2}, {c3}, {dense}; {sum(r['wall'] for r in rows) / 60:.0f} min wall "
                 f"for {len(rows)} runs."},
        tables={"main": {"columns": ["structure"] + [f"{100 * f:g} %" for f in fr],
                         "rows": [[s] + [None if np.isnan(v) else round(float(v), 3) for v in M[i]]
                                  for i, s in enumerate(structs)]
                         + [["noisy input", f"{base:.3f} (clipped to [−1, 1]: {base_clip:.3f})"]
                            + [None] * (len(fr) - 1)]}},
        quick=q)


if __name__ == "__main__":
    main()
