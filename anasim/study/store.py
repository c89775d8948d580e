"""The per-point result store that makes sweeps resumable.

Each finished point is one small HDF5 file ``<key>.h5`` in a directory next to
the result (``study.nc`` → ``study.nc.points/``). A point file is written under a
temporary name and moved into place with ``os.replace`` — atomic on POSIX — so a
sweep killed at any moment leaves either a complete point or none. (One HDF5
file holding all points would not have this property: a process killed inside
an HDF5 write can leave the whole file unreadable.)

A point's key is a hash of its full resolved configuration and of the names and
versions of its measurements. A resumed sweep therefore recomputes exactly the
points whose key has no file, and a point whose configuration changed (an edited
profile file, another fixed value) is a new point, never a stale reuse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from anasim.outputs import atomic_write


def point_key(measurements: list[tuple[str, int]], config: Mapping) -> str:
    """Deterministic identity of one point: sha256 of its canonical JSON, 24 hex digits."""
    blob = json.dumps({"measurements": measurements, "config": config}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class PointStore:
    """A directory of finished points, one atomically written HDF5 file each."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _file(self, key: str) -> Path:
        return self.path / f"{key}.h5"

    def has(self, key: str) -> bool:
        return self._file(key).is_file()

    def keys(self) -> set[str]:
        if not self.path.is_dir():
            return set()
        return {p.stem for p in self.path.glob("*.h5")}

    def write(self, key: str, config: Mapping, outputs: Mapping[str, np.ndarray], meta: Mapping | None = None) -> None:
        """Store one point atomically (temporary file, fsync, rename)."""
        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.attrs["config"] = json.dumps(config, sort_keys=True)
                f.attrs["meta"] = json.dumps(dict(meta or {}), sort_keys=True)
                for name, arr in outputs.items():
                    f.create_dataset(name, data=np.asarray(arr, dtype=np.float64))

        atomic_write(self._file(key), write, fsync=True)

    def read(self, key: str) -> dict[str, np.ndarray]:
        with h5py.File(self._file(key), "r") as f:
            return {name: np.asarray(f[name][()]) for name in f.keys()}

    def read_meta(self, key: str) -> dict:
        with h5py.File(self._file(key), "r") as f:
            return json.loads(f.attrs["meta"])
