"""Training hyper-parameters: :class:`TrainConfig` and the ``[training]`` table of a spec file.

A circuit spec file holds the circuit (``[network]``, ``[relaxation]``,
:func:`anasim.circuits.load_circuit`) and, in its ``[training]`` table, how to
train it (this module). :func:`load_train_config` reads that table from the
same source -- a path or a dict laid out like the file (:mod:`anasim.tables`)
-- so errors name the file and the key (``training.beta``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from anasim.errors import ProfileError
from anasim.tables import Source, read_tables, table

RULE_NAMES = ("dyadic", "ep-centered", "ep-positive", "ep-negative", "cl", "cpl-p", "cpl-n", "cpl-c", "hep")
WRITE_MODES = ("shadow", "in-situ")
PHASE_MODES = ("sequential", "twin")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (hashable; the ``[training]`` table of a circuit spec).

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step.
        beta: nudge strength β (loss units per state unit); for CL the clamp is
            full; for hEP the radius |β| of the complex nudges.
        beta_growth: added to β after every epoch (strong-nudging experiment: 0.05).
        rule: one of :data:`RULE_NAMES`; ``"hep"`` is holomorphic EP
            (:mod:`anasim.learning.holomorphic`): ``hep_points`` complex nudges
            on a circle of radius β, for circuits without weight symmetry
            (ideal devices, holomorphic activations).
        learning_rate: peak learning rate of the schedule.
        layer_lr: multipliers per coupling (θ_0, θ_1, …, θ_{L−1}); biases follow
            their layer's incoming coupling. Empty: all 1.
        bias_init: initial biases b_1 … b_L, one value per layer (pre-activation
            units, the same for every neuron of the layer). Empty: all 0.
        momentum: SGD momentum (0 = plain SGD).
        weight_decay: decoupled weight decay per step (× learning rate).
        schedule: "cosine" (decay to 0 over the run) or "constant".
        write_mode: "shadow" or "in-situ".
        phases: "sequential" (one chip) or "twin" (second phase on a twin chip).
        seed: the run's seed.
        train_size, test_size: use the first n examples (0 = all).
        data: dataset source for :func:`anasim.data.load_fashion_mnist`
            ("" = Debian package, else the shipped subset).
        eval_batch: batch size of the evaluation relaxations.
        discard_unsettled: drop from the update the examples whose relaxation
            (any phase) did not settle: final per-example residual above
            ``relaxation.tol`` after ``max_iters``. The controller sees this on
            hardware as outputs still moving between two reads. A state that
            has not settled is no equilibrium, and the rule's (s⁺ − s⁻)/β
            read from it can be many times the true gradient (a symmetric
            circuit near a bifurcation): one such step, carried on by the
            momentum, can drive every neuron to a rail. The update is the
            mean over the settled examples; none settled: no update. With
            ``relaxation.stall_window`` (a noisy device, whose read noise
            holds the residual above ``tol``), a phase that stopped on that
            floor counts an example as settled when its residual is within
            ``FLOOR_SPREAD`` (2×) of the batch median. Needs an engine with
            the ``"settling"`` ability (checked when a run starts; a DC
            operating point has no settling).
        hep_points: rule "hep": N complex nudges β_k = |β| e^{2πik/N} per step (N ≥ 1).
        homeostasis: rule "hep": λ_homeo, weight of the Jacobian homeostatic
            loss added to the update (0 = off; :mod:`anasim.analysis.homeostasis`).
        homeostasis_probes: Hutchinson probes per example of the homeostatic loss.
        homeostasis_backward_only: apply the homeostatic gradient to the backward
            couplings ψ_k only (the forward θ_k then follow the loss alone);
            false applies it to every coupling, as Laborieux & Zenke do.
        keep_going: do not stop a run whose step trips the divergence watch
            (:mod:`anasim.learning.watch`); record the tripped steps in the
            history (``diverged_steps``) instead, for divergence studies. Not
            part of a checkpoint's identity (a run may resume with or without it).
        checkpoint_every_steps: with an output path, also write the checkpoint
            inside an epoch after every this many steps (0 = not by count).
        checkpoint_every_s: ... and after the first step that ends at least
            this many seconds (wall clock) after the last checkpoint (0 = not by
            time). The default, 60 s, bounds the work a kill loses to about a
            minute plus one step. Neither is part of a checkpoint's identity,
            and neither changes a run's numbers (:mod:`anasim.learning.checkpoint`).
    """

    epochs: int = 3
    batch_size: int = 64
    beta: float = 0.1
    beta_growth: float = 0.0
    rule: str = "dyadic"
    learning_rate: float = 0.02
    layer_lr: tuple = ()
    bias_init: tuple = ()
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    write_mode: str = "shadow"
    phases: str = "sequential"
    seed: int = 0
    train_size: int = 0
    test_size: int = 0
    data: str = ""
    eval_batch: int = 500
    discard_unsettled: bool = False
    hep_points: int = 2
    homeostasis: float = 0.0
    homeostasis_probes: int = 2
    homeostasis_backward_only: bool = False
    keep_going: bool = False
    checkpoint_every_steps: int = 0
    checkpoint_every_s: float = 60.0

    def __post_init__(self):
        self.validate("TrainConfig")

    def validate(self, where: str) -> None:
        def bad(key, expected, value):
            raise ProfileError(f"{where}: training.{key} must be {expected}, got {value!r}")

        if int(self.epochs) < 1:
            bad("epochs", "≥ 1", self.epochs)
        if int(self.batch_size) < 1:
            bad("batch_size", "≥ 1", self.batch_size)
        if not (float(self.beta) > 0 and math.isfinite(float(self.beta))):
            bad("beta", "a positive number", self.beta)
        if not (float(self.beta_growth) >= 0):
            bad("beta_growth", "≥ 0", self.beta_growth)
        if self.rule not in RULE_NAMES:
            bad("rule", f"one of {RULE_NAMES}", self.rule)
        if not (float(self.learning_rate) > 0 and math.isfinite(float(self.learning_rate))):
            bad("learning_rate", "a finite number > 0", self.learning_rate)
        if not (0 <= float(self.momentum) < 1):
            bad("momentum", "in [0, 1)", self.momentum)
        if not (float(self.weight_decay) >= 0):
            bad("weight_decay", "≥ 0", self.weight_decay)
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {SCHEDULES}", self.schedule)
        if self.write_mode not in WRITE_MODES:
            bad("write_mode", f"one of {WRITE_MODES}", self.write_mode)
        if self.phases not in PHASE_MODES:
            bad("phases", f"one of {PHASE_MODES}", self.phases)
        if any(not math.isfinite(float(b)) for b in self.bias_init):
            bad("bias_init", "a list of finite numbers", self.bias_init)
        if any(not (float(m) >= 0) for m in self.layer_lr):
            bad("layer_lr", "a list of non-negative multipliers", self.layer_lr)
        if int(self.train_size) < 0 or int(self.test_size) < 0:
            bad("train_size", "≥ 0", (self.train_size, self.test_size))
        if int(self.eval_batch) < 1:
            bad("eval_batch", "≥ 1", self.eval_batch)
        if not isinstance(self.discard_unsettled, bool):
            bad("discard_unsettled", "true or false", self.discard_unsettled)
        if int(self.hep_points) < 1:
            bad("hep_points", "≥ 1", self.hep_points)
        if not (float(self.homeostasis) >= 0 and math.isfinite(float(self.homeostasis))):
            bad("homeostasis", "a finite number ≥ 0", self.homeostasis)
        if int(self.homeostasis_probes) < 1:
            bad("homeostasis_probes", "≥ 1", self.homeostasis_probes)
        if not isinstance(self.homeostasis_backward_only, bool):
            bad("homeostasis_backward_only", "true or false", self.homeostasis_backward_only)
        if not isinstance(self.keep_going, bool):
            bad("keep_going", "true or false", self.keep_going)
        if int(self.checkpoint_every_steps) < 0:
            bad("checkpoint_every_steps", "≥ 0", self.checkpoint_every_steps)
        if not (float(self.checkpoint_every_s) >= 0 and math.isfinite(float(self.checkpoint_every_s))):
            bad("checkpoint_every_s", "a finite number ≥ 0", self.checkpoint_every_s)
        if self.rule != "hep" and float(self.homeostasis) > 0:
            bad("homeostasis", "0 unless rule = \"hep\" (the homeostatic loss regularizes hEP's "
                "asymmetric circuits)", self.homeostasis)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value, where: str):
    default = _FIELDS[key].default
    try:
        if isinstance(default, tuple):
            if isinstance(value, (str, bytes)):
                raise ValueError
            return tuple(float(v) for v in value)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, (int, float)) and isinstance(value, (str, bytes, bool)):
            raise ValueError   # "16" is not 16: a TOML string where a number belongs is a mistake
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str) and not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise ProfileError(
            f"{where}: key 'training.{key}' must be {type(default).__name__}, got {value!r}") from None


def load_train_config(source: Source, *, where: str | None = None, **overrides) -> TrainConfig:
    """The ``[training]`` table of a spec file (path) or of a dict laid out like one,
    as a :class:`TrainConfig`, with ``overrides`` (keyword per field; None values
    ignored). An absent table gives the defaults.

    Raises:
        ProfileError: unreadable file, unknown keys or wrong types or values,
            naming the file (or ``where``) and the key (``training.key``).
    """
    data, where = read_tables(source, "circuit spec", where)
    opts = table(data, "training", where)
    opts.update({k: v for k, v in overrides.items() if v is not None})
    kwargs = {}
    for key, value in opts.items():
        if key not in _FIELDS:
            raise ProfileError(f"{where}: unknown key 'training.{key}' (allowed: {', '.join(_FIELDS)})")
        kwargs[key] = _coerce(key, value, where)
    cfg = TrainConfig.__new__(TrainConfig)
    for name, f in _FIELDS.items():
        object.__setattr__(cfg, name, kwargs.get(name, f.default))
    cfg.validate(where)
    return cfg


#: Keys that say how a run is kept, not what it computes: left out of a checkpoint's identity
#: (a run may resume with other values) and of a sweep point's.
RUN_KEEPING = ("keep_going", "checkpoint_every_steps", "checkpoint_every_s")


def computation_repr(cfg: TrainConfig, **changes) -> str:
    """``repr`` of ``cfg`` (with ``changes``) that ignores the :data:`RUN_KEEPING` keys: what a
    checkpoint's identity holds (``keep_going`` as false, the checkpoint keys left out: the
    repr of a TrainConfig from before those existed, so older checkpoints still resume)."""
    cfg = dataclasses.replace(cfg, keep_going=False, **changes)
    fields = ", ".join(f"{f.name}={getattr(cfg, f.name)!r}" for f in dataclasses.fields(cfg)
                       if f.name not in RUN_KEEPING[1:])
    return f"TrainConfig({fields})"


def training_defaults() -> dict:
    """Every ``[training]`` key with its default, as a spec file would write it (lists for tuples)."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
            for f in dataclasses.fields(TrainConfig)}


__all__ = ["PHASE_MODES", "RULE_NAMES", "RUN_KEEPING", "SCHEDULES", "TrainConfig", "WRITE_MODES", "computation_repr",
           "load_train_config",
           "training_defaults"]
