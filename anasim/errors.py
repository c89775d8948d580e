"""Errors that anasim raises for bad user input.

Every error a user can cause (a bad profile, a bad circuit spec, a bad sweep)
is an :class:`AnasimError` whose message is one line naming the file, key or
argument and what was expected. The CLI prints that line and exits with code 2.
"""


class AnasimError(ValueError):
    """Bad input from the user: the message says where and what was expected."""


class ProfileError(AnasimError):
    """A device profile or circuit spec that fails validation."""


class ConvergenceError(AnasimError):
    """A relaxation or Newton solve that did not converge, when the caller asked to fail on it."""


class RunFailed(AnasimError):
    """A run that started and could not finish; ``exit_code`` is the CLI's exit status
    (documented in the manual: 3 a diverged training run, 4 a failed write)."""

    exit_code = 1


class TrainingDiverged(RunFailed):
    """The divergence watch tripped (:mod:`anasim.learning.watch`); the last good checkpoint is on disk."""

    exit_code = 3


class WriteFailed(RunFailed):
    """Writing a result or checkpoint failed during a run (disk full, a vanished folder ...);
    the files written before are intact."""

    exit_code = 4
