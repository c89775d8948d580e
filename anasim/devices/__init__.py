"""Device models with their non-idealities (DESIGN.md §3)."""

from anasim.devices.base import (
    Converter,
    CouplingDevice,
    IdealConverter,
    IdealCoupling,
    IdealCouplingState,
)
from anasim.devices.profile import DeviceProfile, ideal_profile

__all__ = [
    "Converter",
    "CouplingDevice",
    "DeviceProfile",
    "IdealConverter",
    "IdealCoupling",
    "IdealCouplingState",
    "ideal_profile",
]
