"""The measurements known by name: the built-in ones and those registered at run time.

Imports go one way: this module imports the definitions
(:mod:`anasim.study.measurements` for :class:`Measurement` and the synthetic
stand-in, :mod:`anasim.study.hardware` for the measurements on simulated
hardware); the sweep spec and the runner look measurements up here.
"""

from __future__ import annotations

from anasim.errors import AnasimError
from anasim.study import hardware
from anasim.study.measurements import SYNTHETIC, Measurement

_REGISTRY: dict[str, Measurement] = {m.name: m for m in (SYNTHETIC, *hardware.BUILTIN)}


def register_measurement(m: Measurement, *, replace: bool = False) -> Measurement:
    """Add a measurement to the registry under ``m.name``."""
    if m.name in _REGISTRY and not replace:
        raise ValueError(f"measurement {m.name!r} is already registered")
    _REGISTRY[m.name] = m
    return m


def get_measurement(name: str, where: str = "measurement") -> Measurement:
    """The registered measurement ``name``; an AnasimError naming ``where`` if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AnasimError(
            f"{where}: unknown measurement '{name}' (known: {', '.join(sorted(_REGISTRY))})"
        ) from None


def measurement_names() -> list[str]:
    """The names of every registered measurement."""
    return sorted(_REGISTRY)


__all__ = ["get_measurement", "measurement_names", "register_measurement"]
