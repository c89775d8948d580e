"""The device contract and the ideal devices every model reduces to.

A device is split along the lines a physical part has (docs/design.md, “Device contract”):

``fabricate(key, shape) -> instance``
    Static, per-chip variations drawn once (fixed-pattern errors). Two instances
    of one model are two chips.
``program(instance, key, w_target) -> state``
    A write: quantize, clip, add programming noise.
``mvm(state, x, key) -> y``
    One use of the device with fresh temporal noise from ``key``.
    ``x`` has shape ``(..., n_in)`` and ``y`` has shape ``(..., n_out)``.
``effective(state) -> W_eff``
    The noiseless realized matrix, shape ``(n_out, n_in)``, for analysis.

What a device can do beyond that is declared on its class, never guessed from
its name or its attributes (:class:`CouplingDevice`): ``transposed_read``
(``mvm_t``: the device read from the other side), ``in_situ_write``
(``apply_update``: a write response to an increment), ``output_load``
(``output_conductance``: the device loads the node it drives) and
``skew_link`` (the transposed read is −θᵀ: a gyrator).

Energy and time (docs/energy.md): every coupling model has
``read_energy_j(shape, x, state, transposed)`` (one read of an ``(n_out, n_in)``
array with inputs ``x``, a scalar full-scale level or a vector), ``read_time_s()``
(how long a read takes to settle: the time of one relaxation iteration),
``write_energy_j(shape, old, new)`` and ``write_time_s(shape, old, new)`` (one
write that takes the array from state ``old`` to ``new``); converters have
``conversion_energy_j()`` and ``conversion_time_s()``. The ideal parts model no
physics: their energy is NaN (not modelled), never 0.

Matrices follow the convention ``y = W x``: ``w_target`` and ``effective`` have
shape ``(n_out, n_in)``; batched vectors are rows, so ``y = x @ W.T``.

Weights and states are in *normalized* units (states in [0, 1], weights of order
0.1); each physical model documents its full-scale values that map SI
quantities onto these units. Parameters are frozen dataclasses (hashable, so
they can be static arguments of ``jax.jit``); instances and states are pytrees.
Randomness is always an explicit JAX PRNG key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Array = jax.Array


@runtime_checkable
class CouplingDevice(Protocol):
    """A matrix-vector multiplier built from physical parts (crossbar, SLM, gyrators).

    Abilities (class attributes, False unless the model has the part):

    * ``transposed_read``: ``mvm_t(state, y, key) -> x`` reads the array from
      the output side, x = Wᵀ y for a reciprocal device (a resistive crossbar),
      x = −θᵀ y for a gyrator;
    * ``in_situ_write``: ``apply_update(state, key, dw) -> state`` is the
      array's response to write pulses asking for an increment ``dw``;
    * ``output_load``: ``output_conductance(state) -> (g_a, g_b)`` is the load
      the device puts on the nodes it drives (an OTA's finite output resistance);
    * ``skew_link``: the coupling is a gyrator: its transposed read is −θᵀ,
      so the backward direction is built in with the opposite sign.
    """

    transposed_read: ClassVar[bool]
    in_situ_write: ClassVar[bool]
    output_load: ClassVar[bool]
    skew_link: ClassVar[bool]

    def fabricate(self, key: Array, shape: tuple[int, int]) -> Any: ...

    def program(self, instance: Any, key: Array, w_target: Array) -> Any: ...

    def mvm(self, state: Any, x: Array, key: Array) -> Array: ...

    def effective(self, state: Any) -> Array: ...


@runtime_checkable
class Converter(Protocol):
    """A DAC or ADC: maps normalized values to the values the next stage sees."""

    def fabricate(self, key: Array, shape: tuple[int, ...]) -> Any: ...

    def convert(self, instance: Any, x: Array, key: Array) -> Array: ...


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class IdealCouplingState:
    """Programmed state of an ideal coupling: the matrix itself, shape (n_out, n_in)."""

    w: Array


@dataclass(frozen=True)
class IdealCoupling:
    """An exact matrix: programs what it is told and multiplies without noise."""

    transposed_read: ClassVar[bool] = True
    in_situ_write: ClassVar[bool] = False
    output_load: ClassVar[bool] = False
    skew_link: ClassVar[bool] = False

    def fabricate(self, key: Array, shape: tuple[int, int]) -> None:
        del key, shape
        return None

    def program(self, instance: None, key: Array, w_target: Array) -> IdealCouplingState:
        del instance, key
        return IdealCouplingState(w=jnp.asarray(w_target))

    def mvm(self, state: IdealCouplingState, x: Array, key: Array) -> Array:
        del key
        return x @ state.w.T

    def mvm_t(self, state: IdealCouplingState, y: Array, key: Array) -> Array:
        """Transposed read ``x = Wᵀ y`` (a reciprocal device read from the other side)."""
        del key
        return y @ state.w

    def effective(self, state: IdealCouplingState) -> Array:
        return state.w

    # An exact matrix has no physics to cost: energy and time are not modelled (NaN).
    def read_energy_j(self, shape, x=1.0, state=None, transposed: bool = False) -> float:
        del shape, x, state, transposed
        return float("nan")

    def read_time_s(self) -> float:
        return float("nan")

    def write_energy_j(self, shape, old=None, new=None) -> float:
        del shape, old, new
        return float("nan")

    def write_time_s(self, shape, old=None, new=None) -> float:
        del shape, old, new
        return float("nan")


@dataclass(frozen=True)
class IdealConverter:
    """A converter with infinite resolution and range: the identity."""

    def fabricate(self, key: Array, shape: tuple[int, ...]) -> None:
        del key, shape
        return None

    def convert(self, instance: None, x: Array, key: Array) -> Array:
        del instance, key
        return x

    # No converter is modelled: its energy is unknown (NaN) and it takes no time.
    def conversion_energy_j(self) -> float:
        return float("nan")

    def conversion_time_s(self) -> float:
        return 0.0
