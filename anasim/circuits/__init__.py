"""Layered Hopfield circuits built from devices and their relaxation (docs/design.md, “Circuits and relaxation”).

* :mod:`anasim.circuits.spec` -- :class:`CircuitSpec` and :func:`load_circuit` (TOML);
* :mod:`anasim.circuits.layered` -- :class:`Params`, :func:`build` (fabricate and
  program a chip), :func:`relax` (the iterative engine through the device chain),
  :class:`LayeredEngine`;
* :mod:`anasim.circuits.relaxation` -- the relaxation loop every engine shares,
  :class:`Equilibrium`, :func:`check`, :func:`read_states`;
* :mod:`anasim.circuits.maps` -- the ideal circuit's maps (activations, costs,
  fixed-point maps for implicit differentiation);
* :mod:`anasim.circuits.effective` -- the hardware as built (realized matrices);
* :mod:`anasim.circuits.chip` -- fabricating and programming a chip, the
  realization check by device abilities;
* :mod:`anasim.circuits.precision` -- number formats, float64 scoped per call;
* :mod:`anasim.circuits.conv` -- convolutional circuits (:class:`ConvCircuitSpec`),
  per-copy device tiles, their relaxation, :class:`ConvEngine`;
* :mod:`anasim.circuits.engine` -- the :class:`Engine` protocol and registry
  (:func:`engine_for`); importing this package registers ``"iterative"`` and
  ``"conv"``.
"""

from anasim.circuits.engine import Engine, engine_for, engine_names, register_engine
from anasim.circuits.layered import (
    EffectiveCircuit,
    Equilibrium,
    Hardware,
    LayeredEngine,
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
    preactivation_map,
    read_states,
    relax,
    reprogram,
)
from anasim.circuits import conv
from anasim.circuits.conv import ConvCircuitSpec, ConvEngine, ConvLayer, ConvParams
from anasim.circuits.spec import CircuitSpec, load_circuit, resolve_device_path

if "iterative" not in engine_names():
    register_engine("iterative", lambda spec, tables: LayeredEngine())
if "conv" not in engine_names():
    register_engine("conv", lambda spec, tables: ConvEngine())

__all__ = [
    "CircuitSpec",
    "ConvCircuitSpec",
    "ConvEngine",
    "ConvLayer",
    "ConvParams",
    "EffectiveCircuit",
    "Engine",
    "Equilibrium",
    "Hardware",
    "LayeredEngine",
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
    "engine_for",
    "fixed_point_map",
    "fixed_point_residual",
    "init_params",
    "load_circuit",
    "preactivation_map",
    "read_states",
    "register_engine",
    "relax",
    "reprogram",
    "resolve_device_path",
]
