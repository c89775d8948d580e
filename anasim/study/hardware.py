"""Measurements on simulated hardware: training runs, Lipschitz bounds, relaxation
statistics and gradient alignment.

Each takes a resolved point configuration (``config["circuit"]`` = the parsed
circuit TOML, ``config["device"]`` = the parsed profile TOML, ``{}`` for the
ideal profile, ``config["seed"]``) and goes through the owners' loaders: the
dicts are written back to TOML in a private temporary folder and read with
:func:`anasim.circuits.load_circuit` and :func:`anasim.devices.load_profile`,
so a swept value is validated exactly as a hand-edited file would be, and
errors name the key. Circuit, analysis and learning modules are imported
inside the functions, so the sweep machinery itself imports without them.

Built-in measurements (sweepable options under their own table):

``train``
    a training run by :func:`anasim.learning.controller.train` (the circuit's
    ``[training]`` table; ``seed`` is the run's seed); per-epoch metrics.
``lipschitz``
    bounds and the empirical estimate of :mod:`anasim.analysis.lipschitz` for
    the untrained chip as built (``init_params`` from the seed).
``relaxation``
    free relaxation of ``relaxation_stats.batch`` test images on the chip:
    iterations, residual, convergence flags, saturated fraction.
``gradient_alignment``
    cosine, per coupling, between the dyadic rule's update read from the
    hardware as built (nudged relaxation through the device chain, ADC read)
    and the exact gradient of the ideal circuit (implicit differentiation,
    :func:`anasim.analysis.gradients.reference_gradient`), on
    ``alignment.batch`` training images at the initial weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from anasim.errors import AnasimError
from anasim.study.measurements import Measurement, register_measurement

# --------------------------------------------------------------------------- TOML


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_val(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A nested dict as TOML text (scalars and arrays first, then sub-tables)."""
    lines: list[str] = []

    def table(d: Mapping, prefix: str) -> None:
        subs = []
        for k, v in d.items():
            if isinstance(v, Mapping):
                subs.append((k, v))
            else:
                lines.append(f"{_key(k)} = {_val(v)}")
        for k, v in subs:
            name = f"{prefix}.{_key(k)}" if prefix else _key(k)
            lines.append("")
            lines.append(f"[{name}]")
            table(v, name)

    table(data, "")
    return "\n".join(lines).strip() + "\n"


def _through_loader(loader: Callable[[Path], Any], data: Mapping, label: str):
    """Write ``data`` as TOML and read it back with the owner's ``loader``.

    The loaded object's ``source`` is set to a fixed label: specs and profiles
    are static arguments of jitted functions, and a different temporary path
    per point would make every point compile afresh.
    """
    with tempfile.TemporaryDirectory(prefix="anasim-point-") as tmp:
        path = Path(tmp) / f"{label}.toml"
        path.write_text(dumps_toml(data))
        try:
            obj = loader(path)
        except AnasimError as err:
            msg = str(err).replace(str(path), f"point {label}")
            raise type(err)(msg) from None
    if dataclasses.is_dataclass(obj) and any(f.name == "source" for f in dataclasses.fields(obj)):
        obj = dataclasses.replace(obj, source=f"sweep point ({label})")
    return obj


# --------------------------------------------------------------------------- builders


def circuit_spec(config: Mapping):
    """The point's :class:`~anasim.circuits.CircuitSpec` (validated by ``load_circuit``)."""
    from anasim.circuits import load_circuit

    if not isinstance(config.get("circuit"), Mapping) or not config["circuit"]:
        raise AnasimError("base.circuit: this measurement needs a circuit spec (file or table)")
    circ = dict(config["circuit"])
    circ.pop("device", None)  # the point's device is config["device"]
    return _through_loader(load_circuit, circ, "circuit")


def _physics_only(spec):
    """The spec without its [training] table: the spec is a static jit argument,
    and points that differ only in training options must share compiled code."""
    return dataclasses.replace(spec, training=())


def device_profile(config: Mapping):
    """The point's :class:`~anasim.devices.profile.DeviceProfile` (``{}``: ideal)."""
    dev = config.get("device") or {}
    if not dev:
        from anasim.devices.profile import ideal_profile

        return ideal_profile()
    from anasim import devices

    if hasattr(devices, "profile_from_dict"):
        # A fixed source label: profiles are static jit arguments (see _through_loader).
        return devices.profile_from_dict(dev, source="sweep point (device)", default_name="device")
    return _through_loader(devices.load_profile, dev, "device")


def complete_device(config: dict) -> None:
    """Fill each device table of ``config["device"]`` with its model's defaults.

    A profile file lists only what differs from the model's defaults; listing
    them all makes every parameter of the parts present sweepable by path and
    recorded in the result's attributes. Only tables already present are
    completed (an ideal profile stays ideal).
    """
    dev = config.get("device")
    if not isinstance(dev, dict) or not dev:
        return
    try:
        from anasim.devices.profile import CONVERTERS, COUPLINGS
    except ImportError:
        return
    for name, cls in {**COUPLINGS, **CONVERTERS}.items():
        table = dev.get(name)
        if not isinstance(table, dict) or not dataclasses.is_dataclass(cls):
            continue
        for f in dataclasses.fields(cls):
            if f.name in table or f.default is dataclasses.MISSING:
                continue
            v = f.default
            if isinstance(v, tuple):
                v = list(v)
            if isinstance(v, (bool, int, float, str, list)):
                table[f.name] = v


def _data(source: str):
    from anasim.data import load_fashion_mnist

    return load_fashion_mnist(source or None)


def _validate_build(config: Mapping) -> None:
    spec = circuit_spec(config)
    profile = device_profile(config)
    from anasim.circuits.layered import _check_realization  # the builder's own check, no work

    _check_realization(spec, profile)


# --------------------------------------------------------------------------- train


def _train_defaults() -> dict:
    from anasim.learning.controller import TrainConfig

    d = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name == "seed":  # the point's seed
            continue
        v = f.default
        d[f.name] = list(v) if isinstance(v, tuple) else v
    return {"circuit": {"training": d}}


def _train_config(config: Mapping, spec):
    from anasim.learning.controller import config_from_spec

    return config_from_spec(spec, seed=int(config["seed"]))


def _validate_train(config: Mapping) -> None:
    spec = circuit_spec(config)
    profile = device_profile(config)
    cfg = _train_config(config, spec)
    from anasim.learning.controller import _check_compatible

    _check_compatible(spec, cfg, profile)
    from anasim.circuits.layered import _check_realization

    _check_realization(spec, profile)


_TRAIN_OUTPUTS = ("train_accuracy", "train_loss", "test_accuracy", "test_loss", "lipschitz",
                  "saturated", "iterations", "hardware_time_s", "energy_j", "beta", "learning_rate")


def _train(config: Mapping) -> dict:
    from anasim.learning.controller import train

    spec = circuit_spec(config)
    profile = device_profile(config)
    cfg = _train_config(config, spec)
    train_set, test_set = _data(cfg.data)
    res = train(_physics_only(spec), profile, cfg, train_set, test_set, progress=False)
    # wall_s is left out: a result must not depend on where or when it ran.
    return {k: np.asarray(res.history[k], np.float64) for k in _TRAIN_OUTPUTS}


# --------------------------------------------------------------------------- lipschitz


def _lipschitz(config: Mapping) -> dict:
    import jax

    from anasim import circuits
    from anasim.analysis.lipschitz import lipschitz_report

    spec = _physics_only(circuit_spec(config))
    profile = device_profile(config)
    opt = config["lipschitz_estimate"]
    k_init, k_build, k_est = jax.random.split(jax.random.PRNGKey(config["seed"]), 3)
    params = circuits.init_params(spec, k_init)
    hw = circuits.build(spec, profile, params, k_build)
    rep = lipschitz_report(spec, hw, k_est, n_pairs=int(opt["n_pairs"]), ascent_steps=int(opt["ascent_steps"]))
    lin, gen, emp = rep["linearized"], rep["general"], rep["empirical"]
    return {
        "lipschitz_linearized_hidden": lin["hidden"],
        "lipschitz_linearized_output": lin["output"],
        "lipschitz_general_current": gen["current"],
        "lipschitz_empirical_hidden": emp["hidden"],
        "lipschitz_empirical_output": emp["output"],
        "lam_max_sym": gen["lam_max_sym"],
    }


# --------------------------------------------------------------------------- relaxation


def _relaxation(config: Mapping) -> dict:
    import jax
    import jax.numpy as jnp

    from anasim import circuits

    spec = _physics_only(circuit_spec(config))
    profile = device_profile(config)
    opt = config["relaxation_stats"]
    _, test_set = _data(str(opt["data"]))
    n = int(opt["batch"])
    x = jnp.asarray(test_set.x[:n], jnp.dtype(spec.dtype))
    k_init, k_build, k_relax = jax.random.split(jax.random.PRNGKey(config["seed"]), 3)
    params = circuits.init_params(spec, k_init)
    hw = circuits.build(spec, profile, params, k_build)
    eq = circuits.relax(spec, hw, x, k_relax)
    sat = np.mean(np.concatenate([
        ((np.asarray(s) <= 1e-6) | (np.asarray(s) >= 1 - 1e-6)).ravel() for s in eq.s_plus
    ]))
    return {
        "relax_iterations": float(eq.iterations),
        "relax_residual": float(eq.residual),
        "relax_converged": float(bool(eq.converged)),
        "relax_oscillating": float(bool(eq.oscillating)),
        "relax_diverged": float(bool(eq.diverged)),
        "relax_saturated": float(sat),
    }


# --------------------------------------------------------------------------- alignment


def _validate_alignment(config: Mapping) -> None:
    _validate_build(config)
    spec = circuit_spec(config)
    if spec.asymmetric:
        raise AnasimError("network.lam: gradient alignment needs a numeric λ (the reference is W_λ's gradient)")
    if len(set(spec.activations)) != 1:
        raise AnasimError("network.activation: gradient alignment needs one activation for all layers")
    beta = config["alignment"]["beta"]
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise AnasimError(f"alignment.beta: expected a positive number, got {beta!r}")
    b = config["alignment"]["batch"]
    if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 256:
        raise AnasimError(f"alignment.batch: expected an integer in [1, 256], got {b!r}")


def _cos(a, b) -> float:
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float("nan")


def _alignment(config: Mapping) -> dict:
    import jax
    import jax.numpy as jnp

    from anasim import circuits
    from anasim.analysis.gradients import reference_gradient
    from anasim.learning import rules

    spec = _physics_only(circuit_spec(config))
    profile = device_profile(config)
    opt = config["alignment"]
    beta = float(opt["beta"])
    train_set, _ = _data(str(opt["data"]))
    n = int(opt["batch"])
    dtype = jnp.dtype(spec.dtype)
    x = jnp.asarray(train_set.x[:n], dtype)
    y = jax.nn.one_hot(train_set.y[:n], spec.n_out, dtype=dtype)
    k_init, k_build, k_relax, k_read = jax.random.split(jax.random.PRNGKey(config["seed"]), 4)
    params = circuits.init_params(spec, k_init)
    hw = circuits.build(spec, profile, params, k_build)
    lam = float(spec.lam)
    # The hardware's estimate: nudged dyadic relaxation, read through the ADCs.
    eq = circuits.relax(spec, hw, x, k_relax, nudge=(beta, beta), target=y)
    sp, sm = circuits.read_states(hw, eq, k_read)
    est = rules.dyadic(x, sp, sm, beta, lam)
    # The exact gradient of the ideal circuit with the intended weights.
    _, ref, _ = reference_gradient(params, x, y, lam=lam, act=circuits.activation(spec.activations[0]),
                                   cost=spec.cost)
    per = [_cos(np.concatenate([np.ravel(est["theta0"]), np.ravel(est["biases"][0])]),
                np.concatenate([np.ravel(ref["theta0"]), np.ravel(ref["biases"][0])]))]
    for k in range(spec.n_layers - 1):
        per.append(_cos(np.concatenate([np.ravel(est["thetas"][k]), np.ravel(est["biases"][k + 1])]),
                        np.concatenate([np.ravel(ref["thetas"][k]), np.ravel(ref["biases"][k + 1])])))
    total = float(rules.cosine(est, {k: ref[k] for k in ("theta0", "thetas", "biases")}))
    return {"alignment": np.asarray(per), "alignment_total": total,
            "alignment_iterations": float(eq.iterations)}


# --------------------------------------------------------------------------- registry

_ALIASES = {
    "rule.beta": "circuit.training.beta",
    "rule.name": "circuit.training.rule",
    "rule.learning_rate": "circuit.training.learning_rate",
    "train.epochs": "circuit.training.epochs",
}

_SCALAR = ()


def _circuit_optional() -> tuple[str, ...]:
    """Every key the circuit loader accepts in [network] and [relaxation]: a spec
    may set those a circuit file leaves out (e.g. ``network.asymmetry_angle``)."""
    from anasim.circuits import spec as cspec

    return tuple(f"circuit.{table}.{k}" for table, keys in (("network", cspec._NETWORK),
                                                            ("relaxation", cspec._RELAXATION))
                 for k in keys)


_OPTIONAL = _circuit_optional()

register_measurement(Measurement(
    name="train",
    fn=_train,
    outputs={k: ("epoch",) for k in _TRAIN_OUTPUTS},
    defaults=_train_defaults(),
    validate=_validate_train,
    aliases=_ALIASES,
    optional=_OPTIONAL,
    complete=complete_device,
    description="on-device training run (anasim.learning.controller.train); per-epoch metrics",
), replace=True)

register_measurement(Measurement(
    name="lipschitz",
    fn=_lipschitz,
    outputs={k: _SCALAR for k in (
        "lipschitz_linearized_hidden", "lipschitz_linearized_output", "lipschitz_general_current",
        "lipschitz_empirical_hidden", "lipschitz_empirical_output", "lam_max_sym")},
    defaults={"lipschitz_estimate": {"n_pairs": 8, "ascent_steps": 10}},
    validate=_validate_build,
    aliases=_ALIASES,
    optional=_OPTIONAL,
    complete=complete_device,
    description="Lipschitz bounds and empirical estimate of the untrained chip as built",
), replace=True)

register_measurement(Measurement(
    name="relaxation",
    fn=_relaxation,
    outputs={k: _SCALAR for k in (
        "relax_iterations", "relax_residual", "relax_converged", "relax_oscillating",
        "relax_diverged", "relax_saturated")},
    defaults={"relaxation_stats": {"batch": 64, "data": "subset"}},
    validate=_validate_build,
    aliases=_ALIASES,
    optional=_OPTIONAL,
    complete=complete_device,
    description="free relaxation statistics of the untrained chip on test images",
), replace=True)

register_measurement(Measurement(
    name="gradient_alignment",
    fn=_alignment,
    outputs={"alignment": ("coupling",), "alignment_total": _SCALAR, "alignment_iterations": _SCALAR},
    defaults={"alignment": {"beta": 0.05, "batch": 16, "data": "subset"}},
    validate=_validate_alignment,
    aliases=_ALIASES,
    optional=_OPTIONAL,
    complete=complete_device,
    description="cosine of the dyadic update on the hardware with the ideal circuit's exact gradient",
), replace=True)
