"""Spec files as tables: reading TOML (or taking a dict) and checking keys.

A circuit spec file holds tables that different packages own: ``[network]``
and ``[relaxation]`` describe the circuit (:mod:`anasim.circuits.spec`),
``[training]`` the training run (:mod:`anasim.learning.config`) and
``[nodal]`` the node-level realization (:mod:`anasim.nodal.physics`). Each
loader takes the same *source* -- a path, or a dict laid out like the file --
reads it with :func:`read_tables` and validates only its own table, so every
error still names the file and the key.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anasim.errors import ProfileError

#: What a loader accepts: a TOML file's path, or its tables as a dict.
Source = str | os.PathLike | Mapping


def read_tables(source: Source, what: str = "circuit spec", where: str | None = None) -> tuple[dict, str]:
    """The tables of ``source`` and the name to use in error messages.

    ``source`` is a path to a TOML file or a mapping laid out like one (it is
    copied, never modified). ``where`` overrides the name (default: the path,
    or ``"<what> (dict)"``).

    Raises:
        ProfileError: missing or unreadable file, bytes that are not UTF-8,
            TOML syntax errors; the message names the file.
    """
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source)), where or f"{what} (dict)"
    path = Path(source)
    where = where or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"{where}: no such {what}") from None
    except IsADirectoryError:
        raise ProfileError(f"{where}: is a directory, expected a {what} (TOML file)") from None
    except OSError as err:
        raise ProfileError(f"{where}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProfileError(f"{where}: not a text file (byte {err.start} is not UTF-8), "
                           f"expected a {what} in TOML") from None
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{where}: not valid TOML ({err})") from None


def check_table(table: Mapping, allowed: Mapping[str, Any], where: str, prefix: str) -> None:
    """Every key of ``table`` is in ``allowed`` (key → type or tuple of types)
    with a value of that type, finite; otherwise a ProfileError naming
    ``where`` and the key ``prefix + key``."""
    for key, value in table.items():
        full = f"{prefix}{key}"
        if key not in allowed:
            raise ProfileError(f"{where}: unknown key '{full}' (allowed: {', '.join(allowed)})")
        want = allowed[key]
        # bool is an int subclass: accept it only where bool itself is wanted
        if (isinstance(value, bool) and want is not bool) or not isinstance(value, want):
            names = want.__name__ if isinstance(want, type) else " or ".join(t.__name__ for t in want)
            raise ProfileError(f"{where}: key '{full}' must be {names}, got {type(value).__name__} {value!r}")
        check_finite(value, where, full)


def check_finite(value: Any, where: str, key: str) -> None:
    """No NaN or infinity anywhere in ``value`` (numbers, lists, tables)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ProfileError(f"{where}: key '{key}' must be finite, got {value!r}")
    if isinstance(value, (list, tuple)):
        for v in value:
            check_finite(v, where, key)
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_finite(v, where, f"{key}.{k}")


def table(data: Mapping, name: str, where: str) -> dict:
    """The sub-table ``name`` of ``data`` ({} when absent); a ProfileError when it is not a table."""
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where}: key '{name}' must be a table, got {type(value).__name__} {value!r}")
    return dict(value)
