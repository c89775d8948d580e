"""Device profiles: the parts of one hardware platform, loaded from TOML.

A profile bundles the devices a circuit is built from:

* ``coupling`` -- the matrix-vector multiplier (ideal, SLM crossbar, resistive
  crossbar, gyrator array), a :class:`~anasim.devices.base.CouplingDevice`;
* ``dac`` -- loads inputs and states onto the hardware (a ``Converter``);
* ``adc`` -- reads equilibrium states back for the learning rule (a ``Converter``);
* ``loop_time_s`` -- an override of the hardware time of one relaxation
  iteration in seconds; 0 (the default) takes it from the physics:
  :func:`iteration_time_s` = the coupling's read (settling) time plus the DAC's
  conversion time. Energy always comes from the parts' physics
  (docs/energy.md, :mod:`anasim.learning.cost`).

File format (TOML)::

    include = ["adc-8bit.toml"]   # optional: other profiles, relative to this file;
                                  # their tables are merged first, this file's keys win
    [profile]
    name = "my-chip"              # default: the file's stem
    description = "..."
    loop_time_s = 0.0             # optional override (0 = from the devices' physics)

    [slm]          # or [resistive] or [gyrator]: the coupling (at most one; none = ideal)
    bits = 10
    ...
    [dac]          # optional (none = ideal converter)
    [adc]          # optional (none = ideal converter)

Every key is validated: its type, its allowed range (from the model's
parameter declarations, :func:`anasim.devices.params.param`), NaN is never
allowed, unknown keys and tables are errors; each error is one line naming the
file, the table and the key (:class:`~anasim.errors.ProfileError`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from anasim.devices.base import Converter, CouplingDevice, IdealConverter, IdealCoupling
from anasim.devices.converters import ADC, DAC
from anasim.devices.gyrator import GyratorArray
from anasim.devices.resistive import ResistiveCrossbar
from anasim.devices.slm import SLMCrossbar
from anasim.errors import ProfileError


@dataclass(frozen=True)
class DeviceProfile:
    """The hardware a circuit is built on. Every part defaults to its ideal."""

    name: str = "ideal"
    coupling: CouplingDevice = field(default_factory=IdealCoupling)
    dac: Converter = field(default_factory=IdealConverter)
    adc: Converter = field(default_factory=IdealConverter)
    loop_time_s: float = 0.0
    source: str = ""
    description: str = ""


def ideal_profile() -> DeviceProfile:
    """All non-idealities off: circuits built on it run the exact mathematics."""
    return DeviceProfile()


#: Coupling tables and the model each builds.
COUPLINGS: dict[str, type] = {"slm": SLMCrossbar, "resistive": ResistiveCrossbar, "gyrator": GyratorArray}
#: Converter tables.
CONVERTERS: dict[str, type] = {"dac": DAC, "adc": ADC}
_PROFILE_KEYS = {
    "name": (str, None, None),
    "description": (str, None, None),
    "loop_time_s": (float, 0.0, 1.0),
}
_TOP_KEYS = {"include", "profile", *COUPLINGS, *CONVERTERS}


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(v), type(v).__name__)


def _fmt_range(lo, hi, lo_open, hi_open) -> str:
    a = "(" if lo_open else "["
    b = ")" if hi_open else "]"
    return f"{a}{lo:g}, {hi:g}{b}"


def _check_number(where: str, v: Any, want_int: bool, lo, hi, lo_open=False, hi_open=False,
                  finite=True) -> float | int:
    kind = "an integer" if want_int else "a number"
    rng = _fmt_range(lo, hi, lo_open, hi_open)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (want_int and not isinstance(v, int)):
        raise ProfileError(f"{where}: expected {kind} in {rng}, got {_type_name(v)} ({v!r})")
    if isinstance(v, float) and math.isnan(v):
        raise ProfileError(f"{where}: expected {kind} in {rng}, got nan")
    if finite and isinstance(v, float) and math.isinf(v):
        raise ProfileError(f"{where}: expected a finite number in {rng}, got {v!r}")
    bad = (v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi))
    if bad:
        raise ProfileError(f"{where}: expected {kind} in {rng}, got {v!r}")
    return int(v) if want_int else float(v)


def _build_part(cls: type, table: Any, where: str):
    """Validate a TOML table against ``cls``'s parameter declarations and build the model."""
    if not isinstance(table, Mapping):
        raise ProfileError(f"{where}: expected a table, got {_type_name(table)}")
    decl = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, v in table.items():
        at = f"{where} {key}"
        if key not in decl:
            raise ProfileError(f"{at}: unknown key (allowed: {', '.join(decl)})")
        f = decl[key]
        m = f.metadata
        default = f.default if f.default is not MISSING else None
        lo, hi = m.get("lo", -math.inf), m.get("hi", math.inf)
        lo_open, hi_open, finite = m.get("lo_open", False), m.get("hi_open", False), m.get("finite", True)
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise ProfileError(f"{at}: expected true or false, got {_type_name(v)} ({v!r})")
            kwargs[key] = v
        elif isinstance(default, int):
            kwargs[key] = _check_number(at, v, True, lo, hi, lo_open, hi_open)
        elif isinstance(default, float):
            kwargs[key] = _check_number(at, v, False, lo, hi, lo_open, hi_open, finite)
        elif isinstance(default, tuple):
            if not isinstance(v, list) or len(v) != len(default):
                raise ProfileError(f"{at}: expected an array of {len(default)} numbers, got {v!r}")
            kwargs[key] = tuple(_check_number(f"{at}[{i}]", x, False, -1e6, 1e6) for i, x in enumerate(v))
        elif isinstance(default, str):
            if not isinstance(v, str):
                raise ProfileError(f"{at}: expected a string, got {_type_name(v)} ({v!r})")
            kwargs[key] = v
        else:  # pragma: no cover - every declared parameter has one of the types above
            raise ProfileError(f"{at}: unsupported parameter type")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ProfileError(f"{where}: {err}") from None


def _read_toml(path: Path, label: str) -> dict:
    if not path.is_file():
        raise ProfileError(f"{label}: no such profile file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{label}: not valid TOML ({str(err).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"{label}: cannot be read ({err})") from None


def _resolve(data: Mapping, label: str, base_dir: Path | None, stack: tuple[str, ...]) -> dict:
    """The file's tables with its includes merged in (includes first, this file wins)."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{label}: expected a table")
    for key in data:
        if key not in _TOP_KEYS:
            raise ProfileError(f"{label}: unknown key or table '{key}' "
                               f"(allowed: {', '.join(sorted(_TOP_KEYS))})")
    merged: dict[str, dict] = {}
    inc = data.get("include", [])
    if isinstance(inc, str):
        inc = [inc]
    if not isinstance(inc, list) or not all(isinstance(s, str) for s in inc):
        raise ProfileError(f"{label}: include: expected an array of file names, got {inc!r}")
    for name in inc:
        cands = [(base_dir or Path.cwd()) / name, Path(name)]
        path = next((p for p in cands if p.is_file()), cands[0])
        key = str(path.resolve())
        if key in stack:
            raise ProfileError(f"{label}: include: '{name}' includes itself (cycle)")
        sub = _resolve(_read_toml(path, f"{label}: include '{name}'"), str(path), path.parent, stack + (key,))
        for k, v in sub.items():
            if isinstance(v, Mapping) and isinstance(merged.get(k), dict):
                merged[k].update(v)
            else:
                merged[k] = dict(v) if isinstance(v, Mapping) else v
    for k, v in data.items():
        if k == "include":
            continue
        if not isinstance(v, Mapping):
            raise ProfileError(f"{label}: [{k}]: expected a table, got {_type_name(v)}")
        merged.setdefault(k, {}).update(v)
    return merged


def profile_from_dict(data: Mapping, source: str = "<profile>", base_dir: str | Path | None = None,
                      default_name: str | None = None) -> DeviceProfile:
    """Validate parsed profile TOML ``data`` and build the :class:`DeviceProfile`.

    ``source`` labels error messages; ``include`` paths resolve against ``base_dir``
    (default: the working directory).
    """
    bd = Path(base_dir) if base_dir is not None else None
    tables = _resolve(data, source, bd, (str(Path(source).resolve()),))
    couplings = [k for k in COUPLINGS if k in tables]
    if len(couplings) > 1:
        raise ProfileError(f"{source}: more than one coupling table ({', '.join(couplings)}); give one")
    coupling = _build_part(COUPLINGS[couplings[0]], tables[couplings[0]], f"{source}: [{couplings[0]}]") \
        if couplings else IdealCoupling()
    parts = {k: (_build_part(cls, tables[k], f"{source}: [{k}]") if k in tables else IdealConverter())
             for k, cls in CONVERTERS.items()}
    meta = tables.get("profile", {})
    kw: dict[str, Any] = {}
    for key, v in meta.items():
        at = f"{source}: [profile] {key}"
        if key not in _PROFILE_KEYS:
            raise ProfileError(f"{at}: unknown key (allowed: {', '.join(_PROFILE_KEYS)})")
        typ, lo, hi = _PROFILE_KEYS[key]
        if typ is str:
            if not isinstance(v, str):
                raise ProfileError(f"{at}: expected a string, got {_type_name(v)} ({v!r})")
            kw[key] = v
        else:
            kw[key] = _check_number(at, v, False, lo, hi)
    if "name" in kw and not kw["name"].strip():
        raise ProfileError(f"{source}: [profile] name: expected a non-empty string")
    name = kw.pop("name", None) or default_name or Path(source).stem
    return DeviceProfile(name=name, coupling=coupling, dac=parts["dac"], adc=parts["adc"],
                         source=source, **kw)


def load_profile(path: str | Path) -> DeviceProfile:
    """Load and validate a device profile file (TOML). Raises :class:`ProfileError`."""
    p = Path(path)
    data = _read_toml(p, str(path))
    if not data:
        raise ProfileError(f"{path}: empty device profile (expected at least a name and a [coupling] table; "
                           f"devices/ideal.toml is the ideal device)")
    return profile_from_dict(data, source=str(path), base_dir=p.parent, default_name=p.stem)


def iteration_time_s(profile: DeviceProfile) -> float:
    """Hardware time of one relaxation iteration (s): ``profile.loop_time_s`` when set
    (an override), else the coupling's read time (detector integration, RC or gm-C
    settling) plus one DAC conversion. NaN for the ideal coupling (no physics)."""
    if profile.loop_time_s:
        return profile.loop_time_s
    return profile.coupling.read_time_s() + profile.dac.conversion_time_s()


def coupling_kind(profile: DeviceProfile) -> str:
    """``"ideal"``, ``"slm"``, ``"resistive"`` or ``"gyrator"`` (or the class name)."""
    for k, cls in COUPLINGS.items():
        if isinstance(profile.coupling, cls):
            return k
    return "ideal" if isinstance(profile.coupling, IdealCoupling) else type(profile.coupling).__name__


def _json_float(v: float):
    return v if math.isfinite(v) else str(v)


def profile_summary(profile: DeviceProfile) -> dict:
    """A JSON-ready description: name, source, parts and their parameters."""

    def part(obj) -> dict | None:
        if isinstance(obj, (IdealCoupling, IdealConverter)):
            return None
        out = {}
        for f in fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                v = str(v)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def energy(obj) -> dict | None:
        """The energy and time parameters of a part: value, unit, the model's default
        and that default's source (a profile's own values cite theirs in its file). None: ideal."""
        if isinstance(obj, (IdealCoupling, IdealConverter)):
            return None
        decl = {f.name: f for f in fields(obj)}
        return {k: {"value": getattr(obj, k), "unit": decl[k].metadata.get("unit", ""),
                    "default": decl[k].default, "source": decl[k].metadata.get("source", "")}
                for k in getattr(obj, "energy_params", ())}

    return {
        "name": profile.name, "source": profile.source, "description": profile.description,
        "coupling": coupling_kind(profile), "loop_time_s": profile.loop_time_s,
        "iteration_time_s": _json_float(iteration_time_s(profile)),
        "parameters": {"coupling": part(profile.coupling), "dac": part(profile.dac), "adc": part(profile.adc)},
        "energy_parameters": {k: energy(getattr(profile, k)) for k in ("coupling", "dac", "adc")},
    }
