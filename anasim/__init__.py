"""anasim: a simulator of analog and optical learning hardware.

Device models with their non-idealities (:mod:`anasim.devices`) compose into
circuit-level Hopfield networks (:mod:`anasim.circuits`) whose physical
relaxation computes dyadic-learning or equilibrium-propagation inference; local
rules and a controller (:mod:`anasim.learning`) train them on the simulated
hardware; :mod:`anasim.analysis` bounds and measures Lipschitz constants and
gradient alignment; :mod:`anasim.study` sweeps non-idealities.
Node-level circuits (netlists, DC operating points, ngspice) are in
:mod:`anasim.nodal`.

Importing anasim changes no global JAX setting: float32 stays the default.
The computations that need float64 (the nodal solver, float64 relaxations,
the reference gradients) switch it on for themselves only, with
:func:`jax.enable_x64` (:mod:`anasim.circuits.precision`).
"""

import importlib

from anasim import devices
from anasim.errors import AnasimError, ConvergenceError, ProfileError

__version__ = "0.1.0"

# The heavier rooms (circuits compile, study pulls in dask) load on first use,
# so `import anasim` stays quick for the CLI and for device-only work.
_LAZY = ("analysis", "circuits", "data", "learning", "nodal", "study", "testing")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"anasim.{name}")
    raise AttributeError(f"module 'anasim' has no attribute {name!r}")


__all__ = ["AnasimError", "ConvergenceError", "ProfileError", "devices", "__version__", *_LAZY]
