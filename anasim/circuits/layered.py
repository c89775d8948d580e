"""Layered Hopfield circuits built from devices, and their iterative relaxation.

The dynamics are DESIGN.md §4 (Høier et al., "Dyadic learning in recurrent and
feedforward models", eq. 8) restricted to layer blocks. Every neuron is a dyad
with compartments s⁺ and s⁻ and pre-activations a^±, s^± = f(a^±). For layer
k (1 ≤ k ≤ L), with s_0 = x, λ̄ = 1 − λ and one damped step η:

    a_k^± ← (1 − η) a_k^± + η [ θ_{k−1} (λ s_{k−1}^± + λ̄ s_{k−1}^∓)
                               + θ_kᵀ   (λ s_{k+1}^± − λ̄ s_{k+1}^∓)
                               + b_k  ∓ β_± ∇ℓ(s_L^±)·[k = L] ]

(the input term of layer 1 is θ_0 x for both compartments; the backward term of
the output layer is absent). With s⁺ = s⁻ = s this is the fixed-point map
s = f(W_λ s + θ_0 x + b), W_λ = θ + (2λ − 1) θᵀ. λ = 1 gives two independent
EP phases, λ = ½ a feedforward pass at β = 0, λ = 0 skew-symmetric couplings;
``lam = "asymmetric"`` uses independent backward matrices ψ_k in place of θ_kᵀ
(each compartment sees only itself, as at λ = 1).

Nudging: ``nudge = (β₊, β₋)`` puts −β₊ ∇ℓ(s⁺) into the + compartment's output
pre-activation and +β₋ ∇ℓ(s⁻) into the − compartment's, so centered EP /
dyadic learning is (β, β), one-sided nudging (β, 0) or (0, β), and the free
phase (0, 0) (then s⁺ = s⁻ exactly: the engine runs one compartment). ``clamp``
fixes the output layer of a compartment to given values (contrastive and
coupled learning).

The hardware: every coupling direction is a device from the profile
(:class:`Hardware` built by :func:`build`). One iteration is one pass through
the device chain: each layer state goes through its DAC, into the coupling
devices (one ``mvm`` with fresh temporal noise per device per iteration), the
detected currents are summed with the bias, damped, and passed through the
neuron nonlinearity. The input projection θ_0 x is loaded once per relaxation
(one DAC conversion and one device read) and held as a constant injected
current, as a sample-and-hold input stage does. With the ideal profile the
engine is exactly the mathematical dynamics (tests check it against
:func:`fixed_point_map`).

Convergence is measured, not assumed: every iteration measures the
fixed-point residual r = max |f(target_k) − s_k| (target_k the undamped
pre-activation a layer is driven towards; with the synchronous schedule on
the ideal profile this is exactly max |f(W s + θ_0 x + b) − s| of the current
state; with ``async`` the odd layers see the freshly updated even ones, a
Gauss–Seidel residual). The engine stops when r ≤ tol and returns the state r
was measured on. :class:`Equilibrium` carries the iterations used, the final
residual, its trace, and the
flags ``converged`` (residual ≤ tol), ``diverged`` (non-finite or
|a| > 1e6 pre-activation) and ``oscillating`` (budget spent while the residual
stopped decaying: a limit cycle, or a noise floor above ``tol``). With temporal
device noise the residual settles on such a floor; ``spec.stall_window`` = W > 0
stops the relaxation there (no 10 % gain over W iterations) instead of spending
the whole budget.
:func:`check` raises :class:`~anasim.errors.ConvergenceError` on a bad one.

Number formats (:func:`engine_dtypes`): float32/float64 run everything in that
format. ``bfloat16``/``float16`` specs keep the layer states, the DAC and the
coupling reads (and the programmed devices) in the reduced format while the
pre-activation integrator, the residual and the convergence test stay float32;
a reduced-precision relaxation therefore settles on a rounding floor (about
1e-3 in bfloat16 for states in [0, 1]) and needs ``tol`` above it or a
``stall_window``. A complex nudge (β₊ or β₋ a Python complex or complex array)
runs the same engine on complex pre-activations and states (complex128 for a
float64 spec, else complex64): the neuron nonlinearity is then continued
analytically, so only the holomorphic ``sigmoid`` and ``identity`` are allowed,
on ideal devices (clipping and quantization are not complex-analytic). The
residual of a complex run is the modulus |f(target) − s|.

Schedules: ``sync`` updates all layers from the previous states; ``async``
updates the even layers, then the odd layers from the fresh even ones (a
layer's inputs come only from its neighbours, which have the other parity), at
the same device cost per iteration.

Public API::

    Params(theta0, thetas, biases, backward=())          # pytree
    init_params(spec, key, dtype=None) -> Params
    param_dtype(spec), engine_dtypes(spec, complex_states=False)
    build(spec, profile, params, key) -> Hardware         # fabricate + program
    reprogram(spec, hw, params, key) -> Hardware          # a write (shadow copy)
    relax(spec, hw, x, key, *, nudge=(0., 0.), target=None,
          clamp=(None, None), state0=None) -> Equilibrium
    read_states(hw, eq, key) -> (s_plus, s_minus)        # through the ADCs
    check(eq, what="relaxation", require_convergence=False)
    fixed_point_map(spec, params, x, s) -> s_new          # ideal free map
    preactivation_map(spec, params, x, s) -> a            # its drive, before f
    fixed_point_residual(spec, params, x, s) -> tuple     # s_new − s
    dyadic_map(spec, params, x, s_plus, s_minus, nudge, target) -> (s+, s-)
    effective_matrices(spec, hw) -> EffectiveCircuit      # hardware as built
    cost(spec, s_out, y), cost_grad(spec, s_out, y)
    activation(name)(a), activation_gain(name)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits import damping
from anasim.circuits.spec import CircuitSpec
from anasim.devices import nonlinearity
from anasim.devices.profile import DeviceProfile
from anasim.errors import AnasimError, ConvergenceError, ProfileError

Array = jax.Array

#: |pre-activation| above which a relaxation is declared diverged (normalized units;
#: states live in [0, 1] and weights are O(0.1), so healthy values are O(10)).
DIVERGENCE_LIMIT = 1e6


# --- neuron nonlinearities -------------------------------------------------------

def _identity(a):
    return a


_ACTIVATIONS: dict[str, tuple[Callable, float]] = {
    # name: (f, gain g) with f(a) = P(g a), P a projection onto a box/orthant
    "hard_sigmoid": (nonlinearity.hard_sigmoid, 1.0),
    "tempered_hard_sigmoid": (nonlinearity.tempered_hard_sigmoid, 0.5),
    "relu": (nonlinearity.relu, 1.0),
    "identity": (_identity, 1.0),
    # logistic 1/(1 + e^{−a}) = P(a/4) with P(u) = 1/(1 + e^{−4u}) monotone, slope ≤ 1;
    # analytic, so it also runs on complex pre-activations (holomorphic EP)
    "sigmoid": (jax.nn.sigmoid, 0.25),
}

#: Activations that are holomorphic (complex-analytic) functions of the
#: pre-activation: the only ones a complex-valued relaxation may use.
HOLOMORPHIC_ACTIVATIONS = ("sigmoid", "identity")


def activation(name: str) -> Callable[[Array], Array]:
    """The neuron nonlinearity ``name`` as an elementwise function of the pre-activation.

    hard_sigmoid = clip(a, 0, 1); tempered_hard_sigmoid = clip(a/2, 0, 1);
    relu = max(a, 0); identity = a; sigmoid = 1/(1 + e^{−a}).
    """
    try:
        return _ACTIVATIONS[name][0]
    except KeyError:
        raise AnasimError(f"activation {name!r} not one of {tuple(_ACTIVATIONS)}") from None


def activation_gain(name: str) -> float:
    """Slope g of the nonlinearity's linear region: f(a) = P(g a) with P a projection."""
    return _ACTIVATIONS[name][1]


# --- costs -----------------------------------------------------------------------

def cost(spec: CircuitSpec, s_out: Array, y: Array) -> Array:
    """Per-sample cost ℓ(s_L; y), shape (batch,).

    squared: ½‖s_L − y‖²; cross_entropy: −Σ y log softmax(s_L) (the output
    states read as logits; y one-hot or a distribution).
    """
    if spec.cost == "squared":
        return 0.5 * jnp.sum((s_out - y) ** 2, axis=-1)
    return -jnp.sum(y * jax.nn.log_softmax(s_out, axis=-1), axis=-1)


def cost_grad(spec: CircuitSpec, s_out: Array, y: Array) -> Array:
    """∇ℓ with respect to s_L, shape (batch, n_L): s_L − y, or softmax(s_L) − y·Σy."""
    if spec.cost == "squared":
        return s_out - y
    if jnp.iscomplexobj(s_out):
        # softmax continued analytically: the real shift cancels in the ratio
        e = jnp.exp(s_out - jnp.max(s_out.real, axis=-1, keepdims=True))
        return e / jnp.sum(e, axis=-1, keepdims=True) * jnp.sum(y, axis=-1, keepdims=True) - y
    return jax.nn.softmax(s_out, axis=-1) * jnp.sum(y, axis=-1, keepdims=True) - y


# --- parameters ------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Params:
    """The intended couplings and biases (a pytree; the learning rule's variables).

    Attributes:
        theta0: input projection θ_0, shape (n_1, n_in).
        thetas: θ_k from layer k to k+1, shapes (n_{k+1}, n_k), k = 1 … L−1.
        biases: b_k, shapes (n_k,), k = 1 … L.
        backward: independent backward couplings ψ_k, shapes (n_k, n_{k+1}),
            only for ``lam = "asymmetric"`` (empty tuple otherwise).
    """

    theta0: Array
    thetas: tuple
    biases: tuple
    backward: tuple = ()


def param_dtype(spec: CircuitSpec):
    """dtype of the parameters (the controller's shadow copy): the engine dtype,
    float32 for the reduced-precision formats (updates would vanish in bfloat16)."""
    return jnp.dtype("float32" if spec.low_precision else spec.dtype)


def init_params(spec: CircuitSpec, key: Array, dtype=None) -> Params:
    """Random couplings U(−a, a), a = init_scale/√fan_in; zero biases.

    ``dtype`` defaults to :func:`param_dtype` (the engine dtype, float32 for
    bfloat16/float16 specs). With ``spec.asymmetry_angle`` = α (degrees) the
    backward couplings are ψ_k = sin α · R_k + cos α · θ_kᵀ, R_k drawn like θ_k
    (spec module docstring).
    """
    dtype = jnp.dtype(dtype or param_dtype(spec))
    angle = math.radians(spec.asymmetry_angle or 0.0)
    return _init_params_jit(_shape_spec(spec), key, str(dtype), jnp.asarray(spec.init_scale, dtype),
                            jnp.asarray(angle, dtype))


def _static_spec(spec: CircuitSpec) -> CircuitSpec:
    """The spec with every field that does not shape a computation set to a constant,
    so that jitted functions compile once per circuit shape (η, tol and init_scale
    are passed as traced values)."""
    return replace(spec, eta=1.0, tol=0.0, init_scale=1.0, device="", name="", training=(), source="",
                   asymmetry_angle=None, eta_auto=False)


def _shape_spec(spec: CircuitSpec) -> CircuitSpec:
    """Only what fixes the parameter and device shapes (sizes, structure class,
    backward realization, dtype): the static key of init/build/reprogram."""
    # the angle itself is traced; only whether ψ is drawn at an angle is static
    return CircuitSpec(sizes=spec.sizes, lam="asymmetric" if spec.asymmetric else 0.0,
                       backward=spec.backward, dtype=spec.dtype,
                       asymmetry_angle=None if spec.asymmetry_angle is None else 0.0)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_params_jit(spec: CircuitSpec, key: Array, dtype: str, init_scale: Array, angle: Array) -> Params:
    dtype = jnp.dtype(dtype)
    sizes = spec.sizes
    L = spec.n_layers
    keys = jax.random.split(key, 2 * L)

    def uniform(k, shape, fan_in):
        a = init_scale / float(np.sqrt(fan_in))   # a Python float keeps the dtype
        return a * jax.random.uniform(k, shape, dtype, -1.0, 1.0)

    theta0 = uniform(keys[0], (sizes[1], sizes[0]), sizes[0])
    thetas = tuple(uniform(keys[k], (sizes[k + 1], sizes[k]), sizes[k]) for k in range(1, L))
    biases = tuple(jnp.zeros((sizes[k],), dtype) for k in range(1, L + 1))
    backward = ()
    if spec.asymmetric and spec.asymmetry_angle is not None:
        # R_k with θ_k's scale (fan-in n_k), mixed with θ_kᵀ at angle α
        backward = tuple(jnp.sin(angle) * uniform(keys[L + k], (sizes[k], sizes[k + 1]), sizes[k])
                         + jnp.cos(angle) * thetas[k - 1].T for k in range(1, L))
    elif spec.asymmetric:
        backward = tuple(uniform(keys[L + k], (sizes[k], sizes[k + 1]), sizes[k + 1])
                         for k in range(1, L))
    return Params(theta0=theta0, thetas=thetas, biases=biases, backward=backward)


# --- hardware --------------------------------------------------------------------

def _is_gyrator(device) -> bool:
    return type(device).__name__.lower().startswith("gyrator")


def _cast_floats(tree, dtype):
    def cast(leaf):
        if isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.asarray(leaf, dtype)
        return leaf
    return jax.tree_util.tree_map(cast, tree)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Hardware:
    """One fabricated and programmed chip (a pytree; the profile is static).

    Attributes:
        profile: the device profile (static).
        backward_mode: the spec's backward realization (static).
        input_state: programmed θ_0 device.
        forward: programmed θ_k devices, k = 1 … L−1.
        backward: programmed backward devices (``copy``: θ_kᵀ, ``independent``:
            ψ_k); empty for ``transpose`` and ``gyrator``, which read the forward
            device from its other side.
        biases: b_k (exact injected currents), k = 1 … L.
        input_inst, forward_inst, backward_inst: the fabricated instances
            (fixed-pattern errors), kept for reprogramming.
        dac: DAC instances for layers 0 … L; adc: ADC instances for 1 … L.
    """

    input_state: Any
    forward: tuple
    backward: tuple
    biases: tuple
    input_inst: Any
    forward_inst: tuple
    backward_inst: tuple
    dac: tuple
    adc: tuple
    profile: DeviceProfile = field(metadata=dict(static=True), default=None)
    backward_mode: str = field(metadata=dict(static=True), default="transpose")


def _check_realization(spec: CircuitSpec, profile: DeviceProfile) -> None:
    dev = profile.coupling
    where = spec.source or spec.name
    if spec.backward == "transpose" and not hasattr(dev, "mvm_t"):
        raise ProfileError(
            f"{where}: network.backward = \"transpose\" needs a reciprocal device with a transposed "
            f"read (mvm_t); profile {profile.name!r} ({type(dev).__name__}) has none: use \"copy\"")
    if spec.backward == "transpose" and _is_gyrator(dev):
        raise ProfileError(
            f"{where}: profile {profile.name!r} is a gyrator array: use network.backward = \"gyrator\"")
    if spec.backward == "gyrator" and not (_is_gyrator(dev) and hasattr(dev, "mvm_t")):
        raise ProfileError(
            f"{where}: network.backward = \"gyrator\" needs a gyrator-array coupling device; "
            f"profile {profile.name!r} has {type(dev).__name__}")


def _program_all(spec, profile, params, key, input_inst, forward_inst, backward_inst):
    dtype = jnp.dtype(spec.dtype)
    dev = profile.coupling
    L = spec.n_layers
    keys = jax.random.split(key, 2 * L)
    params = _cast_floats(params, dtype)
    input_state = dev.program(input_inst, keys[0], params.theta0)
    forward = tuple(dev.program(forward_inst[k], keys[1 + k], params.thetas[k]) for k in range(L - 1))
    if spec.backward == "copy":
        targets = tuple(t.T for t in params.thetas)
    elif spec.backward == "independent":
        targets = tuple(params.backward)
    else:
        targets = ()
    backward = tuple(dev.program(backward_inst[k], keys[L + k], targets[k]) for k in range(len(targets)))
    return (_cast_floats(input_state, dtype), _cast_floats(forward, dtype),
            _cast_floats(backward, dtype), tuple(jnp.asarray(b, dtype) for b in params.biases))


def build(spec: CircuitSpec, profile: DeviceProfile, params: Params, key: Array) -> Hardware:
    """Fabricate every device of the circuit and program it with ``params``.

    Two builds with different keys are twin chips (same design, different
    fixed-pattern errors). Raises :class:`ProfileError` if the profile cannot
    realize the spec's backward direction.
    """
    _check_realization(spec, profile)
    if spec.asymmetric and len(params.backward) != spec.n_layers - 1:
        raise AnasimError("build: lam = \"asymmetric\" needs Params.backward (one ψ_k per coupling)")
    return _build_jit(_shape_spec(spec), profile, params, key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _build_jit(spec: CircuitSpec, profile: DeviceProfile, params: Params, key: Array) -> Hardware:
    dev = profile.coupling
    sizes = spec.sizes
    L = spec.n_layers
    k_fab, k_prog, k_dac, k_adc = jax.random.split(key, 4)
    fk = jax.random.split(k_fab, 2 * L)
    input_inst = dev.fabricate(fk[0], (sizes[1], sizes[0]))
    forward_inst = tuple(dev.fabricate(fk[1 + k], (sizes[k + 2], sizes[k + 1])) for k in range(L - 1))
    if spec.backward in ("copy", "independent"):
        backward_inst = tuple(dev.fabricate(fk[L + k], (sizes[k + 1], sizes[k + 2])) for k in range(L - 1))
    else:
        backward_inst = ()
    dk = jax.random.split(k_dac, L + 1)
    dac = tuple(profile.dac.fabricate(dk[k], (sizes[k],)) for k in range(L + 1))
    ak = jax.random.split(k_adc, L)
    adc = tuple(profile.adc.fabricate(ak[k - 1], (sizes[k],)) for k in range(1, L + 1))
    dtype = jnp.dtype(spec.dtype)
    input_inst, forward_inst, backward_inst, dac, adc = _cast_floats(
        (input_inst, forward_inst, backward_inst, dac, adc), dtype)
    input_state, forward, backward, biases = _program_all(
        spec, profile, params, k_prog, input_inst, forward_inst, backward_inst)
    return Hardware(input_state=input_state, forward=forward, backward=backward, biases=biases,
                    input_inst=input_inst, forward_inst=forward_inst, backward_inst=backward_inst,
                    dac=dac, adc=adc, profile=profile, backward_mode=spec.backward)


def reprogram(spec: CircuitSpec, hw: Hardware, params: Params, key: Array) -> Hardware:
    """Write ``params`` into the same chip (shadow-copy mode): new programming
    errors from ``key``, same fabricated instances. Jitted (``spec`` static)."""
    return _reprogram_jit(_shape_spec(spec), hw, params, key)


@functools.partial(jax.jit, static_argnums=(0,))
def _reprogram_jit(spec: CircuitSpec, hw: Hardware, params: Params, key: Array) -> Hardware:
    input_state, forward, backward, biases = _program_all(
        spec, hw.profile, params, key, hw.input_inst, hw.forward_inst, hw.backward_inst)
    return Hardware(input_state=input_state, forward=forward, backward=backward, biases=biases,
                    input_inst=hw.input_inst, forward_inst=hw.forward_inst,
                    backward_inst=hw.backward_inst, dac=hw.dac, adc=hw.adc, profile=hw.profile,
                    backward_mode=hw.backward_mode)


# --- equilibria --------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Equilibrium:
    """The result of one relaxation (a pytree).

    Attributes:
        s_plus, s_minus: compartment states per layer 1 … L, shapes (batch, n_k).
        a_plus, a_minus: the pre-activations (pass the Equilibrium as
            ``state0`` to warm-start a later relaxation).
        iterations: iterations used (int32 scalar).
        residual: final fixed-point residual max |f(target) − s| over layers,
            compartments and batch (module docstring), normalized state units.
        residual_per_sample: the same per sample, shape (batch,).
        trace: residual after each iteration, shape (max_iters,); entries from
            index ``iterations`` on are −1 (not run).
        converged, diverged, oscillating: status flags (bool scalars).
    """

    s_plus: tuple
    s_minus: tuple
    a_plus: tuple
    a_minus: tuple
    iterations: Array
    residual: Array
    residual_per_sample: Array
    trace: Array
    converged: Array
    diverged: Array
    oscillating: Array

    @property
    def mean(self) -> tuple:
        """(s⁺ + s⁻)/2 per layer: the dyad's prediction."""
        return tuple(0.5 * (p + m) for p, m in zip(self.s_plus, self.s_minus))

    @property
    def output(self) -> Array:
        """The output layer's mean state, shape (batch, n_L)."""
        return 0.5 * (self.s_plus[-1] + self.s_minus[-1])

    def status(self) -> str:
        """'converged', 'diverged', 'oscillating' or 'budget' (concrete values only)."""
        if bool(self.diverged):
            return "diverged"
        if bool(self.converged):
            return "converged"
        if bool(self.oscillating):
            return "oscillating"
        return "budget"


def check(eq: Equilibrium, what: str = "relaxation", require_convergence: bool = False) -> Equilibrium:
    """Raise :class:`ConvergenceError` if ``eq`` diverged (or, if asked, did not converge)."""
    if bool(eq.diverged):
        raise ConvergenceError(f"{what}: diverged after {int(eq.iterations)} iterations "
                               f"(non-finite or |a| > {DIVERGENCE_LIMIT:g})")
    if require_convergence and not bool(eq.converged):
        raise ConvergenceError(f"{what}: not converged in {int(eq.iterations)} iterations "
                               f"(residual {float(eq.residual):.3g}, status {eq.status()})")
    return eq


def read_states(hw, eq: Equilibrium, key: Array) -> tuple[tuple, tuple]:
    """Read both compartments through the ADCs: what a learning rule may see.

    ``hw`` is a layered :class:`Hardware` or a convolutional chip: anything with
    a ``profile`` and one ADC tile per layer in ``hw.adc``."""
    adc = hw.profile.adc
    L = len(eq.s_plus)
    keys = jax.random.split(key, 2 * L)
    sp = tuple(adc.convert(hw.adc[k], eq.s_plus[k], keys[k]) for k in range(L))
    sm = tuple(adc.convert(hw.adc[k], eq.s_minus[k], keys[L + k]) for k in range(L))
    return sp, sm


# --- the engine ----------------------------------------------------------------------

def _is_static_zero(b) -> bool:
    return isinstance(b, (int, float)) and not isinstance(b, bool) and b == 0


def _is_complex(b) -> bool:
    return isinstance(b, complex) or (hasattr(b, "dtype") and jnp.iscomplexobj(b))


def engine_dtypes(spec: CircuitSpec, complex_states: bool = False) -> tuple:
    """(state, integrator, residual) dtypes of a relaxation.

    float32/float64: all three the spec's dtype. bfloat16/float16: states and
    device reads in that format, pre-activation integrator and residual in
    float32. Complex (holomorphic) runs: complex128 for a float64 spec,
    complex64 otherwise, for states and integrator; the residual is real.
    """
    if complex_states:
        real = jnp.dtype("float64" if spec.dtype == "float64" else "float32")
        cplx = jnp.dtype("complex128" if spec.dtype == "float64" else "complex64")
        return cplx, cplx, real
    if spec.low_precision:
        return jnp.dtype(spec.dtype), jnp.dtype("float32"), jnp.dtype("float32")
    d = jnp.dtype(spec.dtype)
    return d, d, d


def _check_holomorphic(spec: CircuitSpec, hw: Hardware) -> None:
    for name in spec.activations:
        if name not in HOLOMORPHIC_ACTIVATIONS:
            raise AnasimError(
                f"relax: a complex nudge needs holomorphic activations {HOLOMORPHIC_ACTIVATIONS}; "
                f"network.activation {name!r} is not complex-analytic")
    prof = hw.profile
    parts = {"coupling": prof.coupling, "dac": prof.dac, "adc": prof.adc}
    for what, dev in parts.items():
        if type(dev).__name__ not in ("IdealCoupling", "IdealConverter"):
            raise AnasimError(
                f"relax: a complex nudge needs ideal devices (profile {prof.name!r} has a {type(dev).__name__} "
                f"{what}, whose clipping/quantization is not holomorphic)")


def relaxation_loop(update_layers: Callable, states: Callable, a0: tuple, key: Array, *, schedule: str,
                    max_iters: int, stall_window: int, tol: Array, res_dtype) -> Equilibrium:
    """The damped fixed-point iteration shared by the layered and convolutional circuits.

    Args:
        update_layers: ``(layers, a_list, s_list, keys, res) -> new a_list``:
            one damped update of the 0-based ``layers`` from the states
            ``s_list``, with per-layer PRNG ``keys``; writes each updated
            layer's per-sample residual max |f(target) − s|, shape (batch,),
            into ``res[j]``.
        states: ``a_list -> s_list``, the neuron states of the pre-activations.
        a0: initial pre-activations per layer, each (C, batch, …) with C the
            number of compartments simulated (1 or 2).
        key: PRNG key of the loop (folded with the iteration number).
        schedule: ``"sync"`` (all layers at once) or ``"async"`` (even layers
            k, then odd ones, each phase seeing the states of the one before).
        max_iters, stall_window: static iteration budget and stall window.
        tol: convergence tolerance on the residual (normalized state units).
        res_dtype: dtype of the residual and its trace.

    Returns the :class:`Equilibrium` of the state the last residual was measured on.
    """
    L = len(a0)
    C, batch = a0[0].shape[:2]
    if schedule == "sync":
        phases = [tuple(range(L))]
    else:
        # layer number k = j + 1: even layers first, then odd ones
        phases = [tuple(j for j in range(L) if (j + 1) % 2 == 0), tuple(j for j in range(L) if (j + 1) % 2 == 1)]
        phases = [p for p in phases if p]

    def one_iteration(a_list, i):
        keys = jax.random.split(jax.random.fold_in(key, i), L)
        s_cur = states(a_list)
        res = [None] * L
        for p in phases:
            a_list = update_layers(p, a_list, s_cur, keys, res)
            s_cur = states(a_list)
        res_ps = jnp.max(jnp.stack(res), axis=0)                     # (B,)
        amax = jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in a_list]))
        bad = ~jnp.isfinite(amax) | (amax > DIVERGENCE_LIMIT) | ~jnp.all(jnp.isfinite(res_ps))
        return a_list, res_ps, bad

    trace0 = -jnp.ones((max_iters,), res_dtype)

    idx = jnp.arange(max_iters)

    def no_gain(i, trace, window):
        """The last ``window`` residuals did not fall below 0.9× the best before them."""
        recent = (idx >= i - window) & (idx < i)
        before = idx < i - window
        best_recent = jnp.min(jnp.where(recent, trace, jnp.inf))
        best_before = jnp.min(jnp.where(before, trace, jnp.inf))
        return best_recent > 0.9 * best_before

    def cond(carry):
        i, a_list, a_meas, res_ps, trace, bad = carry
        res = jnp.max(res_ps)
        go = (i < max_iters) & ~bad & ~((i > 0) & (res <= tol))
        if stall_window > 0:
            go = go & ~((i >= 2 * stall_window) & no_gain(i, trace, stall_window))
        return go

    def body(carry):
        i, a_list, _, res_ps, trace, bad = carry
        a_new, res_ps, bad = one_iteration(list(a_list), i)
        trace = trace.at[i].set(jnp.max(res_ps))
        # keep the state the residual was measured on: that is the one returned
        return i + 1, tuple(a_new), a_list, res_ps, trace, bad

    init = (jnp.asarray(0, jnp.int32), tuple(a0), tuple(a0), jnp.full((batch,), jnp.inf, res_dtype),
            trace0, jnp.asarray(False))
    iters, a_last, a_fin, res_ps, trace, bad = jax.lax.while_loop(cond, body, init)
    # a diverged run returns its last state, so the non-finite values are visible
    a_fin = tuple(jnp.where(bad, al, af) for al, af in zip(a_last, a_fin))
    s_fin = states(list(a_fin))
    residual = jnp.max(res_ps)
    converged = (residual <= tol) & ~bad
    # Oscillation: budget spent, and the last quarter of the trace did not bring the
    # residual below 0.9× the best value before it (no decay: a cycle or a noise floor);
    # or the stall window stopped the run for the same reason.
    stalled = no_gain(iters, trace, jnp.maximum(iters // 4, 1)) & (iters >= 8)
    if stall_window > 0:
        stalled = stalled | ((iters >= 2 * stall_window) & no_gain(iters, trace, stall_window))
    oscillating = ~converged & ~bad & stalled
    c_m = 0 if C == 1 else 1          # one simulated compartment serves as both
    return Equilibrium(s_plus=tuple(s[0] for s in s_fin), s_minus=tuple(s[c_m] for s in s_fin),
                       a_plus=tuple(a[0] for a in a_fin), a_minus=tuple(a[c_m] for a in a_fin),
                       iterations=iters, residual=residual, residual_per_sample=res_ps, trace=trace,
                       converged=converged, diverged=bad, oscillating=oscillating)


def mix_compartments_forward(d: Array, lam: float) -> Array:
    """What the forward coupling device sees of the DAC'd compartment states
    ``d`` (C, B, …): λ s± + λ̄ s∓ (DESIGN.md §4); C = 1 (one compartment) or λ = 1
    passes ``d`` through."""
    if d.shape[0] == 1 or lam == 1.0:
        return d
    lbar = 1.0 - lam
    return jnp.stack([lam * d[0] + lbar * d[1], lam * d[1] + lbar * d[0]])


def mix_compartments_backward(d: Array, lam: float, asymmetric: bool) -> Array:
    """What the backward coupling device sees: λ s± − λ̄ s∓; with one compartment
    (β = 0) this is (2λ − 1) s, or s itself for independent (asymmetric) couplings."""
    if d.shape[0] == 1:
        return d if asymmetric else (2.0 * lam - 1.0) * d
    if lam == 1.0:
        return d
    lbar = 1.0 - lam
    return jnp.stack([lam * d[0] - lbar * d[1], lam * d[1] - lbar * d[0]])


def relax(spec: CircuitSpec, hw: Hardware, x: Array, key: Array, *, nudge=(0.0, 0.0),
          target: Array | None = None, clamp=(None, None), state0: Equilibrium | None = None,
          eta: Array | None = None) -> Equilibrium:
    """Relax the circuit on input ``x`` (batch, n_in) to an equilibrium.

    Args:
        spec: the circuit (static).
        hw: the chip from :func:`build`.
        x: inputs in normalized units, shape (batch, n_in).
        key: PRNG key for the temporal noise of every device read.
        nudge: (β₊, β₋); the + compartment's output pre-activation gets
            −β₊ ∇ℓ(s⁺), the − compartment's +β₋ ∇ℓ(s⁻). Complex values (Python
            complex or complex arrays) make the whole relaxation complex
            (:func:`engine_dtypes`): holomorphic EP. That needs holomorphic
            activations (``sigmoid``, ``identity``) and ideal devices, else
            :class:`AnasimError`.
        target: y, shape (batch, n_L); required unless the nudge is (0, 0).
        clamp: (c₊, c₋), each None or (batch, n_L): fixes that compartment's
            output layer to the given values.
        state0: an Equilibrium to start from (its pre-activations); default
            all pre-activations 0.
        eta: the damping to relax with, a scalar; default
            :func:`relaxation_eta` of ``spec`` on ``hw``. Relaxations of one
            chip between two writes share it, so a caller that relaxes the
            same couplings several times (the phases of a training step)
            computes it once.

    Returns the :class:`Equilibrium`. Jittable (``spec`` static); when the nudge
    is the literal (0, 0) with no clamp, one compartment is simulated and
    s⁺ = s⁻ exactly.
    """
    beta_p, beta_m = nudge
    clamp_p, clamp_m = clamp
    free = _is_static_zero(beta_p) and _is_static_zero(beta_m) and clamp_p is None and clamp_m is None
    cplx = _is_complex(beta_p) or _is_complex(beta_m)
    if cplx:
        _check_holomorphic(spec, hw)
    sdt, adt, rdt = engine_dtypes(spec, cplx)
    dtype = rdt if cplx else sdt          # inputs and targets are real
    x = jnp.asarray(x, dtype)
    if x.ndim != 2 or x.shape[1] != spec.n_in:
        raise AnasimError(f"relax: x must have shape (batch, {spec.n_in}), got {x.shape}")
    batch = x.shape[0]
    if target is None:
        if not free and not (_is_static_zero(beta_p) and _is_static_zero(beta_m)):
            raise AnasimError("relax: a nonzero nudge needs a target")
        target = jnp.zeros((batch, spec.n_out), dtype)
    target = jnp.asarray(target, dtype)
    if target.shape != (batch, spec.n_out):
        raise AnasimError(f"relax: target must have shape ({batch}, {spec.n_out}), got {target.shape}")
    for name, c in (("clamp[0]", clamp_p), ("clamp[1]", clamp_m)):
        if c is not None and jnp.shape(c) != (batch, spec.n_out):
            raise AnasimError(f"relax: {name} must have shape ({batch}, {spec.n_out}), got {jnp.shape(c)}")
    C = 1 if free else 2
    if state0 is not None:
        if C == 1:
            a0 = tuple(jnp.asarray(a, adt)[None] for a in state0.a_plus)
        else:
            a0 = tuple(jnp.stack([jnp.asarray(p, adt), jnp.asarray(m, adt)])
                       for p, m in zip(state0.a_plus, state0.a_minus))
    else:
        a0 = tuple(jnp.zeros((C, batch, n), adt) for n in spec.sizes[1:])
    zero = jnp.zeros((batch, spec.n_out), sdt)
    cp = zero if clamp_p is None else jnp.asarray(clamp_p, sdt)
    cm = zero if clamp_m is None else jnp.asarray(clamp_m, sdt)
    # Only what shapes the computation is static; η and tol are traced, so specs
    # that differ in them (or in name, training options, …) share one compilation.
    return _relax_jit(_static_spec(spec), C, clamp_p is not None, clamp_m is not None, cplx, hw, x, key,
                      jnp.asarray(beta_p, adt), jnp.asarray(beta_m, adt), target, cp, cm, a0,
                      (relaxation_eta(spec, hw) if eta is None else jnp.asarray(eta)).astype(rdt),
                      jnp.asarray(spec.tol, rdt))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _relax_jit(spec, C, has_cp, has_cm, cplx, hw, x, key, beta_p, beta_m, target, cp, cm, a0, eta, tol):
    # sdt: states and device reads; adt: pre-activation integrator; rdt: residual
    # (all the spec's dtype except for the reduced-precision and complex runs)
    sdt, adt, rdt = engine_dtypes(spec, cplx)
    low = spec.low_precision and not cplx
    L = spec.n_layers
    dev = hw.profile.coupling
    dac = hw.profile.dac
    lam = spec.lam_mix
    acts = [activation(n) for n in spec.activations]
    skip_backward = (C == 1 and lam == 0.5 and not spec.asymmetric)

    # Input stage: x through its DAC and θ_0 once; a constant injected current.
    k_in, k_loop = jax.random.split(key)
    k_in1, k_in2 = jax.random.split(k_in)
    x_dac = dac.convert(hw.dac[0], x, k_in1)
    inject = dev.mvm(hw.input_state, x_dac, k_in2).astype(adt)            # (B, n_1)

    mix_forward = functools.partial(mix_compartments_forward, lam=lam)
    mix_backward = functools.partial(mix_compartments_backward, lam=lam, asymmetric=spec.asymmetric)

    def backward_read(k, v, kk):  # into layer k+1 (0-based) from layer k+2 through coupling k
        mode = hw.backward_mode
        if mode == "transpose":
            return dev.mvm_t(hw.forward[k], v, kk)
        if mode == "gyrator":
            # A gyrator's transposed read is −θᵀ y: drive it with −v to inject θᵀ v.
            return dev.mvm_t(hw.forward[k], -v, kk)
        return dev.mvm(hw.backward[k], v, kk)

    leaks = _leaks(spec, hw)

    betas = jnp.stack([beta_p, beta_m])[:C].reshape(C, 1, 1)
    signs = jnp.asarray([-1.0, 1.0], adt)[:C].reshape(C, 1, 1)
    clamps = jnp.stack([cp, cm])[:C]
    clamp_mask = jnp.asarray([has_cp, has_cm])[:C].reshape(C, 1, 1)
    any_clamp = has_cp or has_cm

    def states(a_list):
        s = [acts[k](a_list[k]).astype(sdt) for k in range(L)]
        if any_clamp:
            s[-1] = jnp.where(clamp_mask, clamps, s[-1])
        return s

    def update_layers(layers, a_list, s_list, keys, res):
        """New pre-activations of ``layers`` (0-based) from the current states,
        and each layer's fixed-point residual max |f(target) − s| per sample."""
        new_a = list(a_list)
        for j in layers:
            kf, kb, kd1, kd2 = jax.random.split(keys[j], 4)
            if j == 0:
                total = jnp.broadcast_to(inject, a_list[0].shape)
            else:
                d = dac.convert(hw.dac[j], s_list[j - 1], kd1)
                total = dev.mvm(hw.forward[j - 1], mix_forward(d), kf)
            if j < L - 1 and not skip_backward:
                d = dac.convert(hw.dac[j + 2], s_list[j + 1], kd2)
                total = total + backward_read(j, mix_backward(d), kb)
            total = total.astype(adt) + hw.biases[j]
            if leaks is not None:
                total = total - leaks[j] * s_list[j]
            if j == L - 1:
                g = cost_grad(spec, s_list[-1], target[None])
                total = total + signs * betas * g
            new_a[j] = ((1.0 - eta) * a_list[j] + eta * total).astype(adt)
            # reduced precision: measure the gap on the float32 integrator's state,
            # not on its rounded copy (whose rounding error alone exceeds tol)
            s_now = acts[j](a_list[j]) if low else s_list[j]
            gap = jnp.abs(acts[j](total) - s_now).astype(rdt)
            if j == L - 1 and any_clamp:
                gap = jnp.where(clamp_mask, 0.0, gap)      # a clamped layer is not a variable
            res[j] = jnp.max(gap, axis=(0, 2))
        return new_a

    return relaxation_loop(update_layers, states, a0, k_loop,
                           schedule=spec.schedule, max_iters=spec.max_iters,
                           stall_window=spec.stall_window, tol=tol, res_dtype=rdt)


# --- the ideal maps (pure functions of the parameters) ---------------------------------

def _backward_matrix(spec: CircuitSpec, params: Params, k: int) -> Array:
    """The matrix that carries layer k+2 into layer k+1 (0-based k), (n_{k+1}, n_{k+2}) in 1-based sizes."""
    if spec.asymmetric:
        return params.backward[k]
    return params.thetas[k].T


def preactivation_map(spec: CircuitSpec, params: Params, x: Array, s: tuple) -> tuple:
    """The free drive of the IDEAL circuit: a_k = θ_{k−1}s_{k−1} + B_k s_{k+1} + b_k per layer.

    B_k = (2λ − 1) θ_kᵀ (or ψ_k for asymmetric); ``s`` a tuple of (batch, n_k).
    Affine in ``s`` (its s-Jacobian is the recurrent matrix W), pure and
    differentiable; :func:`fixed_point_map` applies the activations to it.
    """
    L = spec.n_layers
    coef = 1.0 if spec.asymmetric else 2.0 * spec.lam_mix - 1.0
    out = []
    for j in range(L):
        total = (x @ params.theta0.T) if j == 0 else s[j - 1] @ params.thetas[j - 1].T
        if j < L - 1:
            total = total + coef * (s[j + 1] @ _backward_matrix(spec, params, j).T)
        out.append(total + params.biases[j])
    return tuple(out)


def fixed_point_map(spec: CircuitSpec, params: Params, x: Array, s: tuple) -> tuple:
    """One undamped free update of the IDEAL circuit: s_k ← f_k(θ_{k−1}s_{k−1} + B_k s_{k+1} + b_k).

    B_k = (2λ − 1) θ_kᵀ (or ψ_k for asymmetric). ``s`` is a tuple of
    (batch, n_k), k = 1 … L; the fixed points of this map are the free
    equilibria, so implicit differentiation can use it directly. Pure and
    differentiable in ``params``, ``x`` and ``s``.
    """
    pre = preactivation_map(spec, params, x, s)
    return tuple(activation(name)(a) for name, a in zip(spec.activations, pre))


def fixed_point_residual(spec: CircuitSpec, params: Params, x: Array, s: tuple) -> tuple:
    """``fixed_point_map(spec, params, x, s) − s`` per layer (zero at a free equilibrium)."""
    return tuple(n - o for n, o in zip(fixed_point_map(spec, params, x, s), s))


def dyadic_map(spec: CircuitSpec, params: Params, x: Array, s_plus: tuple, s_minus: tuple,
               nudge=(0.0, 0.0), target: Array | None = None) -> tuple[tuple, tuple]:
    """One undamped update of both compartments of the IDEAL circuit (DESIGN.md §4, eq. 8)."""
    L = spec.n_layers
    lam = spec.lam_mix
    lbar = 1.0 - lam
    bp, bm = nudge
    new_p, new_m = [], []
    for j in range(L):
        if j == 0:
            fp = fm = x @ params.theta0.T
        else:
            W = params.thetas[j - 1]
            fp = (lam * s_plus[j - 1] + lbar * s_minus[j - 1]) @ W.T
            fm = (lam * s_minus[j - 1] + lbar * s_plus[j - 1]) @ W.T
        if j < L - 1:
            B = _backward_matrix(spec, params, j)
            fp = fp + (lam * s_plus[j + 1] - lbar * s_minus[j + 1]) @ B.T
            fm = fm + (lam * s_minus[j + 1] - lbar * s_plus[j + 1]) @ B.T
        fp = fp + params.biases[j]
        fm = fm + params.biases[j]
        if j == L - 1 and target is not None:
            fp = fp - bp * cost_grad(spec, s_plus[-1], target)
            fm = fm + bm * cost_grad(spec, s_minus[-1], target)
        f = activation(spec.activations[j])
        new_p.append(f(fp))
        new_m.append(f(fm))
    return tuple(new_p), tuple(new_m)


# --- the hardware as built ---------------------------------------------------------------

@dataclass(frozen=True)
class EffectiveCircuit:
    """The realized (noiseless) circuit as dense matrices, for analysis.

    Attributes:
        W: recurrent matrix over the stacked layers s_1 … s_L, shape (N, N),
            N = Σ n_k; block (k+1, k) is the realized θ_k, block (k, k+1) the
            realized backward direction times (2λ − 1) (ψ_k for asymmetric);
            the diagonal holds −G, the output conductances that load the
            nodes (gyrator OTAs; 0 for other devices).
        theta0: realized input projection, shape (n_1, n_in).
        bias: stacked biases, shape (N,).
        sizes: (n_in, n_1, …, n_L).
        gains: per-unit activation gain g (f = P(g a)), shape (N,).
        activations: activation name per layer 1 … L.
    """

    W: np.ndarray
    theta0: np.ndarray
    bias: np.ndarray
    sizes: tuple
    gains: np.ndarray
    activations: tuple

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start index of each layer 1 … L in the stacked state (and N at the end)."""
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(self.sizes[1:])]))


def _realized_forward(dev, state) -> Array:
    # a gyrator array's effective() is the block matrix of both layers; its
    # forward (b ← a) block is what mvm realizes
    if hasattr(dev, "forward") and hasattr(dev, "output_conductance"):
        return dev.forward(state)
    return dev.effective(state)


def _effective(dev, state) -> np.ndarray:
    return np.asarray(_realized_forward(dev, state), np.float64)


def relaxation_eta(spec: CircuitSpec, hw: Hardware) -> Array:
    """The damping η one relaxation of ``spec`` on ``hw`` uses: ``spec.eta``, or
    with ``spec.eta_auto`` min(η, η*) from the realized couplings
    (:mod:`anasim.circuits.damping`). Jittable; float32 scalar."""
    if not spec.eta_auto:
        return jnp.asarray(spec.eta, jnp.float32)
    dev = hw.profile.coupling
    blocks = [jnp.asarray(_realized_forward(dev, f), jnp.float32) for f in hw.forward]
    gain = max(activation_gain(a) for a in spec.activations)
    return damping.auto_eta(spec.eta, spec.schedule, blocks, 2.0 * spec.lam_mix - 1.0, spec.sizes[1:], gain)


def _leaks(spec: CircuitSpec, hw: Hardware) -> list | None:
    """Output conductance loading each node of layers 1 … L (normalized), or None.

    A gyrator's OTAs each load their output node with g_out; a node carries
    one OTA output per link, so layer k sees the sum over its couplings. The
    current −G_k s_k adds to the node's pre-activation.
    """
    dev = hw.profile.coupling
    if not hasattr(dev, "output_conductance"):
        return None
    L = spec.n_layers
    leaks = [jnp.zeros((n,), jnp.dtype(spec.dtype)) for n in spec.sizes[1:]]
    _, g_b = dev.output_conductance(hw.input_state)
    leaks[0] = leaks[0] + g_b
    for k in range(L - 1):
        g_a, g_b = dev.output_conductance(hw.forward[k])
        leaks[k] = leaks[k] + g_a
        leaks[k + 1] = leaks[k + 1] + g_b
    for k in range(len(hw.backward)):
        g_a, g_b = dev.output_conductance(hw.backward[k])   # programmed (n_k, n_{k+1}): b = lower
        leaks[k] = leaks[k] + g_b
        leaks[k + 1] = leaks[k + 1] + g_a
    return [jnp.asarray(v, jnp.dtype(spec.dtype)) for v in leaks]


def _effective_backward(dev, mode: str, hw: Hardware, k: int) -> np.ndarray:
    """Realized matrix B_k with backward current = B_k v (v the mixed upper-layer state)."""
    if mode in ("copy", "independent"):
        return _effective(dev, hw.backward[k])
    if hasattr(dev, "effective_t"):
        bt = np.asarray(dev.effective_t(hw.forward[k]), np.float64)
    else:
        bt = _effective(dev, hw.forward[k]).T
    # a gyrator's transposed read is −θᵀ and the engine drives it with −v
    return -bt if mode == "gyrator" else bt


def effective_matrices(spec: CircuitSpec, hw: Hardware) -> EffectiveCircuit:
    """Dense realized matrices of the built chip (``effective()`` of every device), float64."""
    dev = hw.profile.coupling
    sizes = spec.sizes
    L = spec.n_layers
    offs = np.concatenate([[0], np.cumsum(sizes[1:])]).astype(int)
    N = int(offs[-1])
    W = np.zeros((N, N))
    coef = 1.0 if spec.asymmetric else 2.0 * spec.lam_mix - 1.0
    for k in range(L - 1):
        r0, r1 = offs[k + 1], offs[k + 2]          # layer k+2 (1-based)
        c0, c1 = offs[k], offs[k + 1]              # layer k+1
        W[r0:r1, c0:c1] = _effective(dev, hw.forward[k])
        W[c0:c1, r0:r1] = coef * _effective_backward(dev, hw.backward_mode, hw, k)
    leaks = _leaks(spec, hw)
    if leaks is not None:
        W -= np.diag(np.concatenate([np.asarray(v, np.float64) for v in leaks]))
    gains = np.concatenate([np.full(n, activation_gain(a)) for n, a in zip(sizes[1:], spec.activations)])
    bias = np.concatenate([np.asarray(b, np.float64) for b in hw.biases])
    return EffectiveCircuit(W=W, theta0=_effective(dev, hw.input_state), bias=bias, sizes=sizes,
                            gains=gains, activations=spec.activations)
