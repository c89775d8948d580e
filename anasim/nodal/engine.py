"""The ``"nodal"`` relaxation engine: each equilibrium is the DC operating point of
the whole node-level netlist (:mod:`anasim.nodal.hopfield`).

A spec with ``relaxation.engine = "nodal"`` (λ = 1: the resistive circuit of
differential conductance pairs; λ = 0: the gyrator circuit) relaxes on
:class:`NodalEngine`; its :class:`~anasim.nodal.physics.NodalPhysics` comes
from the spec file's ``[nodal]`` table. Chips are those of the layered circuit
(:func:`anasim.circuits.layered.build`): the engine reads their realized
couplings and builds the netlist from them. Importing :mod:`anasim.nodal`
registers the engine (:func:`anasim.circuits.engine.register_engine`), so
:func:`anasim.circuits.engine.engine_for` finds it.

The DC point comes from ``physics.solver``: block updates of the layers for
a resistive circuit (:mod:`anasim.nodal.hopfield_blocks`, the default) or one
Newton solve of the whole netlist.

Abilities (:data:`anasim.circuits.engine.ABILITIES`): ``"thermal_noise"``
when the physics has a node capacitance. Not ``"jit"``: the DC solve is
numpy/scipy around its own compiled loop; a training step that traced
it inside ``jax.jit`` (through a host callback) hung on a 784-input circuit, so
controllers run the engine's steps op by op. Not ``"warm_start"`` (the DC point
does not depend on where the solve starts), ``"settling"`` (a converged Newton
solve has no settling to judge) or ``"complex_nudge"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax

from anasim.circuits import layered
from anasim.circuits.engine import register_engine
from anasim.circuits.layered import Equilibrium
from anasim.circuits.precision import in_float64
from anasim.nodal import hopfield
from anasim.nodal.physics import NodalPhysics, kind_for_lam, load_nodal_physics

Array = jax.Array

#: the name a spec gives in ``relaxation.engine``
NAME = "nodal"


@dataclass(frozen=True)
class NodalEngine:
    """Relaxation by the node-level circuit with ``physics`` (hashable: a jit static argument).

    ``physics.kind`` is overridden by the spec's λ at each relaxation
    (:func:`anasim.nodal.hopfield.weights_from_hardware`).
    """

    physics: NodalPhysics = field(default_factory=NodalPhysics)
    name: str = field(default=NAME, init=False)

    @property
    def abilities(self) -> frozenset:
        return frozenset({"thermal_noise"} if self.physics.node_capacitance_f is not None else ())

    @in_float64
    def init_params(self, spec: Any, key: Array) -> layered.Params:
        """Random initial couplings and biases (:func:`anasim.circuits.layered.init_params`)."""
        return layered.init_params(spec, key)

    @in_float64
    def build(self, spec: Any, profile: Any, params: Any, key: Array) -> layered.Hardware:
        """A chip on ``profile`` programmed with ``params`` (:func:`anasim.circuits.layered.build`)."""
        return layered.build(spec, profile, params, key)

    @in_float64
    def reprogram(self, spec: Any, hw: Any, params: Any, key: Array) -> layered.Hardware:
        """``params`` written into ``hw`` (:func:`anasim.circuits.layered.reprogram`)."""
        return layered.reprogram(spec, hw, params, key)

    def relax(self, spec: Any, hw: Any, x: Array, key: Array, *, nudge=(0.0, 0.0), target=None,
              clamp=(None, None), state0=None, eta=None) -> Equilibrium:
        """The DC operating point of the circuit (:func:`anasim.nodal.hopfield.relax`), with
        each node's thermal fluctuation when the physics has a node capacitance."""
        return hopfield.relax(spec, hw, x, key, nudge=nudge, target=target, clamp=clamp, state0=state0,
                              eta=eta, physics=self.physics)

    @in_float64
    def read(self, hw: Any, eq: Any, key: Array) -> tuple[tuple, tuple]:
        """Both compartments through the ADCs (:func:`anasim.circuits.layered.read_states`)."""
        return layered.read_states(hw, eq, key)

    def damping(self, spec: Any, hw: Any) -> None:
        """None: a DC operating point has no damping to share between relaxations."""
        return None


def nodal_engine_factory(spec: Any, tables: Mapping) -> NodalEngine:
    """The engine of ``spec`` (``relaxation.engine = "nodal"``): its physics from the
    ``[nodal]`` table of ``tables`` (the spec file's tables; {}: defaults), kind from
    ``spec.lam`` (1 → resistive, 0 → gyrator)."""
    kind = None if getattr(spec, "asymmetric", False) else kind_for_lam(spec.lam)
    where = getattr(spec, "source", "") or None
    return NodalEngine(load_nodal_physics(dict(tables or {}), kind=kind, where=where))


register_engine(NAME, nodal_engine_factory, replace=True)

__all__ = ["NAME", "NodalEngine", "nodal_engine_factory"]
