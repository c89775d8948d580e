"""Number formats of a relaxation, and float64 scoped to the computations that need it.

``import anasim`` leaves JAX's global ``jax_enable_x64`` flag alone, so float32
is the default everywhere. A circuit whose spec says ``dtype = "float64"``
switches float64 on for the duration of its own calls only
(:func:`float64_scope`, :func:`spec_precision`): its arrays are created and
its programs compiled in float64 while the global flag stays as it was.
Arrays made inside the scope stay float64 afterwards; JAX operations on them
outside a float64 scope compute in float32 (numpy ones keep float64).

Formats of one relaxation (:func:`engine_dtypes`): float32/float64 run
everything in that format; ``bfloat16``/``float16`` keep the layer states, the
DAC and the coupling reads (and the programmed devices) in the reduced format
while the pre-activation integrator, the residual and the convergence test
stay float32; a complex (holomorphic) run uses complex128 for a float64 spec,
complex64 otherwise.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def float64_scope(on: bool = True):
    """A context in which JAX computes in float64 when ``on`` (else no change).

    ``with float64_scope(spec.dtype == "float64"): ...``; the global flag is
    restored on exit, and nesting is harmless."""
    if not on or jax.config.jax_enable_x64:
        return contextlib.nullcontext()
    return jax.enable_x64(True)


def wants_float64(spec: Any) -> bool:
    """True if ``spec`` (anything with a ``dtype`` field) relaxes in float64."""
    return getattr(spec, "dtype", None) == "float64"


def spec_precision(fn: Callable) -> Callable:
    """Run ``fn(spec, ...)`` inside :func:`float64_scope` when ``spec.dtype`` is float64."""

    @functools.wraps(fn)
    def wrapper(spec, *args, **kwargs):
        with float64_scope(wants_float64(spec)):
            return fn(spec, *args, **kwargs)

    return wrapper


def in_float64(fn: Callable) -> Callable:
    """Run ``fn`` inside :func:`float64_scope` (reference computations that are float64 by design)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with float64_scope(True):
            return fn(*args, **kwargs)

    return wrapper


def holds_float64(tree: Any) -> bool:
    """True if any array leaf of ``tree`` is float64 or complex128 (a float64 chip or equilibrium)."""
    return any(getattr(leaf, "dtype", None) in (np.dtype("float64"), np.dtype("complex128"))
               for leaf in jax.tree_util.tree_leaves(tree))


def param_dtype(spec):
    """dtype of the parameters (the controller's shadow copy): the engine dtype,
    float32 for the reduced-precision formats (updates would vanish in bfloat16)."""
    return jnp.dtype("float32" if spec.low_precision else spec.dtype)


def engine_dtypes(spec, complex_states: bool = False) -> tuple:
    """(state, integrator, residual) dtypes of a relaxation.

    float32/float64: all three the spec's dtype. bfloat16/float16: states and
    device reads in that format, pre-activation integrator and residual in
    float32. Complex (holomorphic) runs: complex128 for a float64 spec,
    complex64 otherwise, for states and integrator; the residual is real.
    """
    if complex_states:
        real = jnp.dtype("float64" if spec.dtype == "float64" else "float32")
        cplx = jnp.dtype("complex128" if spec.dtype == "float64" else "complex64")
        return cplx, cplx, real
    if spec.low_precision:
        return jnp.dtype(spec.dtype), jnp.dtype("float32"), jnp.dtype("float32")
    d = jnp.dtype(spec.dtype)
    return d, d, d


def cast_floats(tree, dtype):
    """Every floating array leaf of ``tree`` in ``dtype`` (other leaves unchanged)."""
    def cast(leaf):
        if isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.asarray(leaf, dtype)
        return leaf
    return jax.tree_util.tree_map(cast, tree)


__all__ = ["cast_floats", "engine_dtypes", "float64_scope", "holds_float64", "in_float64", "param_dtype",
           "spec_precision", "wants_float64"]
