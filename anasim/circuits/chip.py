"""Fabricating and programming a chip: what every circuit engine's build and write share.

An engine describes its chip by two functions, both traced once per circuit
shape and device profile:

``make(spec, profile, params, key) -> hardware``
    fabricate every device and converter (fixed-pattern errors) and program
    ``params`` into them;
``program(spec, hw, params, key) -> hardware``
    write ``params`` into the same fabricated parts (new programming errors).

:func:`build_chip` and :func:`reprogram_chip` run them jitted, keyed by the
function and ``spec.physics()`` (labels do not recompile), inside a float64
scope whatever the spec's format: the devices draw their fixed-pattern errors
in JAX's default float type, and drawing them in float64 before storing them
in the chip's format keeps every chip the key fabricates identical to the
chips of earlier versions (which ran with float64 on globally); the chip's
arrays are cast to the spec's dtype by ``make``/``program``. Relaxations do
not need the scope (every draw there has an explicit dtype). A caller that
traces a build or a write inside its own ``jax.jit`` must trace (and so
lower) that function in the float64 scope as well -- the training controller
does -- since a scope opened inside a float32 trace is lowered as float32.
:func:`check_realization` asks the
profile's coupling device, by its declared abilities
(:class:`~anasim.devices.base.CouplingDevice`), whether it can realize the
spec's backward direction.

A jitted function copies every array it returns, even one it was given and
left as it was; the fabricated parts of a chip (a pixel-gain map per array,
converters) pass through every write unchanged, and copying them was a
measurable share of a training step on the SLM profiles (docs/noise_speed.md).
:func:`drop_forwarded` and :func:`refill_forwarded` return those arrays from
the caller's side instead (the write functions and the training step use them).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax

from anasim.circuits.precision import float64_scope
from anasim.devices.profile import DeviceProfile
from anasim.errors import ProfileError

Array = jax.Array


def check_realization(spec: Any, profile: DeviceProfile, *, skew_links: bool = True,
                      circuit: str = "this circuit") -> None:
    """Raise :class:`ProfileError` if ``profile``'s coupling device cannot realize ``spec.backward``.

    ``transpose`` needs a transposed read (``transposed_read``) that is θᵀ (not
    ``skew_link``); ``gyrator`` needs a ``skew_link`` device with a transposed
    read; ``copy`` and ``independent`` program a second device and need nothing.
    ``skew_links=False``: the engine cannot use gyrator arrays at all.
    """
    dev = profile.coupling
    where = getattr(spec, "source", "") or getattr(spec, "name", "") or type(spec).__name__
    kind = type(dev).__name__
    if dev.skew_link and not skew_links:
        raise ProfileError(f"{where}: profile {profile.name!r} is a gyrator array ({kind}): gyrator arrays "
                           f"are not supported by {circuit}")
    if spec.backward == "transpose" and not dev.transposed_read:
        raise ProfileError(
            f"{where}: network.backward = \"transpose\" needs a reciprocal device with a transposed "
            f"read (mvm_t); profile {profile.name!r} ({kind}) has none: use \"copy\"")
    if spec.backward == "transpose" and dev.skew_link:
        raise ProfileError(
            f"{where}: profile {profile.name!r} is a gyrator array: use network.backward = \"gyrator\"")
    if spec.backward == "gyrator" and not (dev.skew_link and dev.transposed_read):
        raise ProfileError(
            f"{where}: network.backward = \"gyrator\" needs a gyrator-array coupling device; "
            f"profile {profile.name!r} has {kind}")


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _build_jit(make: Callable, spec: Any, profile: DeviceProfile, params: Any, key: Array) -> Any:
    return make(spec, profile, params, key)


def drop_forwarded(new: Any, old: Any) -> Any:
    """``new`` with every leaf that is ``old``'s own leaf at the same place replaced
    by None. Called inside a traced function: a leaf returned as it was given is
    the same tracer object. ``new`` itself when the two trees differ in structure."""
    if jax.tree_util.tree_structure(new) != jax.tree_util.tree_structure(old):
        return new
    return jax.tree_util.tree_map(lambda n, o: None if n is o else n, new, old)


def refill_forwarded(marked: Any, old: Any) -> Any:
    """Undo :func:`drop_forwarded` outside the traced function: each None of
    ``marked`` becomes ``old``'s leaf at that place (the caller's own array)."""
    if marked is None or old is None:
        return marked if old is None else old
    return jax.tree_util.tree_map(lambda m, o: o if m is None else m, marked, old,
                                  is_leaf=lambda v: v is None)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _reprogram_jit(program: Callable, spec: Any, hw: Any, params: Any, key: Array) -> Any:
    return drop_forwarded(program(spec, hw, params, key), hw)


def build_chip(make: Callable, spec: Any, profile: DeviceProfile, params: Any, key: Array) -> Any:
    """``make(spec, profile, params, key)`` jitted (``make``, the spec's physics and the
    profile static), in a float64 scope (module docstring)."""
    with float64_scope(True):
        return _build_jit(make, spec.physics(), profile, params, key)


def reprogram_chip(program: Callable, spec: Any, hw: Any, params: Any, key: Array) -> Any:
    """``program(spec, hw, params, key)`` jitted (``program`` and the spec's physics
    static), in a float64 scope (module docstring)."""
    with float64_scope(True):
        return refill_forwarded(_reprogram_jit(program, spec.physics(), hw, params, key), hw)


__all__ = ["build_chip", "check_realization", "drop_forwarded", "refill_forwarded", "reprogram_chip"]
