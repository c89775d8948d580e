"""Local learning rule for convolutional circuits: dyadic learning with shared kernels.

The dyadic rule of :func:`anasim.learning.rules.dyadic` (Høier et al., eq. 5)
updates every coupling by outer products of the two compartments' states,

    ∇θ_k = −(1/2β) [λ (s⁺_k ⊗ s⁺_{k−1} − s⁻_k ⊗ s⁻_{k−1}) + λ̄ (s⁺_k ⊗ s⁻_{k−1} − s⁻_k ⊗ s⁺_{k−1})].

A convolution's kernel weight is shared by all its physical copies (one per
output position), so its update is the sum over positions of the per-copy
outer products: the correlation

    corr(u, v)[dy, dx, c, o] = Σ_{h, w} u[h, w, o] · v[h + dy − r, w + dx − r, c]

of the upper map u with the (squeezed) lower map v — the same local quantity
each copy sees, accumulated. Biases are shared per channel (summed over
positions) on conv layers. The input coupling uses x in both compartments,
the biases the difference s⁺ − s⁻, each with 1/(2β) (see
:mod:`anasim.learning.rules`). For ``asymmetric`` circuits the forward kernels
take the λ = 1 formula and each backward kernel ψ_k the transposed update of
θ_k (flipped, channels swapped), as the layered controller does (so ψ tracks
θᵀ up to its initial difference).

All estimates are batch means, returned as a :class:`~anasim.circuits.conv.ConvParams`
of the same shapes as the parameters (descend along them).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from anasim.circuits.conv import (ConvCircuitSpec, ConvHardware, ConvParams, patches, read_states, relax,
                                  squeeze, transpose_kernel)
from anasim.errors import AnasimError


def correlation(spec: ConvCircuitSpec, k: int, u, v):
    """Batch mean of Σ_positions u ⊗ (lower view of v) for coupling k (1-based).

    ``u``: layer k states (batch, *shape_k); ``v``: layer k−1 states
    (batch, *shape_{k−1}). Returns θ_k's shape: (k, k, C_in, C_out) or (n_out, n_in).
    """
    ly = spec.layers[k - 1]
    B = u.shape[0]
    if ly.pool:
        v = squeeze(v)
    if ly.kind == "dense":
        return jnp.einsum("bi,bj->ij", u.reshape(B, -1), v.reshape(B, -1)) / B
    kk = ly.kernel
    p = patches(v, kk)                                                    # (B, H, W, k²·C_in)
    g = jnp.einsum("bhwp,bhwo->po", p, u) / B
    return g.reshape(kk, kk, v.shape[-1], u.shape[-1])


def _bias_sum(spec: ConvCircuitSpec, k: int, d):
    """Batch mean of d summed over positions (conv: per channel), layer k (1-based)."""
    B = d.shape[0]
    if spec.layers[k - 1].kind == "conv":
        return jnp.sum(d, axis=(0, 1, 2)) / B
    return jnp.sum(d, axis=0) / B


def dyadic_conv(spec: ConvCircuitSpec, x, s_plus, s_minus, beta) -> ConvParams:
    """Dyadic gradient estimate of every kernel, ψ and bias of a convolutional circuit.

    ``x``: inputs (batch, H, W, C) (or flattened); ``s_plus``/``s_minus``: the
    compartments per layer at the nudged equilibrium (nudge strength β > 0).
    """
    if isinstance(beta, (int, float)) and beta == 0:
        raise AnasimError("beta: the dyadic rule needs a nonzero nudge strength")
    L = spec.n_layers
    if len(s_plus) != L or len(s_minus) != L:
        raise AnasimError(f"states: expected {L} layers per compartment, got {len(s_plus)}, {len(s_minus)}")
    x = jnp.asarray(x).reshape((-1,) + spec.input_shape)
    lam = spec.lam_mix
    lb = 1.0 - lam
    c = -1.0 / (2.0 * beta)
    kernels = [c * correlation(spec, 1, s_plus[0] - s_minus[0], x)]
    for k in range(2, L + 1):
        sp_u, sm_u, sp_l, sm_l = s_plus[k - 1], s_minus[k - 1], s_plus[k - 2], s_minus[k - 2]
        g = lam * (correlation(spec, k, sp_u, sp_l) - correlation(spec, k, sm_u, sm_l))
        if lb:
            g = g + lb * (correlation(spec, k, sp_u, sm_l) - correlation(spec, k, sm_u, sp_l))
        kernels.append(c * g)
    biases = tuple(c * _bias_sum(spec, k, s_plus[k - 1] - s_minus[k - 1]) for k in range(1, L + 1))
    backward = ()
    if spec.asymmetric:
        backward = tuple(transpose_kernel(kernels[k - 1]) if spec.layers[k - 1].kind == "conv"
                         else kernels[k - 1].T for k in range(2, L + 1))
    return ConvParams(kernels=tuple(kernels), biases=biases, backward=backward)


def dyadic_step(spec: ConvCircuitSpec, hw: ConvHardware, x, y, key, beta: float):
    """One on-device gradient estimate: relax the centered nudged phases (β, β) on the
    chip, read both compartments through the ADCs, apply :func:`dyadic_conv`.

    Returns ``(grads, eq)``: the :class:`ConvParams`-shaped estimate and the
    :class:`~anasim.circuits.layered.Equilibrium` (for iteration counts and flags).
    """
    k_relax, k_read = jax.random.split(key)
    eq = relax(spec, hw, x, k_relax, nudge=(beta, beta), target=y)
    sp, sm = read_states(hw, eq, k_read)
    return _dyadic_jit(spec, jnp.asarray(x, sp[0].dtype), sp, sm, beta), eq


@functools.partial(jax.jit, static_argnums=0)
def _dyadic_jit(spec, x, sp, sm, beta):
    return dyadic_conv(spec, x, sp, sm, beta)


__all__ = ["correlation", "dyadic_conv", "dyadic_step"]
