"""Node-level circuits: Kirchhoff solves of whole netlists.

* :mod:`anasim.nodal.circuit` -- :class:`Circuit` (a topology of resistors,
  capacitors, sources, diodes and transconductors), :class:`CircuitValues`,
  :class:`OperatingPoint`;
* :mod:`anasim.nodal.solver` -- :func:`solve_op` (batched DC operating point
  by damped Newton, dense or sparse), built on :mod:`~anasim.nodal.elements`
  (junction physics), :mod:`~anasim.nodal.assembly` (MNA stamps and residual)
  and :mod:`~anasim.nodal.newton` (the Newton loops);
* :mod:`anasim.nodal.noise` -- thermal (Johnson–Nyquist) and shot noise of a
  circuit at its operating point: stationary covariance and transient draws;
* :mod:`anasim.nodal.netlist` -- SPICE netlists: reading, writing, values;
* :mod:`anasim.nodal.ngspice` -- the ngspice reference simulator, for checks;
* :mod:`anasim.nodal.physics` -- :class:`NodalPhysics` and the spec file's
  ``[nodal]`` table (:func:`load_nodal_physics`);
* :mod:`anasim.nodal.hopfield` -- resistive (λ = 1) and gyrator (λ = 0)
  Hopfield circuits built node by node from a layered circuit's couplings;
  :mod:`~anasim.nodal.hopfield_blocks` finds the resistive circuit's DC point
  by exact block updates of its layers (``NodalPhysics.solver``);
* :mod:`anasim.nodal.blocks` -- deep resistive networks (layered conductances,
  clamp diodes, ± input sources) solved exactly by block coordinate descent over
  their layers, and trained with centered EP; :mod:`~anasim.nodal.drn` builds the
  same network as a netlist (Newton solver, ngspice, thermal noise) and
  :mod:`~anasim.nodal.drn_devices` its conductances as resistive devices;
* :mod:`anasim.nodal.engine` -- :class:`NodalEngine`, the ``"nodal"``
  relaxation engine (registered with :func:`anasim.circuits.engine.register_engine`
  when this package is imported).

Everything here computes in float64 whatever the caller's ``jax_enable_x64``
(:func:`anasim.circuits.precision.in_float64`); the caller's setting is left as it was.
"""

from anasim.nodal.circuit import (
    K_BOLTZMANN,
    Q_ELECTRON,
    Circuit,
    CircuitValues,
    OperatingPoint,
    thermal_voltage,
)
from anasim.nodal.engine import NodalEngine, nodal_engine_factory
from anasim.nodal.hopfield import (
    HopfieldCircuit,
    LayeredWeights,
    cocontent_gradient,
    hopfield_circuit,
    hopfield_netlist,
    hopfield_values,
    relax,
    relax_in_jit,
    solve_layers,
    weights_from_hardware,
)
from anasim.nodal.netlist import (
    DiodeModel,
    Element,
    Netlist,
    format_netlist,
    parse_netlist,
    read_netlist,
    write_netlist,
)
from anasim.nodal.noise import (
    Transient,
    output_noise_density,
    simulate_transient,
    small_signal_matrices,
    thermal_covariance,
    thermal_fluctuation,
)
from anasim.nodal.physics import KINDS, NodalPhysics, load_nodal_physics
from anasim.nodal.solver import parse_and_solve, solve_op

__all__ = [
    "K_BOLTZMANN", "Q_ELECTRON", "Circuit", "CircuitValues", "OperatingPoint", "thermal_voltage",
    "solve_op", "parse_and_solve",
    "DiodeModel", "Element", "Netlist", "format_netlist", "parse_netlist", "read_netlist", "write_netlist",
    "Transient", "output_noise_density", "simulate_transient", "small_signal_matrices", "thermal_covariance",
    "thermal_fluctuation",
    "KINDS", "NodalPhysics", "load_nodal_physics",
    "HopfieldCircuit", "LayeredWeights", "cocontent_gradient", "hopfield_circuit", "hopfield_netlist",
    "hopfield_values", "relax", "relax_in_jit", "solve_layers", "weights_from_hardware",
    "NodalEngine", "nodal_engine_factory",
]
