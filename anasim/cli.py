"""The ``anasim`` command.

Each subcommand has ``--help``; output is for humans by default and JSON with
``--json``. Exit codes: 0 success; 2 bad input (a bad file, flag or output
path: one line on stderr, before any work); 3 a training run stopped by the
divergence watch (its last good checkpoint written); 4 a result or checkpoint
could not be written during a run (the files written before are intact);
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Callable, Sequence

from anasim.errors import AnasimError, RunFailed

_EPILOG = ("exit codes: 0 done; 2 bad input or output path (one line on stderr, before any work); "
           "3 training diverged (last good checkpoint written); 4 a write failed during the run; "
           "130 interrupted; 137 killed (SIGKILL; --resume continues)")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


# --- devices --------------------------------------------------------------------

def _add_devices(sub) -> Callable:
    p = sub.add_parser(
        "devices", help="list and validate device profiles",
        description=("Load and validate device profiles (TOML): every key's type and range, unknown "
                     "keys, includes. Prints one line per profile; an invalid profile prints one "
                     "error line to stderr and the command exits with code 2."))
    p.add_argument("paths", nargs="*", help="profile files or folders (default: devices/ in the current directory)")
    p.add_argument("--json", action="store_true", help="machine-readable output (parameters of every part)")
    p.add_argument("--sources", action="store_true",
                   help="print each energy and time parameter on its own line with the source of its default")

    def run(args) -> int:
        from pathlib import Path

        from anasim.devices.profile import load_profile, profile_summary

        files: list[Path] = []
        for raw in args.paths or ["devices"]:
            path = Path(raw)
            if path.is_dir():
                found = sorted(path.glob("*.toml"))
                if not found:
                    raise AnasimError(f"{raw}: no profile files (*.toml) in this folder")
                files.extend(found)
            elif path.is_file():
                files.append(path)
            else:
                raise AnasimError(f"{raw}: no such profile file or folder")
        good, bad = [], []
        for f in files:
            try:
                good.append(profile_summary(load_profile(f)))
            except AnasimError as err:
                bad.append(str(err))
        if args.json:
            _print_json({"profiles": good, "errors": bad})
        else:
            for s in good:
                c = s["parameters"]["coupling"] or {}
                bits = f"{c['bits']}-bit" if c.get("bits") else "analog"
                conv = ", ".join(f"{k} {s['parameters'][k]['bits']}-bit" if s["parameters"][k] else f"{k} ideal"
                                 for k in ("dac", "adc"))
                kind = s["coupling"] if s["coupling"] == "ideal" else f"{s['coupling']} {bits}"
                it = s["iteration_time_s"]
                loop = f"{it * 1e9:g} ns" if isinstance(it, float) else "-"
                print(f"{s['name']:<18} {kind:<16} {conv:<24} loop {loop:<8} {s['source']}")
                for part, ps in s["energy_parameters"].items():
                    if not ps:
                        continue
                    unit = lambda v: f" {v['unit']}" if v["unit"] not in ("", "1") else ""  # noqa: E731
                    if args.sources:
                        for k, v in ps.items():
                            src = v["source"] or "no source"
                            if v["value"] != v["default"]:   # the profile's own value: its file cites it
                                src = f"set by the profile (see its file); default {v['default']:g}: {src}"
                            print(f"    energy {part}.{k} = {v['value']:g}{unit(v)}  [{src}]")
                    else:
                        vals = ", ".join(f"{k} = {v['value']:g}{unit(v)}" for k, v in ps.items())
                        print(f"    energy {part}: {vals}")
        if bad:
            for i, msg in enumerate(bad):
                # one line per bad profile; the last goes through the CLI's error path
                if i < len(bad) - 1:
                    print(f"anasim devices: error: {msg}", file=sys.stderr)
            raise AnasimError(bad[-1])
        return 0

    return run


# --- lipschitz ------------------------------------------------------------------

class _Bar:
    """A tqdm bar on stderr whose ``step(label)`` advances it and names the step done."""

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, unit="step", dynamic_ncols=True)

    def step(self, label: str) -> None:
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _progress(total: int, desc: str) -> _Bar | None:
    """A progress bar when stderr is a terminal (never in a pipe, a log or a test)."""
    return _Bar(total, desc) if sys.stderr.isatty() else None


def _add_lipschitz(sub) -> Callable:
    p = sub.add_parser(
        "lipschitz", help="Lipschitz bounds and empirical estimate of a circuit",
        description="Build the circuit on its device profile and print, for the chip as built "
                    "(effective() matrices): the linearized bound (Høier et al. eq. 17), the "
                    "general proximal bound 1/(1 - λmax(sym W)), and an empirical estimate "
                    "from relaxed equilibria (random pairs plus gradient ascent). With "
                    "--trained, the chip a training run left behind instead of a fresh one.")
    p.add_argument("circuit", help="circuit spec (TOML)")
    p.add_argument("--trained", metavar="RUN",
                   help="a training run's result file (run.nc; its checkpoint run.ckpt.h5 is read) "
                        "or checkpoint: analyse the trained chip (the spec and device it was trained on)")
    p.add_argument("--device", help="device profile (TOML); default: the spec's own or ideal")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, fabrication and pairs (default 0)")
    p.add_argument("--pairs", type=int, default=16,
                   help="random input pairs of the empirical estimate (default 16; 0 = bounds only)")
    p.add_argument("--ascent-steps", type=int, default=10,
                   help="gradient-ascent steps of the adversarial search (default 10; 0 = off)")
    p.add_argument("--data", metavar="SOURCE", default=None,
                   help="draw the empirical estimate's pairs around test images of this dataset "
                        "(IDX directory, 'debian' or 'subset', as for train) instead of uniform "
                        "[0, 1] inputs")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def run(args) -> int:
        import jax

        from anasim.analysis.lipschitz import empirical_steps, lipschitz_report
        from anasim.circuits import load_circuit
        from anasim.circuits.engine import engine_for
        from anasim.learning import load_train_config, trained_chip
        from anasim.learning.command import load_profile_for
        from anasim.tables import read_tables

        if args.pairs < 0:
            raise AnasimError(f"--pairs must be ≥ 0, got {args.pairs}")
        if args.ascent_steps < 0:
            raise AnasimError(f"--ascent-steps must be ≥ 0, got {args.ascent_steps}")
        spec = load_circuit(args.circuit)
        tables, _ = read_tables(args.circuit)
        # the spec's [training] table is refused here as `train` refuses it
        load_train_config(tables, where=spec.source or args.circuit)
        engine = engine_for(spec, tables)
        profile = load_profile_for(spec, args.device)
        k_w, k_hw, k_pairs = jax.random.split(jax.random.key(args.seed), 3)
        if args.trained:
            epoch, hw = trained_chip(args.trained, spec, profile, engine)
            from anasim.learning.checkpoint import checkpoint_path, checkpoint_position

            run = pathlib.Path(args.trained)
            step = checkpoint_position(run if run.name.endswith(".ckpt.h5") else checkpoint_path(run)).step
            # a checkpoint written inside an epoch holds the chip after `step` more steps
            state = f"trained {epoch} epochs" + (f" and {step} steps" if step else "") + f" ({args.trained})"
        else:
            params = engine.init_params(spec, k_w)
            hw = engine.build(spec, profile, params, k_hw)
            epoch, state = 0, f"untrained (seed {args.seed})"
        x = None
        if args.data is not None:
            from anasim.data import load_fashion_mnist

            test = load_fashion_mnist(args.data)[1]
            if test.x.shape[1] != spec.n_in:
                raise AnasimError(f"--data {args.data}: images have {test.x.shape[1]} pixels, "
                                  f"{args.circuit} takes {spec.n_in} inputs")
            x = test.x
        bar = _progress(empirical_steps(args.pairs, args.ascent_steps), "lipschitz")
        try:
            rep = lipschitz_report(spec, hw, k_pairs, x=x, n_pairs=args.pairs, ascent_steps=args.ascent_steps,
                                   step=bar.step if bar else None)
        finally:
            if bar:
                bar.close()
        rep["seed"] = args.seed
        rep["inputs"] = "uniform [0, 1]" if x is None else f"test images ({test.source})"
        rep["trained_epochs"] = epoch
        if args.json:
            _print_json(rep)
            return 0
        lin, gen, emp = rep["linearized"], rep["general"], rep["empirical"]
        sizes = "-".join(str(n) for n in rep["sizes"])
        print(f"circuit {rep['circuit']} ({sizes}, lam={rep['lam']}) on device {rep['device']}, "
              f"{state}, effective weights")
        print(f"  linearized  hidden  ||(I-W)^-1||             {lin['hidden']:.6f}")
        print(f"  linearized  output  ||E_L (I-W)^-1 E_1 th0|| {lin['output']:.6f}")
        held = "holds" if gen["margin"] > 0 else "does not hold"
        print(f"  general     lam_max(sym W) = {gen['lam_max_sym']:.6f}, margin {gen['margin']:.6f} ({held})")
        print(f"  general     bound vs current {gen['current']:.6f}, vs input {gen['input']:.6f}")
        if emp is not None:
            print(f"  empirical   pairs around {rep['inputs']}")
            print(f"  empirical   hidden {emp['hidden']:.6f} (random pairs {emp['hidden_random']:.6f}), "
                  f"output {emp['output']:.6g}; {emp['n_pairs']} pairs, residual <= {emp['max_residual']:.1e}")
        return 0

    return run


# --- op -------------------------------------------------------------------------

def _add_op(sub) -> Callable:
    p = sub.add_parser("op", help="DC operating point of a SPICE-subset netlist")
    p.add_argument("netlist", help="netlist file (.cir): R, C, D with .model, V, I, G, .end")
    p.add_argument("--json", action="store_true", help='print {"node": volts, ...}')
    p.add_argument("--method", choices=("auto", "dense", "sparse"), default="auto",
                   help="linear solver: dense (JAX) or sparse (scipy); auto picks sparse above 300 unknowns")
    p.add_argument("--max-iter", type=int, default=100, help="Newton iteration budget (default 100)")

    def run(args) -> int:
        from anasim.nodal import Circuit, read_netlist, solve_op  # loaded on use: the CLI starts quickly

        if args.max_iter < 1:
            raise AnasimError(f"--max-iter must be ≥ 1, got {args.max_iter}")
        circuit = Circuit.from_netlist(read_netlist(args.netlist))
        method = args.method
        if method == "auto":
            method = "sparse" if circuit.layout.size > 300 else "dense"
        op = solve_op(circuit, method=method, max_iter=args.max_iter)
        volts = op.as_dict()
        if args.json:
            _print_json(volts)
        else:
            width = max([4] + [len(n) for n in volts])
            print(f"DC operating point of {args.netlist} ({len(volts)} nodes, "
                  f"{int(op.iterations)} Newton iterations, max KCL residual {float(op.residual):.2e} A)")
            print(f"{'node':<{width}}  volts")
            for name, v in volts.items():
                print(f"{name:<{width}}  {v: .12g}")
        return 0

    return run


# --- train ----------------------------------------------------------------------

def _add_train(sub) -> Callable:
    p = sub.add_parser(
        "train", help="on-device training of a Hopfield circuit", epilog=_EPILOG,
        description="Train a circuit on its device with a local rule. Every step is watched: "
                    "non-finite values, most units saturated, most relaxations unsettled or a loss "
                    "grown by orders of magnitude stop the run (exit 3) after writing the last good "
                    "checkpoint, with one line naming the step, the cause and a hint.")
    p.add_argument("--circuit", required=True, help="circuit spec (TOML)")
    p.add_argument("--device", help="device profile (TOML); default: the spec's own, else ideal")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the spec's [training])")
    p.add_argument("--out", default="run.nc",
                   help="result file (netCDF), rewritten after every epoch; one that already holds a run "
                        "needs --resume or --overwrite, and a file that is not an anasim run is never replaced")
    p.add_argument("--plot", default=None, help="also write learning curves to this PNG")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint next to --out; with --epochs beyond the run's, extend it "
                        "(the learning-rate schedule starts afresh over the added epochs)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again over the run that --out holds "
                        "(its files are replaced at the new run's first checkpoint)")
    p.add_argument("--keep-going", action="store_true",
                   help="do not stop when the divergence watch trips: warn once per epoch and record the "
                        "tripped steps (diverged_steps) in the result (training.keep_going)")
    p.add_argument("--checkpoint-every-steps", type=int, default=None, metavar="N",
                   help="also write the checkpoint inside an epoch every N steps "
                        "(training.checkpoint_every_steps; default 0: not by count)")
    p.add_argument("--checkpoint-every-s", type=float, default=None, metavar="S",
                   help="... and after the first step S seconds after the last one "
                        "(training.checkpoint_every_s; default 60, 0: not by time)")
    p.add_argument("--rule", default=None,
                   help="dyadic | ep-centered | ep-positive | ep-negative | cl | cpl-p | cpl-n | cpl-c")
    p.add_argument("--beta", type=float, default=None, help="nudge strength β")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--train-size", type=int, default=None, help="use the first N training examples (0: all)")
    p.add_argument("--test-size", type=int, default=None, help="use the first N test examples (0: all)")
    p.add_argument("--data", default=None,
                   help="IDX directory, 'debian' or 'subset' (default: Debian package, else shipped subset)")
    p.add_argument("--write-mode", default=None, help="shadow | in-situ")
    p.add_argument("--phases", default=None, help="sequential | twin")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def run(args) -> int:
        import math

        from anasim.outputs import check_writable, claim_run, sibling_checkpoint

        for name in ("lr", "beta"):
            v = getattr(args, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise AnasimError(f"--{name}: expected a finite number > 0, got {v}")
        # every output before any work (and before the numerical libraries load)
        check_writable(args.out, "--out")
        if args.plot:
            check_writable(args.plot, "--plot")
        claim_run(args.out, "train", [sibling_checkpoint(args.out)], resume=args.resume, overwrite=args.overwrite)
        from anasim.learning.command import run_train

        return run_train(args)

    return run


# --- sweep ----------------------------------------------------------------------

def _add_sweep(sub) -> Callable:
    p = sub.add_parser(
        "sweep",
        help="robustness study: sweep device/circuit/rule parameters", epilog=_EPILOG,
        description=(
            "Run every point of a sweep spec (TOML) that the result's point store does not "
            "hold yet; a killed sweep resumes where it stopped (--resume). Results: one xarray Dataset "
            "(netCDF) with a dimension per swept parameter."
        ),
    )
    p.add_argument("spec", help="sweep spec (TOML)")
    p.add_argument("--out", default=None,
                   help="result file (netCDF); default: the spec's `out` or SPEC-STEM.nc. One that already holds "
                        "a sweep needs --resume or --overwrite; a file that is not an anasim run is never replaced")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep that --out holds: compute only the points its store lacks")
    p.add_argument("--overwrite", action="store_true",
                   help="start again: remove the point store of the sweep that --out holds")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (1: in-process loop; N: local dask cluster)")
    p.add_argument("--scheduler", default=None, help="address of an existing dask.distributed scheduler (tcp://host:port)")
    p.add_argument("--dry-run", action="store_true", help="validate the spec and list the points, compute nothing")
    p.add_argument("--plot", default=None, help="also write the standard plots (PNG path prefix)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def run(args) -> int:
        from pathlib import Path

        from anasim.study import load_sweep, run_sweep, store_path
        from anasim.study.store import PointStore

        if args.workers < 1:
            raise AnasimError(f"--workers: expected an integer >= 1, got {args.workers}")
        from anasim.outputs import check_writable, claim_run

        spec = load_sweep(args.spec)
        out = args.out or spec.out or (Path(args.spec).stem + ".nc")
        if not args.dry_run:
            check_writable(out, "--out")
            if args.plot:
                check_writable(str(args.plot) + "_x.png", "--plot")
            claim_run(out, "sweep", [store_path(out)], resume=args.resume, overwrite=args.overwrite)
        if args.dry_run:
            have = PointStore(store_path(out)).keys()
            from anasim.study.registry import get_measurement
            from anasim.study.store import point_key

            mkey = [(m.name, m.version) for m in map(get_measurement, spec.measurements)]
            n_done = sum(point_key(mkey, spec.point_config(pt)) in have for pt in spec.points())
            info = {
                "spec": args.spec, "out": str(out), "measurements": list(spec.measurements),
                "dims": dict(zip(spec.dims, spec.shape)), "points": len(spec), "done": n_done,
                "axes": {a.dim: list(a.values) for a in spec.axes},
            }
            if args.json:
                _print_json(info)
            else:
                print(f"{args.spec}: valid; {len(spec)} points ({n_done} already in {out}.points)")
                for a in spec.axes:
                    print(f"  {a.dim:<24} {len(a.values):>3} values: {', '.join(map(str, a.values))}")
            return 0
        res = run_sweep(spec, out, workers=args.workers, scheduler=args.scheduler, progress=not args.json)
        plots = []
        if args.plot:
            from anasim.study.plots import report_sweep

            plots = [str(x) for x in report_sweep(res.dataset, args.plot)]
        ds = res.dataset
        info = {
            "out": res.out, "points": res.points, "computed": res.computed, "reused": res.reused,
            "wall_s": round(res.wall_s, 3), "workers": res.workers, "scheduler": res.scheduler,
            "dims": {d: int(ds.sizes[d]) for d in ds.dims}, "variables": sorted(ds.data_vars),
            "plots": plots,
        }
        if args.json:
            _print_json(info)
        else:
            print(
                f"{res.out}: {res.points} points ({res.computed} computed, {res.reused} reused) "
                f"in {res.wall_s:.1f} s"
            )
            print("  dims: " + ", ".join(f"{d}={n}" for d, n in info["dims"].items()))
            print("  variables: " + ", ".join(info["variables"]))
            for pth in plots:
                print(f"  plot: {pth}")
        return 0

    return run


# --- report ---------------------------------------------------------------------

def _add_report(sub) -> Callable:
    p = sub.add_parser("report", help="plots from a result file", epilog=_EPILOG)
    p.add_argument("result", help="result file (.nc) from train or sweep")
    p.add_argument("--out", default=None, help="PNG path (default: next to the result)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def run(args) -> int:
        from anasim.outputs import check_writable
        from anasim.study import is_sweep_file

        if args.out:
            check_writable(args.out, "--out")
        if is_sweep_file(args.result):
            from anasim.study.plots import report_sweep

            paths = [str(p) for p in report_sweep(args.result, args.out)]
            if args.json:
                from anasim.study import open_sweep
                from anasim.study.plots import metric_values, plotted_metrics

                ds = open_sweep(args.result)
                _print_json({"result": args.result, "kind": "sweep", "plots": paths,
                             "metrics": {m: metric_values(ds[m]) for m in plotted_metrics(ds)}})
            else:
                print("\n".join(f"wrote {p}" for p in paths))
            return 0
        from anasim.learning.command import run_report

        return run_report(args)

    return run


_SUBCOMMANDS = (_add_devices, _add_lipschitz, _add_op, _add_train, _add_sweep, _add_report)


def _version() -> str:
    from anasim import __version__

    return __version__


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    parser = _Parser(
        prog="anasim", description="Simulator of analog and optical learning hardware.", epilog=_EPILOG
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for add in _SUBCOMMANDS:
        before = set(sub.choices)
        run = add(sub)
        (name,) = set(sub.choices) - before
        runners[name] = run
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(runners[args.command](args) or 0)
        sys.stdout.flush()   # here, not at exit: a closed pipe is handled below
        return code
    except AnasimError as err:
        print(f"anasim {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code if isinstance(err, RunFailed) else 2
    except BrokenPipeError:
        # the reader (`| head`) went away: end quietly, as a Unix filter does
        try:   # Python's flush at exit must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except KeyboardInterrupt:
        print(f"anasim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
