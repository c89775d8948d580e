"""Shared test configuration and fixtures.

Hypothesis runs without per-example deadlines: the first call of a jitted
function compiles, which says nothing about the code under test.

Fixtures: ``repo_root`` (the repository, for its circuits/ and devices/
files) and ``subset`` (the shipped Fashion-MNIST subset as (train, test)
splits, read once per session).
"""

from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("anasim", deadline=None, print_blob=True)
settings.load_profile("anasim")

#: The repository root (tests/..): where circuits/, devices/ and data/ live.
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def subset():
    """The shipped subset (2000 training, 500 test images) as (train, test) splits."""
    from anasim.data import load_fashion_mnist

    return load_fashion_mnist("subset")
