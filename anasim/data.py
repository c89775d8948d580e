"""Datasets: Fashion-MNIST (and MNIST) in IDX format, plus the shipped subset.

The IDX format (LeCun et al.) is a big-endian header -- two zero bytes, a type
code (0x08 = unsigned byte), the number of dimensions -- followed by one 32-bit
size per dimension and the raw data. Images are ``idx3`` (N, 28, 28) and labels
``idx1`` (N,). Files may be gzip-compressed (``.gz``) or raw.

Where the data come from, in the order :func:`load_fashion_mnist` tries them
with ``source=None``:

1. ``/usr/share/datasets/fashion-mnist`` -- the Debian package
   ``dataset-fashion-mnist`` (60000 train + 10000 test images);
2. the deterministic subset shipped in the repository's ``data/`` folder
   (2000 train + 500 test images, class-balanced; provenance in
   ``data/README.md``).

A directory given explicitly (``source="/path"``) is read with the same file
names; MNIST IDX files (same names without the ``fashion`` prefix) work too.

Images are returned flattened to rows of 784 values normalized to [0, 1]
(pixel / 255), dtype float32; labels as int32 class indices 0..9.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anasim.errors import AnasimError

#: Where the Debian package ``dataset-fashion-mnist`` installs the IDX files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The shipped subset (repository folder ``data/``).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "fashion-mnist-subset"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type codes -> numpy big-endian dtypes.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Fashion-MNIST class names, index = label.
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a classification dataset.

    ``x``: images as rows, shape (n, 784), float32 in [0, 1];
    ``y``: labels, shape (n,), int32 in 0..9; ``source``: where it was read;
    ``classes``: the dataset's number of classes as declared (10 for an IDX
    dataset read here), None where unknown (then the labels present tell:
    the largest + 1, which a split missing its last class under-counts).
    """

    x: np.ndarray
    y: np.ndarray
    source: str
    classes: int | None = None

    def head(self, n: int) -> Split:
        """The first ``n`` examples (the declared classes kept)."""
        return Split(self.x[:n], self.y[:n], self.source, self.classes)

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _open(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a numpy array of its declared shape.

    Raises :class:`AnasimError` naming the file when the magic number, type
    code or size does not match the IDX format.
    """
    path = Path(path)
    if not path.is_file():
        raise AnasimError(f"{path}: no such IDX file")
    try:
        with _open(path) as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise AnasimError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise AnasimError(f"{path}: not an IDX file (magic number must start with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise AnasimError(f"{path}: unknown IDX type code 0x{code:02x} (expected one of 08 09 0b 0c 0d 0e)")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise AnasimError(f"{path}: IDX header declares {ndim} dimensions but is truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[code]
    body = raw[4 + 4 * ndim:]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(body) != expected:
        raise AnasimError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes) but the file holds {len(body)} bytes"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip IDX file (``path`` should end in ``.gz``).

    The gzip header carries no timestamp or name (``mtime=0``), so the bytes --
    and their sha256 -- depend only on the data.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:
        fh.write(header + array.tobytes())


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise AnasimError(f"{directory}: missing IDX file {stem}[.gz]")


def load_split(directory: str | os.PathLike, split: str = "train") -> Split:
    """Load ``split`` ("train" or "test") from an IDX directory.

    Validates that images are (n, 28, 28) uint8 and labels (n,) in 0..9.
    """
    if split not in _FILES:
        raise AnasimError(f"split: expected 'train' or 'test', got {split!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise AnasimError(f"{directory}: no such dataset directory")
    img_path, lab_path = (_find(directory, stem) for stem in _FILES[split])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise AnasimError(f"{img_path}: expected (n, rows, cols) uint8 images, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise AnasimError(f"{lab_path}: expected {images.shape[0]} labels, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise AnasimError(f"{lab_path}: labels must lie in 0..9")
    x = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255.0)
    return Split(x=x, y=labels.astype(np.int32), source=str(directory), classes=len(CLASSES))


def default_source() -> Path:
    """The Debian directory if installed, else the shipped subset."""
    return DEBIAN_DIR if DEBIAN_DIR.is_dir() else SHIPPED_DIR


def load_fashion_mnist(source: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """(train, test) splits of Fashion-MNIST (or any IDX dataset in ``source``).

    ``source``: ``None`` (Debian package, else shipped subset), ``"subset"``
    (the shipped 2000 + 500 subset), ``"debian"``, or a directory of IDX files.
    """
    if source is None:
        directory = default_source()
    elif str(source) == "subset":
        directory = SHIPPED_DIR
    elif str(source) == "debian":
        directory = DEBIAN_DIR
    else:
        directory = Path(source)
    return load_split(directory, "train"), load_split(directory, "test")


def balanced_first_indices(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The subset selection rule: for each class, the first ``per_class`` indices
    in file order with that label; returned sorted (file order preserved)."""
    labels = np.asarray(labels)
    picked = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)[:per_class]
        if idx.size < per_class:
            raise AnasimError(f"class {c}: only {idx.size} examples, {per_class} requested")
        picked.append(idx)
    return np.sort(np.concatenate(picked))


def make_subset(src: str | os.PathLike, dst: str | os.PathLike, train_per_class: int = 200,
                test_per_class: int = 50) -> dict[str, str]:
    """Write the shipped subset from full IDX files in ``src`` into ``dst``.

    Returns {file name: sha256 hex} of the written files.
    """
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    digests = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        img_stem, lab_stem = _FILES[split]
        images = read_idx(_find(src, img_stem))
        labels = read_idx(_find(src, lab_stem))
        keep = balanced_first_indices(labels, per_class)
        for stem, arr in ((img_stem, images[keep]), (lab_stem, labels[keep])):
            out = dst / (stem + ".gz")
            write_idx(out, arr)
            digests[out.name] = hashlib.sha256(out.read_bytes()).hexdigest()
    return digests


def batches(split: Split, batch_size: int, rng: np.random.Generator | None = None,
            drop_last: bool = False):
    """Yield (x, y) minibatches; shuffled when ``rng`` is given."""
    n = len(split)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for start in range(0, stop, batch_size):
        sel = order[start:start + batch_size]
        yield split.x[sel], split.y[sel]


__all__ = [
    "CLASSES", "DEBIAN_DIR", "SHIPPED_DIR", "Split", "balanced_first_indices", "batches",
    "default_source", "load_fashion_mnist", "load_split", "make_subset", "read_idx", "write_idx",
]
