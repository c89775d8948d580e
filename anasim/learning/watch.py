"""The divergence watch: a run that diverges or stops learning is never silent.

After every training step the controller hands this watch what the step
measured (it reads the step's outputs and changes nothing, so a run's numbers
are the same with or without it). The watch trips, within that step, on

* **non-finite** loss, weights or free-phase states;
* a **loss that grew by orders of magnitude**: the step's loss per example
  above :data:`LOSS_GROWTH` times that of the run's first step;
* **saturation**: at least :data:`SATURATED` of the units at a rail of their
  nonlinearity in the free phase;
* **unsettled relaxations**: at least :data:`UNSETTLED` of the batch did not
  settle to ``relaxation.tol`` (any phase).

Saturation alone or unsettled relaxations alone trip the watch only when they
persist for :data:`PERSIST` steps in a row, or from the run's first step on
(a circuit that never settles); together, or with a growing loss, at once.
Unsettled relaxations alone never trip it when ``relaxation.tol = 0`` (a fixed
iteration budget, where no example counts as settled). A
healthy run on a noisy device (read noise above ``tol`` without
``relaxation.stall_window``) or a sparse network passes through single steps
of either.

When it trips, the controller writes the last good checkpoint -- the state
just before the step that tripped, inside the epoch (its ``epoch`` and ``step``
attributes, :mod:`anasim.learning.checkpoint`) -- and raises
:class:`~anasim.errors.TrainingDiverged` (``anasim train`` exits with code 3)
naming the epoch, the step, the measured cause and a hint; with
``training.keep_going`` it records the step instead (``diverged_steps``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# thresholds (fractions of units / examples, factor of loss growth)
SATURATED = 0.95
UNSETTLED = 0.9
LOSS_GROWTH = 1000.0
PERSIST = 3


@dataclass
class DivergenceWatch:
    """Per-step checks of one run; :meth:`check` returns the cause (one line) or None."""

    unsettled_alone: bool = True      # False: relaxation.tol = 0, settling is not asked for
    first_loss: float | None = None
    steps_seen: int = 0
    streak: dict = field(default_factory=lambda: {"saturated": 0, "unsettled": 0})

    def state(self) -> dict:
        """What the watch has seen, JSON-ready (a checkpoint's; :meth:`restore` takes it back)."""
        return {"first_loss": self.first_loss, "steps_seen": self.steps_seen, "streak": dict(self.streak)}

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state` (a resumed run trips on exactly the steps it would have)."""
        self.first_loss = state["first_loss"]
        self.steps_seen = int(state["steps_seen"])
        self.streak = {k: int(v) for k, v in state["streak"].items()}

    def check(self, *, loss: float, finite: bool, saturated: float, unsettled: float) -> str | None:
        """``loss``: the step's loss per example; ``finite``: weights and states finite;
        ``saturated``: fraction of units at a rail; ``unsettled``: fraction of the batch."""
        self.steps_seen += 1
        if not finite or not math.isfinite(loss):
            what = [n for n, bad in (("loss", not math.isfinite(loss)), ("weights or states", not finite)) if bad]
            return f"non-finite {' and '.join(what)}; lower --lr (training.learning_rate) or --beta"
        if self.first_loss is None:
            self.first_loss = loss
        grew = self.first_loss > 0 and loss > LOSS_GROWTH * self.first_loss
        sat = saturated >= SATURATED
        uns = unsettled >= UNSETTLED
        self.streak["saturated"] = self.streak["saturated"] + 1 if sat else 0
        self.streak["unsettled"] = self.streak["unsettled"] + 1 if uns else 0
        persistent = {k: v >= PERSIST or v == self.steps_seen for k, v in self.streak.items()}
        parts = []
        if sat and (uns or grew or persistent["saturated"]):
            parts.append(f"{saturated:.0%} of units saturated".replace("%", " %"))
        if uns and (sat or grew or (persistent["unsettled"] and self.unsettled_alone)):
            parts.append(f"{unsettled:.0%} of examples unsettled".replace("%", " %"))
        if grew:
            parts.insert(0, f"loss per example {loss:.3g}, {loss / self.first_loss:.3g}× the first step's "
                            f"{self.first_loss:.3g}")
        if not parts:
            return None
        if uns and not sat and not grew:
            hint = "lower --beta or relaxation.eta, or raise relaxation.max_iters"
        elif uns:
            hint = "lower --lr or relaxation.eta"
        elif sat and not grew:
            hint = "lower --lr or network.init_scale"
        else:
            hint = "lower --lr (training.learning_rate)"
        return f"{' and '.join(parts)}; {hint}"


__all__ = ["LOSS_GROWTH", "PERSIST", "SATURATED", "UNSETTLED", "DivergenceWatch"]
