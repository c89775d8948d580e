"""Lipschitz bounds of the untrained 4×500 networks, for the manual's table.

Runs ``anasim lipschitz CIRCUIT --pairs 0 --json`` (bounds of the chip as
built, seed 0, no empirical estimate) on ``circuits/{skew,ff,sym}-4x500.toml``
and writes ``examples/results/lipschitz_4x500.json`` in the results schema the
manual's tables read (see ``benchmarks/_results.py``).

    python scripts/lipschitz_table.py
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write_table  # noqa: E402

CIRCUITS = ("skew", "ff", "sym")


def report(circuit: str) -> dict:
    cmd = [sys.executable, "-m", "anasim.cli", "lipschitz", f"circuits/{circuit}-4x500.toml", "--pairs", "0",
           "--json"]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def bound(v: float):
    return v if math.isfinite(v) else "none (λ_max ≥ 1)"


def main() -> int:
    reports = {c: report(c) for c in CIRCUITS}
    rows = [[f"{c}-4x500", r["lam"], r["linearized"]["hidden"], r["linearized"]["output"],
             r["general"]["lam_max_sym"], bound(r["general"]["current"])]
            for c, r in reports.items()]
    columns = ["circuit", "λ", "linearized hidden", "linearized output", "λ_max(sym W)", "general bound"]
    write_table("lipschitz_4x500", columns, rows, {
        "title": "Lipschitz bounds of the untrained 4×500 networks (ideal devices, seed 0)",
        "source": "measured by scripts/lipschitz_table.py",
        "command": "python scripts/lipschitz_table.py",
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "notes": "The general bound 1/(1 − λ_max(sym W)) holds only where λ_max(sym W) < 1.",
    }, folder=ROOT / "examples" / "results")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
