"""Energy and hardware time of training, summed from the devices' physics.

Every device model states the energy and time of one of its operations
(:mod:`anasim.devices`: ``read_energy_j``, ``read_time_s``, ``write_energy_j``,
``write_time_s``, ``conversion_energy_j``, ``conversion_time_s``; formulas and
sourced defaults in their docstrings, docs/energy.md). This module counts the
operations one training step performs, the way the controller performs them
(:mod:`anasim.learning.step`, :func:`anasim.circuits.layered.relax`):

* **arrays**: every iteration of every compartment of every example reads
  each coupling array once forward and once backward (``transpose``: the same
  array read from the other side; ``gyrator``: the other OTA of each link;
  ``copy``/``independent``: the backward array), plus the input array θ_0,
  which is lit (powered) for the whole relaxation. Inputs are counted at full
  scale (``x = 1`` on every line: an upper bound, the states lie in [0, 1]);
  state-dependent parts (conductances, bias currents) at the chip's programmed
  state when the step starts. A free phase runs one compartment, a nudged or
  clamped phase two (:attr:`~anasim.learning.step.PhaseResult.compartment_iterations`).
* **converters**: per compartment-iteration the DAC converts every state an
  array is driven with (layers 1 … L−1 forward, 2 … L backward); per
  relaxation the input ``x`` once; the ADC reads both compartments of every
  layer at each read of the rule (:data:`READS`) and the output layer of the
  free phase (the prediction).
* **writes**: one write per step of every array of the chip (twice with
  ``phases = "twin"``): ``shadow`` reprograms the whole array, ``in-situ`` sends
  the increments; both cost what the device charges for taking its state from
  before the step to after it.

Hardware time per step: ``batch × (iterations × t_iter + reads × t_ADC +
relaxations × t_DAC)`` plus the slowest array's write, with ``t_iter``
:func:`anasim.devices.profile.iteration_time_s` (examples go through the loop
one at a time; compartments and twin chips run side by side).

A part the profile does not model (the ideal coupling, an ideal converter) is
NaN in its ``energy_<part>_j``, never 0; ``energy_j`` sums the modelled parts and
is NaN only when none is modelled (the ideal profile).

The digital baseline, ``digital_energy_j``: the same examples trained by
backpropagation through the equivalent feedforward network (the circuit's
sizes) on an NVIDIA A100 SXM at FP32: :data:`DIGITAL_FLOPS_PER_MAC` FLOPs per
weight per example (forward 2, backward 4: the gradients of the activations and
of the weights) at :data:`DIGITAL_J_PER_FLOP` = 400 W TDP ÷ 19.5 TFLOP/s dense
FP32 (NVIDIA A100 Tensor Core GPU datasheet; 156 TFLOP/s with TF32 tensor cores
would give 2.6 pJ/FLOP). Peak throughput at TDP: a lower bound of the GPU's energy.
:data:`DIGITAL_REFERENCES` also holds an H100 SXM (700 W ÷ 67 TFLOP/s FP32,
NVIDIA H100 datasheet: 10.4 pJ/FLOP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from anasim.devices.base import IdealConverter
from anasim.devices.profile import DeviceProfile, iteration_time_s
from anasim.errors import AnasimError

#: digital references: (label, J per FLOP) = board power ÷ dense FP32 peak, from the vendors'
#: datasheets: NVIDIA A100 Tensor Core GPU datasheet (SXM: 400 W TDP, 19.5 TFLOP/s FP32);
#: NVIDIA H100 Tensor Core GPU datasheet (SXM: up to 700 W TDP, 67 TFLOP/s FP32)
DIGITAL_REFERENCES = {
    "A100": ("NVIDIA A100 SXM, FP32 (400 W TDP / 19.5 TFLOP/s)", 400.0 / 19.5e12),
    "H100": ("NVIDIA H100 SXM, FP32 (700 W TDP / 67 TFLOP/s)", 700.0 / 67e12),
}
#: the digital reference of ``digital_energy_j``: the A100
DIGITAL_GPU, DIGITAL_J_PER_FLOP = DIGITAL_REFERENCES["A100"]
#: FLOPs per weight per training example: forward 2, backward 4
DIGITAL_FLOPS_PER_MAC = 6
#: the parts of the energy breakdown (``energy_<part>_j``)
PARTS = ("arrays", "converters", "writes")
NOT_MODELLED = "not modelled: the profile has no physical part for it (NaN, not 0)"


def reads_per_step(rule: str, phases: str, hep_points: int = 2) -> int:
    """ADC reads of both compartments per step (:func:`anasim.learning.step.phases_and_rule`)."""
    if rule == "hep":
        return hep_points
    if rule == "dyadic" or rule.startswith("ep"):
        return 2 if phases == "twin" else 1
    return 2     # clamped rules: the free phase (for o*) and the clamped phase


def relaxations_per_step(rule: str, phases: str, hep_points: int = 2) -> int:
    """Relaxations per step (each loads the input through the DAC once)."""
    if rule == "hep":
        return 1 + hep_points
    if (rule == "dyadic" or rule.startswith("ep")) and phases == "twin":
        return 4
    return 2


def _layered(hw) -> bool:
    return hw is not None and hasattr(hw, "forward") and hasattr(hw, "input_state")


def read_energy_per_iteration(spec, profile: DeviceProfile, hw=None) -> float:
    """Energy (J) of one iteration of one compartment for one example: θ_0 plus every
    forward and backward array read, inputs at full scale, at ``hw``'s programmed
    state (None: the devices' nominal state)."""
    dev = profile.coupling
    s = spec.sizes
    lay = _layered(hw)
    mode = hw.backward_mode if lay else spec.backward
    e = dev.read_energy_j((s[1], s[0]), 1.0, hw.input_state if lay else None)
    for k in range(len(s) - 2):
        shape = (s[k + 2], s[k + 1])
        st = hw.forward[k] if lay else None
        e += dev.read_energy_j(shape, 1.0, st)
        if mode == "transpose":
            e += dev.read_energy_j(shape, 1.0, st, transposed=True)
        elif mode == "gyrator":
            e += dev.read_energy_j(shape, 1.0, st)        # the link's other OTA
        else:
            e += dev.read_energy_j((s[k + 1], s[k + 2]), 1.0, hw.backward[k] if lay else None)
    return e


def dac_conversions_per_iteration(spec) -> int:
    """DAC conversions of one compartment-iteration: states driving the forward reads
    (layers 1 … L−1) and the backward reads (layers 2 … L)."""
    s = spec.sizes
    L = len(s) - 1
    return sum(s[1:L]) + sum(s[2:L + 1])


def _arrays(hw):
    """(shape, state) of every array of a layered chip."""
    out = [hw.input_state, *hw.forward, *hw.backward]
    return [(a, _shape_of(a)) for a in out]


def _shape_of(state):
    for name in ("w_eff", "theta", "w"):
        if hasattr(state, name):
            return tuple(getattr(state, name).shape[-2:])
    raise TypeError(f"cannot tell the shape of {type(state).__name__}")


def write_cost(profile: DeviceProfile, old_hw, new_hw) -> tuple[float, float]:
    """(energy J, time s) of writing every array of the chip from ``old_hw`` to ``new_hw``
    (arrays written side by side: the time is the slowest array's)."""
    dev = profile.coupling
    if not (_layered(old_hw) and _layered(new_hw)):
        return math.nan, 0.0
    e, t = 0.0, 0.0
    for (a, shape), (b, _) in zip(_arrays(old_hw), _arrays(new_hw)):
        e += dev.write_energy_j(shape, a, b)
        t = max(t, dev.write_time_s(shape, a, b))
    return e, t


def _nansum(*vals: float) -> float:
    ok = [v for v in vals if not math.isnan(v)]
    return sum(ok) if ok else math.nan


@dataclass
class CostMeter:
    """Accumulates a run's energy (per part) and hardware time, step by step."""

    spec: object
    profile: DeviceProfile
    rule: str
    phases: str
    hep_points: int = 2

    def __post_init__(self):
        p = self.profile
        s = self.spec.sizes
        self.t_iter = iteration_time_s(p)
        self.reads = reads_per_step(self.rule, self.phases, self.hep_points)
        self.relaxations = relaxations_per_step(self.rule, self.phases, self.hep_points)
        e_dac, e_adc = p.dac.conversion_energy_j(), p.adc.conversion_energy_j()
        self.dac_iter = dac_conversions_per_iteration(self.spec)
        adc_count = self.reads * 2 * sum(s[1:]) + s[-1]
        self.e_dac, self.e_adc = e_dac, e_adc
        self.adc_per_step = adc_count
        self.converters_modelled = not (isinstance(p.dac, IdealConverter) and isinstance(p.adc, IdealConverter))
        self.energy = {k: 0.0 for k in PARTS}
        self.time_s = 0.0
        self.examples = 0

    def resume(self, energy: dict, time_s: float, examples: int) -> None:
        """Continue from a checkpoint's totals."""
        self.energy = dict(energy)
        self.time_s = time_s
        self.examples = examples

    def state(self) -> dict:
        """The run totals, JSON-ready (a checkpoint's; :meth:`resume` takes them back)."""
        return {"energy": dict(self.energy), "time_s": self.time_s, "examples": self.examples}

    def step(self, hw_before, hw_after, hw2_before, hw2_after, iterations: int, compartment_iterations: int,
             batch: int) -> None:
        """Add one training step: ``iterations`` summed over the phases, ``compartment_iterations``
        the same weighted by the compartments each phase ran."""
        e_read = read_energy_per_iteration(self.spec, self.profile, hw_before)
        arrays = batch * compartment_iterations * e_read
        if self.converters_modelled:
            dac = 0.0 if math.isnan(self.e_dac) else self.e_dac
            adc = 0.0 if math.isnan(self.e_adc) else self.e_adc
            conv = batch * ((compartment_iterations * self.dac_iter + self.relaxations * self.spec.sizes[0]) * dac
                            + self.adc_per_step * adc)
        else:
            conv = math.nan
        we, wt = write_cost(self.profile, hw_before, hw_after)
        if self.phases == "twin" and hw2_before is not hw_before:
            we2, wt2 = write_cost(self.profile, hw2_before, hw2_after)
            we, wt = we + we2, max(wt, wt2)
        for k, v in zip(PARTS, (arrays, conv, we)):
            self.energy[k] += v
        t_dac = self.profile.dac.conversion_time_s()
        t_adc = self.profile.adc.conversion_time_s()
        self.time_s += batch * (iterations * self.t_iter + self.reads * t_adc + self.relaxations * t_dac) + wt
        self.examples += batch

    def metrics(self) -> dict:
        """``energy_j``, ``energy_<part>_j``, ``digital_energy_j``, ``hardware_time_s`` (run totals)."""
        out = {f"energy_{k}_j": v for k, v in self.energy.items()}
        out["energy_j"] = _nansum(*self.energy.values())
        out["digital_energy_j"] = digital_energy_j(self.spec, self.examples)
        out["hardware_time_s"] = self.time_s
        return out


def digital_flops_per_example(spec) -> int:
    """FLOPs of one backpropagation training example of the equivalent feedforward network."""
    s = spec.sizes
    return DIGITAL_FLOPS_PER_MAC * sum(s[k] * s[k + 1] for k in range(len(s) - 1))


def digital_energy_j(spec, examples: int, gpu: str = "A100") -> float:
    """Energy (J) of training ``examples`` examples on a digital reference
    (:data:`DIGITAL_REFERENCES`; default the A100 of :data:`DIGITAL_GPU`)."""
    if gpu not in DIGITAL_REFERENCES:
        raise AnasimError(f"digital_energy_j: gpu: expected one of {', '.join(DIGITAL_REFERENCES)}, got {gpu!r}")
    return examples * digital_flops_per_example(spec) * DIGITAL_REFERENCES[gpu][1]


__all__ = ["CostMeter", "DIGITAL_FLOPS_PER_MAC", "DIGITAL_GPU", "DIGITAL_J_PER_FLOP", "DIGITAL_REFERENCES",
           "NOT_MODELLED", "PARTS",
           "dac_conversions_per_iteration", "digital_energy_j", "digital_flops_per_example",
           "read_energy_per_iteration", "reads_per_step", "relaxations_per_step", "write_cost"]
