"""Declaring device parameters: unit, allowed range and meaning per field.

Every parameter of a device model is a field of a frozen dataclass declared with
:func:`param`; the profile loader (:mod:`anasim.devices.profile`) reads this
metadata to validate TOML values (type, range) and the CLI to describe them, so
the allowed range of a key is written once, next to the physics that needs it.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, field, fields
from typing import Any


def param(default: Any, unit: str = "", lo: float = -math.inf, hi: float = math.inf, doc: str = "",
          lo_open: bool = False, hi_open: bool = False, finite: bool = True, source: str = ""):
    """A dataclass field with physical metadata.

    Args:
        default: the value (a number, bool, str or tuple of numbers).
        unit: SI unit (``"S"``, ``"W"``, ``"A/W"``, ...) or ``"1"`` for dimensionless.
        lo, hi: allowed range (inclusive unless ``lo_open``/``hi_open``).
        doc: one-line meaning.
        finite: if True, ±inf is rejected.
        source: where the default comes from: the paper or datasheet figure, or
            ``"assumed: <reasoning>"`` where no figure exists. Every parameter of a
            model's energy and time model (its ``energy_params``) has one.
    """
    meta = dict(unit=unit, lo=lo, hi=hi, doc=doc, lo_open=lo_open, hi_open=hi_open, finite=finite,
                source=source)
    return field(default=default, metadata=meta)


def describe(cls) -> list[dict]:
    """Name, default, unit, range, meaning and source of each parameter of a model class."""
    out = []
    for f in fields(cls):
        m = f.metadata
        out.append(dict(name=f.name, default=None if f.default is MISSING else f.default,
                        unit=m.get("unit", ""), lo=m.get("lo"), hi=m.get("hi"), doc=m.get("doc", ""),
                        source=m.get("source", "")))
    return out


def energy_sources(classes: dict[str, type]) -> list[dict]:
    """The energy and time parameters (``energy_params``) of each model class with
    their default, unit, meaning and source: ``classes`` maps a label to a class."""
    out = []
    for label, cls in classes.items():
        decl = {f.name: f for f in fields(cls)}
        for name in getattr(cls, "energy_params", ()):
            f = decl[name]
            out.append(dict(part=label, name=name, default=f.default, unit=f.metadata.get("unit", ""),
                            doc=f.metadata.get("doc", ""), source=f.metadata.get("source", "")))
    return out
