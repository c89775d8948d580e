"""Analysis of circuits as built (docs/design.md, “Layers”).

* :mod:`anasim.analysis.lipschitz` -- linearized and general Lipschitz bounds on
  the devices' effective weights, and empirical estimates from relaxed equilibria;
* :mod:`anasim.analysis.gradients` -- exact reference gradients of the ideal
  circuit (implicit differentiation), against which every local rule is tested;
* :mod:`anasim.analysis.homeostasis` -- Jacobian homeostasis: the homeostatic
  loss ½‖J − Jᵀ‖²_F (Hutchinson and exact), functional symmetry of the
  fixed-point Jacobian.
"""
