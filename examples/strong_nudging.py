"""The strong-nudging experiment of Høier et al. ("Dyadic learning in recurrent
and feedforward models"): the nudge strength β grows by 0.05 after every epoch,
far beyond the weak-nudging regime where the dyadic update equals the gradient,
for the skew-symmetric, feedforward and symmetric 4×500 networks.

Full run: ``python examples/strong_nudging.py``; check: ``--quick``.
It is :mod:`dyadic_table1` with ``--beta-growth 0.05`` on the ideal profile; ``--beta-growth 0``
gives the constant-β rows. Writes ``examples/results/strong_nudging[_quick].json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dyadic_table1  # noqa: E402


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = ["--beta-growth", "0.05", "--devices", "ideal", "--out-dir", "out/strong_nudging"]
    given = {a for a in argv if a.startswith("--")}
    extra = []
    for i in range(0, len(defaults), 2):
        if defaults[i] not in given:
            extra += defaults[i:i + 2]
    return dyadic_table1.main(extra + argv, results="strong_nudging")


if __name__ == "__main__":
    raise SystemExit(main())
