"""anasim: a simulator of analog and optical learning hardware.

Device models with their non-idealities (:mod:`anasim.devices`) compose into
circuit-level Hopfield networks (:mod:`anasim.circuits`) whose physical
relaxation computes dyadic-learning or equilibrium-propagation inference; local
rules and a controller (:mod:`anasim.learning`) train them on the simulated
hardware; :mod:`anasim.analysis` bounds and measures Lipschitz constants and
gradient alignment; :mod:`anasim.study` sweeps non-idealities.
"""

import jax

# Physics needs float64 for the nodal solver and the autodiff references; the
# relaxation engines choose their own dtype explicitly (float32 by default).
jax.config.update("jax_enable_x64", True)

from anasim import devices  # noqa: E402
from anasim.errors import AnasimError, ConvergenceError, ProfileError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["AnasimError", "ConvergenceError", "ProfileError", "devices", "__version__"]
