"""What a training run leaves on disk: netCDF history, HDF5 checkpoints, the trained chip.

The result file (``run.nc``, netCDF through h5netcdf) holds the per-epoch
metrics (:data:`METRICS`) of the finished epochs with every circuit and
training parameter in its attributes; it is rewritten after every epoch. Next
to it the checkpoint (``run.ckpt.h5``, :func:`checkpoint_path`) holds every
array of the run's state -- parameters, optimizer state, the chips as last
programmed -- and the history, so a killed run resumes bit for bit. Both are
written atomically (a temporary file renamed over the old one).

The checkpoint is also written inside an epoch (``training.checkpoint_every_steps``
/ ``checkpoint_every_s``). Its attributes say where it stands:

* ``epoch``: the finished epochs (those the history, and the result file, hold);
* ``step``: the steps done of epoch ``epoch + 1`` (0 at an epoch's end);
* ``partial``: JSON of what the run carries within that epoch
  (:class:`Position`): the sums of the epoch's train accuracy, loss,
  homeostatic loss, iterations, unsettled examples and tripped steps, the
  cost meter's totals and the divergence watch's state.

The random keys and the data order are functions of (seed, epoch, step), so the
position is all a resumed run needs to draw them again. A checkpoint written
inside an epoch leaves the result file as it is (finished epochs only). At an
epoch's end the result file is written first, then the checkpoint (a failed
write leaves both at the epoch before); a resumed run first rewrites the result
file from the checkpoint's history, so after a kill between the two renames
(the result file one epoch ahead) the two agree again before any work, and the
epoch is trained again to the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from anasim.circuits import CircuitSpec
from anasim.circuits.engine import Engine, engine_for
from anasim.devices.profile import DeviceProfile
from anasim.errors import AnasimError
from anasim.learning.config import TrainConfig
from anasim.outputs import atomic_write, sibling_checkpoint

METRICS = ("train_accuracy", "train_loss", "test_accuracy", "test_loss", "lipschitz", "saturated",
           "iterations", "unsettled", "homeostatic_loss", "hardware_time_s", "energy_j",
           "energy_arrays_j", "energy_converters_j", "energy_writes_j", "digital_energy_j", "beta",
           "learning_rate", "wall_s", "train_wall_s", "diverged_steps")

_UNITS = {"hardware_time_s": "s", "energy_j": "J", "energy_arrays_j": "J", "energy_converters_j": "J",
          "energy_writes_j": "J", "digital_energy_j": "J", "wall_s": "s", "train_wall_s": "s", "iterations": "iterations",
          "saturated": "fraction", "diverged_steps": "steps", "unsettled": "fraction", "train_accuracy": "fraction",
          "test_accuracy": "fraction"}


def history_dataset(history: dict, spec: CircuitSpec, cfg: TrainConfig, profile_name: str,
                    segments: list[int] | None = None) -> xr.Dataset:
    """Per-epoch metrics as an xarray Dataset (dim ``epoch``) with every parameter in attrs
    (``training.schedule_segments``: the epochs at which the learning-rate schedule's
    segments end, ``[epochs]`` unless the run was extended, :func:`plan_resume`)."""
    epochs = np.arange(1, len(history.get("test_accuracy", [])) + 1)
    data = {k: ("epoch", np.asarray(history.get(k, [np.nan] * len(epochs)), np.float64),
                {"units": _UNITS.get(k, "")}) for k in METRICS}
    ds = xr.Dataset(data, coords={"epoch": epochs})
    # energies are run totals from the devices' physics (anasim.learning.cost); a part the
    # profile does not model is NaN and says so
    for k in METRICS:
        if k.endswith("_j"):
            ds[k].attrs["long_name"] = "cumulative energy since the start of the run"
            if len(epochs) and np.all(np.isnan(ds[k].values)):
                ds[k].attrs["note"] = "not modelled: the profile has no physical part for it (NaN, not 0)"
    ds["digital_energy_j"].attrs["reference"] = (
        "the same examples by backpropagation through the equivalent feedforward network on an "
        "NVIDIA A100 SXM, FP32: 400 W TDP / 19.5 TFLOP/s, 6 FLOPs per weight per example")
    attrs = {f"training.{k}": _attr(v) for k, v in dataclasses.asdict(cfg).items()}
    attrs.update({f"circuit.{f.name}": _attr(getattr(spec, f.name)) for f in dataclasses.fields(spec)})
    attrs["training.schedule_segments"] = json.dumps([int(e) for e in (segments or [cfg.epochs])])
    attrs["device.profile"] = profile_name
    attrs["anasim.kind"] = "train"
    ds.attrs.update(attrs)
    return ds


def _attr(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, str)):
        return v
    return json.dumps(v, default=str)


def write_history(out: str | os.PathLike, history: dict, spec: CircuitSpec, cfg: TrainConfig,
                  profile_name: str, segments: list[int] | None = None) -> None:
    """The run's result file (netCDF), written atomically."""
    ds = history_dataset(history, spec, cfg, profile_name, segments)
    atomic_write(Path(out), lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))


def checkpoint_path(out: str | os.PathLike) -> Path:
    """The checkpoint next to a result file: ``run.nc`` → ``run.ckpt.h5``."""
    return sibling_checkpoint(out)


@dataclasses.dataclass
class Position:
    """Where a checkpoint stands within a run, beyond its arrays.

    Attributes:
        epoch: finished epochs.
        step: steps done of epoch ``epoch + 1`` (0: at an epoch's end).
        sums: the epoch's running sums up to ``step`` (``correct``, ``loss``,
            ``homeo``: float; ``iterations``, ``unsettled``, ``tripped``: int).
        meter: the cost meter's run totals (``energy`` per part in J, ``time_s``
            in s, ``examples``), :meth:`anasim.learning.cost.CostMeter.state`.
        watch: the divergence watch's state (:meth:`anasim.learning.watch.DivergenceWatch.state`).
        wall_s: seconds the epoch had run when the checkpoint was written (wall clock).
    """

    epoch: int
    step: int = 0
    sums: dict = dataclasses.field(default_factory=dict)
    meter: dict | None = None
    watch: dict | None = None
    wall_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"sums": self.sums, "meter": self.meter, "watch": self.watch, "wall_s": self.wall_s})


def save_checkpoint(path, epoch: int, params, opt_state, hw, hw2, history: dict, fingerprint: str,
                    segments: list[int] | None = None, position: Position | None = None):
    """HDF5 checkpoint: every leaf of (params, optimizer state, chips; ``hw2`` None when the run
    has one chip), the history, written atomically
    (``segments``: the learning-rate schedule's segments, :func:`plan_resume`; ``position``: the step
    within epoch ``epoch + 1`` and what the run carries there, :class:`Position`)."""
    position = Position(epoch) if position is None else position
    if position.epoch != epoch:
        raise ValueError(f"position.epoch {position.epoch} != epoch {epoch}")

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["epoch"] = epoch
            f.attrs["step"] = int(position.step)
            f.attrs["partial"] = position.to_json()
            f.attrs["fingerprint"] = fingerprint
            if segments is not None:
                f.attrs["schedule_segments"] = json.dumps([int(e) for e in segments])
            f.attrs["history"] = json.dumps(history)
            for name, tree in (("params", params), ("opt_state", opt_state), ("hw", hw), ("hw2", hw2)):
                g = f.create_group(name)
                for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
                    g.create_dataset(f"{i:05d}", data=np.asarray(leaf))
    atomic_write(Path(path), write)


def _open_checkpoint(path: Path):
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise AnasimError(f"{path}: cannot read checkpoint ({err})") from None


def _pour(path: Path, group, name: str, template):
    """The leaves stored under ``group`` in the pytree structure of ``template``,
    each checked against the template's shape."""
    if template is None:
        # a chip this run does not keep (the second chip of non-twin phases, of which
        # earlier versions stored a copy of the first chip)
        return None
    leaves, tree = jax.tree_util.tree_flatten(template)
    stored = sorted(group.keys())
    if len(stored) != len(leaves):
        raise AnasimError(f"{path}: checkpoint group '{name}' holds {len(stored)} arrays, the circuit "
                          f"built from this spec and profile has {len(leaves)}: not the same circuit/device")
    new = []
    for i, t in enumerate(leaves):
        if np.size(t) == 0:
            # an empty slot: a place this version leaves empty where earlier versions
            # stored an array (the SLM's stacked matrix); what they stored is not needed
            new.append(jnp.asarray(t))
            continue
        data = group[f"{i:05d}"][()]
        if data.shape != np.shape(t):
            raise AnasimError(f"{path}: checkpoint array '{name}/{i:05d}' has shape {data.shape}, the "
                              f"circuit built from this spec and profile expects {np.shape(t)}")
        new.append(jnp.asarray(data, dtype=jnp.asarray(t).dtype))
    return jax.tree_util.tree_unflatten(tree, new)


def load_checkpoint(path, fingerprint: str, templates: dict):
    """Leaves from a checkpoint, poured into the pytree structure of ``templates``."""
    path = Path(path)
    with _open_checkpoint(path) as f:
        if f.attrs.get("fingerprint") != fingerprint:
            raise AnasimError(f"{path}: checkpoint was written for a different circuit/device/training "
                              f"configuration; delete it or drop --resume")
        out = {name: _pour(path, f[name], name, tmpl) for name, tmpl in templates.items()}
        return int(f.attrs["epoch"]), json.loads(f.attrs["history"]), out


def checkpoint_position(path) -> Position:
    """The :class:`Position` of the checkpoint at ``path`` (one from before positions
    were recorded: at the end of its epoch, nothing carried)."""
    path = Path(path)
    with _open_checkpoint(path) as f:
        epoch = int(f.attrs["epoch"])
        step = int(f.attrs.get("step", 0))
        raw = f.attrs.get("partial")
    extra = json.loads(raw) if raw is not None else {}
    return Position(epoch, step, extra.get("sums") or {}, extra.get("meter"), extra.get("watch"),
                    float(extra.get("wall_s", 0.0)))


def plan_resume(path, requested: int, fingerprint: Callable[[int], str]) -> tuple[list[int], str]:
    """The schedule segments and fingerprint of resuming the checkpoint at ``path``
    with ``requested`` epochs (``--epochs`` or the spec's).

    A run's identity (``fingerprint(epochs)``) holds its first segment's epochs;
    ``segments`` lists the epochs at which each segment of its learning-rate
    schedule ends (``[3]``; ``[3, 5]`` once a 3-epoch run is extended to 5). A
    request beyond the last segment adds a segment (the run is extended: its
    schedule starts afresh over the new epochs); the first segment's epochs or
    the last's continue the run as planned; fewer epochs than trained, or than
    planned, are refused. A checkpoint from before segments were recorded is
    matched with the requested epochs, else with the epochs it holds (a finished run).

    Raises:
        AnasimError: naming the checkpoint and the epochs.
    """
    path = Path(path)
    with _open_checkpoint(path) as f:
        done = int(f.attrs["epoch"])
        stored = f.attrs.get("fingerprint")
        raw = f.attrs.get("schedule_segments")
    if raw is not None:
        segments = [int(e) for e in json.loads(raw)]
    else:
        first = requested if fingerprint(requested) == stored else done
        segments = [first]
    if fingerprint(segments[0]) != stored:
        raise AnasimError(f"{path}: checkpoint was written for a different circuit/device/training "
                          f"configuration; delete it or drop --resume")
    planned = segments[-1]
    if requested > planned:
        return segments + [requested], stored
    if requested == planned or requested == segments[0]:
        return segments, stored
    raise AnasimError(f"--epochs {requested}: {path} holds a run planned for {planned} epochs "
                      f"({done} trained); resume it with --epochs {planned}, or more to extend it")


def trained_chip(run: str | os.PathLike, spec: CircuitSpec, profile: DeviceProfile, engine: Engine | None = None):
    """The chip a training run left behind, for analysis: ``(epoch, hw)``.

    ``run``: the run's result file (``run.nc``; its checkpoint ``run.ckpt.h5``
    is read, :func:`checkpoint_path`) or the checkpoint itself. ``spec`` and
    ``profile`` must describe the circuit and device it was trained on: they
    give the chip's structure (built by ``engine``, default
    :func:`~anasim.circuits.engine.engine_for` of ``spec``), and every stored
    array's shape is checked against it. ``hw`` holds the devices as last
    programmed (fixed-pattern errors included), so
    ``effective_matrices(spec, hw)`` is the trained chip as built. ``epoch``
    counts finished epochs; a checkpoint written inside an epoch holds the chip
    after its ``step`` more steps (:func:`checkpoint_position`).
    """
    run = Path(run)
    path = run if run.name.endswith(".ckpt.h5") else checkpoint_path(run)
    if not path.exists():
        raise AnasimError(f"{run}: no checkpoint {path} (a run writes one next to its result file "
                          f"when trained with an output path)")
    engine = engine_for(spec) if engine is None else engine
    physics = spec.physics()
    key = jax.random.PRNGKey(0)
    template = engine.build(physics, profile, engine.init_params(physics, key), key)
    with _open_checkpoint(path) as f:
        if "hw" not in f:
            raise AnasimError(f"{path}: not a training checkpoint (no 'hw' group)")
        return int(f.attrs["epoch"]), _pour(path, f["hw"], "hw", template)


__all__ = ["METRICS", "Position", "checkpoint_path", "checkpoint_position", "history_dataset", "load_checkpoint",
           "plan_resume", "save_checkpoint",
           "trained_chip", "write_history"]
