"""The optimizer: one optax chain built from the :class:`TrainConfig`.

``u = −lr(t) · m_layer · trace``, ``trace ← μ · trace + g + wd · θ``: decoupled
weight decay, SGD momentum, the learning-rate schedule (cosine decay to 0 over
the run, or constant) and the layer-wise multipliers ``layer_lr``, all inside
the chain (:func:`make_optimizer`).

The numbers of the chain live in :class:`OptimizerSettings`, a pytree, so a
compiled training step takes them as traced arguments: runs that differ in
learning rate, momentum, decay or multipliers share one compilation.

The schedule is a table of rates by step count, evaluated once per run in
float64 on the host and rounded to float32: the same rates the optax cosine
schedule gives when evaluated in float64. Evaluated in float32 inside the
compiled step, about half of them move by one float32 ulp (1.5e-8 at a peak
rate of 0.2), and a run would no longer reproduce its earlier weights bit for
bit. The table's length is rounded up to a power of two so that runs of
similar length share a compilation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anasim.circuits import CircuitSpec, Params
from anasim.learning.config import TrainConfig

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OptimizerSettings:
    """The chain's numbers (traced inside a compiled step).

    Attributes:
        rates: learning rate by step count, float32 (the schedule's table; counts
            past its end keep the last rate).
        momentum, weight_decay: float32 scalars.
        layer_scale: the multiplier of every parameter, in the structure of
            :class:`~anasim.circuits.Params` (each leaf a scalar of its parameter's dtype).
    """

    rates: Array
    momentum: Array
    weight_decay: Array
    layer_scale: Params


def schedule_rates(cfg: TrainConfig, steps_per_epoch: int, segments: Sequence[int] | None = None) -> np.ndarray:
    """The learning rate of step t = 0 … epochs × steps_per_epoch, float32.

    Cosine: lr · ½(1 + cos(π t / T)), T the run's steps (at least 1), computed
    in float64 as :func:`optax.cosine_decay_schedule` does; constant: lr.

    ``segments``: the epochs at which the schedule's segments end, for a run
    extended after it finished (``[3, 5]``: 3 epochs, then 2 more); each segment
    runs the schedule afresh over its own epochs (a cosine restarts at the peak
    rate: a warm restart). Default ``[cfg.epochs]``, the plain schedule.
    """
    if segments is not None and len(segments) > 1:
        parts, start = [], 0
        for end in segments[:-1]:
            parts.append(schedule_rates(dataclasses.replace(cfg, epochs=end - start), steps_per_epoch)
                         [:(end - start) * steps_per_epoch])
            start = end
        last = schedule_rates(dataclasses.replace(cfg, epochs=segments[-1] - start), steps_per_epoch)
        rates = np.concatenate(parts + [last])
        padded = 1 << math.ceil(math.log2(rates.size))
        return np.concatenate([rates, np.full(padded - rates.size, rates[-1], np.float32)])
    total = max(int(cfg.epochs) * int(steps_per_epoch), 1)
    t = np.arange(total + 1, dtype=np.float64)
    if cfg.schedule == "cosine":
        t = np.minimum(t, total)
        rates = float(cfg.learning_rate) * (0.5 * (1 + np.cos(np.pi * t / total)))
    else:
        rates = np.full(t.shape, float(cfg.learning_rate))
    padded = 1 << math.ceil(math.log2(rates.size))
    rates = np.concatenate([rates, np.full(padded - rates.size, rates[-1])])
    return rates.astype(np.float32)


def learning_rate_schedule(rates) -> optax.Schedule:
    """The schedule of a rate table: step count → rate (float32; the last rate past the end)."""
    rates = jnp.asarray(rates)

    def schedule(count):
        return rates[jnp.minimum(count, rates.shape[0] - 1)]

    return schedule


def layer_scale(spec: CircuitSpec, cfg: TrainConfig, params: Params) -> Params:
    """The multiplier of every parameter: ``layer_lr`` per coupling θ_0 … θ_{L−1};
    the biases of layer k and the backward couplings ψ_k follow the coupling into
    their layer. Each leaf is a scalar of its parameter's dtype."""
    m = cfg.layer_lr or (1.0,) * spec.n_layers
    mult = Params(theta0=m[0], thetas=tuple(m[1:]), biases=tuple(m[:spec.n_layers]),
                  backward=tuple(m[1:]) if params.backward else ())
    return jax.tree_util.tree_map(lambda s, q: jnp.asarray(s, jnp.asarray(q).dtype), mult, params)


def optimizer_settings(spec: CircuitSpec, cfg: TrainConfig, params: Params, steps_per_epoch: int,
                       segments: Sequence[int] | None = None) -> OptimizerSettings:
    """The numbers of ``cfg``'s chain for a run of ``steps_per_epoch`` steps per epoch
    (``segments``: of an extended run, :func:`schedule_rates`)."""
    return OptimizerSettings(
        rates=jnp.asarray(schedule_rates(cfg, steps_per_epoch, segments)),
        momentum=jnp.asarray(cfg.momentum, jnp.float32),
        weight_decay=jnp.asarray(cfg.weight_decay, jnp.float32),
        layer_scale=layer_scale(spec, cfg, params))


def scale_by_layer(scale: Params) -> optax.GradientTransformation:
    """Multiply every update by its parameter's multiplier (``scale``: the structure of the params)."""
    return optax.stateless(
        lambda updates, params: jax.tree_util.tree_map(
            lambda u, s: (u * s).astype(u.dtype), updates, scale))


def optimizer(settings: OptimizerSettings) -> optax.GradientTransformation:
    """The chain: decoupled weight decay, momentum, −schedule(t), layer multipliers."""
    schedule = learning_rate_schedule(settings.rates)
    return optax.chain(
        optax.add_decayed_weights(settings.weight_decay),
        optax.trace(decay=settings.momentum),
        optax.scale_by_schedule(lambda count: -schedule(count)),
        scale_by_layer(settings.layer_scale),
    )


def make_optimizer(spec: CircuitSpec, cfg: TrainConfig, params: Params, steps_per_epoch: int
                   ) -> optax.GradientTransformation:
    """The optimizer of a run of ``cfg`` on ``spec`` (``params``: the parameters' structure)."""
    return optimizer(optimizer_settings(spec, cfg, params, steps_per_epoch))


__all__ = ["OptimizerSettings", "layer_scale", "learning_rate_schedule", "make_optimizer", "optimizer",
           "optimizer_settings", "scale_by_layer", "schedule_rates"]
