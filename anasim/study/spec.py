"""Sweep specifications: which parameters vary, over which values, measured how.

A sweep spec is a TOML file (or the equivalent dict)::

    measurement = "train"              # or a list: ["train", "lipschitz"]
    combine = "cross"                  # "cross" (grid) or "zip" (lock-step)
    seed = 0                           # the seed of every point unless swept

    [base]                             # the configuration every point starts from
    device = "../devices/slm-10bit.toml"   # a profile file, "ideal", or an inline table
    circuit = "../circuits/skew-small.toml"
    [base.train]
    epochs = 2

    [fixed]                            # single-valued overrides, recorded as attributes
    "rule.beta" = 0.1

    [parameters]                       # the swept axes, one dimension each
    "slm.bits" = [4, 6, 8, 10]
    "circuit.lam" = { start = 0.0, stop = 1.0, num = 3 }
    seed = { start = 0, stop = 2, step = 1 }

A parameter is a dotted path into the *resolved configuration*, a nested dict
whose roots are ``seed``, ``device`` (the parsed profile TOML), ``circuit`` (the
parsed circuit TOML) and any other table of ``[base]`` or of the measurements'
defaults. A path may be shortened to a unique suffix (``slm.bits`` for
``device.slm.bits``, ``lam`` for ``circuit.network.lam``), to a root plus a
unique suffix under it (``circuit.lam``), or to an alias a measurement declares
(``rule.beta`` for ``circuit.training.beta``). Overrides are applied to the parsed TOML dicts;
the owners' loaders then validate each point (see
:mod:`anasim.study.measurements`), so a value outside a device's allowed range
is reported before any point is computed.

Values are a non-empty list, or a range table: ``{start, stop, num}``
(``num`` evenly spaced values, both ends included; ``scale = "log"`` for
geometric spacing) or ``{start, stop, step}`` (``stop`` included when it lies on
the grid). Integer ends and steps give integers.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import tomllib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anasim.errors import AnasimError
from anasim.study.registry import get_measurement

Scalar = bool | int | float | str

_TOP_KEYS = {"measurement", "combine", "seed", "base", "fixed", "parameters", "out", "title"}
# Roots whose value in [base] may be a file name: the file's parsed TOML is inlined.
_FILE_ROOTS = ("device", "circuit")


@dataclass(frozen=True)
class Axis:
    """One swept parameter: its full dotted path and its values (in order)."""

    path: str
    values: tuple[Scalar, ...]
    name: str = ""  # the path as the user wrote it (the dimension's name)

    @property
    def dim(self) -> str:
        return self.name or self.path


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its grid index and the value of every axis."""

    index: tuple[int, ...]  # position along each dimension of the result
    values: tuple[tuple[str, Scalar], ...]  # (full path, value) per axis


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: measurements, base configuration, axes, combination.

    ``base`` is the resolved configuration shared by all points (files inlined,
    measurement defaults and ``[fixed]`` overrides applied), as a JSON string so
    the spec stays hashable; :meth:`base_config` returns it as a dict.
    """

    measurements: tuple[str, ...]
    axes: tuple[Axis, ...]
    combine: str = "cross"
    base_json: str = "{}"
    fixed: tuple[tuple[str, Scalar], ...] = ()
    source: str = ""
    title: str = ""
    out: str = ""
    text: str = field(default="", compare=False)

    def base_config(self) -> dict:
        return json.loads(self.base_json)

    @property
    def dims(self) -> tuple[str, ...]:
        """Names of the result's swept dimensions (zip: one, named after the first axis)."""
        if not self.axes:
            return ()
        if self.combine == "zip":
            return (self.axes[0].dim,)
        return tuple(a.dim for a in self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        if not self.axes:
            return ()
        if self.combine == "zip":
            return (len(self.axes[0].values),)
        return tuple(len(a.values) for a in self.axes)

    def points(self) -> Iterator[Point]:
        """All points in C order of the result's dimensions."""
        if not self.axes:
            yield Point((), ())
            return
        if self.combine == "zip":
            for i in range(len(self.axes[0].values)):
                yield Point((i,), tuple((a.path, a.values[i]) for a in self.axes))
            return
        ranges = [range(len(a.values)) for a in self.axes]
        for idx in itertools.product(*ranges):
            yield Point(idx, tuple((a.path, a.values[i]) for a, i in zip(self.axes, idx)))

    def __len__(self) -> int:
        return math.prod(self.shape)

    def point_config(self, point: Point) -> dict:
        """The resolved configuration of one point (a fresh nested dict)."""
        cfg = self.base_config()
        # Whole-file replacements (e.g. sweeping `device` over profile files)
        # first, so deeper overrides land on the chosen file.
        for path, value in sorted(point.values, key=lambda pv: pv[0].count(".")):
            _assign(cfg, path, value, self.source or "sweep spec", self._basedir())
        return cfg

    def _basedir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()


# --------------------------------------------------------------------------- loading


def load_sweep(path: str | Path, *, parameters: Mapping[str, Any] | None = None,
               fixed: Mapping[str, Any] | None = None) -> SweepSpec:
    """Read and validate a sweep spec file (TOML). Raises AnasimError naming the key.

    ``parameters`` replaces the file's ``[parameters]`` table and ``fixed``
    updates its ``[fixed]`` table (e.g. a smaller version of a study); the
    result is validated like the file itself.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise AnasimError(f"{p}: cannot read sweep spec ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise AnasimError(f"{p}: not a text file (byte {err.start} is not UTF-8), "
                          f"expected a sweep spec in TOML") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise AnasimError(f"{p}: not valid TOML ({err})") from None
    if parameters is not None:
        data["parameters"] = dict(parameters)
    if fixed is not None:
        data["fixed"] = {**data.get("fixed", {}), **fixed}
    return parse_sweep(data, source=str(p), text=text)


def parse_sweep(data: Mapping[str, Any], source: str = "", text: str = "") -> SweepSpec:
    """Validate a sweep spec given as a dict (the parsed TOML).

    Checks, before any point is computed: known top-level keys, known
    measurements, every parameter path exists in the resolved configuration,
    every value list/range is non-empty and well formed, zip axes have equal
    lengths, and every point's configuration passes the measurements'
    validators (the owners' loaders).
    """
    where = source or "sweep spec"
    if not isinstance(data, Mapping):
        raise AnasimError(f"{where}: expected a table at the top level")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise AnasimError(
            f"{where}: unknown key '{unknown[0]}' (expected one of {', '.join(sorted(_TOP_KEYS))})"
        )

    names = data.get("measurement")
    if names is None:
        raise AnasimError(f"{where}: missing key 'measurement' (a registered measurement name)")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise AnasimError(f"{where}: key 'measurement' must be a name or a non-empty list of names")
    measurements = [get_measurement(n, where=f"{where}: key 'measurement'") for n in names]
    outputs: dict[str, str] = {}
    aliases: dict[str, str] = {}
    optional: set[str] = set()
    for m in measurements:
        aliases.update(getattr(m, "aliases", {}) or {})
        optional.update(getattr(m, "optional", ()) or ())
        for out in m.outputs:
            if out in outputs:
                raise AnasimError(
                    f"{where}: key 'measurement': '{m.name}' and '{outputs[out]}' both produce '{out}'"
                )
            outputs[out] = m.name

    combine = data.get("combine", "cross")
    if combine not in ("cross", "zip"):
        raise AnasimError(f"{where}: key 'combine' must be \"cross\" or \"zip\", got {combine!r}")

    basedir = Path(source).parent if source else Path.cwd()

    # The base configuration: measurement defaults, under the spec's [base].
    cfg: dict[str, Any] = {}
    for m in measurements:
        _merge(cfg, copy.deepcopy(dict(m.defaults)))
    base = data.get("base", {})
    if not isinstance(base, Mapping):
        raise AnasimError(f"{where}: key 'base' must be a table")
    for key, value in base.items():
        if key in _FILE_ROOTS:
            value = _load_root(key, value, f"{where}: key 'base.{key}'", basedir)
        if isinstance(value, Mapping) and isinstance(cfg.get(key), dict):
            _merge(cfg[key], copy.deepcopy(dict(value)))
        else:
            cfg[key] = copy.deepcopy(value)
    if "device" not in base and isinstance(cfg.get("circuit"), Mapping):
        # A circuit spec names its default profile; load it so its parameters can be swept.
        dev = cfg["circuit"].get("device")
        if isinstance(dev, str) and dev:
            cdir = _circuit_dir(base.get("circuit"), basedir)
            cfg["device"] = _load_root("device", dev, f"{where}: key 'base.circuit' (its 'device')", cdir,
                                       extra=[cdir.parent])
    for m in measurements:
        if m.complete is not None:
            m.complete(cfg)
    seed = data.get("seed", 0)
    _check_seed(seed, f"{where}: key 'seed'")
    cfg["seed"] = seed

    fixed_tbl = data.get("fixed", {})
    if not isinstance(fixed_tbl, Mapping):
        raise AnasimError(f"{where}: key 'fixed' must be a table of \"path\" = value")
    fixed = []
    for raw, value in _flatten_keys(fixed_tbl):
        key = f"{where}: key 'fixed.{raw}'"
        path = resolve_path(cfg, raw, key, aliases, optional)
        if path == "seed":
            _check_seed(value, key)
        _assign(cfg, path, value, key, basedir)
        fixed.append((path, value))

    params = data.get("parameters", {})
    if not isinstance(params, Mapping):
        raise AnasimError(f"{where}: key 'parameters' must be a table of \"path\" = values")
    axes = []
    seen: dict[str, str] = {}
    for raw, spec in _flatten_keys(params, stop_at_ranges=True):
        key = f"{where}: key 'parameters.{raw}'"
        path = resolve_path(cfg, raw, key, aliases, optional)
        if path in seen:
            raise AnasimError(f"{key}: same parameter as 'parameters.{seen[path]}'")
        if path in dict(fixed):
            raise AnasimError(f"{key}: also set in [fixed]")
        seen[path] = raw
        values = expand_values(spec, key)
        if path == "seed":
            for v in values:
                _check_seed(v, key)
        if len(set(map(_canon, values))) != len(values):
            raise AnasimError(f"{key}: values repeat ({list(values)})")
        axes.append(Axis(path=path, values=values, name=raw))
    if combine == "zip" and axes:
        n = len(axes[0].values)
        for a in axes[1:]:
            if len(a.values) != n:
                raise AnasimError(
                    f"{where}: key 'parameters.{a.dim}': zip needs equal lengths "
                    f"({len(a.values)} values, '{axes[0].dim}' has {n})"
                )

    spec = SweepSpec(
        measurements=tuple(m.name for m in measurements),
        axes=tuple(axes),
        combine=combine,
        base_json=json.dumps(cfg, sort_keys=True),
        fixed=tuple(fixed),
        source=source,
        title=str(data.get("title", "")),
        out=str(data.get("out", "")),
        text=text,
    )
    validate_points(spec)
    return spec


def validate_points(spec: SweepSpec) -> None:
    """Run every measurement's validator on every point's configuration.

    Validating whole points (not single values) catches combinations that are
    only invalid together. A validator error is re-raised naming the swept
    values of the offending point.
    """
    where = spec.source or "sweep spec"
    measurements = [get_measurement(n) for n in spec.measurements]
    checked: set[str] = set()
    for point in spec.points():
        cfg = spec.point_config(point)
        canon = json.dumps(cfg, sort_keys=True)
        if canon in checked:
            continue
        checked.add(canon)
        for m in measurements:
            if m.validate is None:
                continue
            try:
                m.validate(cfg)
            except AnasimError as err:
                at = ", ".join(f"{_dim_of(spec, p)} = {v!r}" for p, v in point.values)
                msg = str(err).splitlines()[0] if str(err) else type(err).__name__
                culprit = _culprit(spec, point, msg)
                if culprit is None:   # a [fixed] value the loader refuses: the same at every point
                    fixed = _fixed_culprit(spec, msg)
                    if fixed is not None:
                        raise AnasimError(f"{where}: key 'fixed.\"{fixed[0]}\"' = {fixed[1]!r}: {msg}") from None
                    culprit = spec.axes[0].dim if point.values else None
                if culprit is not None:
                    raise AnasimError(f"{where}: key 'parameters.{culprit}' at ({at}): {msg}") from None
                raise AnasimError(f"{where}: {msg}") from None


def _dim_of(spec: SweepSpec, path: str) -> str:
    for a in spec.axes:
        if a.path == path:
            return a.dim
    return path


def _culprit(spec: SweepSpec, point: Point, msg: str) -> str | None:
    # Name the swept key the loader's message mentions (None: none does).
    for a in spec.axes:
        leaf = a.path.rsplit(".", 1)[-1]
        if leaf in msg:
            return a.dim
    return None


def _fixed_culprit(spec: SweepSpec, msg: str) -> tuple[str, Any] | None:
    # The [fixed] (path, value) whose key the loader's message names ('training.epochs'), if any.
    for path, value in spec.fixed:
        parts = path.split(".")
        if ".".join(parts[-2:]) in msg or (parts[-1] in msg and repr(value) in msg):
            return path, value
    return None


# --------------------------------------------------------------------------- values


def expand_values(spec: Any, key: str) -> tuple[Scalar, ...]:
    """A list or a range table → tuple of values. Raises AnasimError naming ``key``."""
    if isinstance(spec, list):
        if not spec:
            raise AnasimError(f"{key}: empty list of values")
        for v in spec:
            if not isinstance(v, (bool, int, float, str)):
                raise AnasimError(f"{key}: values must be numbers, booleans or strings, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise AnasimError(f"{key}: value {v!r} is not finite")
        return tuple(spec)
    if isinstance(spec, Mapping):
        allowed = {"start", "stop", "num", "step", "scale"}
        extra = sorted(set(spec) - allowed)
        if extra:
            raise AnasimError(f"{key}: unknown range key '{extra[0]}' (expected start, stop, num or step, scale)")
        if "start" not in spec or "stop" not in spec:
            raise AnasimError(f"{key}: a range needs 'start' and 'stop'")
        if ("num" in spec) == ("step" in spec):
            raise AnasimError(f"{key}: a range needs exactly one of 'num' or 'step'")
        start, stop = spec["start"], spec["stop"]
        for name, v in (("start", start), ("stop", stop)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise AnasimError(f"{key}: range '{name}' must be a finite number, got {v!r}")
        scale = spec.get("scale", "linear")
        if scale not in ("linear", "log"):
            raise AnasimError(f"{key}: range 'scale' must be \"linear\" or \"log\", got {scale!r}")
        if "num" in spec:
            num = spec["num"]
            if isinstance(num, bool) or not isinstance(num, int):
                raise AnasimError(f"{key}: range 'num' must be an integer, got {num!r}")
            if num < 1:
                raise AnasimError(f"{key}: empty range (num = {num})")
            if num == 1:
                if start != stop:
                    raise AnasimError(f"{key}: num = 1 needs start == stop")
                return (start,)
            if scale == "log":
                if start <= 0 or stop <= 0:
                    raise AnasimError(f"{key}: a log range needs start > 0 and stop > 0")
                a, b = math.log(start), math.log(stop)
                return tuple(math.exp(a + (b - a) * i / (num - 1)) for i in range(num))
            span = stop - start
            if isinstance(start, int) and isinstance(stop, int) and span % (num - 1) == 0:
                return tuple(start + span // (num - 1) * i for i in range(num))
            # Endpoints exact; interior points by the same formula numpy.linspace uses.
            vals = [start + span * i / (num - 1) for i in range(num)]
            vals[-1] = stop
            return tuple(float(v) for v in vals)
        if scale != "linear":
            raise AnasimError(f"{key}: 'scale' only applies to ranges with 'num'")
        step = spec["step"]
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step == 0:
            raise AnasimError(f"{key}: range 'step' must be a non-zero number, got {step!r}")
        n = math.floor((stop - start) / step * (1 + 1e-12) + 1e-9) + 1
        if n < 1:
            raise AnasimError(f"{key}: empty range (start = {start}, stop = {stop}, step = {step})")
        if all(isinstance(v, int) for v in (start, stop, step)):
            return tuple(start + step * i for i in range(n))
        return tuple(float(start + step * i) for i in range(n))
    raise AnasimError(
        f"{key}: expected a list of values or a range table {{start, stop, num|step}}, got {spec!r}"
        " (put single values in [fixed])"
    )


def _check_seed(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise AnasimError(f"{key}: a seed must be an integer in [0, 2^32), got {value!r}")


def _canon(v: Scalar) -> str:
    return json.dumps(v)


# --------------------------------------------------------------------------- paths


def _flatten_keys(tbl: Mapping, prefix: str = "", stop_at_ranges: bool = False) -> list[tuple[str, Any]]:
    """TOML ``a.b = 1`` parses as nested tables; quoted ``"a.b" = 1`` does not. Accept both."""
    out = []
    for k, v in tbl.items():
        name = f"{prefix}{k}"
        is_range = stop_at_ranges and isinstance(v, Mapping) and ("start" in v or "stop" in v)
        if isinstance(v, Mapping) and not is_range:
            out.extend(_flatten_keys(v, name + ".", stop_at_ranges))
        else:
            out.append((name, v))
    return out


def _has_path(cfg: Mapping, parts: Sequence[str]) -> bool:
    node: Any = cfg
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def resolve_path(cfg: Mapping, raw: str, key: str, aliases: Mapping[str, str] | None = None,
                 optional: Collection[str] = ()) -> str:
    """Full dotted path of ``raw`` in ``cfg``.

    Accepted, in this order: the full path (``circuit.network.lam``); an alias
    a measurement declares (``rule.beta`` → ``circuit.training.beta``); a
    unique suffix of a full path (``slm.bits``, ``lam``); a root followed by a
    unique suffix under it (``circuit.lam`` → ``circuit.network.lam``). Last,
    the same forms matched against ``optional`` full paths whose table exists in
    ``cfg`` but that the file leaves out (``circuit.asymmetry_angle`` →
    ``circuit.network.asymmetry_angle``): assigning one creates the key.
    """
    parts = raw.split(".")
    if not raw or any(not p for p in parts):
        raise AnasimError(f"{key}: malformed parameter path {raw!r}")
    if raw == "seed":
        return "seed"
    if _has_path(cfg, parts):
        return raw
    # Whole-file roots may be swept over file names (`device = [...]`).
    if raw in _FILE_ROOTS and raw in cfg:
        return raw
    if aliases and raw in aliases and _has_path(cfg, aliases[raw].split(".")):
        return aliases[raw]
    every = _all_paths(cfg)
    hits = [p for p in every if p.endswith("." + raw)]
    if not hits and len(parts) > 1 and isinstance(cfg.get(parts[0]), Mapping):
        rest = ".".join(parts[1:])
        hits = [p for p in every if p.startswith(parts[0] + ".") and p.endswith("." + rest)]
    if not hits:
        absent = [p for p in sorted(optional)
                  if not _has_path(cfg, p.split(".")) and _has_path(cfg, p.split(".")[:-1])
                  and isinstance(_get(cfg, p.split(".")[:-1]), Mapping)]
        hits = [p for p in absent if p == raw or p.endswith("." + raw)]
        if not hits and len(parts) > 1:
            rest = ".".join(parts[1:])
            hits = [p for p in absent if p.startswith(parts[0] + ".") and p.endswith("." + rest)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise AnasimError(f"{key}: ambiguous parameter path '{raw}' (write one of {', '.join(hits)})")
    leaves = sorted(_leaf_paths(cfg))
    # Suggest the keys of the table the path names, if it exists somewhere.
    near = [p for p in leaves if f".{parts[0]}." in f".{p}"] if len(parts) > 1 else []
    known = ", ".join((near or leaves)[:12]) + (", ..." if len(near or leaves) > 12 else "")
    raise AnasimError(f"{key}: unknown parameter path '{raw}' (known: {known})")


def _get(cfg: Mapping, parts: Sequence[str]) -> Any:
    node: Any = cfg
    for part in parts:
        node = node[part]
    return node


def _all_paths(cfg: Mapping, prefix: str = "") -> list[str]:
    """Every table and leaf path (tables too: a whole table may be replaced by a file)."""
    out = []
    for k, v in cfg.items():
        out.append(f"{prefix}{k}")
        if isinstance(v, Mapping):
            out.extend(_all_paths(v, f"{prefix}{k}."))
    return out


def _leaf_paths(cfg: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        if isinstance(v, Mapping):
            out.extend(_leaf_paths(v, f"{prefix}{k}."))
        else:
            out.append(f"{prefix}{k}")
    return out


def _assign(cfg: dict, path: str, value: Any, key: str, basedir: Path) -> None:
    parts = path.split(".")
    if len(parts) == 1 and parts[0] in _FILE_ROOTS and not isinstance(value, Mapping):
        cfg[parts[0]] = _load_root(parts[0], value, key, basedir)
        return
    node = cfg
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            raise AnasimError(f"{key}: '{part}' in '{path}' is not a table")
        node = nxt
    old = node.get(parts[-1])
    if isinstance(old, Mapping) and not isinstance(value, Mapping):
        raise AnasimError(f"{key}: '{path}' is a table; give one of its keys")
    node[parts[-1]] = copy.deepcopy(value)


def _circuit_dir(value: Any, basedir: Path) -> Path:
    if isinstance(value, str):
        for p in (basedir / value, Path(value)):
            if p.is_file():
                return p.resolve().parent
    return basedir


def _load_root(root: str, value: Any, key: str, basedir: Path, extra: Sequence[Path] = ()) -> dict:
    """A ``device``/``circuit`` entry: an inline table, "ideal", or a TOML file name."""
    if isinstance(value, Mapping):
        data = copy.deepcopy(dict(value))
        if root == "device" and "include" in data:
            # An inline profile's includes are relative to the spec's folder.
            data = _inline_includes(data, basedir / "<inline profile>", key, ())
        return data
    if not isinstance(value, str):
        raise AnasimError(f"{key}: expected a file name or a table, got {value!r}")
    if root == "device" and value == "ideal":
        return {}
    candidates = [basedir / value, Path(value)] + [Path(d) / value for d in extra]
    for p in candidates:
        if p.is_file():
            data = _read_toml(p, key)
            if root == "device":
                data = _inline_includes(data, p, key, ())
                # A profile's default name is its file's stem; keep it with the table.
                prof = data.setdefault("profile", {})
                if isinstance(prof, dict):
                    prof.setdefault("name", p.stem)
            return data
    raise AnasimError(f"{key}: no such file '{value}' (looked in {basedir} and the working directory)")


def _read_toml(p: Path, key: str) -> dict:
    try:
        return tomllib.loads(p.read_text())
    except UnicodeDecodeError as err:
        raise AnasimError(f"{key}: {p} is not a text file (byte {err.start} is not UTF-8)") from None
    except OSError as err:
        raise AnasimError(f"{key}: cannot read {p} ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise AnasimError(f"{key}: {p} is not valid TOML ({str(err).splitlines()[0]})") from None


def _inline_includes(data: dict, path: Path, key: str, stack: tuple[str, ...]) -> dict:
    """A profile's ``include = [...]`` files merged in (theirs first, table by table; this file wins).

    Inlined so every parameter of the profile is visible (and sweepable) in the
    point configuration, and the point does not depend on files it names.
    """
    inc = data.get("include", [])
    if isinstance(inc, str):
        inc = [inc]
    if not isinstance(inc, list):
        return data
    merged: dict = {}
    for name in inc:
        if not isinstance(name, str):
            return data  # malformed: leave it to the profile loader to report
        sub_path = path.parent / name
        if not sub_path.is_file():
            sub_path = Path(name)
        if not sub_path.is_file():
            raise AnasimError(f"{key}: include '{name}' of {path.name}: no such file (looked in {path.parent})")
        here = stack + (str(path.resolve()),)
        if str(sub_path.resolve()) in here:
            raise AnasimError(f"{key}: include '{name}' of {path.name} includes itself (cycle)")
        sub = _inline_includes(_read_toml(sub_path, key), sub_path, key, here)
        for k, v in sub.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k].update(v)
            else:
                merged[k] = copy.deepcopy(v)
    for k, v in data.items():
        if k == "include":
            continue
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k].update(v)
        else:
            merged[k] = copy.deepcopy(v)
    return merged


def _merge(dst: dict, src: Mapping) -> None:
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v
