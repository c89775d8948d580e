"""Holomorphic EP on an asymmetric network, with and without Jacobian homeostasis.

Laborieux & Zenke, "Improving equilibrium propagation without weight symmetry
through Jacobian homeostasis" (ICLR 2024), on an anasim circuit: a 784-H-10
network (sigmoid hidden units, linear output read as logits, cross-entropy)
with independent backward couplings started at an angle α to the transposed
forward ones (``asymmetry_angle``), trained on Fashion-MNIST with the N-point
hEP error vector (N ∈ {1, 2, 4}, two nudge radii |β|) through the ideal
complex relaxation, once with plain hEP and once with the homeostatic loss
λ_homeo · E[‖Jε‖² − εᵀJ²ε] added to the update.

Per run it reports the test accuracy, the functional symmetry ‖S‖/(‖S‖ + ‖A‖)
of the fixed-point Jacobian's coupling part, and the cosines between the hEP
error vector and the exact one (implicit differentiation) per layer, on a
probe batch of test images. Writes examples/results/hep_asymmetric.nc and
examples/figures/hep_asymmetric.png (``--quick``: *_quick files).

Full: ``python examples/hep_asymmetric.py`` (784-128-10, α = 90°, the first
6000 training and 1000 test images, 3 epochs per run, 12 runs);
``--quick``: the shipped subset (2000/500), 784-64-10, 2 epochs per run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# One OpenBLAS thread: the dense solves of the exact error vectors run inside
# XLA's own thread pool, and a threaded OpenBLAS there was seen to stall.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shipped subset, small network, one epoch")
    ap.add_argument("--angle", type=float, default=90.0, help="initial asymmetry angle α (degrees)")
    ap.add_argument("--homeostasis", type=float, default=1.0, help="λ_homeo of the homeostatic runs")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args(argv)

    import jax  # noqa: PLC0415
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import xarray as xr  # noqa: PLC0415

    from anasim.circuits.spec import CircuitSpec  # noqa: PLC0415
    from anasim.data import load_fashion_mnist  # noqa: PLC0415
    from anasim.devices import ideal_profile  # noqa: PLC0415
    from anasim.learning import TrainConfig, initial_params, train  # noqa: PLC0415
    from anasim.learning.holomorphic import diagnostics  # noqa: PLC0415

    hidden = 64 if args.quick else 128
    epochs = args.epochs or (2 if args.quick else 3)
    train_set, test_set = load_fashion_mnist("subset" if args.quick else None)
    train_size, test_size = (0, 0) if args.quick else (6000, 1000)
    # sigmoid hidden units, linear output read as logits (both holomorphic); tol well below
    # the error-vector scale |β|·|δ|, which one-sided (N = 1) estimates need
    spec = CircuitSpec(sizes=(784, hidden, 10), lam="asymmetric", backward="independent",
                       activations=("sigmoid", "identity"), cost="cross_entropy", eta=0.5, schedule="async",
                       max_iters=200, tol=1e-6,
                       asymmetry_angle=args.angle, name="hep-asymmetric")
    xp = test_set.x[:32]
    yp = np.eye(spec.n_out)[test_set.y[:32]]
    points = (1, 2, 4)
    radii = (0.1, 0.5)
    homeo = (0.0, args.homeostasis)
    shape = (len(homeo), len(points), len(radii))
    acc = np.full(shape, np.nan)
    sym = np.full(shape, np.nan)
    cos_u = np.full(shape, np.nan)
    cos_l = np.full(shape + (spec.n_layers,), np.nan)
    curves = np.full(shape + (epochs,), np.nan)
    sym0 = np.nan
    print(f"hEP, 784-{hidden}-10 (sigmoid, linear output, cross-entropy), independent backward couplings at α = {args.angle:g}°, "
          f"{epochs} epoch(s), train {train_size or len(train_set)} / test {test_size or len(test_set)}")
    print(f"{'λ_homeo':>8} {'N':>2} {'|β|':>5} {'test acc':>9} {'func sym':>9} {'cos(Δθ)':>8} "
          f"{'cos δ_1':>8} {'cos δ_2':>8} {'wall s':>7}")
    t_all = time.perf_counter()
    for i, lam_h in enumerate(homeo):
        for j, n in enumerate(points):
            for k, b in enumerate(radii):
                cfg = TrainConfig(rule="hep", hep_points=n, beta=b, homeostasis=lam_h, homeostasis_probes=2,
                                  epochs=epochs, batch_size=64, learning_rate=0.1, momentum=0.9,
                                  schedule="constant", seed=0, train_size=train_size, test_size=test_size)
                t = time.perf_counter()
                run = train(spec, ideal_profile(), cfg, train_set, test_set, progress=False)
                h = run.history
                # diagnostics of the trained circuit on the first 32 test images (float64 references)
                d = diagnostics(spec, run.params, xp, yp, beta=b, n_points=n)
                acc[i, j, k] = h["test_accuracy"][-1]
                sym[i, j, k] = d["functional_symmetry"]
                cos_u[i, j, k] = d["cos_update"]
                cos_l[i, j, k] = d["cos_hep_grad"]
                curves[i, j, k] = h["test_accuracy"]
                if np.isnan(sym0):
                    sym0 = diagnostics(spec, initial_params(spec, cfg), xp, yp, beta=b,
                                       n_points=n)["functional_symmetry"]
                print(f"{lam_h:8.2f} {n:2d} {b:5.2f} {acc[i, j, k]:9.4f} {sym[i, j, k]:9.3f} {cos_u[i, j, k]:8.3f} "
                      f"{cos_l[i, j, k, 0]:8.3f} {cos_l[i, j, k, 1]:8.3f} {time.perf_counter() - t:7.0f}", flush=True)
    print(f"functional symmetry at initialization: {sym0:.3f}; total wall time {time.perf_counter() - t_all:.0f} s")

    coords = {"homeostasis": list(homeo), "n_points": list(points), "beta": list(radii)}
    ds = xr.Dataset(
        {"test_accuracy": (("homeostasis", "n_points", "beta"), acc, {"units": "fraction"}),
         "functional_symmetry": (("homeostasis", "n_points", "beta"), sym,
                                 {"long_name": "||S||/(||S||+||A||) of D^1/2 W D^1/2 at the free fixed point"}),
         "cos_update": (("homeostasis", "n_points", "beta"), cos_u,
                        {"long_name": "cosine(hEP update, exact gradient)"}),
         "cos_error": (("homeostasis", "n_points", "beta", "layer"), cos_l,
                       {"long_name": "cosine(hEP error vector, exact error vector) per layer"}),
         "test_accuracy_curve": (("homeostasis", "n_points", "beta", "epoch"), curves, {"units": "fraction"})},
        coords={**coords, "layer": np.arange(1, spec.n_layers + 1), "epoch": np.arange(1, epochs + 1)},
        attrs={"circuit.sizes": str(spec.sizes), "circuit.asymmetry_angle": args.angle, "epochs": epochs,
               "initial_functional_symmetry": sym0, "train_size": train_size or len(train_set),
               "test_size": test_size or len(test_set), "jax.platform": jax.devices()[0].platform},
    )
    suffix = "_quick" if args.quick else ""
    res = HERE / "results" / f"hep_asymmetric{suffix}.nc"
    fig_path = HERE / "figures" / f"hep_asymmetric{suffix}.png"
    res.parent.mkdir(parents=True, exist_ok=True)
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(res, engine="h5netcdf")

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), constrained_layout=True)
    for i, lam_h in enumerate(homeo):
        for k, b in enumerate(radii):
            style = dict(marker="o", ls="-" if lam_h else "--", color=f"C{k}",
                         label=f"|β| = {b:g}" + (f", λ_homeo = {lam_h:g}" if lam_h else ", no homeostasis"))
            axes[0].plot(points, 100 * acc[i, :, k], **style)
            axes[1].plot(points, sym[i, :, k], **style)
            axes[2].plot(points, cos_l[i, :, k, 0], **style)
    axes[1].axhline(sym0, color="gray", lw=0.8, ls=":", label="at initialization")
    for ax, title in zip(axes, ("test accuracy (%)", "functional symmetry", "cos(δ_hEP, δ_exact), hidden layer")):
        ax.set_xlabel("N (complex nudges)")
        ax.set_xticks(points)
        ax.set_title(title, fontsize=10)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"hEP on 784-{hidden}-10 with independent backward couplings (α = {args.angle:g}°), "
                 f"{epochs} epoch(s)", fontsize=10)
    fig.savefig(fig_path, dpi=110)
    print(f"wrote {res.relative_to(HERE.parent)} and {fig_path.relative_to(HERE.parent)}")

    from _results import write  # noqa: PLC0415  (examples/ is on sys.path)

    def span(v, fmt, unit=""):
        lo, hi = (fmt.format(x) for x in (np.nanmin(v), np.nanmax(v)))
        return (lo if lo == hi else f"{lo}–{hi}") + unit

    labels = [f"hEP, N ∈ {{{', '.join(map(str, points))}}}, |β| ∈ {{{', '.join(f'{b:g}' for b in radii)}}}"] + \
        [f"same + homeostasis, λ_homeo = {h:g}" for h in homeo[1:]]
    write("hep_asymmetric", "hep_asymmetric.py", {}, {
        "title": f"Holomorphic EP on an asymmetric 784-{hidden}-10 network (α = {args.angle:g}°), "
                 f"{train_size or len(train_set)} / {test_size or len(test_set)} images, {epochs} epochs, one seed",
        "notes": f"{acc.size} runs in {(time.perf_counter() - t_all) / 60:.1f} min; functional symmetry "
                 f"{sym0:.3f} at initialization."},
        tables={"main": {"columns": ["", "test accuracy", "functional symmetry", "cos(update, gradient)",
                                     "cos(δ_1, exact)"],
                         "rows": [[labels[i], span(100 * acc[i], "{:.1f}", " %"), span(sym[i], "{:.2f}"),
                                   span(cos_u[i], "{:.2f}"), span(cos_l[i, ..., 0], "{:.2f}")]
                                  for i in range(len(homeo))]}},
        quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
