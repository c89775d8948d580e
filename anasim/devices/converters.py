"""Data converters: DAC (digital value → analog drive) and ADC (analog → code).

Both work in the normalized units of the algorithms: the full-scale range
``[v_min, v_max]`` is the span of normalized values the converter covers
(states in [0, 1] by default). Errors are given in LSB, the unit datasheets
use, with ``LSB = (v_max − v_min) / (2^bits − 1)``:

* ``bits`` — resolution; ``2^bits`` codes. ``bits = 0`` means no quantization
  (an unquantized converter; INL/DNL must then be 0).
* ``clip`` — values outside the range saturate at the end codes.
* ``gain_error`` (relative) and ``offset_lsb`` — systematic transfer errors;
  ``gain_sigma`` (relative) and ``offset_sigma_lsb`` — per-channel spread drawn
  at fabrication (column-parallel converters are separate circuits).
* ``inl_lsb`` — integral nonlinearity: a smooth bow ``INL(u) = inl · 4u(1−u)``
  over the normalized code position ``u ∈ [0, 1]`` (peak at mid-scale, zero at
  the end points, the end-point-corrected shape of a resistor-ladder gradient).
* ``dnl_lsb`` — differential nonlinearity: a fixed pattern, drawn once at
  fabrication, of each code boundary's deviation (std ``dnl_lsb``, truncated to
  ±0.45 LSB so codes stay monotonic and none goes missing). ADC: the decision
  thresholds move; DAC: each output level moves.
* ``noise_lsb`` — input-referred (ADC) or output (DAC) rms noise per conversion.

``fabricate(key, shape)`` draws the per-channel errors for channels of
``shape`` (e.g. ``(n,)`` for one converter per neuron); ``convert(instance, x,
key)`` converts ``x`` of shape ``(..., *shape)`` and returns the value the next
stage sees, in normalized units, with ``x``'s dtype. With every error zero, an
ADC/DAC is the ideal quantizer ``v_min + LSB · round((clip(x) − v_min)/LSB)``,
and with ``bits = 0, clip = false`` the identity (the :class:`IdealConverter`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from anasim.devices.noise import counter_normal
from anasim.devices.params import param

Array = jax.Array

_DNL_TRUNC = 0.45  # LSB: keeps neighbouring thresholds ordered (spacing ≥ 0.1 LSB)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ConverterInstance:
    """Per-chip converter errors (a pytree).

    gain: relative gain error per channel, shape ``shape``.
    offset: offset per channel in LSB, shape ``shape``.
    dnl: per-channel code-boundary deviation in LSB, shape ``(*shape, 2^bits − 1)``
        (``(*shape, 0)`` when DNL is off).
    """

    gain: Array
    offset: Array
    dnl: Array


@dataclass(frozen=True)
class _ConverterBase:
    #: the parameters of the energy and time model (printed by ``anasim devices``)
    energy_params: ClassVar[tuple] = ("fom_j_per_step", "enob", "sample_rate_hz")

    bits: int = param(8, "bit", 0, 24, "resolution (0 = unquantized)")
    v_min: float = param(0.0, "1", doc="lower end of the full-scale range (normalized units)")
    v_max: float = param(1.0, "1", doc="upper end of the full-scale range (normalized units)")
    clip: bool = param(True, "", doc="saturate outside [v_min, v_max]")
    gain_error: float = param(0.0, "1", -0.5, 0.5, "systematic relative gain error")
    gain_sigma: float = param(0.0, "1", 0.0, 0.5, "per-channel relative gain spread (std)")
    offset_lsb: float = param(0.0, "LSB", -1e6, 1e6, "systematic offset")
    offset_sigma_lsb: float = param(0.0, "LSB", 0.0, 1e6, "per-channel offset spread (std)")
    inl_lsb: float = param(0.0, "LSB", -1e3, 1e3, "peak integral nonlinearity (mid-scale bow)")
    dnl_lsb: float = param(0.0, "LSB", 0.0, 1.0, "code-boundary deviation std (fixed pattern)")
    noise_lsb: float = param(0.0, "LSB", 0.0, 1e6, "rms noise per conversion")
    # Energy and time (docs/energy.md): Walden figure of merit F = P / (2^ENOB f_s).
    # Each default's source is its `source`. DACs are charged with the same figure (assumed).
    fom_j_per_step: float = param(10e-15, "J/conv-step", 0.0, 1e-6,
                                  "Walden figure of merit P / (2^ENOB f_s)",
                                  source="B. Murmann, 'ADC Performance Survey 1997-2024': the best "
                                         "moderate-speed designs reach a few fJ/conv-step, tens are "
                                         "typical; 10 fJ: between, no single design (assumed)")
    enob: float = param(0.0, "bit", 0.0, 32.0, "effective number of bits (0 = bits)",
                        source="0 = the ideal converter's ENOB, bits (definition); from a datasheet: "
                               "ENOB = (SINAD - 1.76 dB) / 6.02 dB")
    sample_rate_hz: float = param(100e6, "Hz", 0.0, 1e12, "conversion rate f_s", lo_open=True,
                                  source="assumed: 100 MS/s, a moderate rate for a per-column SAR "
                                         "converter (one conversion = 10 ns of latency)")

    def __post_init__(self):
        if not self.v_max > self.v_min:
            raise ValueError(f"v_max ({self.v_max}) must exceed v_min ({self.v_min})")
        if self.bits == 0 and (self.inl_lsb != 0.0 or self.dnl_lsb != 0.0):
            raise ValueError("inl_lsb and dnl_lsb need bits >= 1")

    @property
    def n_codes(self) -> int:
        return 2 ** self.bits if self.bits else 0

    @property
    def lsb(self) -> float:
        """One LSB in normalized units (the full-scale span when unquantized)."""
        span = self.v_max - self.v_min
        return span / (self.n_codes - 1) if self.bits else span

    def conversion_energy_j(self) -> float:
        """Energy of one conversion (J): ``F · 2^ENOB`` (Walden), ENOB = ``enob`` or ``bits``."""
        return self.fom_j_per_step * 2.0 ** (self.enob or self.bits)

    def conversion_time_s(self) -> float:
        """Latency of one conversion (s): ``1 / f_s``."""
        return 1.0 / self.sample_rate_hz

    def fabricate(self, key: Array, shape: tuple[int, ...]) -> ConverterInstance:
        shape = tuple(shape)
        kg, ko, kd = jax.random.split(key, 3)
        gain = jnp.full(shape, self.gain_error)
        if self.gain_sigma:
            gain = gain + self.gain_sigma * jax.random.normal(kg, shape)
        offset = jnp.full(shape, self.offset_lsb)
        if self.offset_sigma_lsb:
            offset = offset + self.offset_sigma_lsb * jax.random.normal(ko, shape)
        if self.dnl_lsb:
            dnl = self.dnl_lsb * jax.random.truncated_normal(
                kd, -_DNL_TRUNC / self.dnl_lsb, _DNL_TRUNC / self.dnl_lsb, shape + (self.n_codes - 1,))
        else:
            dnl = jnp.zeros(shape + (0,))
        return ConverterInstance(gain=gain, offset=offset, dnl=dnl)

    def _analog_errors(self, inst: ConverterInstance, x: Array, key: Array) -> Array:
        """Gain, offset and noise, in normalized units, in x's dtype."""
        dt = x.dtype
        if self.gain_error or self.gain_sigma:
            x = x * (1 + inst.gain.astype(dt))
        if self.offset_lsb or self.offset_sigma_lsb:
            x = x + inst.offset.astype(dt) * self.lsb
        if self.noise_lsb:
            x = x + (self.noise_lsb * self.lsb) * counter_normal(key, x.shape, dt)
        return x

    def _bow(self, u: Array) -> Array:
        """INL in LSB at code position ``u`` (in codes)."""
        r = u / (self.n_codes - 1)
        return self.inl_lsb * 4.0 * r * (1.0 - r)


@dataclass(frozen=True)
class ADC(_ConverterBase):
    """Analog-to-digital converter returning the code's nominal value (normalized units).

    Transfer: analog errors (gain, offset, input-referred noise) act on the input,
    INL bends the decision thresholds smoothly, DNL moves each threshold by its
    fabricated amount; the output is ``v_min + code · LSB``.
    """

    def convert(self, instance: ConverterInstance, x: Array, key: Array) -> Array:
        x = jnp.asarray(x)
        dt = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float64
        x = self._analog_errors(instance, x.astype(dt), key)
        if not self.bits:
            return jnp.clip(x, self.v_min, self.v_max) if self.clip else x
        top = self.n_codes - 1
        u = (x - self.v_min) / self.lsb  # position in codes
        if self.inl_lsb:
            u = u - self._bow(jnp.clip(u, 0, top))  # a threshold moved by +INL acts as input −INL
        code = jnp.round(u)
        if self.dnl_lsb:
            # Boundary k (between codes k and k+1) sits at k + 0.5 + dnl[k]; with
            # |dnl| < 0.5 the true code is the rounded one or a neighbour.
            c = jnp.clip(code, 0, top).astype(jnp.int32)
            d = instance.dnl.astype(dt)
            pad = jnp.concatenate([jnp.zeros(d.shape[:-1] + (1,), dt), d, jnp.zeros(d.shape[:-1] + (1,), dt)], -1)
            flat = _flat_index(pad.shape, c)  # entry of code c of each element's own channel
            table = pad.reshape(-1)
            upper = table[flat + 1]  # boundary above code c
            lower = table[flat]  # boundary below code c
            code = c + (u >= c + 0.5 + upper) - (u < c - 0.5 + lower)
            code = code.astype(dt)
        if self.clip:
            code = jnp.clip(code, 0, top)
        return (self.v_min + code * self.lsb).astype(dt)


@dataclass(frozen=True)
class DAC(_ConverterBase):
    """Digital-to-analog converter: quantizes the requested value to a code and
    outputs that code's (fabricated, imperfect) level plus analog errors.

    Level of code ``k``: ``v_min + LSB · (k + INL(k) + dnl_k)``, with ``dnl_k`` the
    fabricated level deviation; then gain, offset and output noise.
    """

    def convert(self, instance: ConverterInstance, x: Array, key: Array) -> Array:
        x = jnp.asarray(x)
        dt = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float64
        x = x.astype(dt)
        if self.clip:
            x = jnp.clip(x, self.v_min, self.v_max)
        if self.bits:
            top = self.n_codes - 1
            code = jnp.round((x - self.v_min) / self.lsb)
            code = jnp.clip(code, 0, top) if self.clip else code
            level = code
            if self.inl_lsb:
                level = level + self._bow(jnp.clip(code, 0, top))
            if self.dnl_lsb:
                d = instance.dnl.astype(dt)
                d = jnp.concatenate([d, jnp.zeros(d.shape[:-1] + (1,), dt)], -1)  # one entry per code
                c = jnp.clip(code, 0, top).astype(jnp.int32)
                level = level + d.reshape(-1)[_flat_index(d.shape, c)]
            x = self.v_min + level * self.lsb
        return self._analog_errors(instance, x, key)


def _flat_index(table_shape: tuple[int, ...], code: Array) -> Array:
    """Index into a flattened per-channel table ``(*shape, K)`` of entry ``code`` for
    each element of ``code (..., *shape)`` (a gather, no batch-sized copy of the table)."""
    ch_shape, k = table_shape[:-1], table_shape[-1]
    channel = jnp.arange(math.prod(ch_shape), dtype=jnp.int32).reshape(ch_shape)
    return channel * k + code


def ideal_quantize(x, bits: int, v_min: float = 0.0, v_max: float = 1.0):
    """The ideal quantizer (for reference): nearest of ``2^bits`` uniform levels in range."""
    lsb = (v_max - v_min) / (2 ** bits - 1)
    return v_min + lsb * jnp.round((jnp.clip(x, v_min, v_max) - v_min) / lsb)


__all__ = ["ADC", "DAC", "ConverterInstance", "ideal_quantize"]
