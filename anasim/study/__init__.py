"""Robustness studies: sweeps over device non-idealities and circuit/rule parameters.

A sweep (:mod:`anasim.study.spec`) names parameters by dotted paths into a
resolved configuration (``slm.bits``, ``gyrator.mismatch``, ``circuit.lam``,
``rule.beta``, ``seed``) with lists or ranges of values, crossed or zipped. Each
point runs registered measurements (:mod:`anasim.study.registry`: training,
Lipschitz bounds, relaxation statistics, gradient alignment). Results go to a
resumable per-point store and are assembled into one labelled xarray Dataset
(:mod:`anasim.study.runner`), computed in-process or on a dask cluster. Plots of
sweep results are in :mod:`anasim.study.plots` (imported on demand: matplotlib).
"""

from anasim.study.measurements import Measurement, evaluate
from anasim.study.registry import get_measurement, measurement_names, register_measurement
from anasim.study.runner import (
    SweepResult,
    assemble,
    is_sweep_file,
    open_sweep,
    run_sweep,
    store_path,
)
from anasim.study.spec import Axis, Point, SweepSpec, expand_values, load_sweep, parse_sweep
from anasim.study.store import PointStore, point_key

__all__ = [
    "Axis",
    "Measurement",
    "Point",
    "PointStore",
    "SweepResult",
    "SweepSpec",
    "assemble",
    "evaluate",
    "expand_values",
    "get_measurement",
    "is_sweep_file",
    "load_sweep",
    "measurement_names",
    "open_sweep",
    "parse_sweep",
    "point_key",
    "register_measurement",
    "run_sweep",
    "store_path",
]
