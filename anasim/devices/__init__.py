"""Device models with their non-idealities (docs/design.md, “Device contract”).

Couplings (``fabricate → program → mvm / mvm_t → effective``):
:class:`SLMCrossbar`, :class:`ResistiveCrossbar`, :class:`GyratorArray`,
:class:`IdealCoupling`; converters (``fabricate → convert``): :class:`DAC`,
:class:`ADC`, :class:`IdealConverter`; noise primitives in
:mod:`anasim.devices.noise`; neuron nonlinearities in
:mod:`anasim.devices.nonlinearity`; profiles (:func:`load_profile`) in
:mod:`anasim.devices.profile`.
"""

from anasim.devices import noise, nonlinearity
from anasim.devices.base import (
    Converter,
    CouplingDevice,
    IdealConverter,
    IdealCoupling,
    IdealCouplingState,
)
from anasim.devices.converters import ADC, DAC, ConverterInstance
from anasim.devices.gyrator import GyratorArray, GyratorInstance, GyratorState
from anasim.devices.noise import K_B, Q_E
from anasim.devices.nonlinearity import (
    clamp,
    diode_clamp,
    hard_sigmoid,
    relu,
    tempered_hard_sigmoid,
)
from anasim.devices.profile import (
    DeviceProfile,
    coupling_kind,
    ideal_profile,
    iteration_time_s,
    load_profile,
    profile_from_dict,
    profile_summary,
)
from anasim.devices.resistive import ResistiveCrossbar, ResistiveInstance, ResistiveState
from anasim.devices.slm import SLMCrossbar, SLMInstance, SLMState

__all__ = [
    "ADC",
    "Converter",
    "ConverterInstance",
    "CouplingDevice",
    "DAC",
    "DeviceProfile",
    "GyratorArray",
    "GyratorInstance",
    "GyratorState",
    "IdealConverter",
    "IdealCoupling",
    "IdealCouplingState",
    "K_B",
    "Q_E",
    "ResistiveCrossbar",
    "ResistiveInstance",
    "ResistiveState",
    "SLMCrossbar",
    "SLMInstance",
    "SLMState",
    "clamp",
    "coupling_kind",
    "diode_clamp",
    "hard_sigmoid",
    "ideal_profile",
    "iteration_time_s",
    "load_profile",
    "noise",
    "nonlinearity",
    "profile_from_dict",
    "profile_summary",
    "relu",
    "tempered_hard_sigmoid",
]
