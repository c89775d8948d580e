"""Convolutional Hopfield circuits on devices, and their dyadic relaxation.

A convolutional circuit is a chain of layers s_0 = x (clamped image), s_1 … s_L;
each layer is an image (H, W, C) or a dense vector (n,). The coupling into
layer k is one of

* ``conv``: an optional 2×2 squeeze (space-to-depth: (H, W, C) → (H/2, W/2, 4C),
  a permutation of the units, so pooling stays linear and lossless) followed by
  a k×k convolution (k odd, stride 1, same zero padding) with kernel
  θ_k of shape (k, k, C_in, C_out) (HWIO);
* ``dense``: an optional squeeze, flattening, and a matrix θ_k (n_out, n_in).

Structures (docs/design.md, “Circuits and relaxation”, W_λ = θ + (2λ − 1) θᵀ): λ = 1 symmetric (the
backward direction is the transposed convolution of the same kernel), λ = 0
skew (−transposed convolution), λ = ½ feedforward (no backward direction in
inference), ``"asymmetric"`` (an independent backward kernel ψ_k of shape
(k, k, C_out, C_in), read as a convolution from the upper layer). The dynamics
are the dyadic mirror descent of :mod:`anasim.circuits.layered`, layer-wise:

    a_k^± ← (1 − η) a_k^± + η [ F_k(λ s_{k−1}^± + λ̄ s_{k−1}^∓)
                               + B_{k+1}(λ s_{k+1}^± − λ̄ s_{k+1}^∓) + b_k ∓ β ∇ℓ(s_out^±)·[k = out] ]

with F_k the coupling into layer k and B_{k+1} its backward read (Fᵀ, or ψ);
the input term of layer 1 is F_1 x for both compartments. The output layer is
any layer (``output_layer``): a classifier reads the last, a denoiser the first
(the reconstruction next to the input). Schedules ``sync`` and ``async``
(even layers, then odd), convergence measured as in
:func:`anasim.circuits.layered.relax`; the result is a
:class:`~anasim.circuits.layered.Equilibrium` whose per-layer states have the
layer shapes (batch, H, W, C) or (batch, n).

Devices. A convolution shares each kernel weight among all output positions,
but a physical array holds one pixel/conductance for every *copy* of it: each
copy has its own fixed-pattern error. The circuit realizes the unrolled
(Toeplitz) matrix in an equivalent per-position form: output position (h, w)
of a convolution is its own crossbar *tile* of shape (C_out, k²·C_in) (rows:
output channels, columns: the taps (dy, dx, c_in) of the input patch), fed
with a copy of the patch through the fan-out optics/wiring. A coupling is a
bank of H·W tiles, fabricated with one key per tile and programmed with the
same kernel, so the realized weights form a tensor (H, W, C_out, k², C_in):
memory H·W·k²·C_in·C_out, not (H·W)²·C_in·C_out. A read is one ``mvm`` of
every tile (``jax.vmap`` over the device contract, temporal noise per tile);
a reciprocal device reads its transposed convolution back through the same
tiles (``mvm_t``) and folds the patches onto the input grid. Backward
realizations as in :mod:`anasim.circuits.spec`: ``transpose`` (the same tiles,
read from the other side), ``copy`` (a second bank programmed with the
transposed kernel — flipped, channels swapped — as an SLM needs), ``independent``
(a second bank programmed with ψ). A dense coupling is one device. With the
ideal profile the circuit skips the tiles and calls
``jax.lax.conv_general_dilated`` directly (identical by construction).

Public API::

    ConvLayer(kind, size, kernel=3, pool=False)
    ConvCircuitSpec(input_shape, layers, lam=1.0, ...)
    ConvParams(kernels, biases, backward=())          # pytree
    init_params(spec, key) -> ConvParams
    build(spec, profile, params, key) -> ConvHardware  # fabricate + program
    reprogram(spec, hw, params, key) -> ConvHardware   # a write (shadow copy)
    relax(spec, hw, x, key, *, nudge=(0., 0.), target=None, state0=None, eta=None) -> Equilibrium
    read_states(hw, eq, key), output(spec, eq)
    fixed_point_map(spec, params, x, s)                # ideal free map (for implicit differentiation)
    squeeze(x), unsqueeze(x), conv(x, K), conv_transpose(u, K), transpose_kernel(K)
    forward_matrix(spec, hw, k), backward_matrix(spec, hw, k)   # realized dense matrices (analysis)
    tile_weights(spec, hw, k)                          # realized per-copy weights
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits.chip import build_chip, check_realization, reprogram_chip
from anasim.circuits.conv_ops import (conv, conv_transpose, fold_patches, patches, squeeze, transpose_kernel,
                                      unsqueeze)
from anasim.circuits.conv_spec import CONV_ACTIVATIONS, CONV_BACKWARDS, ConvCircuitSpec, ConvLayer
from anasim.circuits.maps import activation as _layered_activation
from anasim.circuits.maps import cost_grad
from anasim.circuits.precision import spec_precision
# read_states serves both engines: either chip has one ADC tile per layer in ``hw.adc``
from anasim.circuits.relaxation import (Equilibrium, is_static_zero, mix_compartments_backward,
                                        mix_compartments_forward, read_states, relaxation_loop, run_relaxation)
from anasim.devices.base import IdealCoupling
from anasim.devices.profile import DeviceProfile
from anasim.errors import AnasimError

Array = jax.Array


def activation(name: str):
    """The neuron nonlinearity ``name`` (:data:`CONV_ACTIVATIONS`) as an elementwise function."""
    if name == "hard_tanh":
        return lambda a: jnp.clip(a, -1.0, 1.0)
    return _layered_activation(name)


# --- parameters -------------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ConvParams:
    """Intended couplings (a pytree; the learning rule's variables).

    Attributes:
        kernels: θ_k into layer k, k = 1 … L: HWIO conv kernels or dense matrices.
        biases: b_k per channel (conv, shape (C,)) or per unit (dense, (n,)).
        backward: ψ_k for ``asymmetric`` (k = 2 … L): HWIO kernels from layer k
            into layer k−1 (after its squeeze), or (n_in, n_out) matrices; else ().
    """

    kernels: tuple
    biases: tuple
    backward: tuple = ()


@spec_precision
def init_params(spec: ConvCircuitSpec, key: Array) -> ConvParams:
    """Couplings U(±init_scale/√fan_in), zero biases."""
    dt = jnp.dtype(spec.dtype)
    L = spec.n_layers
    keys = jax.random.split(key, 2 * L)

    def draw(kk, shape, fan_in):
        a = spec.init_scale / math.sqrt(fan_in)
        return a * jax.random.uniform(kk, shape, dt, -1.0, 1.0)

    def fan(k, shape):
        return int(np.prod(shape[:3])) if spec.layers[k - 1].kind == "conv" else shape[1]

    kernels = tuple(draw(keys[k - 1], spec.kernel_shape(k), fan(k, spec.kernel_shape(k))) for k in range(1, L + 1))
    biases = tuple(jnp.zeros((spec.shapes[k][-1],), dt) for k in range(1, L + 1))
    backward = ()
    if spec.asymmetric:
        back = []
        for k in range(2, L + 1):
            ks = spec.kernel_shape(k)
            if spec.layers[k - 1].kind == "conv":
                shape, fan_in = (ks[0], ks[1], ks[3], ks[2]), ks[0] * ks[1] * ks[3]
            else:
                shape, fan_in = (ks[1], ks[0]), ks[0]
            back.append(draw(keys[L + k - 1], shape, fan_in))
        backward = tuple(back)
    return ConvParams(kernels=kernels, biases=biases, backward=backward)



# --- ideal couplings --------------------------------------------------------------------

def _lower_view(spec, k, s):
    """Layer k−1's state (N, *shape) as coupling k sees it (squeezed; flattened for dense)."""
    if spec.layers[k - 1].pool:
        s = squeeze(s)
    if spec.layers[k - 1].kind == "dense":
        s = s.reshape(s.shape[0], -1)
    return s


def _to_lower(spec, k, v):
    """Inverse of :func:`_lower_view` (a backward current into layer k−1)."""
    if spec.layers[k - 1].kind == "dense":
        v = v.reshape((v.shape[0],) + spec.coupling_in_shape(k))
    if spec.layers[k - 1].pool:
        v = unsqueeze(v)
    return v


def ideal_forward(spec, k, kernel, s_lower):
    """F_k s_{k−1} with an exact kernel (conv primitive or matmul); s: (N, *shape_{k−1})."""
    v = _lower_view(spec, k, s_lower)
    return conv(v, kernel) if spec.layers[k - 1].kind == "conv" else v @ kernel.T


def ideal_transpose(spec, k, kernel, u):
    """F_kᵀ u: the transposed coupling back into layer k−1."""
    v = conv_transpose(u, kernel) if spec.layers[k - 1].kind == "conv" else u @ kernel
    return _to_lower(spec, k, v)


def ideal_independent(spec, k, psi, u):
    """ψ_k u: an independent backward coupling from layer k into layer k−1."""
    v = conv(u, psi) if spec.layers[k - 1].kind == "conv" else u @ psi.T
    return _to_lower(spec, k, v)


def _add_bias(spec, k, total, b):
    return total + b.astype(total.dtype)   # per channel (last axis) or per unit


def fixed_point_map(spec: ConvCircuitSpec, params: ConvParams, x: Array, s: tuple) -> tuple:
    """One undamped free update of the IDEAL circuit, s_k ← f_k(F_k s_{k−1} + B_{k+1} s_{k+1} + b_k).

    B = (2λ − 1) F_{k+1}ᵀ (ψ for asymmetric). ``x`` (N, H, W, C), ``s`` per layer
    (N, *shape). Pure and differentiable: its fixed points are the free
    equilibria (used for implicit differentiation).
    """
    L = spec.n_layers
    coef = 1.0 if spec.asymmetric else 2.0 * spec.lam_mix - 1.0
    out = []
    for k in range(1, L + 1):
        lower = x if k == 1 else s[k - 2]
        total = ideal_forward(spec, k, params.kernels[k - 1], lower)
        if k < L:
            if spec.asymmetric:
                total = total + ideal_independent(spec, k + 1, params.backward[k - 1], s[k])
            elif coef:
                total = total + coef * ideal_transpose(spec, k + 1, params.kernels[k], s[k])
        total = _add_bias(spec, k, total, params.biases[k - 1])
        out.append(activation(spec.activations[k - 1])(total))
    return tuple(out)



# --- hardware ---------------------------------------------------------------------------

def _is_ideal(profile: DeviceProfile) -> bool:
    return isinstance(profile.coupling, IdealCoupling)


def _tile_matrix(kernel: Array) -> Array:
    """HWIO kernel → the (C_out, k²·C_in) matrix one position's tile is programmed with."""
    kh, kw, ci, co = kernel.shape
    return kernel.reshape(kh * kw * ci, co).T


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ConvHardware:
    """One fabricated and programmed convolutional chip (a pytree).

    Attributes:
        forward: per coupling k = 1 … L: the programmed bank (conv: device states
            stacked over the H·W output positions; dense: one device state), or
            the exact kernel on the ideal profile.
        backward: per coupling k = 2 … L the backward bank for ``copy`` and
            ``independent`` (conv banks live on the lower layer's grid); () for
            ``transpose``.
        forward_inst, backward_inst: fabricated instances (fixed patterns), for reprogramming.
        biases: exact injected bias currents per layer.
        dac: DAC instances for layers 0 … L; adc: ADC instances for layers 1 … L.
    """

    forward: tuple
    backward: tuple
    forward_inst: tuple
    backward_inst: tuple
    biases: tuple
    dac: tuple
    adc: tuple
    profile: DeviceProfile = field(metadata=dict(static=True), default=None)
    backward_mode: str = field(metadata=dict(static=True), default="transpose")
    ideal: bool = field(metadata=dict(static=True), default=True)


def _back_kernel(spec, params, k):
    """Target of the backward bank of coupling k (1-based, k ≥ 2) for copy/independent."""
    if spec.asymmetric:
        return params.backward[k - 2]
    K = params.kernels[k - 1]
    return transpose_kernel(K) if spec.layers[k - 1].kind == "conv" else K.T


def _fabricate_bank(dev, key, spec, k, backward: bool):
    ly = spec.layers[k - 1]
    if ly.kind == "dense":
        n_out, n_in = spec.kernel_shape(k)
        return dev.fabricate(key, (n_in, n_out) if backward else (n_out, n_in))
    kk, _, ci, co = spec.kernel_shape(k)
    H, W = spec.shapes[k][:2]
    rows, cols = (ci, kk * kk * co) if backward else (co, kk * kk * ci)
    return jax.vmap(lambda q: dev.fabricate(q, (rows, cols)))(jax.random.split(key, H * W))


def _program_bank(dev, inst, key, spec, k, target):
    if spec.layers[k - 1].kind == "dense":
        return dev.program(inst, key, target)
    H, W = spec.shapes[k][:2]
    w = _tile_matrix(target)
    return jax.vmap(lambda i, q: dev.program(i, q, w))(inst, jax.random.split(key, H * W))


def _program(spec, profile, params, key, f_inst, b_inst):
    dt = jnp.dtype(spec.dtype)
    L = spec.n_layers
    cast = lambda t: jax.tree_util.tree_map(lambda a: a.astype(dt) if jnp.issubdtype(a.dtype, jnp.floating) else a, t)
    biases = tuple(jnp.asarray(b, dt) for b in params.biases)
    if _is_ideal(profile):
        fwd = tuple(jnp.asarray(K, dt) for K in params.kernels)
        bwd = tuple(jnp.asarray(P, dt) for P in params.backward)
        return fwd, bwd, biases
    dev = profile.coupling
    keys = jax.random.split(key, 2 * L)
    fwd = tuple(_program_bank(dev, f_inst[k - 1], keys[k - 1], spec, k, jnp.asarray(params.kernels[k - 1], dt))
                for k in range(1, L + 1))
    bwd = ()
    if spec.backward in ("copy", "independent"):
        bwd = tuple(_program_bank(dev, b_inst[k - 2], keys[L + k - 1], spec, k,
                                  jnp.asarray(_back_kernel(spec, params, k), dt)) for k in range(2, L + 1))
    return cast(fwd), cast(bwd), biases


def _check_realization(spec: ConvCircuitSpec, profile: DeviceProfile) -> None:
    if _is_ideal(profile):
        return        # the ideal profile skips the tiles (exact kernels)
    check_realization(spec, profile, skew_links=False, circuit="convolutional circuits")


def _make(spec, profile, params, key):
    L = spec.n_layers
    dev = profile.coupling
    k_fab, k_prog, k_dac, k_adc = jax.random.split(key, 4)
    fk = jax.random.split(k_fab, 2 * L)
    ideal = _is_ideal(profile)
    if ideal:
        f_inst, b_inst = (), ()
    else:
        f_inst = tuple(_fabricate_bank(dev, fk[k - 1], spec, k, False) for k in range(1, L + 1))
        b_inst = ()
        if spec.backward in ("copy", "independent"):
            b_inst = tuple(_fabricate_bank(dev, fk[L + k - 1], spec, k, True) for k in range(2, L + 1))
    dk = jax.random.split(k_dac, L + 1)
    dac = tuple(profile.dac.fabricate(dk[k], spec.shapes[k]) for k in range(L + 1))
    ak = jax.random.split(k_adc, L)
    adc = tuple(profile.adc.fabricate(ak[k - 1], spec.shapes[k]) for k in range(1, L + 1))
    fwd, bwd, biases = _program(spec, profile, params, k_prog, f_inst, b_inst)
    return ConvHardware(forward=fwd, backward=bwd, forward_inst=f_inst, backward_inst=b_inst, biases=biases,
                        dac=dac, adc=adc, profile=profile, backward_mode=spec.backward, ideal=ideal)


def _write(spec, hw, params, key):
    fwd, bwd, biases = _program(spec, hw.profile, params, key, hw.forward_inst, hw.backward_inst)
    return replace(hw, forward=fwd, backward=bwd, biases=biases)


def build(spec: ConvCircuitSpec, profile: DeviceProfile, params: ConvParams, key: Array) -> ConvHardware:
    """Fabricate every tile and converter of the circuit and program ``params``."""
    _check_realization(spec, profile)
    if spec.asymmetric and len(params.backward) != spec.n_layers - 1:
        raise AnasimError("build: lam = 'asymmetric' needs ConvParams.backward (one ψ per coupling)")
    return build_chip(_make, spec, profile, params, key)


def reprogram(spec: ConvCircuitSpec, hw: ConvHardware, params: ConvParams, key: Array) -> ConvHardware:
    """Write ``params`` into the same chip (new programming errors, same fixed pattern)."""
    return reprogram_chip(_write, spec, hw, params, key)


# --- reads through the hardware ---------------------------------------------------------

def _bank_read(dev, state, v, k_size, key, transposed=False):
    """Read a conv bank on the grid of ``v`` (N, H, W, C): each tile sees its own patch.

    ``transposed``: drive the tiles' outputs with ``v`` (N, H, W, C_out) and fold
    the tap currents back onto the input grid (the reciprocal read, ``mvm_t``).
    """
    N, H, W, C = v.shape
    keys = jax.random.split(key, H * W)
    if not transposed:
        p = patches(v, k_size).reshape(N, H * W, -1).transpose(1, 0, 2)     # (HW, N, P)
        y = jax.vmap(dev.mvm)(state, p, keys)                                 # (HW, N, C_out)
        return y.transpose(1, 0, 2).reshape(N, H, W, -1)
    u = v.reshape(N, H * W, C).transpose(1, 0, 2)
    p = jax.vmap(dev.mvm_t)(state, u, keys)                                   # (HW, N, P)
    p = p.transpose(1, 0, 2).reshape(N, H, W, -1)
    return fold_patches(p, k_size, p.shape[-1] // (k_size * k_size))


def _hw_forward(spec, hw, k, s_lower, key):
    """Coupling k's forward read of layer k−1 (N, *shape) through its device bank."""
    if hw.ideal:
        return ideal_forward(spec, k, hw.forward[k - 1], s_lower)
    dev = hw.profile.coupling
    v = _lower_view(spec, k, s_lower)
    if spec.layers[k - 1].kind == "dense":
        return dev.mvm(hw.forward[k - 1], v, key)
    return _bank_read(dev, hw.forward[k - 1], v, spec.layers[k - 1].kernel, key)


def _hw_backward(spec, hw, k, u, key):
    """Coupling k's backward read of layer k (N, *shape) into layer k−1: Fᵀ u, or ψ u."""
    ly = spec.layers[k - 1]
    if hw.ideal:
        if spec.asymmetric:
            return ideal_independent(spec, k, hw.backward[k - 2], u)
        return ideal_transpose(spec, k, hw.forward[k - 1], u)
    dev = hw.profile.coupling
    if hw.backward_mode == "transpose":
        if ly.kind == "dense":
            v = dev.mvm_t(hw.forward[k - 1], u, key)
        else:
            v = _bank_read(dev, hw.forward[k - 1], u, ly.kernel, key, transposed=True)
    elif ly.kind == "dense":
        v = dev.mvm(hw.backward[k - 2], u, key)
    else:
        v = _bank_read(dev, hw.backward[k - 2], u, ly.kernel, key)
    return _to_lower(spec, k, v)


@spec_precision
def tile_weights(spec: ConvCircuitSpec, hw: ConvHardware, k: int, backward: bool = False) -> Array:
    """Realized per-copy weights of conv coupling k (1-based): (H, W, C_out, k², C_in).

    Entry [h, w, o, t, c] is the physical copy of kernel weight (tap t, c → o)
    used at output position (h, w). On the ideal profile every position holds
    the kernel itself. ``backward``: the copy/independent bank instead.
    """
    ly = spec.layers[k - 1]
    if ly.kind != "conv":
        raise AnasimError(f"tile_weights: coupling {k} is dense")
    H, W = spec.shapes[k][:2]
    kk = ly.kernel
    if hw.ideal:
        K = _back_kernel_hw(spec, hw, k) if backward else hw.forward[k - 1]
        m = _tile_matrix(K)
        w = jnp.broadcast_to(m, (H * W,) + m.shape)
    else:
        bank = hw.backward[k - 2] if backward else hw.forward[k - 1]
        w = jax.vmap(hw.profile.coupling.effective)(bank)
    rows = w.shape[1]
    return w.reshape(H, W, rows, kk * kk, -1)


def _back_kernel_hw(spec, hw, k):
    if spec.asymmetric:
        return hw.backward[k - 2]
    return transpose_kernel(hw.forward[k - 1])


def _dense_matrix(fn, in_shape, dtype) -> np.ndarray:
    """The matrix of the linear map ``fn`` (N, *in_shape) → (N, *out): columns = images of basis units."""
    n = int(np.prod(in_shape))
    eye = jnp.eye(n, dtype=dtype).reshape((n,) + tuple(in_shape))
    out = fn(eye).reshape(n, -1)
    return np.asarray(out, np.float64).T


@spec_precision
def forward_matrix(spec: ConvCircuitSpec, hw: ConvHardware, k: int) -> np.ndarray:
    """Realized dense (unrolled, Toeplitz) matrix of coupling k (1-based), NHWC-flattened,
    shape (n_k, n_{k−1}); from the noiseless per-copy weights. For analysis of small circuits."""
    dt = jnp.dtype(spec.dtype)
    if hw.ideal:
        return _dense_matrix(lambda e: ideal_forward(spec, k, hw.forward[k - 1], e), spec.shapes[k - 1], dt)
    dev = hw.profile.coupling
    ly = spec.layers[k - 1]
    if ly.kind == "dense":
        Wd = dev.effective(hw.forward[k - 1])
        return _dense_matrix(lambda e: _lower_view(spec, k, e) @ Wd.T, spec.shapes[k - 1], dt)
    w = tile_weights(spec, hw, k)
    H, W = spec.shapes[k][:2]

    def fn(e):
        p = patches(_lower_view(spec, k, e), ly.kernel)                 # (N, H, W, P)
        return jnp.einsum("nhwp,hwop->nhwo", p, w.reshape(H, W, w.shape[2], -1))
    return _dense_matrix(fn, spec.shapes[k - 1], dt)


@spec_precision
def backward_matrix(spec: ConvCircuitSpec, hw: ConvHardware, k: int) -> np.ndarray:
    """Realized matrix of coupling k's backward read (layer k → layer k−1), shape (n_{k−1}, n_k),
    before the structure factor (2λ − 1). ``transpose`` gives exactly forward_matrixᵀ."""
    dt = jnp.dtype(spec.dtype)
    ly = spec.layers[k - 1]
    if hw.ideal or hw.backward_mode == "transpose":
        if hw.ideal and spec.asymmetric:
            return _dense_matrix(lambda e: ideal_independent(spec, k, hw.backward[k - 2], e), spec.shapes[k], dt)
        return forward_matrix(spec, hw, k).T
    dev = hw.profile.coupling
    if ly.kind == "dense":
        Wd = dev.effective(hw.backward[k - 2])
        return _dense_matrix(lambda e: _to_lower(spec, k, e @ Wd.T), spec.shapes[k], dt)
    w = tile_weights(spec, hw, k, backward=True)
    H, W = spec.shapes[k][:2]

    def fn(e):
        p = patches(e, ly.kernel)
        return _to_lower(spec, k, jnp.einsum("nhwp,hwop->nhwo", p, w.reshape(H, W, w.shape[2], -1)))
    return _dense_matrix(fn, spec.shapes[k], dt)


# --- relaxation ---------------------------------------------------------------------------

@spec_precision
def relax(spec: ConvCircuitSpec, hw: ConvHardware, x: Array, key: Array, *, nudge=(0.0, 0.0),
          target: Array | None = None, state0: Equilibrium | None = None, eta: Array | None = None) -> Equilibrium:
    """Relax the circuit on images ``x`` (batch, H, W, C) — or flattened (batch, H·W·C).

    ``nudge`` (β₊, β₋) and ``target`` (batch, *output_shape) as in
    :func:`anasim.circuits.layered.relax`. Returns an
    :class:`~anasim.circuits.layered.Equilibrium` with per-layer states of
    shape (batch, *shape_k); iterations, residual and the converged /
    diverged / oscillating flags are measured the same way. ``eta``: the
    damping to relax with (default ``spec.eta``).
    """
    beta_p, beta_m = nudge
    free = is_static_zero(beta_p) and is_static_zero(beta_m)
    dt = jnp.dtype(spec.dtype)
    x = jnp.asarray(x, dt)
    B = x.shape[0]
    if x.shape[1:] != spec.input_shape:
        if x.ndim == 2 and x.shape[1] == spec.n_in:
            x = x.reshape((B,) + spec.input_shape)
        else:
            raise AnasimError(f"relax: x must have shape (batch, {spec.input_shape}) or (batch, {spec.n_in}), got {x.shape}")
    oshape = spec.output_shape
    if target is None:
        if not free:
            raise AnasimError("relax: a nonzero nudge needs a target")
        target = jnp.zeros((B,) + oshape, dt)
    target = jnp.asarray(target, dt)
    if target.size != B * int(np.prod(oshape)):
        raise AnasimError(f"relax: target must have shape ({B}, *{oshape}), got {target.shape}")
    target = target.reshape((B,) + oshape)
    C = 1 if free else 2
    if state0 is not None:
        src = (state0.a_plus,) if C == 1 else (state0.a_plus, state0.a_minus)
        a0 = tuple(jnp.stack([jnp.asarray(s[k], dt) for s in src]) for k in range(spec.n_layers))
    else:
        a0 = tuple(jnp.zeros((C, B) + sh, dt) for sh in spec.shapes[1:])
    return run_relaxation(_relax_body, spec, (C,), hw, x, key, jnp.asarray(beta_p, dt), jnp.asarray(beta_m, dt),
                          target, a0, jnp.asarray(spec.eta if eta is None else eta, dt), jnp.asarray(spec.tol, dt))


def _relax_body(spec, static, hw, x, key, beta_p, beta_m, target, a0, eta, tol):
    """The traced relaxation (:func:`~anasim.circuits.relaxation.run_relaxation`)."""
    (C,) = static
    dt = jnp.dtype(spec.dtype)
    L = spec.n_layers
    out = spec.output_layer - 1
    dac = hw.profile.dac
    lam = spec.lam_mix
    acts = [activation(n) for n in spec.activations]
    skip_backward = C == 1 and lam == 0.5 and not spec.asymmetric
    B = x.shape[0]

    k_in, k_loop = jax.random.split(key)
    k1, k2 = jax.random.split(k_in)
    inject = _hw_forward(spec, hw, 1, dac.convert(hw.dac[0], x, k1), k2).astype(dt)   # held input current

    def flat(v):        # (C, B, …) → (C·B, …)
        return v.reshape((C * B,) + v.shape[2:])

    def unflat(v):
        return v.reshape((C, B) + v.shape[1:])

    mix_forward = functools.partial(mix_compartments_forward, lam=lam)
    mix_backward = functools.partial(mix_compartments_backward, lam=lam, asymmetric=spec.asymmetric)

    betas = jnp.stack([beta_p, beta_m])[:C]
    signs = jnp.asarray([-1.0, 1.0], dt)[:C]
    bshape = (C,) + (1,) * (1 + len(spec.output_shape))
    betas, signs = betas.reshape(bshape), signs.reshape(bshape)

    def states(a_list):
        return [acts[j](a_list[j]) for j in range(L)]

    def update(layers, a_list, s_list, keys, res):
        new_a = list(a_list)
        for j in layers:                       # 0-based layer j is layer k = j + 1
            kf, kb, kd1, kd2 = jax.random.split(keys[j], 4)
            if j == 0:
                total = jnp.broadcast_to(inject, a_list[0].shape)
            else:
                d = dac.convert(hw.dac[j], s_list[j - 1], kd1)
                total = unflat(_hw_forward(spec, hw, j + 1, flat(mix_forward(d)), kf))
            if j < L - 1 and not skip_backward:
                d = dac.convert(hw.dac[j + 2], s_list[j + 1], kd2)
                total = total + unflat(_hw_backward(spec, hw, j + 2, flat(mix_backward(d)), kb))
            total = total + hw.biases[j]
            if j == out:
                total = total + signs * betas * cost_grad(spec, s_list[j], target[None])
            new_a[j] = ((1.0 - eta) * a_list[j] + eta * total).astype(dt)
            gap = jnp.abs(acts[j](total) - s_list[j])
            res[j] = jnp.max(gap.reshape(C, B, -1), axis=(0, 2))
        return new_a

    return relaxation_loop(update, states, a0, k_loop, schedule=spec.schedule, max_iters=spec.max_iters,
                           stall_window=spec.stall_window, tol=tol, res_dtype=dt)


def output(spec: ConvCircuitSpec, eq: Equilibrium) -> Array:
    """The output layer's mean state (s⁺ + s⁻)/2, shape (batch, *output_shape)."""
    j = spec.output_layer - 1
    return 0.5 * (eq.s_plus[j] + eq.s_minus[j])


# --- the engine object ----------------------------------------------------------------------

@dataclass(frozen=True)
class ConvEngine:
    """The engine of convolutional circuits (:class:`~anasim.circuits.engine.Engine`): the
    shared damped loop through per-copy device tiles. No clamped outputs and no
    complex nudge (``relax`` refuses both)."""

    name: str = "conv"
    abilities: frozenset = frozenset({"jit", "warm_start", "settling"})

    def init_params(self, spec: ConvCircuitSpec, key: Array) -> ConvParams:
        return init_params(spec, key)

    def build(self, spec: ConvCircuitSpec, profile: DeviceProfile, params: ConvParams, key: Array) -> ConvHardware:
        return build(spec, profile, params, key)

    def reprogram(self, spec: ConvCircuitSpec, hw: ConvHardware, params: ConvParams, key: Array) -> ConvHardware:
        return reprogram(spec, hw, params, key)

    def relax(self, spec: ConvCircuitSpec, hw: ConvHardware, x: Array, key: Array, *, nudge=(0.0, 0.0),
              target=None, clamp=(None, None), state0=None, eta=None) -> Equilibrium:
        if clamp[0] is not None or clamp[1] is not None:
            raise AnasimError("the conv engine has no clamped outputs (clamp must be (None, None))")
        if any(isinstance(b, complex) or jnp.iscomplexobj(b) for b in nudge):
            raise AnasimError("the conv engine has no complex nudge (holomorphic EP runs on the iterative engine)")
        return relax(spec, hw, x, key, nudge=nudge, target=target, state0=state0, eta=eta)

    def read(self, hw: ConvHardware, eq: Equilibrium, key: Array) -> tuple[tuple, tuple]:
        return read_states(hw, eq, key)

    def damping(self, spec: ConvCircuitSpec, hw: ConvHardware) -> None:
        return None   # the conv loop runs at the spec's fixed η


__all__ = [
    "CONV_ACTIVATIONS", "CONV_BACKWARDS", "ConvCircuitSpec", "ConvEngine", "ConvHardware", "ConvLayer", "ConvParams",
    "activation", "backward_matrix", "build", "conv", "conv_transpose", "fixed_point_map", "fold_patches",
    "forward_matrix", "ideal_forward", "ideal_independent", "ideal_transpose", "init_params", "output", "patches",
    "read_states", "relax", "reprogram", "squeeze", "tile_weights", "transpose_kernel", "unsqueeze",
]
