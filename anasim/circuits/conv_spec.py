"""Convolutional circuit specs: the layers, their couplings and the relaxation settings.

A :class:`ConvCircuitSpec` is a chain of layers s_0 = x (clamped image),
s_1 … s_L, each an image (H, W, C) or a dense vector (n,), with the coupling
into layer k a :class:`ConvLayer` (see :mod:`anasim.circuits.conv`). It relaxes
on the convolutional engine (``spec.engine == "conv"``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from anasim.circuits.spec import ACTIVATIONS, COSTS, DTYPES, SCHEDULES, LamStructure
from anasim.errors import AnasimError

CONV_BACKWARDS = ("transpose", "copy", "independent")
#: Neuron nonlinearities of convolutional circuits: the layered ones, plus
#: hard_tanh = clip(a, −1, 1) for signed image layers (a reconstruction in [−1, 1]).
CONV_ACTIVATIONS = ACTIVATIONS + ("hard_tanh",)


@dataclass(frozen=True)
class ConvLayer:
    """One layer and the coupling into it.

    Attributes:
        kind: ``"conv"`` (an image layer) or ``"dense"`` (a vector layer).
        size: output channels (conv) or units (dense).
        kernel: odd kernel size k of a conv coupling (3 or 5 in the examples).
        pool: squeeze the lower layer 2×2 before the coupling (halves H and W).
    """

    kind: str
    size: int
    kernel: int = 3
    pool: bool = False


@dataclass(frozen=True)
class ConvCircuitSpec(LamStructure):
    """A convolutional Hopfield circuit (hashable: a static argument of ``jax.jit``).

    Attributes:
        input_shape: (H, W, C) of the clamped input image.
        layers: the :class:`ConvLayer` of layers 1 … L.
        lam: structure λ in [0, 1], or ``"asymmetric"``.
        activations: one nonlinearity name per layer (default hard_sigmoid).
        output_layer: which layer (1 … L) is read out and nudged (default L).
        cost: ``"squared"`` (½‖s_out − y‖² over all units) or ``"cross_entropy"``
            (dense output only).
        eta, schedule, max_iters, tol, stall_window, dtype: the relaxation, as in
            :class:`~anasim.circuits.spec.CircuitSpec`.
        backward: ``transpose`` or ``copy``; ``asymmetric`` circuits always use
            ``independent`` (set automatically).
        init_scale: couplings start U(±init_scale/√fan_in), fan_in = k²·C_in or n_in.
    """

    input_shape: tuple
    layers: tuple
    lam: float | str = 1.0
    activations: tuple = ()
    output_layer: int = 0
    cost: str = "squared"
    eta: float = 0.5
    schedule: str = "async"
    max_iters: int = 100
    tol: float = 1e-4
    stall_window: int = 0
    backward: str = "transpose"
    init_scale: float = 1.0
    dtype: str = "float32"

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("input_shape", tuple(int(v) for v in self.input_shape))
        set_("layers", tuple(self.layers))
        L = len(self.layers)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise AnasimError(f"input_shape: expected (H, W, C) positive, got {self.input_shape}")
        if L < 1:
            raise AnasimError("layers: expected at least one layer")
        for i, ly in enumerate(self.layers):
            if not isinstance(ly, ConvLayer) or ly.kind not in ("conv", "dense"):
                raise AnasimError(f"layers[{i}]: expected ConvLayer of kind 'conv' or 'dense'")
            if ly.size < 1 or (ly.kind == "conv" and (ly.kernel < 1 or ly.kernel % 2 == 0)):
                raise AnasimError(f"layers[{i}]: expected size ≥ 1 and an odd kernel, got {ly}")
        if not self.activations:
            set_("activations", ("hard_sigmoid",) * L)
        set_("activations", tuple(self.activations))
        if len(self.activations) != L or any(a not in CONV_ACTIVATIONS for a in self.activations):
            raise AnasimError(f"activations: expected {L} names from {CONV_ACTIVATIONS}, got {self.activations}")
        if self.output_layer == 0:
            set_("output_layer", L)
        if not 1 <= self.output_layer <= L:
            raise AnasimError(f"output_layer: expected 1 … {L}, got {self.output_layer}")
        if not (self.lam == "asymmetric" or (isinstance(self.lam, (int, float)) and 0.0 <= self.lam <= 1.0)):
            raise AnasimError(f"lam: expected a number in [0, 1] or 'asymmetric', got {self.lam!r}")
        if self.schedule not in SCHEDULES or self.cost not in COSTS or self.dtype not in DTYPES:
            raise AnasimError(f"schedule/cost/dtype: expected {SCHEDULES}/{COSTS}/{DTYPES}")
        if self.backward not in CONV_BACKWARDS:
            raise AnasimError(f"backward: expected one of {CONV_BACKWARDS}, got {self.backward!r}")
        if self.lam == "asymmetric":
            set_("backward", "independent")     # ψ is its own coupling: always a separate bank
        elif self.backward == "independent":
            raise AnasimError("backward: 'independent' needs lam = 'asymmetric'")
        if not 0.0 < self.eta <= 1.0 or self.max_iters < 1:
            raise AnasimError(f"eta/max_iters: expected η in (0, 1] and ≥ 1 iteration, got {self.eta}, {self.max_iters}")
        if self.cost == "cross_entropy" and self.layers[self.output_layer - 1].kind != "dense":
            raise AnasimError("cost: cross_entropy needs a dense output layer")
        self.shapes  # validates the geometry

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def shapes(self) -> tuple:
        """Per-unit shapes of layers 0 … L: (H, W, C) or (n,)."""
        out = [self.input_shape]
        for i, ly in enumerate(self.layers):
            lo = out[-1]
            if ly.pool:
                if len(lo) != 3 or lo[0] % 2 or lo[1] % 2:
                    raise AnasimError(f"layers[{i}].pool: the lower layer must be an image of even size, got {lo}")
                lo = (lo[0] // 2, lo[1] // 2, 4 * lo[2])
            if ly.kind == "conv":
                if len(lo) != 3:
                    raise AnasimError(f"layers[{i}]: a conv layer cannot follow a dense layer")
                out.append((lo[0], lo[1], ly.size))
            else:
                out.append((ly.size,))
        return tuple(out)

    def coupling_in_shape(self, k: int) -> tuple:
        """Shape of layer k−1 as coupling k (1-based) sees it: after the squeeze."""
        lo = self.shapes[k - 1]
        if self.layers[k - 1].pool:
            lo = (lo[0] // 2, lo[1] // 2, 4 * lo[2])
        return lo

    def kernel_shape(self, k: int) -> tuple:
        """θ_k's shape (k 1-based): (k, k, C_in, C_out) or (n_out, n_in)."""
        ly = self.layers[k - 1]
        cin = self.coupling_in_shape(k)
        if ly.kind == "conv":
            return (ly.kernel, ly.kernel, cin[2], ly.size)
        return (ly.size, int(np.prod(cin)))

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_shape(self) -> tuple:
        return self.shapes[self.output_layer]


    @property
    def engine(self) -> str:
        """The relaxation engine (:func:`anasim.circuits.engine.engine_for`): always ``"conv"``."""
        return "conv"

    def physics(self) -> "ConvCircuitSpec":
        """What a compiled computation depends on: the whole spec (it carries no labels)."""
        return self


__all__ = ["CONV_ACTIVATIONS", "CONV_BACKWARDS", "ConvCircuitSpec", "ConvLayer"]
