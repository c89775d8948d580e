"""Layered Hopfield circuits built from devices, and their iterative relaxation.

The dynamics are docs/design.md, “Circuits and relaxation” (Høier et al., "Dyadic learning in recurrent and
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

The pieces live in their own modules and are re-exported here:
:mod:`~anasim.circuits.relaxation` (the shared loop, :class:`Equilibrium`,
:func:`check`, :func:`read_states`), :mod:`~anasim.circuits.maps` (the ideal
maps, activations, costs), :mod:`~anasim.circuits.effective` (the hardware as
built), :mod:`~anasim.circuits.precision` (number formats),
:mod:`~anasim.circuits.chip` (build and write, the realization check).

Public API::

    Params(theta0, thetas, biases, backward=())          # pytree
    init_params(spec, key, dtype=None) -> Params
    build(spec, profile, params, key) -> Hardware         # fabricate + program
    reprogram(spec, hw, params, key) -> Hardware          # a write (shadow copy)
    relax(spec, hw, x, key, *, nudge=(0., 0.), target=None,
          clamp=(None, None), state0=None, eta=None) -> Equilibrium
    LayeredEngine()                                       # the "iterative" engine object
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from anasim.circuits.chip import build_chip, check_realization, reprogram_chip
from anasim.circuits.effective import EffectiveCircuit, effective_matrices, leaks, realized_forward, relaxation_eta
from anasim.circuits.maps import (HOLOMORPHIC_ACTIVATIONS, activation, activation_gain, cost, cost_grad,
                                  dyadic_map, fixed_point_map, fixed_point_residual, preactivation_map)
from anasim.circuits.precision import cast_floats, engine_dtypes, float64_scope, param_dtype, spec_precision
from anasim.circuits.relaxation import (DIVERGENCE_LIMIT, Equilibrium, check, floor_quantile, floor_variance,
                                        is_complex, is_static_zero, mix_compartments_backward,
                                        mix_compartments_forward, read_states, relaxation_loop, run_relaxation)
from anasim.circuits.spec import CircuitSpec
from anasim.devices.base import IdealConverter, IdealCoupling
from anasim.devices.profile import DeviceProfile
from anasim.errors import AnasimError

Array = jax.Array


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


def init_params(spec: CircuitSpec, key: Array, dtype=None) -> Params:
    """Random couplings U(−a, a), a = init_scale/√fan_in; zero biases.

    ``dtype`` defaults to :func:`param_dtype` (the engine dtype, float32 for
    bfloat16/float16 specs). With ``spec.asymmetry_angle`` = α (degrees) the
    backward couplings are ψ_k = sin α · R_k + cos α · θ_kᵀ, R_k drawn like θ_k
    (spec module docstring).
    """
    dtype = jnp.dtype(dtype or param_dtype(spec))
    with float64_scope(dtype == jnp.float64):
        angle = math.radians(spec.asymmetry_angle or 0.0)
        # the scale and the angle are traced: one compilation per circuit shape
        return _init_params_jit(spec.physics(), key, str(dtype), jnp.asarray(spec.init_scale, dtype),
                                jnp.asarray(angle, dtype))


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




def _program_all(spec, profile, params, key, input_inst, forward_inst, backward_inst):
    dtype = jnp.dtype(spec.dtype)
    dev = profile.coupling
    L = spec.n_layers
    keys = jax.random.split(key, 2 * L)
    params = cast_floats(params, dtype)
    input_state = dev.program(input_inst, keys[0], params.theta0)
    forward = tuple(dev.program(forward_inst[k], keys[1 + k], params.thetas[k]) for k in range(L - 1))
    if spec.backward == "copy":
        targets = tuple(t.T for t in params.thetas)
    elif spec.backward == "independent":
        targets = tuple(params.backward)
    else:
        targets = ()
    backward = tuple(dev.program(backward_inst[k], keys[L + k], targets[k]) for k in range(len(targets)))
    return (cast_floats(input_state, dtype), cast_floats(forward, dtype),
            cast_floats(backward, dtype), tuple(jnp.asarray(b, dtype) for b in params.biases))


def _make(spec: CircuitSpec, profile: DeviceProfile, params: Params, key: Array) -> Hardware:
    """Fabricate every device and converter of ``spec`` on ``profile`` and program ``params``."""
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
    input_inst, forward_inst, backward_inst, dac, adc = cast_floats(
        (input_inst, forward_inst, backward_inst, dac, adc), dtype)
    input_state, forward, backward, biases = _program_all(
        spec, profile, params, k_prog, input_inst, forward_inst, backward_inst)
    return Hardware(input_state=input_state, forward=forward, backward=backward, biases=biases,
                    input_inst=input_inst, forward_inst=forward_inst, backward_inst=backward_inst,
                    dac=dac, adc=adc, profile=profile, backward_mode=spec.backward)


def _program(spec: CircuitSpec, hw: Hardware, params: Params, key: Array) -> Hardware:
    """Write ``params`` into the fabricated parts of ``hw``."""
    input_state, forward, backward, biases = _program_all(
        spec, hw.profile, params, key, hw.input_inst, hw.forward_inst, hw.backward_inst)
    return Hardware(input_state=input_state, forward=forward, backward=backward, biases=biases,
                    input_inst=hw.input_inst, forward_inst=hw.forward_inst,
                    backward_inst=hw.backward_inst, dac=hw.dac, adc=hw.adc, profile=hw.profile,
                    backward_mode=hw.backward_mode)


def _check_realization(spec: CircuitSpec, profile: DeviceProfile) -> None:
    """The builder's check that ``profile`` realizes ``spec.backward`` (raises ProfileError)."""
    check_realization(spec, profile, circuit="layered circuits")


def build(spec: CircuitSpec, profile: DeviceProfile, params: Params, key: Array) -> Hardware:
    """Fabricate every device of the circuit and program it with ``params``.

    Two builds with different keys are twin chips (same design, different
    fixed-pattern errors). Raises :class:`ProfileError` if the profile cannot
    realize the spec's backward direction.
    """
    _check_realization(spec, profile)
    if spec.asymmetric and len(params.backward) != spec.n_layers - 1:
        raise AnasimError("build: lam = \"asymmetric\" needs Params.backward (one ψ_k per coupling)")
    return build_chip(_make, spec, profile, params, key)


def reprogram(spec: CircuitSpec, hw: Hardware, params: Params, key: Array) -> Hardware:
    """Write ``params`` into the same chip (shadow-copy mode): new programming
    errors from ``key``, same fabricated instances. Jitted (``spec`` static)."""
    return reprogram_chip(_program, spec, hw, params, key)


# --- the engine ----------------------------------------------------------------------

def _check_holomorphic(spec: CircuitSpec, hw: Hardware) -> None:
    for name in spec.activations:
        if name not in HOLOMORPHIC_ACTIVATIONS:
            raise AnasimError(
                f"relax: a complex nudge needs holomorphic activations {HOLOMORPHIC_ACTIVATIONS}; "
                f"network.activation {name!r} is not complex-analytic")
    prof = hw.profile
    parts = {"coupling": prof.coupling, "dac": prof.dac, "adc": prof.adc}
    for what, dev in parts.items():
        if not isinstance(dev, (IdealCoupling, IdealConverter)):
            raise AnasimError(
                f"relax: a complex nudge needs ideal devices (profile {prof.name!r} has a {type(dev).__name__} "
                f"{what}, whose clipping/quantization is not holomorphic)")


@spec_precision
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
            :func:`relaxation_eta` of ``spec`` on ``hw``, computed inside the
            jitted relaxation (with ``eta_auto`` a power iteration on the
            realized couplings, a few products). Relaxations of one chip
            between two writes share it, so a caller that relaxes the same
            couplings several times (the phases of a training step) may
            compute it once and pass it.

    Returns the :class:`Equilibrium`. Jittable (``spec`` static); when the nudge
    is the literal (0, 0) with no clamp, one compartment is simulated and
    s⁺ = s⁻ exactly.
    """
    beta_p, beta_m = nudge
    clamp_p, clamp_m = clamp
    free = is_static_zero(beta_p) and is_static_zero(beta_m) and clamp_p is None and clamp_m is None
    cplx = is_complex(beta_p) or is_complex(beta_m)
    if cplx:
        _check_holomorphic(spec, hw)
    sdt, adt, rdt = engine_dtypes(spec, cplx)
    dtype = rdt if cplx else sdt          # inputs and targets are real
    x = jnp.asarray(x, dtype)
    if x.ndim != 2 or x.shape[1] != spec.n_in:
        raise AnasimError(f"relax: x must have shape (batch, {spec.n_in}), got {x.shape}")
    batch = x.shape[0]
    if target is None:
        if not free and not (is_static_zero(beta_p) and is_static_zero(beta_m)):
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
    # η and tol are traced (the spec's own are not read inside), labels are dropped; without
    # an η given, the body computes the spec's η on hw inside the same jitted program
    # (eta_auto: the power iteration runs there, not as separate dispatches from Python)
    own_eta = eta is None
    return run_relaxation(_relax_body, spec, (C, clamp_p is not None, clamp_m is not None, cplx, own_eta), hw,
                          x, key, jnp.asarray(beta_p, adt), jnp.asarray(beta_m, adt), target, cp, cm, a0,
                          jnp.zeros((), rdt) if own_eta else jnp.asarray(eta).astype(rdt),
                          jnp.asarray(spec.tol, rdt))


def _relax_body(spec, static, hw, x, key, beta_p, beta_m, target, cp, cm, a0, eta, tol):
    """The traced relaxation (:func:`~anasim.circuits.relaxation.run_relaxation`)."""
    C, has_cp, has_cm, cplx, own_eta = static
    if own_eta:
        eta = relaxation_eta(spec, hw).astype(eta.dtype)
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

    # floor stop: the devices report each read's noise variance (docs/noise_speed.md)
    reports = getattr(dev, "noise_report", False)
    report = spec.floor_stop and reports

    # both neighbours' reads of a layer through arrays of such a device: summed before the noise
    # (the counter generator's path; noise_draw = "threefry" keeps the earlier stream, two draws)
    merge = (reports and getattr(dev, "noise_draw", "") == "counter"
             and hw.backward_mode not in ("transpose", "gyrator"))

    def read(state, v, kk):
        """(current, its noise variance or None)."""
        if report:
            return dev.read(state, v, kk)
        return dev.mvm(state, v, kk), None

    def backward_read(k, v, kk):  # into layer k+1 (0-based) from layer k+2 through coupling k
        mode = hw.backward_mode
        if mode == "transpose":
            return dev.mvm_t(hw.forward[k], v, kk), None
        if mode == "gyrator":
            # A gyrator's transposed read is −θᵀ y: drive it with −v to inject θᵀ v.
            return dev.mvm_t(hw.forward[k], -v, kk), None
        return read(hw.backward[k], v, kk)

    node_leaks = leaks(spec, hw)

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

    def update_layers(layers, a_list, s_list, keys, res, zres=None):
        """New pre-activations of ``layers`` (0-based) from the current states,
        and each layer's fixed-point residual max |f(target) − s| per sample
        (with ``zres``: also max |gap|/σ' per sample, the floor stop's statistic)."""
        new_a = list(a_list)
        for j in layers:
            kf, kb, kd1, kd2 = jax.random.split(keys[j], 4)
            var = None                    # the read noise of this update (the injected input is held)
            # two arrays' currents summed on one node: their noiseless parts, then one draw
            # of the summed variance (SLMCrossbar.read_mean: the same distribution as two reads)
            merged = merge and 0 < j < L - 1 and not skip_backward
            if j == 0:
                total = jnp.broadcast_to(inject, a_list[0].shape)
            else:
                d = mix_forward(dac.convert(hw.dac[j], s_list[j - 1], kd1))
                total, var = dev.read_mean(hw.forward[j - 1], d) if merged else read(hw.forward[j - 1], d, kf)
            if j < L - 1 and not skip_backward:
                d = mix_backward(dac.convert(hw.dac[j + 2], s_list[j + 1], kd2))
                back, var_b = dev.read_mean(hw.backward[j], d) if merged else backward_read(j, d, kb)
                total = total + back
                var = var_b if var is None else (var if var_b is None else var + var_b)
            if merged:
                total = dev.add_noise(total, var, kf)
            total = total.astype(adt) + hw.biases[j]
            if node_leaks is not None:
                total = total - node_leaks[j] * s_list[j]
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
            if zres is not None:
                # the layer mean of f'(a)² · var, what its neighbours see of its state's
                # fluctuation, taken while the read's variance is at hand
                fl = None
                if var is not None:
                    slope = jax.jvp(acts[j], (a_list[j],), (jnp.ones_like(a_list[j]),))[1]
                    fl = jnp.mean(jnp.square(slope) * var.astype(rdt), axis=2, keepdims=True)
                zres[j] = (gap, var, fl)
        return new_a

    floor_z = 0.0
    if report and not cplx and any(dev.noise_coefficients(n) != (0.0, 0.0) for n in spec.sizes[1:]):
        floor_z = floor_quantile(C * x.shape[0] * sum(spec.sizes[1:]))
    row_power = _row_power(spec, hw, skip_backward) if floor_z else None
    gains = [activation_gain(a) for a in spec.activations]

    def floor_stat(zres):
        """max |gap_u|/σ_u' (docs/noise_speed.md): σ_u'² = g² · 2/(2 − η) · (the unit's read
        variance + Σ_i W_ui² Var δs_i), the neighbours' state fluctuation Var δs_i taken as
        the layer mean of f'(a)² · η/(2 − η) · (read variance) of their units
        (σ_u'² is :func:`floor_variance` of that variance: compared in squares, one root
        per iteration rather than one per unit)."""
        keep = eta / (2.0 - eta)
        worst = []
        for j, (gap, var, _) in enumerate(zres):
            v = jnp.zeros_like(gap) if var is None else var.astype(rdt)
            if j > 0 and zres[j - 1][2] is not None:
                v = v + row_power[j][0] * (keep * zres[j - 1][2])
            if j < L - 1 and zres[j + 1][2] is not None and row_power[j][1] is not None:
                v = v + row_power[j][1] * (keep * zres[j + 1][2])
            # z_u² = gap²/σ'²; a unit no noise reaches must reach tol itself
            s2 = floor_variance(v, gains[j], eta)
            worst.append(jnp.max(jnp.where(v > 0, jnp.square(gap) / jnp.maximum(s2, jnp.finfo(rdt).tiny),
                                           jnp.where(gap <= tol, 0.0, jnp.inf))))
        return jnp.sqrt(jnp.max(jnp.stack(worst)))

    return relaxation_loop(update_layers, states, a0, k_loop,
                           schedule=spec.schedule, max_iters=spec.max_iters,
                           stall_window=spec.stall_window, tol=tol, res_dtype=rdt, floor_z=floor_z,
                           floor_stat=floor_stat)


def _row_power(spec: CircuitSpec, hw: Hardware, skip_backward: bool) -> list:
    """Per layer j (0-based): (Σ_i W_ui² of its forward input, of its backward input or
    None), shapes (n_j,): how much of the neighbours' state fluctuation its target sees."""
    dev = hw.profile.coupling
    out = []
    for j in range(spec.n_layers):
        fwd = None if j == 0 else jnp.sum(jnp.square(realized_forward(dev, hw.forward[j - 1])), axis=1)
        back = None
        if j < spec.n_layers - 1 and not skip_backward:
            if hw.backward_mode in ("copy", "independent"):
                back = jnp.sum(jnp.square(dev.effective(hw.backward[j])), axis=1)
            else:
                back = jnp.sum(jnp.square(realized_forward(dev, hw.forward[j])), axis=0)
        out.append((fwd, back))
    return out


# --- the engine object -------------------------------------------------------------

@dataclass(frozen=True)
class LayeredEngine:
    """The iterative engine of layered circuits (:class:`~anasim.circuits.engine.Engine`):
    the damped fixed-point loop through the device chain, any device, any λ."""

    name: str = "iterative"
    abilities: frozenset = frozenset({"jit", "complex_nudge", "warm_start", "settling"})

    def init_params(self, spec: CircuitSpec, key: Array) -> Params:
        return init_params(spec, key)

    def build(self, spec: CircuitSpec, profile: DeviceProfile, params: Params, key: Array) -> Hardware:
        return build(spec, profile, params, key)

    def reprogram(self, spec: CircuitSpec, hw: Hardware, params: Params, key: Array) -> Hardware:
        return reprogram(spec, hw, params, key)

    def relax(self, spec: CircuitSpec, hw: Hardware, x: Array, key: Array, *, nudge=(0.0, 0.0), target=None,
              clamp=(None, None), state0=None, eta=None) -> Equilibrium:
        return relax(spec, hw, x, key, nudge=nudge, target=target, clamp=clamp, state0=state0, eta=eta)

    def read(self, hw: Hardware, eq: Equilibrium, key: Array) -> tuple[tuple, tuple]:
        return read_states(hw, eq, key)

    def damping(self, spec: CircuitSpec, hw: Hardware) -> Array | None:
        # eta_auto's power iteration over every coupling; a fixed η needs nothing
        return relaxation_eta(spec, hw) if spec.eta_auto else None


__all__ = [
    # defined here
    "Hardware", "LayeredEngine", "Params", "build", "init_params", "relax", "reprogram",
    # re-exported from the modules the engine is made of
    "DIVERGENCE_LIMIT", "EffectiveCircuit", "Equilibrium", "HOLOMORPHIC_ACTIVATIONS", "activation",
    "activation_gain", "check", "cost", "cost_grad", "dyadic_map", "effective_matrices", "engine_dtypes",
    "fixed_point_map", "fixed_point_residual", "leaks", "mix_compartments_backward", "mix_compartments_forward",
    "param_dtype", "preactivation_map", "read_states", "relaxation_eta", "relaxation_loop",
]
