"""Relaxation engines: how a circuit finds its equilibrium.

An *engine* turns a circuit spec, a built chip and an input into an
:class:`~anasim.circuits.layered.Equilibrium`. Every engine offers the same
calls (:class:`Engine`), so the controller, the analysis and the studies never
ask which one they hold; what an engine can do beyond the common calls it
declares in ``abilities`` (:data:`ABILITIES`).

Engines are chosen by the circuit spec (``relaxation.engine``, or the kind of
spec: a convolutional spec relaxes on the convolutional engine) through
:func:`engine_for`. Packages register their engines by name with
:func:`register_engine`: this package registers ``"iterative"`` (the layered
loop through the device chain); :mod:`anasim.nodal` registers ``"nodal"``
(each equilibrium a DC operating point of the whole netlist) when imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import jax

from anasim.errors import ProfileError

Array = jax.Array

#: What an engine may declare beyond the common calls.
ABILITIES = {
    "jit": "relax can be traced inside jax.jit (a whole training step compiles as one program)",
    "complex_nudge": "relax takes a complex nudge (holomorphic EP; ideal devices, analytic activations)",
    "warm_start": "relax continues from state0, a previous Equilibrium",
    "settling": "per-example residuals say whether an example settled (training.discard_unsettled)",
    "thermal_noise": "equilibria carry the nodes' thermal fluctuation",
}


@runtime_checkable
class Engine(Protocol):
    """The calls every relaxation engine offers.

    ``spec`` is the circuit spec, ``hw`` the chip :meth:`build` returned;
    ``x`` has shape (batch, n_in) and the states of the result have shape
    (batch, n_k) per layer k = 1 … L. Randomness comes only from ``key``.
    """

    #: the name a spec gives in ``relaxation.engine``
    name: str
    #: a subset of :data:`ABILITIES`
    abilities: frozenset

    def init_params(self, spec: Any, key: Array) -> Any:
        """Random initial couplings and biases of ``spec`` (the digital copy)."""

    def build(self, spec: Any, profile: Any, params: Any, key: Array) -> Any:
        """Fabricate a chip on ``profile`` and program ``params`` into it."""

    def reprogram(self, spec: Any, hw: Any, params: Any, key: Array) -> Any:
        """Write ``params`` into the chip ``hw`` (same fabricated parts)."""

    def relax(self, spec: Any, hw: Any, x: Array, key: Array, *, nudge=(0.0, 0.0), target=None,
              clamp=(None, None), state0=None, eta=None) -> Any:
        """The equilibrium of both compartments, with nudge strengths
        ``(β₊, β₋)`` towards ``target`` or outputs clamped to ``clamp``."""

    def read(self, hw: Any, eq: Any, key: Array) -> tuple[tuple, tuple]:
        """Both compartments' states as the controller reads them (through the ADCs)."""

    def damping(self, spec: Any, hw: Any) -> Array | None:
        """The damping η every relaxation of ``hw`` would otherwise work out for
        itself from the chip (None: the engine has no such per-chip figure). A
        caller that relaxes one chip several times, as a training step does,
        computes it once and passes it to each :meth:`relax` as ``eta``."""


#: name -> factory(spec, tables) building the engine from the spec file's tables
EngineFactory = Callable[[Any, Mapping], Engine]


class _Registry:
    """The engines known by name; one instance per process, filled by the packages that define engines."""

    def __init__(self) -> None:
        self._factories: dict[str, EngineFactory] = {}

    def register(self, name: str, factory: EngineFactory, *, replace: bool = False) -> None:
        if name in self._factories and not replace:
            raise ValueError(f"an engine named {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def get(self, name: str, where: str) -> EngineFactory:
        if name not in self._factories:
            hint = " (it is registered by anasim.nodal: import anasim.nodal)" if name == "nodal" else ""
            raise ProfileError(f"{where}: relaxation.engine {name!r} is not a registered engine "
                               f"(registered: {', '.join(self._factories)}){hint}")
        return self._factories[name]


_ENGINES = _Registry()


def register_engine(name: str, factory: EngineFactory, *, replace: bool = False) -> None:
    """Make ``relaxation.engine = name`` build its engine with ``factory(spec, tables)``
    (``tables``: the spec file's tables as a dict, {} when built in code)."""
    _ENGINES.register(name, factory, replace=replace)


def engine_names() -> tuple[str, ...]:
    """The names of the registered engines."""
    return _ENGINES.names()


def engine_for(spec: Any, tables: Mapping | None = None) -> Engine:
    """The engine ``spec`` asks for, configured from the spec file's ``tables``
    (e.g. the ``[nodal]`` table of a node-level circuit; None: defaults)."""
    where = getattr(spec, "source", "") or "circuit spec"
    return _ENGINES.get(spec.engine, where)(spec, dict(tables or {}))
