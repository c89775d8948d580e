"""The physics of a node-level Hopfield circuit, and its ``[nodal]`` table.

:class:`NodalPhysics` holds the physical parameters of the netlists
:mod:`anasim.nodal.hopfield` builds (full-scale voltage, unit conductance,
clamps, diodes, temperature, node capacitance, OTA noise). A circuit spec file
sets them in its ``[nodal]`` table (this package owns it; the circuit spec
accepts and ignores it)::

    [nodal]
    node_capacitance_f = 1e-16   # any NodalPhysics field but kind (SI units: V, S, A, K, F)
    g_min_s = 1e-7
    solver = "newton"            # or "blocks", "auto" (the default)

:func:`load_nodal_physics` reads that table from the same source
:func:`anasim.circuits.load_circuit` takes (a path, or a dict laid out like the
file). ``kind`` is not a key: it follows ``network.lam`` (1 → ``"resistive"``,
0 → ``"gyrator"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anasim.errors import AnasimError, ProfileError
from anasim.nodal.netlist import DEFAULT_GMIN
from anasim.tables import Source, check_finite, read_tables, table

KINDS = ("resistive", "gyrator")
#: how the DC point is found (NodalPhysics.solver)
SOLVERS = ("auto", "blocks", "newton")


@dataclass(frozen=True)
class NodalPhysics:
    """Physical parameters of a node-level Hopfield circuit (hashable).

    Attributes:
        kind: ``"resistive"`` (λ = 1) or ``"gyrator"`` (λ = 0).
        v_fs_v: node voltage of normalized state 1 (V).
        g_unit_s: conductance / transconductance of a unit weight (S).
        g_min_s: floor conductance of each device of a differential pair (S)
            (resistive; a crossbar device's G_min).
        g_leak_s: leak conductance of each gyrator-circuit node (S); None
            means g_unit_s, so that normalized couplings are the θ's.
        clamp_lo_v, clamp_hi_v: where the diode clamps bite (V); the rails
            sit one diode drop inside them.
        diode_drop_v: the assumed diode drop placing the rails (V).
        diode_is_a, diode_n: clamp diodes' saturation current (A) and ideality.
        temperature_k: circuit temperature (K); ngspice's default 300.15 K.
        gmin: conductance across every junction (S), as SPICE adds.
        max_newton: Newton iteration budget.
        node_capacitance_f: capacitance of every neuron node to ground (F).
            None: the equilibrium is the noiseless DC point. Set, ``relax``
            with a key adds the stationary thermal fluctuation (Johnson–Nyquist
            and diode shot noise) of the circuit linearized at that point (zero
            mean, covariance from the Lyapunov equation; kT/C per node for a
            purely resistive or ideal gyrator network with its clamps off:
            :func:`anasim.nodal.noise.thermal_covariance`).
        ota_noise_factor: excess noise factor γ of every transconductor (the
            gyrators' OTAs, the input projection's and the nudge's VCCS):
            output current noise 4 k_B T γ |g_m| (A²/Hz) in the thermal
            fluctuation; 0: noiseless. :func:`weights_from_hardware` takes a
            gyrator array's ``noise_factor``.
        solver: how the DC point is found (the same point either way):
            ``"blocks"``, exact updates of one layer at a time
            (:mod:`anasim.nodal.hopfield_blocks`; resistive circuits only);
            ``"newton"``, one Newton solve of the whole netlist
            (:func:`anasim.nodal.solver.solve_op`); ``"auto"`` (default):
            blocks for a resistive circuit, Newton for a gyrator one.
        block_tol_v: the block solve stops when no node moved more than this
            in a sweep (V).
        max_sweeps: sweep budget of the block solve.
    """

    kind: str = "resistive"
    v_fs_v: float = 1.0
    g_unit_s: float = 1e-4
    g_min_s: float = 0.0
    g_leak_s: float | None = None
    clamp_lo_v: float = 0.0
    clamp_hi_v: float = 1.0
    diode_drop_v: float = 0.5
    diode_is_a: float = 1e-14
    diode_n: float = 1.0
    temperature_k: float = 300.15
    gmin: float = DEFAULT_GMIN
    max_newton: int = 100
    node_capacitance_f: float | None = None
    ota_noise_factor: float = 0.0
    solver: str = "auto"
    block_tol_v: float = 1e-12
    max_sweeps: int = 2000

    def __post_init__(self):
        if self.kind not in KINDS:
            raise AnasimError(f"NodalPhysics.kind must be one of {KINDS}, got {self.kind!r}")
        if self.solver not in SOLVERS:
            raise AnasimError(f"NodalPhysics.solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.solver == "blocks" and self.kind != "resistive":
            raise AnasimError("NodalPhysics.solver = 'blocks' solves resistive circuits (lam = 1); a gyrator "
                              "circuit's cross-coupled copies need solver = 'newton' (or 'auto')")
        if not float(self.block_tol_v) > 0 or int(self.max_sweeps) < 1:
            raise AnasimError("NodalPhysics: block_tol_v must be > 0 V and max_sweeps ≥ 1")
        for name in ("v_fs_v", "g_unit_s", "diode_is_a", "diode_n", "temperature_k"):
            if not float(getattr(self, name)) > 0:
                raise AnasimError(f"NodalPhysics.{name} must be > 0, got {getattr(self, name)!r}")
        if self.g_min_s < 0 or (self.g_leak_s is not None and not self.g_leak_s > 0):
            raise AnasimError("NodalPhysics: g_min_s must be ≥ 0 and g_leak_s > 0")
        if not self.clamp_hi_v > self.clamp_lo_v:
            raise AnasimError("NodalPhysics: clamp_hi_v must exceed clamp_lo_v")
        if self.node_capacitance_f is not None and not float(self.node_capacitance_f) > 0:
            raise AnasimError(f"NodalPhysics.node_capacitance_f must be > 0 F or None, "
                              f"got {self.node_capacitance_f!r}")
        if not (np.isfinite(float(self.ota_noise_factor)) and float(self.ota_noise_factor) >= 0):
            raise AnasimError(f"NodalPhysics.ota_noise_factor must be a finite number >= 0, "
                              f"got {self.ota_noise_factor!r}")

    @property
    def uses_blocks(self) -> bool:
        """Whether the DC point comes from the block solver (``solver``, resolved for ``kind``)."""
        return self.solver == "blocks" or (self.solver == "auto" and self.kind == "resistive")

    @property
    def leak_s(self) -> float:
        return self.g_unit_s if self.g_leak_s is None else self.g_leak_s

    @property
    def rail_hi_v(self) -> float:
        return self.clamp_hi_v - self.diode_drop_v

    @property
    def rail_lo_v(self) -> float:
        return self.clamp_lo_v + self.diode_drop_v



def kind_for_lam(lam) -> str | None:
    """The circuit kind that realizes structure parameter ``lam``: 1 → ``"resistive"``,
    0 → ``"gyrator"``, anything else (λ in between, ``"asymmetric"``) None."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)):
        return None
    return {1.0: "resistive", 0.0: "gyrator"}.get(float(lam))


def load_nodal_physics(source: Source, *, kind: str | None = None, where: str | None = None) -> NodalPhysics:
    """The :class:`NodalPhysics` of a spec file's ``[nodal]`` table (defaults for
    what it leaves out; no table: every default).

    ``source``: a TOML file's path or a dict laid out like the file (what
    :func:`anasim.tables.read_tables` takes); ``where`` names it in errors.
    ``kind``: ``"resistive"`` or ``"gyrator"``; None: from the file's
    ``network.lam`` (1 → resistive, 0 → gyrator; otherwise NodalPhysics'
    default). ``kind`` is not a key of the table.

    Raises:
        ProfileError: unreadable source, an unknown key, a value of the wrong
            type, NaN/inf, or a value NodalPhysics refuses; the message names
            the file and the key (``nodal.<field>``).
    """
    data, where = read_tables(source, "circuit spec", where)
    opts = table(data, "nodal", where)
    allowed = [f for f in NodalPhysics.__dataclass_fields__ if f != "kind"]
    for key, value in opts.items():
        if key not in allowed:
            raise ProfileError(f"{where}: unknown key 'nodal.{key}' (allowed: {', '.join(allowed)}; "
                               f"kind follows network.lam)")
        if key == "solver":
            if value not in SOLVERS:
                raise ProfileError(f"{where}: key 'nodal.solver' must be one of {', '.join(SOLVERS)}, got {value!r}")
            continue
        want, what = (int, "an integer") if key in ("max_newton", "max_sweeps") else ((int, float), "a number")
        if isinstance(value, bool) or not isinstance(value, want):
            raise ProfileError(f"{where}: key 'nodal.{key}' must be {what}, got {value!r}")
        check_finite(value, where, f"nodal.{key}")
    if kind is None:
        net = data.get("network")
        kind = kind_for_lam(net.get("lam", 0.0)) if isinstance(net, dict) else None
    if kind is not None:
        opts["kind"] = kind
    try:
        return NodalPhysics(**opts)
    except AnasimError as err:
        # NodalPhysics names its fields; the user wrote them as nodal.<field>
        raise ProfileError(f"{where}: {str(err).replace('NodalPhysics.', 'nodal.')}") from None


__all__ = ["KINDS", "SOLVERS", "NodalPhysics", "kind_for_lam", "load_nodal_physics"]
