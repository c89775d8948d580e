"""A thin runner for the ngspice binary (the reference the nodal solver is tested against).

ngspice runs in batch mode on a driver file whose ``.control`` block sources
each netlist in turn, runs ``op`` (or ``noise``), prints every node voltage with
15 significant digits and removes the circuit: many circuits in one process,
so the ~10 ms process start is paid once. Per docs/design.md, “Facts of the development machine”: ``op`` inside
``.control`` and ``set numdgt=15``; the netlists carry tight tolerances
(:func:`~anasim.nodal.netlist.format_netlist` with ``tight=True``).

Raises :class:`~anasim.errors.AnasimError` with one line when ngspice is not
installed or a circuit fails in it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from anasim.errors import AnasimError
from anasim.nodal.netlist import Netlist, format_netlist

_MARK = "anasim-result"
_LINE = re.compile(r"^\s*(\S+)\s*=\s*([-+0-9.eE]+|nan|inf)\s*$")


def ngspice_path() -> str:
    """The ngspice executable (``$ANASIM_NGSPICE`` or ``ngspice`` on PATH)."""
    exe = os.environ.get("ANASIM_NGSPICE") or shutil.which("ngspice")
    if not exe:
        raise AnasimError("ngspice not found: install it (apt-get install ngspice) or set ANASIM_NGSPICE")
    return exe


def available() -> bool:
    try:
        ngspice_path()
        return True
    except AnasimError:
        return False


def _run(driver_text: str, workdir: Path, timeout: float) -> str:
    drv = workdir / "driver.cir"
    drv.write_text(driver_text)
    try:
        proc = subprocess.run([ngspice_path(), "-b", str(drv)], capture_output=True, text=True,
                              timeout=timeout, cwd=workdir)
    except subprocess.TimeoutExpired:
        raise AnasimError(f"ngspice: timed out after {timeout} s") from None
    return proc.stdout + "\n" + proc.stderr


def _collect(out: str, count: int, what: str) -> list[dict[str, float]]:
    results: list[dict[str, float] | None] = [None] * count
    current: dict[str, float] | None = None
    idx = -1
    for line in out.splitlines():
        s = line.strip()
        if s.startswith(_MARK):
            idx = int(s.split()[1])
            current = {}
            results[idx] = current
            continue
        if current is None:
            continue
        m = _LINE.match(s)
        if m:
            current[m.group(1).lower()] = float(m.group(2))
    missing = [i for i, r in enumerate(results) if not r]
    if missing:
        tail = " | ".join(l.strip() for l in out.splitlines() if "rror" in l)[:300]
        raise AnasimError(f"ngspice: {what} produced no result for circuit {missing[0]}"
                          + (f" ({tail})" if tail else ""))
    return results  # type: ignore[return-value]


def run_op(netlists: Sequence[Netlist | str], timeout: float = 600.0) -> list[dict[str, float]]:
    """DC operating points from ngspice: one dict {node: volts, "vx#branch": amps} per netlist.

    Netlists may be :class:`Netlist` objects (written with tight options) or
    netlist text (used as is; it must not contain a ``.control`` block).
    """
    with tempfile.TemporaryDirectory(prefix="anasim-ngspice-") as tmp:
        work = Path(tmp)
        lines = ["* anasim ngspice driver", ".control", "set numdgt=15"]
        for k, net in enumerate(netlists):
            text = format_netlist(net) if isinstance(net, Netlist) else str(net)
            path = work / f"c{k}.cir"
            path.write_text(text)
            lines += [f"source {path}", "op", f"echo {_MARK} {k}", "print all", "destroy all", "remcirc"]
        lines += [".endc", ".end"]
        out = _run("\n".join(lines) + "\n", work, timeout)
    return _collect(out, len(netlists), "op")


def run_noise(netlist: Netlist | str, output: str, source: str, frequency_hz: float = 1.0,
              timeout: float = 60.0) -> float:
    """ngspice ``.noise`` output noise density at node ``output`` (V/√Hz) at one frequency.

    ``source`` is the name of an independent source (the input reference; it
    does not change the output noise).
    """
    with tempfile.TemporaryDirectory(prefix="anasim-ngspice-") as tmp:
        work = Path(tmp)
        text = format_netlist(netlist) if isinstance(netlist, Netlist) else str(netlist)
        path = work / "c0.cir"
        path.write_text(text)
        f = repr(float(frequency_hz))
        lines = ["* anasim ngspice noise driver", ".control", "set numdgt=15", f"source {path}",
                 f"noise v({output}) {source} lin 1 {f} {f}", "setplot noise1",
                 f"echo {_MARK} 0", "print onoise_spectrum", ".endc", ".end"]
        out = _run("\n".join(lines) + "\n", work, timeout)
    res = _collect(out, 1, "noise")[0]
    for k, v in res.items():
        if k.startswith("onoise_spectrum"):
            return v
    raise AnasimError("ngspice: noise analysis printed no onoise_spectrum")
