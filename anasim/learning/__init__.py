"""On-device learning (docs/design.md, “Learning”).

* :mod:`anasim.learning.config` -- :class:`TrainConfig` and :func:`load_train_config`
  (the ``[training]`` table of a spec file);
* :mod:`anasim.learning.rules` -- local rules: equilibrium states in, per-coupling
  gradient estimates out (dyadic for any λ, EP P/N/C, CL, CpL P/N/C);
* :mod:`anasim.learning.holomorphic` -- holomorphic EP (N complex nudges or a
  rotating nudge) for circuits without weight symmetry: its estimator, local
  rule and diagnostics (training: ``rule = "hep"``);
* :mod:`anasim.learning.optim` -- the optimizer, one optax chain;
* :mod:`anasim.learning.step` -- one training step: phases, rule, optimizer, write;
* :mod:`anasim.learning.controller` -- the training loop on a chip: program →
  DAC → relax → ADC → rule → optimizer → write (shadow or in-situ), twin chips,
  physical cost accounting;
* :mod:`anasim.learning.checkpoint` -- netCDF metrics, HDF5 checkpoints, the trained chip;
* :mod:`anasim.learning.plots` -- learning curves.

Importing this package imports :mod:`anasim.nodal`, which registers the
node-level engine (``relaxation.engine = "nodal"``).
"""

import anasim.nodal  # noqa: F401  (registers the "nodal" engine)
from anasim.learning import holomorphic, rules
from anasim.learning.checkpoint import checkpoint_path, history_dataset, trained_chip
from anasim.learning.config import RULE_NAMES, TrainConfig, load_train_config
from anasim.learning.controller import TrainResult, evaluate, initial_params, local_update, train
from anasim.learning.plots import plot_learning_curves

__all__ = [
    "RULE_NAMES", "TrainConfig", "TrainResult", "checkpoint_path", "evaluate", "history_dataset", "holomorphic",
    "initial_params", "load_train_config", "local_update", "plot_learning_curves", "rules", "train",
    "trained_chip",
]
