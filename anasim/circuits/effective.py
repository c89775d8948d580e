"""The hardware as built: realized matrices, node loads and the damping they allow.

What a fabricated and programmed layered chip (:class:`~anasim.circuits.layered.Hardware`)
realizes, read from the devices' noiseless ``effective()`` (docs/design.md, “Layers”):

    effective_matrices(spec, hw) -> EffectiveCircuit      # dense realized W, θ_0, b (float64)
    relaxation_eta(spec, hw) -> η                          # the damping a relaxation uses
    leaks(spec, hw) -> list | None                         # output conductance on each node

A device whose transposed read is −θᵀ (``skew_link``, a gyrator array)
realizes its forward block with ``forward()`` and its transposed read with
``effective_t()``; a device with ``output_load`` loads the nodes it drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits import damping
from anasim.circuits.maps import activation_gain
from anasim.circuits.precision import spec_precision
from anasim.circuits.spec import CircuitSpec

Array = jax.Array
Hardware = Any   # anasim.circuits.layered.Hardware


@dataclass(frozen=True)
class EffectiveCircuit:
    """The realized (noiseless) circuit as dense matrices, for analysis.

    Attributes:
        W: recurrent matrix over the stacked layers s_1 … s_L, shape (N, N),
            N = Σ n_k; block (k+1, k) is the realized θ_k, block (k, k+1) the
            realized backward direction times (2λ − 1) (ψ_k for asymmetric);
            the diagonal holds −G, the output conductances that load the
            nodes (gyrator OTAs; 0 for other devices).
        theta0: realized input projection, shape (n_1, n_in).
        bias: stacked biases, shape (N,).
        sizes: (n_in, n_1, …, n_L).
        gains: per-unit activation gain g (f = P(g a)), shape (N,).
        activations: activation name per layer 1 … L.
    """

    W: np.ndarray
    theta0: np.ndarray
    bias: np.ndarray
    sizes: tuple
    gains: np.ndarray
    activations: tuple

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start index of each layer 1 … L in the stacked state (and N at the end)."""
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(self.sizes[1:])]))


def realized_forward(dev, state) -> Array:
    """The matrix ``dev.mvm`` realizes (noiseless). A gyrator array's (``skew_link``)
    effective() is the block matrix of both layers; its forward (b ← a) block is
    ``forward()``."""
    if dev.skew_link:
        return dev.forward(state)
    return dev.effective(state)


def _effective(dev, state) -> np.ndarray:
    return np.asarray(realized_forward(dev, state), np.float64)


def relaxation_eta(spec: CircuitSpec, hw: Hardware) -> Array:
    """The damping η one relaxation of ``spec`` on ``hw`` uses: ``spec.eta``, or
    with ``spec.eta_auto`` min(η, η*) from the realized couplings
    (:mod:`anasim.circuits.damping`). Jittable; float32 scalar."""
    if not spec.eta_auto:
        return jnp.asarray(spec.eta, jnp.float32)
    dev = hw.profile.coupling
    blocks = [jnp.asarray(realized_forward(dev, f), jnp.float32) for f in hw.forward]
    gain = max(activation_gain(a) for a in spec.activations)
    return damping.auto_eta(spec.eta, spec.schedule, blocks, 2.0 * spec.lam_mix - 1.0, spec.sizes[1:], gain)


def leaks(spec: CircuitSpec, hw: Hardware) -> list | None:
    """Output conductance loading each node of layers 1 … L (normalized), or None.

    A gyrator's OTAs each load their output node with g_out; a node carries
    one OTA output per link, so layer k sees the sum over its couplings. The
    current −G_k s_k adds to the node's pre-activation.
    """
    dev = hw.profile.coupling
    if not dev.output_load:
        return None
    L = spec.n_layers
    load = [jnp.zeros((n,), jnp.dtype(spec.dtype)) for n in spec.sizes[1:]]
    _, g_b = dev.output_conductance(hw.input_state)
    load[0] = load[0] + g_b
    for k in range(L - 1):
        g_a, g_b = dev.output_conductance(hw.forward[k])
        load[k] = load[k] + g_a
        load[k + 1] = load[k + 1] + g_b
    for k in range(len(hw.backward)):
        g_a, g_b = dev.output_conductance(hw.backward[k])   # programmed (n_k, n_{k+1}): b = lower
        load[k] = load[k] + g_b
        load[k + 1] = load[k + 1] + g_a
    return [jnp.asarray(v, jnp.dtype(spec.dtype)) for v in load]


def _effective_backward(dev, mode: str, hw: Hardware, k: int) -> np.ndarray:
    """Realized matrix B_k with backward current = B_k v (v the mixed upper-layer state)."""
    if mode in ("copy", "independent"):
        return _effective(dev, hw.backward[k])
    if dev.skew_link:
        bt = np.asarray(dev.effective_t(hw.forward[k]), np.float64)
    else:
        bt = _effective(dev, hw.forward[k]).T
    # a gyrator's transposed read is −θᵀ and the engine drives it with −v
    return -bt if mode == "gyrator" else bt


@spec_precision
def effective_matrices(spec: CircuitSpec, hw: Hardware) -> EffectiveCircuit:
    """Dense realized matrices of the built chip (``effective()`` of every device), float64."""
    dev = hw.profile.coupling
    sizes = spec.sizes
    L = spec.n_layers
    offs = np.concatenate([[0], np.cumsum(sizes[1:])]).astype(int)
    N = int(offs[-1])
    W = np.zeros((N, N))
    coef = 1.0 if spec.asymmetric else 2.0 * spec.lam_mix - 1.0
    for k in range(L - 1):
        r0, r1 = offs[k + 1], offs[k + 2]          # layer k+2 (1-based)
        c0, c1 = offs[k], offs[k + 1]              # layer k+1
        W[r0:r1, c0:c1] = _effective(dev, hw.forward[k])
        W[c0:c1, r0:r1] = coef * _effective_backward(dev, hw.backward_mode, hw, k)
    node_leaks = leaks(spec, hw)
    if node_leaks is not None:
        W -= np.diag(np.concatenate([np.asarray(v, np.float64) for v in node_leaks]))
    gains = np.concatenate([np.full(n, activation_gain(a)) for n, a in zip(sizes[1:], spec.activations)])
    bias = np.concatenate([np.asarray(b, np.float64) for b in hw.biases])
    return EffectiveCircuit(W=W, theta0=_effective(dev, hw.input_state), bias=bias, sizes=sizes,
                            gains=gains, activations=spec.activations)


__all__ = ["EffectiveCircuit", "effective_matrices", "leaks", "realized_forward", "relaxation_eta"]
