"""Measurements: what a sweep computes at each point.

A measurement is a function ``config -> {output name: array}`` of one resolved
configuration (a nested dict: ``seed``, ``device`` = parsed profile TOML,
``circuit`` = parsed circuit TOML, plus tables such as ``train`` or ``rule``).
Its randomness comes only from ``config["seed"]`` (``jax.random.PRNGKey``), so
a point gives the same numbers in this process, in a dask worker, or after a
resume. It declares its outputs and their dimensions up front (e.g.
``test_accuracy: ("epoch",)``, ``lipschitz: ()``), its default configuration
(so every path it understands exists and can be swept), and a validator that
runs the owners' loaders on a configuration without computing anything.

The registry of measurements by name is :mod:`anasim.study.registry`
(:func:`~anasim.study.registry.register_measurement`); the built-in ones are
this module's :data:`SYNTHETIC` and those of :mod:`anasim.study.hardware`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from anasim.errors import AnasimError

Config = dict
Outputs = Mapping[str, Any]


@dataclass(frozen=True)
class Measurement:
    """A registered per-point computation.

    ``fn(config) -> {name: array}``; ``outputs`` maps each name to the names of
    its own dimensions (``()`` for a scalar, ``("epoch",)`` per epoch);
    ``defaults`` is a nested dict merged under the spec's ``[base]``;
    ``validate(config)`` raises :class:`AnasimError` for a bad configuration;
    ``version`` is part of every point's identity, so bumping it invalidates
    stored points computed by an older implementation; ``aliases`` maps short
    parameter names to full paths (``rule.beta`` → ``circuit.training.beta``);
    ``complete(config)`` fills in, in place, the defaults a loaded file leaves
    implicit (a device model's parameters), so they can be swept and are
    recorded as attributes; ``optional`` lists full paths of keys the owners'
    loaders accept but a file may leave out without a default to fill in
    (``circuit.network.asymmetry_angle``): a spec may set or sweep them anyway.
    """

    name: str
    fn: Callable[[Config], Outputs] = field(compare=False)
    outputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False)
    validate: Callable[[Config], None] | None = field(default=None, compare=False)
    version: int = 1
    description: str = field(default="", compare=False)
    aliases: Mapping[str, str] = field(default_factory=dict, compare=False)
    complete: Callable[[Config], None] | None = field(default=None, compare=False)
    optional: tuple[str, ...] = field(default=(), compare=False)

    def __hash__(self) -> int:
        return hash((self.name, self.version))


def evaluate(measurements: tuple[Measurement, ...], config: Config) -> dict[str, np.ndarray]:
    """Run the measurements of one point and check their outputs against the declarations.

    Module-level so dask workers can import it by name.
    """
    result: dict[str, np.ndarray] = {}
    for m in measurements:
        out = m.fn(config)
        missing = set(m.outputs) - set(out)
        extra = set(out) - set(m.outputs)
        if missing or extra:
            raise RuntimeError(
                f"measurement {m.name!r} returned {sorted(out)}, declared {sorted(m.outputs)}"
            )
        for name, dims in m.outputs.items():
            arr = np.asarray(out[name], dtype=np.float64)
            if arr.ndim != len(dims):
                raise RuntimeError(
                    f"measurement {m.name!r}: output {name!r} has {arr.ndim} dims, declared {dims}"
                )
            result[name] = arr
    return result


# --------------------------------------------------------------------------- synthetic


def _synthetic(config: Config) -> Outputs:
    """Quantized, noisy least squares trained by gradient descent (see SYNTHETIC)."""
    p = config["synthetic"]
    loss, acc = _synthetic_run(
        jax.random.PRNGKey(config["seed"]),
        float(p["noise"]),
        float(p["lr"]),
        float(2 ** int(p["bits"]) - 1),
        size=int(p["size"]),
        epochs=int(p["epochs"]),
        work=int(p["work"]),
    )
    loss, acc = np.asarray(loss), np.asarray(acc)
    return {"loss": loss, "accuracy": acc, "final_loss": loss[-1]}


def _synthetic_run_impl(key, noise, lr, levels, *, size, epochs, work):
    n, m = size, 4 * size
    k_data, k_true, k_noise, k_work = jax.random.split(key, 4)
    x = jax.random.normal(k_data, (m, n))
    w_true = jax.random.normal(k_true, (n,)) / math.sqrt(n)
    y = x @ w_true
    w_max = 3.0 / math.sqrt(n)

    def quantize(w):
        # A device with `bits` evenly spaced levels over [-w_max, w_max].
        t = jnp.clip((w + w_max) / (2 * w_max), 0.0, 1.0)
        return jnp.round(t * levels) / levels * 2 * w_max - w_max

    def epoch(w, k):
        w_dev = quantize(w) + noise * w_max * jax.random.normal(k, w.shape)
        err = x @ w_dev - y
        loss = jnp.mean(err**2)
        acc = jnp.mean(jnp.sign(x @ w_dev) == jnp.sign(y))
        w = w - lr * 2 * x.T @ err / m
        return w, (loss, acc)

    _, (loss, acc) = jax.lax.scan(epoch, jnp.zeros(n), jax.random.split(k_noise, epochs))
    if work > 0:
        # Extra arithmetic to give a point a controllable cost (benchmarks); it
        # enters the result multiplied by zero so it cannot be optimized away
        # but changes nothing.
        a = jax.random.normal(k_work, (256, 256)) / 16.0
        c = jax.lax.fori_loop(0, work, lambda i, c: jnp.tanh(a @ c), jnp.eye(256))
        loss = loss + 0.0 * jnp.sum(c)
    return loss, acc


_SYNTHETIC_JIT = None


def _synthetic_run(key, noise, lr, levels, **static):
    # Compiled once per (size, epochs, work) and process: cheap points stay cheap.
    global _SYNTHETIC_JIT
    if _SYNTHETIC_JIT is None:
            _SYNTHETIC_JIT = jax.jit(_synthetic_run_impl, static_argnames=("size", "epochs", "work"))
    return _SYNTHETIC_JIT(key, noise, lr, levels, **static)


def _validate_synthetic(config: Config) -> None:
    p = config["synthetic"]
    checks = {
        "bits": (1, 24, int),
        "size": (1, 4096, int),
        "epochs": (1, 100_000, int),
        "work": (0, 10**7, int),
        "noise": (0.0, 10.0, float),
        "lr": (0.0, 1.0, float),
    }
    for k, (lo, hi, typ) in checks.items():
        v = p.get(k)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if typ is int:
            ok = ok and float(v).is_integer()
        if not ok or not lo <= v <= hi:
            kind = "an integer" if typ is int else "a number"
            raise AnasimError(f"synthetic.{k}: expected {kind} in [{lo}, {hi}], got {v!r}")


SYNTHETIC = Measurement(
    name="synthetic",
    fn=_synthetic,
    outputs={"loss": ("epoch",), "accuracy": ("epoch",), "final_loss": ()},
    defaults={"synthetic": {"bits": 8, "noise": 0.0, "size": 16, "epochs": 5, "lr": 0.1, "work": 0}},
    validate=_validate_synthetic,
    description=(
        "Cheap stand-in for a training run, for testing and benchmarking the sweep "
        "machinery: a least-squares fit of `size` weights stored on a `bits`-level "
        "device with programming noise `noise` (relative to full scale), trained by "
        "`epochs` steps of gradient descent; `work` adds 256x256 tanh products per point."
    ),
)
