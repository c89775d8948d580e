"""float64 for the node-level code, scoped: the caller's JAX setting is untouched.

``import anasim`` leaves ``jax_enable_x64`` off (float32 everywhere). The
nodal solver, its noise analysis and the Hopfield circuits built from it work
in float64 (junction exponentials, Newton steps of 1e-13 V, Lyapunov
equations), so their public entry points switch float64 on for the duration of
the call with :func:`float64` (a decorator) or :func:`scope` (a context
manager). Arrays made inside stay float64 afterwards; jnp operations on them
outside the scope compute in the caller's precision.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import jax

F = TypeVar("F", bound=Callable)


def scope():
    """A context in which JAX creates and computes float64 (``jax_enable_x64`` on)."""
    return jax.enable_x64(True)


def float64(fn: F) -> F:
    """``fn`` run with float64 enabled; restored to the caller's setting on return."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = ["float64", "scope"]
