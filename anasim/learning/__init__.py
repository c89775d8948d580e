"""On-device learning (DESIGN.md §5).

* :mod:`anasim.learning.rules` -- local rules: equilibrium states in, per-coupling
  gradient estimates out (dyadic for any λ, EP P/N/C, CL, CpL P/N/C);
* :mod:`anasim.learning.controller` -- the training loop on a chip: program →
  DAC → relax → ADC → rule → optimizer → write (shadow or in-situ), twin chips,
  physical cost accounting, netCDF metrics, HDF5 checkpoints;
* :mod:`anasim.learning.plots` -- learning curves;
* :mod:`anasim.learning.holomorphic` -- holomorphic EP (N complex nudges or a
  rotating nudge) for circuits without weight symmetry, its local rule and
  training with Jacobian homeostasis.
"""

from anasim.learning import holomorphic, rules
from anasim.learning.controller import (
    RULE_NAMES,
    TrainConfig,
    TrainResult,
    checkpoint_path,
    config_from_spec,
    evaluate,
    history_dataset,
    local_update,
    train,
    trained_chip,
)
from anasim.learning.plots import plot_learning_curves

__all__ = [
    "RULE_NAMES", "TrainConfig", "TrainResult", "checkpoint_path", "config_from_spec", "evaluate",
    "history_dataset", "holomorphic", "local_update", "plot_learning_curves", "rules", "train",
    "trained_chip",
]
