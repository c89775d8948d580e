"""Measurements on simulated hardware: training runs, Lipschitz bounds, relaxation
statistics and gradient alignment.

Each takes a resolved point configuration (``config["circuit"]`` = the parsed
circuit TOML, ``config["device"]`` = the parsed profile TOML, ``{}`` for the
ideal profile, ``config["seed"]``) and goes through the owners' loaders, which
take the dicts as they would a file: :func:`anasim.circuits.load_circuit`,
:func:`anasim.learning.load_train_config` (the circuit's ``[training]``
table), :func:`anasim.circuits.engine.engine_for` (its ``[nodal]`` table) and
:func:`anasim.devices.profile_from_dict`, so a swept value is validated
exactly as a hand-edited file would be, and errors name the key. The
measurements are defined here; :mod:`anasim.study.registry` registers them.

Built-in measurements (sweepable options under their own table):

``train``
    a training run by :func:`anasim.learning.train` (the circuit's
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
    :func:`anasim.analysis.gradients.reference_gradient`, the circuit's cost),
    on ``alignment.batch`` training images at the initial weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from anasim.analysis.gradients import reference_gradient
from anasim.analysis.lipschitz import lipschitz_report
from anasim.circuits import activation, load_circuit
from anasim.circuits import spec as cspec
from anasim.circuits.chip import check_realization
from anasim.circuits.engine import engine_for
from anasim.circuits.precision import float64_scope
from anasim.data import load_fashion_mnist
from anasim.devices.profile import CONVERTERS, COUPLINGS, ideal_profile, profile_from_dict
from anasim.errors import AnasimError
from anasim.learning import load_train_config, rules, train
from anasim.learning.config import RUN_KEEPING, training_defaults
from anasim.learning.step import check_compatible
from anasim.study.measurements import Measurement

#: The label a point's circuit carries in errors and as its spec's source (a
#: fixed one: specs are static jit arguments, and points must share compilations).
_CIRCUIT = "point circuit"

# --------------------------------------------------------------------------- builders


def _circuit_tables(config: Mapping) -> dict:
    if not isinstance(config.get("circuit"), Mapping) or not config["circuit"]:
        raise AnasimError("base.circuit: this measurement needs a circuit spec (file or table)")
    circ = dict(config["circuit"])
    circ.pop("device", None)  # the point's device is config["device"]
    return circ


def circuit_spec(config: Mapping):
    """The point's :class:`~anasim.circuits.CircuitSpec` (validated by ``load_circuit``)."""
    spec = load_circuit(_circuit_tables(config), where=_CIRCUIT)
    return dataclasses.replace(spec, source="sweep point (circuit)")


def circuit_engine(config: Mapping, spec):
    """The point's relaxation engine, configured from the circuit's tables (``[nodal]``)."""
    return engine_for(spec, _circuit_tables(config))


def train_config(config: Mapping):
    """The point's :class:`~anasim.learning.TrainConfig` (the circuit's ``[training]`` table, the point's seed)."""
    return load_train_config(_circuit_tables(config), where=_CIRCUIT, seed=int(config["seed"]))


def device_profile(config: Mapping):
    """The point's :class:`~anasim.devices.profile.DeviceProfile` (``{}``: ideal)."""
    dev = config.get("device") or {}
    if not dev:
        return ideal_profile()
    # A fixed source label: profiles are static jit arguments.
    return profile_from_dict(dev, source="sweep point (device)", default_name="device")


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
    return load_fashion_mnist(source or None)


def _validate_build(config: Mapping) -> None:
    spec = circuit_spec(config)
    profile = device_profile(config)
    check_realization(spec, profile, circuit="layered circuits")  # the builder's own check, no work
    circuit_engine(config, spec)


# --------------------------------------------------------------------------- train


def _train_defaults() -> dict:
    d = training_defaults()
    del d["seed"]  # the point's seed
    for k in RUN_KEEPING[1:]:   # a point keeps no checkpoint: nothing to record or sweep
        del d[k]
    return {"circuit": {"training": d}}


def _validate_train(config: Mapping) -> None:
    spec = circuit_spec(config)
    profile = device_profile(config)
    cfg = train_config(config)
    check_compatible(spec, cfg, profile, circuit_engine(config, spec))
    check_realization(spec, profile, circuit="layered circuits")


_TRAIN_OUTPUTS = ("train_accuracy", "train_loss", "test_accuracy", "test_loss", "lipschitz",
                  "saturated", "iterations", "hardware_time_s", "energy_j", "energy_arrays_j",
                  "energy_converters_j", "energy_writes_j", "digital_energy_j", "beta", "learning_rate")


def _train(config: Mapping) -> dict:
    spec = circuit_spec(config)
    engine = circuit_engine(config, spec)
    profile = device_profile(config)
    cfg = train_config(config)
    train_set, test_set = _data(cfg.data)
    res = train(spec.physics(), profile, cfg, train_set, test_set, engine=engine, progress=False)
    # wall_s is left out: a result must not depend on where or when it ran.
    return {k: np.asarray(res.history[k], np.float64) for k in _TRAIN_OUTPUTS}


# --------------------------------------------------------------------------- lipschitz


def _lipschitz(config: Mapping) -> dict:
    spec = circuit_spec(config)
    engine = circuit_engine(config, spec)
    spec = spec.physics()
    profile = device_profile(config)
    opt = config["lipschitz_estimate"]
    k_init, k_build, k_est = jax.random.split(jax.random.PRNGKey(config["seed"]), 3)
    params = engine.init_params(spec, k_init)
    hw = engine.build(spec, profile, params, k_build)
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
    spec = circuit_spec(config)
    engine = circuit_engine(config, spec)
    spec = spec.physics()
    profile = device_profile(config)
    opt = config["relaxation_stats"]
    _, test_set = _data(str(opt["data"]))
    n = int(opt["batch"])
    x = jnp.asarray(test_set.x[:n], jnp.dtype(spec.dtype))
    k_init, k_build, k_relax = jax.random.split(jax.random.PRNGKey(config["seed"]), 3)
    params = engine.init_params(spec, k_init)
    hw = engine.build(spec, profile, params, k_build)
    eq = engine.relax(spec, hw, x, k_relax)
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

#: the circuit spec's cost names → the reference gradient's (anasim.analysis.gradients.loss_value)
REFERENCE_COSTS = {"squared": "squared", "cross_entropy": "cross-entropy"}


def _validate_alignment(config: Mapping) -> None:
    _validate_build(config)
    spec = circuit_spec(config)
    if spec.asymmetric:
        raise AnasimError("network.lam: gradient alignment needs a numeric λ (the reference is W_λ's gradient)")
    if len(set(spec.activations)) != 1:
        raise AnasimError("network.activation: gradient alignment needs one activation for all layers")
    if spec.cost not in REFERENCE_COSTS:
        raise AnasimError(f"network.cost: gradient alignment has no reference gradient for cost {spec.cost!r}")
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
    # the reference gradient is float64 (implicit differentiation), and so are the cosines with it
    with float64_scope(True):
        return _alignment_body(config)


def _alignment_body(config: Mapping) -> dict:
    spec = circuit_spec(config)
    engine = circuit_engine(config, spec)
    spec = spec.physics()
    profile = device_profile(config)
    opt = config["alignment"]
    beta = float(opt["beta"])
    train_set, _ = _data(str(opt["data"]))
    n = int(opt["batch"])
    dtype = jnp.dtype(spec.dtype)
    x = jnp.asarray(train_set.x[:n], dtype)
    y = jax.nn.one_hot(train_set.y[:n], spec.n_out, dtype=dtype)
    k_init, k_build, k_relax, k_read = jax.random.split(jax.random.PRNGKey(config["seed"]), 4)
    params = engine.init_params(spec, k_init)
    hw = engine.build(spec, profile, params, k_build)
    lam = float(spec.lam)
    # The hardware's estimate: nudged dyadic relaxation, read through the ADCs.
    eq = engine.relax(spec, hw, x, k_relax, nudge=(beta, beta), target=y)
    sp, sm = engine.read(hw, eq, k_read)
    est = rules.dyadic(x, sp, sm, beta, lam)
    # The exact gradient of the ideal circuit with the intended weights.
    _, ref, _ = reference_gradient(params, x, y, lam=lam, act=activation(spec.activations[0]),
                                   cost=REFERENCE_COSTS[spec.cost])
    per = [_cos(np.concatenate([np.ravel(est["theta0"]), np.ravel(est["biases"][0])]),
                np.concatenate([np.ravel(ref["theta0"]), np.ravel(ref["biases"][0])]))]
    for k in range(spec.n_layers - 1):
        per.append(_cos(np.concatenate([np.ravel(est["thetas"][k]), np.ravel(est["biases"][k + 1])]),
                        np.concatenate([np.ravel(ref["thetas"][k]), np.ravel(ref["biases"][k + 1])])))
    total = float(rules.cosine(est, {k: ref[k] for k in ("theta0", "thetas", "biases")}))
    return {"alignment": np.asarray(per), "alignment_total": total,
            "alignment_iterations": float(eq.iterations)}


# --------------------------------------------------------------------------- definitions

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
    return tuple(f"circuit.{table}.{k}" for table, keys in (("network", cspec._NETWORK),
                                                            ("relaxation", cspec._RELAXATION))
                 for k in keys)


_OPTIONAL = _circuit_optional()

TRAIN = Measurement(
    name="train",
    fn=_train,
    outputs={k: ("epoch",) for k in _TRAIN_OUTPUTS},
    defaults=_train_defaults(),
    validate=_validate_train,
    aliases=_ALIASES,
    optional=_OPTIONAL,
    complete=complete_device,
    description="on-device training run (anasim.learning.train); per-epoch metrics",
    version=2,   # 2: the energy parts and digital_energy_j joined the outputs
)

LIPSCHITZ = Measurement(
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
)

RELAXATION = Measurement(
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
)

GRADIENT_ALIGNMENT = Measurement(
    name="gradient_alignment",
    fn=_alignment,
    outputs={"alignment": ("coupling",), "alignment_total": _SCALAR, "alignment_iterations": _SCALAR},
    defaults={"alignment": {"beta": 0.05, "batch": 16, "data": "subset"}},
    validate=_validate_alignment,
    aliases=_ALIASES,
    optional=_OPTIONAL,
    complete=complete_device,
    description="cosine of the dyadic update on the hardware with the ideal circuit's exact gradient",
)

#: The hardware measurements, registered by :mod:`anasim.study.registry`.
BUILTIN = (TRAIN, LIPSCHITZ, RELAXATION, GRADIENT_ALIGNMENT)
