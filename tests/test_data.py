"""IDX loader and the shipped Fashion-MNIST subset."""

import gzip
import hashlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anasim.data import (
    DEBIAN_DIR,
    SHIPPED_DIR,
    balanced_first_indices,
    load_fashion_mnist,
    load_split,
    read_idx,
    write_idx,
)
from anasim.errors import AnasimError


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.booleans(), st.integers(0, 2**31 - 1))
def test_idx_roundtrip_gzip_and_raw(tmp_path_factory, shape, gz, seed):
    arr = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(path, arr)
    if not gz:  # decompress to a raw IDX file: the loader must sniff, not trust the name
        path.write_bytes(gzip.decompress(path.read_bytes()))
    out = read_idx(path)
    assert out.shape == arr.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


def test_idx_header_is_big_endian_by_hand(tmp_path):
    # Hand-built file: magic 0x00000801 (ubyte, 1 dim), size 3, data 7 8 9.
    p = tmp_path / "lab"
    p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    np.testing.assert_array_equal(read_idx(p), [7, 8, 9])


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x01\x02\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x05", "declares shape"),
        (b"\x00\x00", "magic"),
    ],
)
def test_bad_idx_names_file(tmp_path, payload, message):
    p = tmp_path / "broken-idx1-ubyte"
    p.write_bytes(payload)
    with pytest.raises(AnasimError, match=message) as err:
        read_idx(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(AnasimError, match="no such dataset directory"):
        load_split(tmp_path / "nope")
    with pytest.raises(AnasimError, match="train-images-idx3-ubyte"):
        load_split(tmp_path)


def test_shipped_subset_is_balanced_and_normalized():
    train, test = load_fashion_mnist("subset")
    assert train.x.shape == (2000, 784) and test.x.shape == (500, 784)
    np.testing.assert_array_equal(np.bincount(train.y, minlength=10), np.full(10, 200))
    np.testing.assert_array_equal(np.bincount(test.y, minlength=10), np.full(10, 50))
    assert train.x.dtype == np.float32 and train.x.min() == 0.0 and train.x.max() == 1.0


def test_shipped_hashes_match_provenance():
    readme = (SHIPPED_DIR.parent / "README.md").read_text()
    for f in SHIPPED_DIR.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert re.search(rf"{re.escape(f.name)} \| {digest}", readme), f.name


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_subset_follows_documented_rule_from_debian_files():
    full_train, full_test = load_fashion_mnist("debian")
    sub_train, sub_test = load_fashion_mnist("subset")
    for full, sub, k in ((full_train, sub_train, 200), (full_test, sub_test, 50)):
        # Independent restatement of the rule: walk the file, keep a class while it has < k.
        counts, keep = np.zeros(10, int), []
        for i, c in enumerate(full.y):
            if counts[c] < k:
                counts[c] += 1
                keep.append(i)
            if counts.min() == k:
                break
        np.testing.assert_array_equal(balanced_first_indices(full.y, k), keep)
        np.testing.assert_array_equal(sub.x, full.x[keep])
        np.testing.assert_array_equal(sub.y, full.y[keep])


def test_mnist_style_names_load(tmp_path):
    # MNIST uses the same IDX names; a user directory with raw (ungzipped) files works.
    rng = np.random.default_rng(0)
    for stem, arr in (("train-images-idx3-ubyte", rng.integers(0, 256, (6, 28, 28))),
                      ("train-labels-idx1-ubyte", np.arange(6) % 10)):
        write_idx(tmp_path / "tmp.gz", arr)
        (tmp_path / stem).write_bytes(gzip.decompress((tmp_path / "tmp.gz").read_bytes()))
    split = load_split(tmp_path, "train")
    assert split.x.shape == (6, 784) and split.y.tolist() == [0, 1, 2, 3, 4, 5]
