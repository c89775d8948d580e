"""The linear maps of convolutional circuits: convolutions, their transposes, squeezes, patches.

Layers are NHWC images; kernels HWIO. Every map here is exact (no devices):

    squeeze(x), unsqueeze(x)            # 2×2 space-to-depth and back (a permutation)
    conv(x, K), conv_transpose(u, K)    # same-padded stride-1 convolution and its adjoint
    transpose_kernel(K)                 # the kernel of the transposed convolution
    patches(x, k), fold_patches(p, k, C)  # k×k patches per position and their transpose
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from anasim.errors import AnasimError

Array = jax.Array


def squeeze(x: Array) -> Array:
    """Space-to-depth 2×2: (…, H, W, C) → (…, H/2, W/2, 4C); a permutation of the units.

    The four pixels of each 2×2 block become channels, ordered (row, col, c).
    """
    *lead, H, W, C = x.shape
    if H % 2 or W % 2:
        raise AnasimError(f"squeeze: image height and width must be even, got {H}×{W}")
    n = len(lead)
    y = x.reshape(*lead, H // 2, 2, W // 2, 2, C)
    order = tuple(range(n)) + (n, n + 2, n + 1, n + 3, n + 4)   # (…, H/2, W/2, 2, 2, C)
    return y.transpose(order).reshape(*lead, H // 2, W // 2, 4 * C)


def unsqueeze(x: Array) -> Array:
    """Depth-to-space 2×2, the inverse (and transpose) of :func:`squeeze`."""
    *lead, h, w, C4 = x.shape
    if C4 % 4:
        raise AnasimError(f"unsqueeze: channels must be a multiple of 4, got {C4}")
    C = C4 // 4
    n = len(lead)
    y = x.reshape(*lead, h, w, 2, 2, C)
    order = tuple(range(n)) + (n, n + 2, n + 1, n + 3, n + 4)   # (…, h, 2, w, 2, C)
    return y.transpose(order).reshape(*lead, 2 * h, 2 * w, C)


def conv(x: Array, kernel: Array) -> Array:
    """Same-padded, stride-1 convolution (cross-correlation) of NHWC ``x`` with HWIO ``kernel``."""
    return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def transpose_kernel(kernel: Array) -> Array:
    """The kernel of the transposed convolution: spatially flipped, in/out channels swapped.

    For odd kernels with same padding and stride 1, conv(·, transpose_kernel(K))
    is exactly the transpose of conv(·, K).
    """
    return jnp.swapaxes(kernel[::-1, ::-1], 2, 3)


def conv_transpose(u: Array, kernel: Array) -> Array:
    """Transposed convolution: the adjoint of :func:`conv` with the same kernel."""
    return conv(u, transpose_kernel(kernel))


def patches(x: Array, k: int) -> Array:
    """Same-padded k×k patches: (N, H, W, C) → (N, H, W, k·k·C), taps ordered (dy, dx, c)
    as the rows of an HWIO kernel reshaped to (k·k·C, C_out)."""
    r = k // 2
    N, H, W, C = x.shape
    xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
    taps = [xp[:, dy:dy + H, dx:dx + W, :] for dy in range(k) for dx in range(k)]
    return jnp.stack(taps, axis=3).reshape(N, H, W, k * k * C)


def fold_patches(p: Array, k: int, C: int) -> Array:
    """The transpose of :func:`patches`: sums every tap back onto its input pixel."""
    N, H, W, _ = p.shape
    r = k // 2
    p = p.reshape(N, H, W, k * k, C)
    out = jnp.zeros((N, H + 2 * r, W + 2 * r, C), p.dtype)
    t = 0
    for dy in range(k):
        for dx in range(k):
            out = out.at[:, dy:dy + H, dx:dx + W, :].add(p[:, :, :, t, :])
            t += 1
    return out[:, r:r + H, r:r + W, :]



__all__ = ["conv", "conv_transpose", "fold_patches", "patches", "squeeze", "transpose_kernel", "unsqueeze"]
