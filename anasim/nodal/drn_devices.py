"""A deep resistive network's conductances as resistive devices, and its diodes' mismatch.

Each coupling of a DRN (:mod:`anasim.nodal.blocks`) is one non-negative
conductance, so one device per weight suffices (no differential pair: the
inverted input copies give the sign). This module maps the normalized weights
w ≥ 0 onto devices of a :class:`~anasim.devices.resistive.ResistiveCrossbar`
profile (e.g. ``devices/reram.toml``) with a conductance unit g_unit
(S per normalized unit), G = g_unit·w, and applies the profile's
non-idealities:

* fabrication: each device's own maximum G_max(1 + d2d·ξ) (``d2d_sigma``);
* programming (initial weights): G clipped into [G_min, G_max_dev], rounded to
  ``bits`` levels, plus programming noise G_max (p0 + p1 x + p2 x²)·ξ;
* read noise: every solve (phase) sees G(1 + read_noise·ξ), drawn afresh;
* in-situ writes: a requested change ΔG = g_unit·Δw moves the device by
  gain_p (G_max_dev − G)/(G_max_dev − G_min)·ΔG when potentiated and
  gain_d (G − G_min)/(G_max_dev − G_min)·ΔG when depressed (soft bounds), in
  whole level steps when ``bits`` > 0, times (1 + cycle_noise·ξ), clipped into
  [G_min, G_max_dev];
* diode mismatch: each hidden node's clamp is offset by δ ~ N(0, σ_δ) volts
  (the knee spread of a diode's I_s and of its bias source; σ_δ assumed).

With every non-ideality at zero and G_min = 0 the device network is the ideal
one (a test checks it). Public API::

    DrnDevices(xbar, g_unit_s)
    fabricate(dev, params, key) -> tuple of per-device G_max (S)
    program(dev, g_max, params, key) -> DrnParams          # realized weights
    read(dev, params, key) -> DrnParams                     # one phase's read
    write(dev, g_max, params, dw, key) -> DrnParams         # in-situ update
    diode_mismatch(params, sigma_v, key) -> DrnParams       # knee offsets added
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from anasim.devices.resistive import ResistiveCrossbar
from anasim.errors import AnasimError
from anasim.nodal.blocks import DrnParams

Array = jax.Array

__all__ = ["DrnDevices", "fabricate", "program", "read", "write", "diode_mismatch"]


@dataclass(frozen=True)
class DrnDevices:
    """The device of every DRN conductance (a crossbar profile's coupling) and the
    conductance of a unit normalized weight ``g_unit_s`` (S) (hashable)."""

    xbar: ResistiveCrossbar
    g_unit_s: float

    def __post_init__(self):
        if not isinstance(self.xbar, ResistiveCrossbar):
            raise AnasimError(f"DrnDevices.xbar must be a ResistiveCrossbar, got {type(self.xbar).__name__}")
        if not float(self.g_unit_s) > 0:
            raise AnasimError(f"DrnDevices.g_unit_s must be > 0 S, got {self.g_unit_s!r}")


def fabricate(dev: DrnDevices, params: DrnParams, key: Array) -> tuple:
    """Each device's own maximum conductance (S), one array per coupling, shaped like w."""
    keys = jax.random.split(key, len(params.w))
    return tuple(dev.xbar.fabricate(k, w.shape).g_max[0].astype(w.dtype) for k, w in zip(keys, params.w))


def _levels(dev: DrnDevices, g):
    x = dev.xbar
    return x.g_min_s + x.g_step * jnp.round((g - x.g_min_s) / x.g_step) if x.bits else g


def program(dev: DrnDevices, g_max: tuple, params: DrnParams, key: Array) -> DrnParams:
    """Program ``params.w`` into the devices (program-and-verify to the nearest level,
    then programming noise); returns the realized weights G/g_unit."""
    x, gu = dev.xbar, dev.g_unit_s
    p0, p1, p2 = x.prog_noise
    out = []
    for k, (w, gm) in zip(jax.random.split(key, len(params.w)), zip(params.w, g_max)):
        g = _levels(dev, jnp.clip(w * gu, x.g_min_s, gm))
        if p0 or p1 or p2:
            r = g / x.g_max_s
            g = g + x.g_max_s * (p0 + p1 * r + p2 * r * r) * jax.random.normal(k, g.shape, g.dtype)
        out.append(jnp.clip(g, x.g_min_s, gm) / gu)
    return params._replace(w=tuple(out))


def read(dev: DrnDevices, params: DrnParams, key: Array) -> DrnParams:
    """The weights one solve sees: each device's conductance with its read noise."""
    s = dev.xbar.read_noise
    if not s:
        return params
    keys = jax.random.split(key, len(params.w))
    return params._replace(w=tuple(w * (1.0 + s * jax.random.normal(k, w.shape, w.dtype))
                                   for k, w in zip(keys, params.w)))


def write(dev: DrnDevices, g_max: tuple, params: DrnParams, dw: tuple, key: Array) -> DrnParams:
    """In-situ write of the requested weight changes ``dw`` through the devices' write
    response (module docstring); the result stays in [G_min, G_max_dev]/g_unit."""
    x, gu = dev.xbar, dev.g_unit_s
    out = []
    for k, w, d, gm in zip(jax.random.split(key, len(params.w)), params.w, dw, g_max):
        out.append(x.write_response(w * gu, d * gu, gm, k) / gu)
    return params._replace(w=tuple(out))


def diode_mismatch(params: DrnParams, sigma_v: float, key: Array) -> DrnParams:
    """``params`` with each hidden node's clamp offset by δ ~ N(0, σ) (V) added to its knee."""
    hidden = [w.shape[1] for w in params.w[:-1]]
    keys = jax.random.split(key, max(len(hidden), 1))
    old = params.knee or tuple(jnp.zeros((n,), params.w[0].dtype) for n in hidden)
    knee = tuple(o + sigma_v * jax.random.normal(k, (n,), params.w[0].dtype)
                 for o, k, n in zip(old, keys, hidden))
    return params._replace(knee=knee)
