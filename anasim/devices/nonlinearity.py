"""Neuron nonlinearities: the transfer curves of diode clamps and saturating amplifiers.

Each function maps a pre-activation (normalized units) to a neuron state and is
*non-expansive* (1-Lipschitz): ``|f(x) − f(y)| ≤ |x − y|`` for all x, y, so
composing it with a coupling of spectral norm L gives a map of Lipschitz
constant ≤ L (what the circuits' contraction bounds rely on). The constant
``LIPSCHITZ[name]`` is the tight one, tested against the definition.

* ``hard_sigmoid(x) = clamp(x, 0, 1)``: an ideal node voltage clamped by diodes
  to rails at 0 and 1 (or an amplifier saturating at its supply rails).
* ``clamp(x, lo, hi)``: the same with arbitrary rails.
* ``relu(x) = max(0, x)``: one rail only (a photodetector: light is non-negative).
* ``tempered_hard_sigmoid(x) = max(0, min(1, x/2))``: the hard sigmoid of half the
  input (Lipschitz constant ½); a gain-½ stage before the clamp.
* ``diode_clamp(x, vt)``: the smooth clamp of real diodes to rails 0 and 1 with
  thermal-voltage scale ``vt`` (normalized; ``n k T / q`` over the full-scale
  voltage): ``vt · log((1 + e^{x/vt}) / (1 + e^{(x−1)/vt}))``. Its slope is
  ``σ(x/vt) − σ((x−1)/vt) ∈ (0, 1)``; it tends to ``hard_sigmoid`` as vt → 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def clamp(x, lo: float = 0.0, hi: float = 1.0):
    """Clamp to ``[lo, hi]`` (diodes to rails at lo and hi). Lipschitz constant 1."""
    return jnp.clip(x, lo, hi)


def hard_sigmoid(x):
    """``min(1, max(0, x))``. Lipschitz constant 1."""
    return jnp.clip(x, 0.0, 1.0)


def relu(x):
    """``max(0, x)``. Lipschitz constant 1."""
    return jnp.maximum(x, 0.0)


def tempered_hard_sigmoid(x):
    """``max(0, min(1, x/2))``. Lipschitz constant ½."""
    return jnp.clip(x * 0.5, 0.0, 1.0)


def diode_clamp(x, vt: float = 0.02):
    """Smooth diode clamp to rails 0 and 1 with thermal scale ``vt`` (normalized). Lipschitz ≤ 1."""
    return vt * (jax.nn.softplus(x / vt) - jax.nn.softplus((x - 1.0) / vt))


NONLINEARITIES = {
    "hard_sigmoid": hard_sigmoid,
    "clamp": clamp,
    "relu": relu,
    "tempered_hard_sigmoid": tempered_hard_sigmoid,
    "diode_clamp": diode_clamp,
}

#: Tight Lipschitz constants (diode_clamp: supremum, approached for vt → 0).
LIPSCHITZ = {"hard_sigmoid": 1.0, "clamp": 1.0, "relu": 1.0, "tempered_hard_sigmoid": 0.5,
             "diode_clamp": 1.0}
