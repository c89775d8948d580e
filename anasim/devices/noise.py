"""Noise primitives: Johnson–Nyquist (thermal) and shot noise.

Pure functions of explicit physical quantities (SI units, temperature and
bandwidth always given), returning one-sided standard deviations over the
bandwidth ``Δf``; samplers take an explicit JAX PRNG key and draw zero-mean
Gaussian noise with that standard deviation (both noises are Gaussian to an
excellent approximation at the currents and bandwidths of interest: shot
noise is Poisson, but with ``I Δf / q`` ≫ 1 electrons per correlation time).

Constants are CODATA 2018 exact values (SI 2019 redefinition).

* Johnson–Nyquist current noise of a conductance ``G``: ``σ_I = √(4 k_B T G Δf)``
  (Nyquist, Phys. Rev. 32, 110 (1928)); voltage noise of a resistance ``R``:
  ``σ_V = √(4 k_B T R Δf)``.
* Shot noise of a DC current ``I``: ``σ_I = √(2 q |I| Δf)`` (Schottky 1918).
* Stationary thermal voltage on a capacitance ``C`` (equipartition): ``σ_V = √(k_B T / C)``.

Per-read temporal noise is drawn by :func:`counter_normal`, a cheap
counter-based generator (docs/noise_speed.md): one 32-bit hash of the element
index keyed by the read's PRNG key gives two 16-bit halves, each mapped to a
standard normal through a table of 2¹⁶ normal quantiles. On a CPU it costs
about a tenth of ``jax.random.normal`` (threefry, one 32-bit word per normal,
then an inverse error function), which cost more than the matrix product of
the read it perturbed. ``jax.random.normal`` stays the generator of everything
drawn once (fabrication, programming, start vectors).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri

Array = jax.Array

#: Boltzmann constant in J/K (CODATA 2018, exact).
K_B = 1.380649e-23
#: Elementary charge in C (CODATA 2018, exact).
Q_E = 1.602176634e-19


def johnson_current_std(conductance_s, temperature_k, bandwidth_hz):
    """Thermal current noise ``√(4 k_B T G Δf)`` in A of a conductance ``G`` (S)."""
    return jnp.sqrt(4.0 * K_B * jnp.asarray(temperature_k) * jnp.asarray(conductance_s) * bandwidth_hz)


def johnson_voltage_std(resistance_ohm, temperature_k, bandwidth_hz):
    """Thermal voltage noise ``√(4 k_B T R Δf)`` in V of a resistance ``R`` (Ω)."""
    return jnp.sqrt(4.0 * K_B * jnp.asarray(temperature_k) * jnp.asarray(resistance_ohm) * bandwidth_hz)


def shot_current_std(current_a, bandwidth_hz):
    """Shot noise ``√(2 q |I| Δf)`` in A of a DC current ``I`` (A)."""
    return jnp.sqrt(2.0 * Q_E * jnp.abs(jnp.asarray(current_a)) * bandwidth_hz)


def ktc_voltage_std(capacitance_f, temperature_k):
    """Stationary thermal voltage ``√(k_B T / C)`` in V on a capacitance ``C`` (F)."""
    return jnp.sqrt(K_B * jnp.asarray(temperature_k) / jnp.asarray(capacitance_f))


def _draw(key: Array, std, shape, dtype):
    std = jnp.asarray(std)
    shape = jnp.broadcast_shapes(std.shape, tuple(shape or ()))
    dtype = dtype or (std.dtype if jnp.issubdtype(std.dtype, jnp.floating) else jnp.float64)
    return std.astype(dtype) * jax.random.normal(key, shape, dtype)


def johnson_current_noise(key: Array, conductance_s, temperature_k, bandwidth_hz, shape=None, dtype=None):
    """Samples of thermal current noise (A), shape ``broadcast(G, shape)``."""
    return _draw(key, johnson_current_std(conductance_s, temperature_k, bandwidth_hz), shape, dtype)


def johnson_voltage_noise(key: Array, resistance_ohm, temperature_k, bandwidth_hz, shape=None, dtype=None):
    """Samples of thermal voltage noise (V), shape ``broadcast(R, shape)``."""
    return _draw(key, johnson_voltage_std(resistance_ohm, temperature_k, bandwidth_hz), shape, dtype)


def shot_noise(key: Array, current_a, bandwidth_hz, shape=None, dtype=None):
    """Samples of shot noise (A) around the DC current ``I``, shape ``broadcast(I, shape)``."""
    return _draw(key, shot_current_std(current_a, bandwidth_hz), shape, dtype)


# --- the per-read generator --------------------------------------------------------------

#: bits per table index: each 32-bit hash word gives two normals.
TABLE_BITS = 16


@functools.lru_cache(maxsize=None)
def normal_table(dtype_name: str = "float32") -> np.ndarray:
    """The 2¹⁶ equiprobable normal quantiles ``Φ⁻¹((k + ½)/2¹⁶)``, k = 0 … 2¹⁶ − 1,
    rescaled so that their mean square is exactly 1 (the midpoint rule alone
    leaves it 2e-4 low: the tails beyond ±4.33 are cut off). Mean 0 by symmetry.
    A uniform 16-bit index into it is a draw of a unit-variance, zero-mean
    variable whose distribution function is Φ's to within 2⁻¹⁶ everywhere."""
    n = 1 << TABLE_BITS
    q = ndtri((np.arange(n, dtype=np.float64) + 0.5) / n)
    q = q / np.sqrt(np.mean(q * q))
    return q.astype(np.dtype(dtype_name))


def _fmix32(h: Array) -> Array:
    """The 32-bit avalanche finalizer of MurmurHash3 (a bijection of uint32)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def counter_bits(key: Array, n: int) -> Array:
    """``n`` pseudo-random uint32 words: the element index ``i`` through two keyed
    rounds, ``fmix32(fmix32(i · φ₃₂ + k₀) ⊕ k₁)`` with ``(k₀, k₁)`` the first
    and last word of the key's data (φ₃₂ = 0x9E3779B9). Each round is a bijection,
    so the ``n`` words of one key are distinct; distinct keys (``split`` /
    ``fold_in`` of a threefry key) give unrelated streams."""
    kd = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    i = jax.lax.iota(jnp.uint32, n)
    return _fmix32(_fmix32(i * jnp.uint32(0x9E3779B9) + kd[0]) ^ kd[-1])


def counter_normal(key: Array, shape, dtype=jnp.float32) -> Array:
    """Standard normal draws of ``shape`` for per-read noise: ⌈n/2⌉ words of
    :func:`counter_bits`, each word's high and low 16 bits looked up in
    :func:`normal_table` (unit variance, zero mean, cut at ±4.33: a tail of
    probability 1.5e-5 is folded into the last table entries). ``key`` is a
    JAX PRNG key (typed or raw uint32)."""
    shape = tuple(int(d) for d in shape)
    dtype = jnp.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return jnp.zeros(shape, dtype)
    words = counter_bits(key, (n + 1) // 2)
    table = jnp.asarray(normal_table("float64" if dtype == jnp.float64 else "float32"))
    z = jnp.concatenate([table[words >> TABLE_BITS], table[words & jnp.uint32((1 << TABLE_BITS) - 1)]])
    return z[:n].reshape(shape).astype(dtype)
