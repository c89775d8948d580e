"""Circuit specs: what a layered Hopfield circuit is, loaded from TOML.

A :class:`CircuitSpec` describes the *intended* circuit (docs/design.md, “Circuits and relaxation”); the
device profile it is built on decides what is realized. Layers are
``s_0 = x`` (clamped input, ``sizes[0]`` units), hidden layers ``s_1 … s_{L-1}``
and the output layer ``s_L`` (``sizes[-1]`` units). Couplings: the input
projection θ_0 (``(sizes[1], sizes[0])``) and θ_k from layer k to k+1
(``(sizes[k+1], sizes[k])``, k = 1 … L-1). With the structure parameter λ
the recurrent matrix over ``s_1 … s_L`` is ``W_λ = θ + (2λ − 1) θᵀ``
(λ = 1 symmetric / EP, ½ feedforward / dual propagation, 0 skew-symmetric);
``lam = "asymmetric"`` has independent backward couplings ψ_k
(``(sizes[k], sizes[k+1])``).

TOML layout (every key is validated; unknown keys, wrong types, NaN or values
out of range raise :class:`~anasim.errors.ProfileError` naming the file and the
key)::

    name = "skew-small"                 # optional, defaults to the file stem
    description = "..."                 # optional free text
    device = "devices/slm-10bit.toml"   # optional default device profile

    [network]
    sizes = [784, 128, 10]              # n_in, n_1, ..., n_L (last = output)
    lam = 0.0                           # float in [0, 1] or "asymmetric"
    activation = "hard_sigmoid"         # one name, or a list with one per layer 1..L
    backward = "transpose"              # transpose | copy | gyrator | independent
    cost = "squared"                    # squared | cross_entropy
    init_scale = 1.0                    # θ ~ U(±init_scale/√fan_in), biases 0
    asymmetry_angle = 45.0              # optional, lam = "asymmetric" only: ψ_k at this angle (degrees) to θ_kᵀ

    [relaxation]
    eta = 0.5                           # damping in (0, 1]; 1 < η < 2 over-relaxes (symmetric, async)
    eta_auto = false                    # lam = 0 only: lower η to the fastest stable value for the current couplings
    schedule = "async"                  # sync | async
    max_iters = 100                     # iteration budget per relaxation
    tol = 1e-4                          # stop when max |f(target) − s| ≤ tol (0: fixed budget)
    stall_window = 0                    # also stop at a noise floor: no 10 % gain in this many iterations (0: off)
    floor_stop = false                  # also stop where the residual reaches the floor the devices' read noise predicts
    dtype = "float32"                   # float32 | float64 | bfloat16 | float16
    engine = "iterative"                # iterative | nodal (anasim.circuits.engine)

    [training]                          # owned by anasim.learning.config (TrainConfig)
    epochs = 3

    [nodal]                             # owned by anasim.nodal.physics (engine = "nodal")
    node_capacitance_f = 1e-15          # any NodalPhysics field but kind (SI units: V, S, A, K, F)

The ``[training]`` and ``[nodal]`` tables belong to other packages: this module
accepts them in the file and leaves them to :func:`anasim.learning.load_train_config`
and :func:`anasim.nodal.load_nodal_physics`, which read the same file (or dict).

Backward realizations (how the θ_kᵀ direction is built):

``transpose``
    the forward device read from the other side (``mvm_t``), exact for a
    reciprocal device (ideal matrix, resistive crossbar);
``copy``
    a second device programmed with θ_kᵀ (what an SLM needs: optics is not
    reciprocal), so the two directions differ by their programming errors;
``gyrator``
    a gyrator array whose transposed read is −θᵀ (skew coupling built in);
    the mismatch ε of the forward transconductance breaks the symmetry;
``independent``
    a second device programmed with the independent ψ_k (only with
    ``lam = "asymmetric"``).

Controlled asymmetry: with ``lam = "asymmetric"`` the independent backward
couplings start, by default, as their own draw U(±init_scale/√n_{k+1}). With
``network.asymmetry_angle = α`` (degrees, 0 ≤ α ≤ 180) they start instead as
ψ_k = sin α · R_k + cos α · θ_kᵀ, R_k an independent draw with the scale of θ_k,
so that the cosine between ψ_k and θ_kᵀ is cos α for large matrices (exactly
θ_kᵀ at α = 0, unrelated at 90°, −θ_kᵀ at 180°). Studies sweep it as
``circuit.asymmetry_angle`` (the key must be present in the circuit file).

Engines: ``relaxation.engine`` chooses how the circuit finds its equilibrium
(:mod:`anasim.circuits.engine`): ``"iterative"`` runs the damped fixed-point
loop through the device chain (any device, any λ); ``"nodal"`` solves the
node-level resistive (λ = 1) or gyrator (λ = 0) netlist, each equilibrium a
DC operating point (:mod:`anasim.nodal`). Its ``[nodal]`` table sets the
fields of :class:`~anasim.nodal.hopfield.NodalPhysics`, e.g.
``node_capacitance_f`` puts each node's stationary thermal fluctuation (kT/C
order) into every equilibrium, ``g_min_s`` the crossbar's floor conductance,
``temperature_k``. ``kind`` follows λ. Without the table every field keeps
its default.

Reduced precision: ``bfloat16`` and ``float16`` run the relaxation's states and
coupling reads (and the programmed devices) in that format, while the
pre-activation integrator, the residual and the convergence test stay in
float32 so that ``tol`` keeps its meaning; the parameters a controller keeps
(the shadow copy) stay float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from collections.abc import Mapping
from pathlib import Path

from anasim.errors import ProfileError
from anasim.tables import Source, check_table, read_tables, table

#: Neuron nonlinearities a spec may name (see :mod:`anasim.circuits.layered`).
ACTIVATIONS = ("hard_sigmoid", "tempered_hard_sigmoid", "relu", "identity", "sigmoid")
SCHEDULES = ("sync", "async")
BACKWARDS = ("transpose", "copy", "gyrator", "independent")
COSTS = ("squared", "cross_entropy")
DTYPES = ("float32", "float64", "bfloat16", "float16")
#: Relaxation engines a spec may name (:mod:`anasim.circuits.engine`).
ENGINES = ("iterative", "nodal")
#: Formats whose relaxation keeps a float32 integrator and residual.
LOW_PRECISION = ("bfloat16", "float16")


class LamStructure:
    """The structure λ of a circuit spec with a ``lam`` field (float in [0, 1] or ``"asymmetric"``)."""

    @property
    def asymmetric(self) -> bool:
        return self.lam == "asymmetric"

    @property
    def lam_mix(self) -> float:
        """λ used to mix the two compartments (1 for asymmetric: each compartment its own)."""
        return 1.0 if self.asymmetric else float(self.lam)


#: Most weights one coupling matrix may hold (2**28: 1 GiB in float32): a larger spec is a typo,
#: refused before the numerical libraries try to allocate it.
MAX_COUPLING_WEIGHTS = 2**28

@dataclass(frozen=True)
class CircuitSpec(LamStructure):
    """A layered Hopfield circuit (hashable: a static argument of ``jax.jit``).

    Attributes:
        sizes: (n_in, n_1, …, n_L) units per layer; the last is the output.
        lam: structure λ in [0, 1], or ``"asymmetric"``.
        activations: one neuron nonlinearity name per layer 1 … L.
        eta: gain η of the pre-activation update a ← (1 − η) a + η a_target
            (dimensionless), in (0, 2): η ≤ 1 damps, 1 < η < 2 over-relaxes,
            which speeds up a symmetric (λ = 1) circuit on the async schedule
            (:mod:`anasim.circuits.damping`).
        eta_auto: skew-symmetric circuits (λ = 0) only: relax with
            min(η, η*), η* the damping at which the linearized iteration
            contracts fastest (below its stability edge), computed from the realized couplings
            whenever they may have changed (:mod:`anasim.circuits.damping`); keeps the
            relaxation converging while training grows the couplings.
        schedule: ``"sync"`` (all layers per iteration) or ``"async"``
            (even layers, then odd layers, per iteration).
        max_iters: iteration budget of one relaxation.
        tol: convergence tolerance on the fixed-point residual
            max |f(target) − s| (normalized state units); 0 runs the full budget.
        stall_window: with temporal device noise the residual settles on a
            noise floor that may lie above ``tol``; when ``stall_window`` = W > 0
            the relaxation also stops once the last W iterations did not bring
            the residual below 0.9× its best value before them (reported as
            ``oscillating``: not converged, stationary). 0 turns this off.
        floor_stop: stop a noisy relaxation as soon as its residual is within
            the floor that the coupling devices' own read-noise variance
            predicts (:func:`anasim.circuits.relaxation.floor_quantile`,
            docs/noise_speed.md); needs a device that reports its noise
            (``noise_report``, the SLM); elsewhere it changes nothing.
            Reported as ``oscillating``, as a stall-window stop.
        backward: backward realization (module docstring).
        cost: ``"squared"`` (ℓ = ½‖s_L − y‖²) or ``"cross_entropy"``
            (ℓ = −Σ y log softmax(s_L)).
        init_scale: couplings start as U(−a, a), a = init_scale/√fan_in.
        dtype: float dtype of the relaxation engine (``bfloat16``/``float16``:
            states and device reads in that format, integrator and residual in
            float32; see the module docstring).
        asymmetry_angle: initial angle α (degrees, [0, 180]) between the
            independent backward couplings ψ_k and θ_kᵀ (``lam = "asymmetric"``
            only); None keeps ψ_k an independent draw.
        device: default device profile path ("" = ideal); relative paths are
            resolved by :func:`resolve_device_path`.
        engine: the relaxation engine, one of :data:`ENGINES`
            (:mod:`anasim.circuits.engine`); ``"nodal"`` needs λ = 0 or 1.
        name: a label.
        source: the file the spec came from, or the name given to a dict
            source ("" if built in code): names it in errors and anchors
            relative device paths.
    """

    sizes: tuple[int, ...]
    lam: float | str = 0.0
    activations: tuple[str, ...] = ()
    eta: float = 0.5
    eta_auto: bool = False
    schedule: str = "async"
    max_iters: int = 100
    tol: float = 1e-4
    stall_window: int = 0
    floor_stop: bool = False
    backward: str = "transpose"
    cost: str = "squared"
    init_scale: float = 1.0
    dtype: str = "float32"
    device: str = ""
    name: str = "circuit"
    source: str = ""
    asymmetry_angle: float | None = None
    engine: str = "iterative"

    def __post_init__(self):
        where = self.source or "CircuitSpec"
        sizes = tuple(int(n) for n in self.sizes)
        if len(sizes) < 2 or any(n < 1 for n in sizes):
            raise ProfileError(f"{where}: network.sizes must list ≥ 2 positive layer sizes, got {self.sizes}")
        for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
            if a * b > MAX_COUPLING_WEIGHTS:
                raise ProfileError(f"{where}: network.sizes: coupling {k} ({a} → {b} units) has {a * b} weights, "
                                   f"more than the {MAX_COUPLING_WEIGHTS} one simulated chip may hold")
        object.__setattr__(self, "sizes", sizes)
        acts = self.activations or ("hard_sigmoid",)
        if isinstance(acts, str):
            acts = (acts,)
        acts = tuple(acts)
        if len(acts) == 1:
            acts = acts * (len(sizes) - 1)
        if len(acts) != len(sizes) - 1:
            raise ProfileError(
                f"{where}: network.activation needs 1 or {len(sizes) - 1} names, got {len(acts)}")
        for a in acts:
            if a not in ACTIVATIONS:
                raise ProfileError(f"{where}: network.activation {a!r} not one of {ACTIVATIONS}")
        object.__setattr__(self, "activations", acts)
        if isinstance(self.lam, str):
            if self.lam != "asymmetric":
                raise ProfileError(f"{where}: network.lam must be a number in [0, 1] or \"asymmetric\", got {self.lam!r}")
        else:
            lam = float(self.lam)
            if not (0.0 <= lam <= 1.0):
                raise ProfileError(f"{where}: network.lam must be in [0, 1], got {self.lam!r}")
            object.__setattr__(self, "lam", lam)
        if (self.lam == "asymmetric") != (self.backward == "independent"):
            raise ProfileError(
                f"{where}: network.backward = \"independent\" goes with lam = \"asymmetric\" (and only with it)")
        if not (0.0 < float(self.eta) < 2.0):
            raise ProfileError(f"{where}: relaxation.eta must be in (0, 2), got {self.eta!r}")
        if not isinstance(self.eta_auto, bool):
            raise ProfileError(f"{where}: relaxation.eta_auto must be true or false, got {self.eta_auto!r}")
        if self.eta_auto and self.lam != 0.0:
            raise ProfileError(
                f"{where}: relaxation.eta_auto bounds the damping of skew-symmetric circuits only "
                f"(network.lam = 0), got lam = {self.lam!r}")
        if self.schedule not in SCHEDULES:
            raise ProfileError(f"{where}: relaxation.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if int(self.max_iters) < 1:
            raise ProfileError(f"{where}: relaxation.max_iters must be ≥ 1, got {self.max_iters!r}")
        if not (float(self.tol) >= 0.0):
            raise ProfileError(f"{where}: relaxation.tol must be ≥ 0, got {self.tol!r}")
        if int(self.stall_window) < 0:
            raise ProfileError(f"{where}: relaxation.stall_window must be ≥ 0, got {self.stall_window!r}")
        if self.backward not in BACKWARDS:
            raise ProfileError(f"{where}: network.backward must be one of {BACKWARDS}, got {self.backward!r}")
        if self.cost not in COSTS:
            raise ProfileError(f"{where}: network.cost must be one of {COSTS}, got {self.cost!r}")
        if not (float(self.init_scale) > 0.0 and math.isfinite(float(self.init_scale))):
            raise ProfileError(f"{where}: network.init_scale must be a positive number, got {self.init_scale!r}")
        if self.dtype not in DTYPES:
            raise ProfileError(f"{where}: relaxation.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.asymmetry_angle is not None:
            angle = self.asymmetry_angle
            if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not (0.0 <= float(angle) <= 180.0):
                raise ProfileError(
                    f"{where}: network.asymmetry_angle must be a number of degrees in [0, 180], got {angle!r}")
            if not self.asymmetric:
                raise ProfileError(
                    f"{where}: network.asymmetry_angle needs independent backward couplings (lam = \"asymmetric\")")
            object.__setattr__(self, "asymmetry_angle", float(angle))
        if self.engine not in ENGINES:
            raise ProfileError(f"{where}: relaxation.engine must be one of {ENGINES}, got {self.engine!r}")
        if self.engine == "nodal" and (self.asymmetric or self.lam not in (0.0, 1.0)):
            raise ProfileError(
                f"{where}: relaxation.engine = \"nodal\" builds a resistive (lam = 1) or gyrator (lam = 0) "
                f"node-level circuit, got network.lam = {self.lam!r}")
        object.__setattr__(self, "eta", float(self.eta))
        object.__setattr__(self, "tol", float(self.tol))
        object.__setattr__(self, "max_iters", int(self.max_iters))
        object.__setattr__(self, "stall_window", int(self.stall_window))
        object.__setattr__(self, "floor_stop", bool(self.floor_stop))
        object.__setattr__(self, "init_scale", float(self.init_scale))

    # --- derived quantities ------------------------------------------------------

    @property
    def n_layers(self) -> int:
        """L: the number of non-input layers (hidden + output)."""
        return len(self.sizes) - 1

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def low_precision(self) -> bool:
        """True for bfloat16/float16 relaxation (float32 integrator and residual)."""
        return self.dtype in LOW_PRECISION

    def physics(self) -> "CircuitSpec":
        """The spec without its labels (name, source, default device): what a
        compiled relaxation depends on, so specs that differ only in labels
        share one compilation."""
        return replace(self, name="circuit", source="", device="")


# --- TOML loading ----------------------------------------------------------------

#: Tables of a spec file that other packages own (see the module docstring).
FOREIGN_TABLES = ("training", "nodal")
_TOP = {"name": str, "description": str, "device": str, "network": dict, "relaxation": dict,
        **{t: dict for t in FOREIGN_TABLES}}
_NETWORK = {"sizes": list, "lam": (float, int, str), "activation": (str, list), "backward": str,
            "cost": str, "init_scale": (float, int), "asymmetry_angle": (float, int)}
_RELAXATION = {"eta": (float, int), "eta_auto": bool, "schedule": str, "max_iters": int, "tol": (float, int),
               "stall_window": int, "floor_stop": bool, "dtype": str, "engine": str}


def load_circuit(source: Source, *, where: str | None = None) -> CircuitSpec:
    """Read and validate a circuit spec (layout in the module docstring).

    ``source`` is a TOML file's path, or a dict laid out like the file (what a
    sweep builds); ``where`` names it in errors. The ``[training]`` and
    ``[nodal]`` tables are left to their own loaders.

    Raises:
        ProfileError: missing file, bytes that are not UTF-8, TOML syntax
            error, unknown key, wrong type, NaN/inf or a value out of range;
            the message names file and key.
    """
    data, where = read_tables(source, "circuit spec", where)
    check_table(data, _TOP, where, "")
    net = table(data, "network", where)
    if "sizes" not in net:
        raise ProfileError(f"{where}: missing key 'network.sizes'")
    check_table(net, _NETWORK, where, "network.")
    rel = table(data, "relaxation", where)
    check_table(rel, _RELAXATION, where, "relaxation.")
    sizes = net["sizes"]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
        raise ProfileError(f"{where}: key 'network.sizes' must be a list of integers, got {sizes!r}")
    act = net.get("activation", "hard_sigmoid")
    if isinstance(act, list) and not all(isinstance(a, str) for a in act):
        raise ProfileError(f"{where}: key 'network.activation' must be a name or a list of names")
    is_file = not isinstance(source, Mapping)
    kwargs = dict(
        sizes=tuple(sizes),
        lam=net.get("lam", 0.0),
        activations=tuple(act) if isinstance(act, list) else (act,),
        backward=net.get("backward", "transpose"),
        cost=net.get("cost", "squared"),
        init_scale=net.get("init_scale", 1.0),
        asymmetry_angle=net.get("asymmetry_angle"),
        eta=rel.get("eta", 0.5),
        eta_auto=rel.get("eta_auto", False),
        schedule=rel.get("schedule", "async"),
        max_iters=rel.get("max_iters", 100),
        tol=rel.get("tol", 1e-4),
        stall_window=rel.get("stall_window", 0),
        floor_stop=rel.get("floor_stop", False),
        dtype=rel.get("dtype", "float32"),
        engine=rel.get("engine", "iterative"),
        device=data.get("device", ""),
        name=data.get("name", Path(source).stem if is_file else "circuit"),
        source=where,
    )
    return CircuitSpec(**kwargs)


def resolve_device_path(spec: CircuitSpec, device: str | Path | None = None) -> Path | None:
    """The device profile file to build ``spec`` on, or None for the ideal profile.

    ``device`` (e.g. a CLI ``--device``) overrides the spec's own. A relative
    path is looked up relative to the current directory, then the spec file's
    folder, then that folder's parent (so ``devices/x.toml`` in
    ``circuits/y.toml`` finds the repository's ``devices/``).
    """
    name = str(device) if device else spec.device
    if not name:
        return None
    p = Path(name)
    if p.is_absolute():
        return p
    candidates = [Path.cwd() / p]
    if spec.source:
        here = Path(spec.source).resolve().parent
        candidates += [here / p, here.parent / p]
    for c in candidates:
        if c.exists():
            return c
    return p
