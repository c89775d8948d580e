"""Hypothesis strategies for property tests of circuits built on anasim.

Shipped so that users can check their own devices and circuits with the same
properties anasim's tests use (non-expansiveness of skew-symmetric circuits,
the general Lipschitz bound, reductions between structures). Needs the
``hypothesis`` package (the ``test`` extra).

Matrices are float64 numpy arrays drawn from a seed, so shrinking acts on the
seed, size and scale (small, readable counterexamples) rather than on
thousands of floats.

Strategies::

    skew_matrices(n=..., scale=...)          W = −Wᵀ
    symmetric_matrices(n=..., scale=...)     W = Wᵀ
    bounded_sym_matrices(n=..., margin=...)  any W with λ_max(sym W) ≤ 1 − margin
    input_pairs(n, batch=...)                (x1, x2), each (batch, n), entries in [−2, 2]
    layered_specs(lam=..., ...)              small CircuitSpec, float64, tight tolerance
    seeds()                                  an int for jax.random.key
    gyrator_mismatches(max_abs=...)          transconductance mismatch ε
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from anasim.circuits.spec import CircuitSpec


def seeds() -> st.SearchStrategy[int]:
    """A PRNG seed (for ``jax.random.key`` or ``numpy.random.default_rng``)."""
    return st.integers(min_value=0, max_value=2**31 - 1)


def _gaussian(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n)) / np.sqrt(n)


@st.composite
def skew_matrices(draw, n=st.integers(2, 12), scale=st.floats(0.1, 3.0)) -> np.ndarray:
    """A skew-symmetric W (W = −Wᵀ) of spectral scale ≈ ``scale``."""
    size = draw(n) if isinstance(n, st.SearchStrategy) else int(n)
    s = draw(scale) if isinstance(scale, st.SearchStrategy) else float(scale)
    A = _gaussian(draw(seeds()), size)
    return s * (A - A.T) / np.sqrt(2.0)


@st.composite
def symmetric_matrices(draw, n=st.integers(2, 12), scale=st.floats(0.1, 3.0)) -> np.ndarray:
    """A symmetric W (W = Wᵀ) of spectral scale ≈ ``scale``."""
    size = draw(n) if isinstance(n, st.SearchStrategy) else int(n)
    s = draw(scale) if isinstance(scale, st.SearchStrategy) else float(scale)
    A = _gaussian(draw(seeds()), size)
    return s * (A + A.T) / np.sqrt(2.0)


@st.composite
def bounded_sym_matrices(draw, n=st.integers(2, 12), margin=st.floats(0.05, 1.0),
                         skew_scale=st.floats(0.0, 3.0)) -> np.ndarray:
    """A general W whose symmetric part has λ_max(sym W) = 1 − margin exactly.

    Built as S + K: K skew of scale ``skew_scale``, S symmetric shifted so its
    largest eigenvalue is 1 − margin (sym W = S since sym K = 0).
    """
    size = draw(n) if isinstance(n, st.SearchStrategy) else int(n)
    m = draw(margin) if isinstance(margin, st.SearchStrategy) else float(margin)
    ks = draw(skew_scale) if isinstance(skew_scale, st.SearchStrategy) else float(skew_scale)
    A = _gaussian(draw(seeds()), size)
    S = (A + A.T) / np.sqrt(2.0)
    S = S - (np.linalg.eigvalsh(S)[-1] - (1.0 - m)) * np.eye(size)
    B = _gaussian(draw(seeds()), size)
    return S + ks * (B - B.T) / np.sqrt(2.0)


@st.composite
def input_pairs(draw, n: int, batch=st.integers(1, 4), low: float = -2.0, high: float = 2.0):
    """Two input batches (x1, x2), each (batch, n), uniform in [low, high]."""
    b = draw(batch) if isinstance(batch, st.SearchStrategy) else int(batch)
    rng = np.random.default_rng(draw(seeds()))
    return rng.uniform(low, high, (b, n)), rng.uniform(low, high, (b, n))


@st.composite
def layered_specs(draw, lam=st.sampled_from([0.0, 0.5, 1.0]), n_layers=st.integers(1, 3),
                  width=st.integers(2, 8), activation=st.sampled_from(["hard_sigmoid", "relu"]),
                  schedule=st.sampled_from(["sync", "async"]), init_scale=st.floats(0.2, 1.5),
                  eta: float = 0.3, max_iters: int = 4000, tol: float = 1e-10,
                  sizes=None) -> CircuitSpec:
    """A small layered circuit spec in float64 with a tight tolerance (ideal-device tests).

    ``sizes`` (a tuple or a strategy of tuples) overrides ``n_layers``/``width``:
    fixing the shapes lets jitted relaxations be compiled once per shape.
    """
    if sizes is not None:
        sizes = tuple(draw(sizes) if isinstance(sizes, st.SearchStrategy) else sizes)
    else:
        L = draw(n_layers)
        sizes = tuple(draw(width) for _ in range(L + 1))
    lam_v = draw(lam) if isinstance(lam, st.SearchStrategy) else lam
    act = draw(activation) if isinstance(activation, st.SearchStrategy) else activation
    return CircuitSpec(sizes=sizes, lam=lam_v, activations=(act,), eta=eta,
                       schedule=draw(schedule) if isinstance(schedule, st.SearchStrategy) else schedule,
                       max_iters=max_iters, tol=tol,
                       init_scale=draw(init_scale) if isinstance(init_scale, st.SearchStrategy) else init_scale,
                       dtype="float64", name="hypothesis")


def gyrator_mismatches(max_abs: float = 0.3) -> st.SearchStrategy[float]:
    """A gyrator transconductance mismatch ε in [−max_abs, max_abs] (i_b = −(1+ε) g v_a)."""
    return st.floats(-max_abs, max_abs, allow_nan=False)
