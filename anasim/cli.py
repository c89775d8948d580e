"""The ``anasim`` command.

Each subcommand has ``--help``; output is for humans by default and JSON with
``--json``. Errors caused by the user's input print one line to stderr and exit
with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from anasim.errors import AnasimError


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


# --- devices --------------------------------------------------------------------

def _add_devices(sub) -> Callable:
    p = sub.add_parser("devices", help="list and validate device profiles")
    p.add_argument("paths", nargs="*", help="profile files or folders (default: devices/)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def run(args) -> int:
        raise AnasimError("anasim devices: not available yet")

    return run


# --- lipschitz ------------------------------------------------------------------

def _add_lipschitz(sub) -> Callable:
    p = sub.add_parser("lipschitz", help="Lipschitz bounds and empirical estimate of a circuit")
    p.add_argument("circuit", help="circuit spec (TOML)")
    p.add_argument("--device", help="device profile (TOML); default: the spec's own or ideal")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def run(args) -> int:
        raise AnasimError("anasim lipschitz: not available yet")

    return run


# --- op -------------------------------------------------------------------------

def _add_op(sub) -> Callable:
    p = sub.add_parser("op", help="DC operating point of a SPICE-subset netlist")
    p.add_argument("netlist", help="netlist file (.cir)")
    p.add_argument("--json", action="store_true", help='print {"node": volts, ...}')

    def run(args) -> int:
        raise AnasimError("anasim op: not available yet")

    return run


# --- train ----------------------------------------------------------------------

def _add_train(sub) -> Callable:
    p = sub.add_parser("train", help="on-device training of a Hopfield circuit")
    p.add_argument("--circuit", required=True, help="circuit spec (TOML)")
    p.add_argument("--device", help="device profile (TOML)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--out", default="run.nc", help="result file (netCDF)")
    p.add_argument("--plot", default=None, help="also write learning curves to this PNG")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint next to --out")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def run(args) -> int:
        raise AnasimError("anasim train: not available yet")

    return run


# --- report ---------------------------------------------------------------------

def _add_report(sub) -> Callable:
    p = sub.add_parser("report", help="plots from a result file")
    p.add_argument("result", help="result file (.nc) from train or sweep")
    p.add_argument("--out", default=None, help="PNG path (default: next to the result)")

    def run(args) -> int:
        raise AnasimError("anasim report: not available yet")

    return run


_SUBCOMMANDS = (_add_devices, _add_lipschitz, _add_op, _add_train, _add_report)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    parser = argparse.ArgumentParser(
        prog="anasim", description="Simulator of analog and optical learning hardware."
    )
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
        return int(runners[args.command](args) or 0)
    except AnasimError as err:
        print(f"anasim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"anasim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
