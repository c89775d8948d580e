"""Device profiles: the parts of one hardware platform, loaded from TOML.

A profile bundles the devices a circuit is built from:

* ``coupling`` -- the matrix-vector multiplier (ideal, SLM crossbar, resistive
  crossbar, gyrator array), a :class:`~anasim.devices.base.CouplingDevice`;
* ``dac`` -- loads inputs and states onto the hardware (a ``Converter``);
* ``adc`` -- reads equilibrium states back for the learning rule (a ``Converter``);
* ``loop_time_s`` -- the hardware time of one relaxation iteration in seconds
  (0.6 ns for AIM-style loops up to ~20 ns for the AOC; DESIGN.md §3);
* ``energy_per_mac_j`` -- energy per multiply-accumulate in joules, for cost
  accounting (0 when unknown).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anasim.devices.base import CouplingDevice, Converter, IdealConverter, IdealCoupling


@dataclass(frozen=True)
class DeviceProfile:
    """The hardware a circuit is built on. Every part defaults to its ideal."""

    name: str = "ideal"
    coupling: CouplingDevice = field(default_factory=IdealCoupling)
    dac: Converter = field(default_factory=IdealConverter)
    adc: Converter = field(default_factory=IdealConverter)
    loop_time_s: float = 0.0
    energy_per_mac_j: float = 0.0
    source: str = ""


def ideal_profile() -> DeviceProfile:
    """All non-idealities off: circuits built on it run the exact mathematics."""
    return DeviceProfile()
