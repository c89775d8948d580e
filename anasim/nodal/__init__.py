"""Node-level circuits: Kirchhoff solves of whole netlists.

* :mod:`anasim.nodal.solver` -- :class:`Circuit` (a topology of resistors,
  sources, diodes and transconductors), :func:`solve_op` (batched DC operating
  point by damped Newton, dense or sparse);
* :mod:`anasim.nodal.noise` -- thermal (Johnson–Nyquist) and shot noise of a
  circuit at its operating point: stationary covariance and transient draws;
* :mod:`anasim.nodal.netlist` -- SPICE netlists: reading, writing, values;
* :mod:`anasim.nodal.ngspice` -- the ngspice reference simulator, for checks;
* :mod:`anasim.nodal.hopfield` -- resistive (λ = 1) and gyrator (λ = 0)
  Hopfield circuits built node by node from a layered circuit's couplings.
"""
