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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
