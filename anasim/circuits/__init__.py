"""Layered Hopfield circuits built from devices and their relaxation (DESIGN.md §4).

* :mod:`anasim.circuits.spec` -- :class:`CircuitSpec` and :func:`load_circuit` (TOML);
* :mod:`anasim.circuits.conv` -- convolutional circuits (:class:`ConvCircuitSpec`),
  per-copy device tiles, their relaxation;
* :mod:`anasim.circuits.layered` -- :class:`Params`, :func:`build` (fabricate and
  program a chip), :func:`relax` (the iterative engine through the device chain),
  :class:`Equilibrium`, and the ideal fixed-point maps for implicit differentiation.
"""

from anasim.circuits.layered import (
    EffectiveCircuit,
    Equilibrium,
    Hardware,
    Params,
    activation,
    activation_gain,
    build,
    check,
    cost,
    cost_grad,
    dyadic_map,
    effective_matrices,
    fixed_point_map,
    fixed_point_residual,
    init_params,
    read_states,
    relax,
    reprogram,
)
from anasim.circuits.spec import CircuitSpec, load_circuit, resolve_device_path
from anasim.circuits import conv
from anasim.circuits.conv import ConvCircuitSpec, ConvLayer, ConvParams

__all__ = [
    "CircuitSpec",
    "ConvCircuitSpec",
    "ConvLayer",
    "ConvParams",
    "EffectiveCircuit",
    "Equilibrium",
    "Hardware",
    "Params",
    "activation",
    "activation_gain",
    "build",
    "check",
    "conv",
    "cost",
    "cost_grad",
    "dyadic_map",
    "effective_matrices",
    "fixed_point_map",
    "fixed_point_residual",
    "init_params",
    "load_circuit",
    "read_states",
    "relax",
    "reprogram",
    "resolve_device_path",
]
