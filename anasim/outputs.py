"""Output paths of the commands, checked before any work.

:func:`check_writable` refuses, with one line naming the path, an output that
could not be written: a directory where a file is needed, a path under a
regular file, a folder that cannot be created or written in.
:func:`claim_run` protects finished work: an ``--out`` that already holds a
run is only continued (``--resume``) or replaced (``--overwrite``) when asked,
and a file that is not an anasim run is never replaced; the temporary files
an interrupted write of the run left next to its files are removed
(:func:`remove_stale_temporaries`) when the run starts again. Every result,
checkpoint and sweep point is written by :func:`atomic_write`, whose temporary
names carry the writer's process id.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from anasim.errors import AnasimError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, fsync: bool = False) -> None:
    """``write(tmp)`` to ``.NAME.<pid>.<random>.tmp`` next to ``path``, then rename it
    over ``path`` (atomic on POSIX): a reader sees the old file or the new one, never
    a torn one. ``fsync``: flush the file to disk before the rename. The temporary
    file is removed if the write fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_writable(path: str | os.PathLike, flag: str) -> Path:
    """Raise an :class:`AnasimError` naming ``path`` (given as ``flag``) unless a file can be written there."""
    p = Path(path)
    if p.is_dir():
        raise AnasimError(f"{flag} {p}: is a directory, a file path is needed")
    if p.exists() and not os.access(p, os.W_OK):
        raise AnasimError(f"{flag} {p}: file is not writable")
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise AnasimError(f"{flag} {p}: {parent} is a file, not a directory")
    try:  # the real test (os.access says yes to root even where the file system refuses)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise AnasimError(f"{flag} {p}: cannot write in directory {parent} ({err.strerror or err})") from None
    return p


def sibling_checkpoint(out: str | os.PathLike) -> Path:
    """The checkpoint next to a training result file: ``run.nc`` → ``run.ckpt.h5``."""
    out = Path(out)
    return out.with_name(out.stem + ".ckpt.h5")


def _kind(path: Path) -> str | None:
    """The ``anasim.kind`` of a result file ("train", "sweep"), or None if it is not an anasim result."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("anasim.kind", f.attrs.get("anasim_kind"))
    except Exception:  # noqa: BLE001 -- anything unreadable is not an anasim run
        return None
    if isinstance(kind, bytes):
        kind = kind.decode()
    return str(kind) if kind is not None else None


def claim_run(out: str | os.PathLike, kind: str, companions: list[Path], *, resume: bool,
              overwrite: bool) -> None:
    """Check that a ``kind`` run ("train" or "sweep") may write ``out`` (and its
    ``companions``: checkpoint, point store).

    An existing ``out`` that is not an anasim result is refused in every case; one
    that holds a run (or companions that do) needs ``resume`` or ``overwrite``.
    With ``overwrite`` the companions of a sweep (its point store) are removed, so
    the sweep starts again; a training run replaces its files when it writes its first checkpoint.
    """
    if resume and overwrite:
        raise AnasimError("--resume and --overwrite exclude each other")
    out = Path(out)
    held = None
    if out.exists():
        if out.is_dir():
            raise AnasimError(f"--out {out}: is a directory, a file path is needed")
        found = _kind(out)
        if found not in ("train", "sweep"):
            raise AnasimError(f"--out {out}: exists and is not an anasim run; it is never overwritten "
                              f"(choose another --out)")
        if resume and found != kind:
            raise AnasimError(f"--resume: {out} holds a {found} run, not a {kind} run")
        held = out
    for c in companions:
        if c.exists() and held is None:
            held = c
    if held is None or resume:
        remove_stale_temporaries(out, companions)
        return
    if not overwrite:
        what = f"--out {out}" if held == out else f"--out {out}: {held}"
        raise AnasimError(f"{what} already holds a run; pass --resume to continue it "
                          f"or --overwrite to start again")
    for c in companions:
        if c.is_dir() and kind == "sweep":
            if any(f.suffix not in (".h5", ".tmp") for f in c.iterdir()):
                raise AnasimError(f"--overwrite: {c} holds files that are not sweep points; "
                                  f"remove it by hand")
            shutil.rmtree(c)
    remove_stale_temporaries(out, companions)


_PID = re.compile(r"\.tmp(\d+)$|\.(\d+)\.[^.]*\.tmp$")


def _writer_alive(name: str) -> bool:
    """Whether the process whose pid a temporary file's name carries still runs here
    (:func:`atomic_write`'s ``.NAME.<pid>.<random>.tmp``, or the ``.NAME.tmp<pid>``
    of earlier versions); a name without one: no."""
    m = _PID.search(name)
    if not m:
        return False
    pid = int(m.group(1) or m.group(2))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True   # exists (another user's) or cannot tell: leave it
    return True


def stale_temporaries(out: str | os.PathLike, companions: list[Path] = ()) -> list[Path]:
    """Temporary files an interrupted write of this run left behind: the atomic
    writer's ``.NAME.<pid>.<random>.tmp`` (or an earlier version's ``.NAME.tmp<pid>``) next to ``out`` and
    each companion file, and the ``.*.tmp`` inside a companion folder (a sweep's point
    store), whose writing process no longer runs (processes sharing a point store
    keep their writes in flight)."""
    found: list[Path] = []
    for p in [Path(out), *map(Path, companions)]:
        parent = p.absolute().parent
        if parent.is_dir():
            found += [f for f in parent.glob(f".{glob.escape(p.name)}.*")
                      if f.is_file() and (f.name.endswith(".tmp") or ".tmp" in f.name[len(p.name) + 1:])]
        if p.is_dir():
            found += [f for f in p.glob(".*.tmp") if f.is_file()]
    return sorted(f for f in set(found) if not _writer_alive(f.name))


def remove_stale_temporaries(out: str | os.PathLike, companions: list[Path] = ()) -> list[Path]:
    """Remove :func:`stale_temporaries` (a run starting again over ``out`` owns them:
    one run writes an ``--out`` at a time); returns the paths removed."""
    removed = []
    for f in stale_temporaries(out, companions):
        try:
            f.unlink()
            removed.append(f)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise AnasimError(f"{f}: cannot remove this temporary file of an interrupted write "
                              f"({err.strerror or err}); remove it by hand") from None
    return removed


__all__ = ["check_writable", "claim_run", "remove_stale_temporaries", "sibling_checkpoint", "stale_temporaries"]
