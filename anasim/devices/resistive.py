"""Resistive crossbar (ReRAM, PCM): conductances at crosspoints, read by Ohm and Kirchhoff.

Physics (docs/design.md, “Device contract”). Row voltages ``v_i = x_i · V_read`` drive currents
``Σ_i G_ij v_i`` into each grounded column; a conductance is positive, so a
signed weight is a differential pair::

    W = w_max (G⁺ − G⁻) / (G_max − G_min)

and a weight ``w ≥ 0`` is programmed as ``G⁺ = G_min + (w / w_max)(G_max − G_min)``,
``G⁻ = G_min`` (mirrored for w < 0). One normalized output unit is the current
``V_read (G_max − G_min) / w_max``. A crossbar is reciprocal: driving the
columns and reading the rows gives ``Wᵀ`` (``mvm_t``) from the same devices.

Non-idealities:

* ``d2d_sigma`` — device-to-device spread: each device's maximum conductance is
  ``G_max (1 + δ)`` (fixed at fabrication); programming and writes saturate there,
* ``bits`` — ``2^bits`` programmable conductance levels in ``[G_min, G_max]`` (0 = continuous),
* ``prog_noise`` — programming (write) noise std ``G_max (p0 + p1 x + p2 x²)``,
  ``x = G / G_max`` (PCM: Nandakumar et al. fit 0.26 + 1.97x − 1.17x² µS at
  G_max = 25 µS; ReRAM: a constant 0.9–5.8 % of G_max),
* ``read_noise`` — per-read noise std ``read_noise · G`` of each device (1/f and
  random telegraph noise, proportional to G), drawn as its exact Gaussian
  equivalent per output (one extra matmul ``x² @ Var(G)ᵀ``),
* thermal noise of the column conductances ``√(4kTΔf ΣG)`` (``bandwidth_hz > 0``),
* drift ``G(t) = G(t0) (t / t0)^−ν`` (``drift_nu`` mean, ``drift_nu_sigma`` per-device
  spread; see :meth:`ResistiveCrossbar.drift`),
* in-situ write response (:meth:`ResistiveCrossbar.apply_update`): a requested
  change of ``G⁺ − G⁻`` first depresses the opposite device down to ``G_min`` and
  potentiates the own device with the rest (so one device of a pair stays near
  ``G_min`` and an ideal device adds the update exactly); each device moves by ``gain_p · Δ · (G_max_dev − G)/(G_max_dev − G_min)``
  when potentiated and ``gain_d · Δ · (G − G_min)/(G_max_dev − G_min)`` when depressed
  (soft bounds; without them the step is ``gain · Δ``), rounded to whole pulses of one
  level when ``bits > 0``, times ``1 + cycle_noise · ξ`` (cycle-to-cycle), and the
  result is always confined to ``[G_min, G_max_dev]``.

Energy and time (docs/energy.md). A read drives every row for ``t_read`` (the
crossbar's read cycle; it is also the time of one relaxation iteration)::

    E_read = t_read Σ_devices G_ij (x_i V_read)²      (both devices of each pair)

A write moves each device by ``|ΔG|`` in identical pulses of the nominal step
``ΔG_pulse = (G_max − G_min) / (2^bits − 1)`` (``bits > 0``) or ``(G_max − G_min) /
pulses_full_range``; each pulse costs ``V_write · I_write · t_pulse``::

    E_write = V_write I_write t_pulse Σ_devices |ΔG| / ΔG_pulse

(a lower bound where soft bounds shrink the steps near G_min / G_max). Rows are
programmed one after another, the devices of a row in parallel:
``t_write = t_pulse Σ_rows max_row(|ΔG| / ΔG_pulse)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from anasim.devices.noise import K_B, counter_normal
from anasim.devices.params import param

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ResistiveInstance:
    """Per-device fixed pattern of one crossbar (a pytree), arrays of shape ``(2, n_out, n_in)``
    (index 0: G⁺ devices, 1: G⁻ devices).

    g_max: each device's own maximum conductance (S).
    nu: each device's drift exponent.
    """

    g_max: Array
    nu: Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ResistiveState:
    """A programmed crossbar (a pytree).

    g: conductances (S), shape ``(2, n_out, n_in)`` (G⁺, G⁻).
    w_eff: realized normalized matrix ``w_max (G⁺ − G⁻)/(G_max − G_min)``, ``(n_out, n_in)``.
    read_var: per-device read-noise variance of both devices in normalized units², ``(n_out, n_in)``.
    col_var, row_var: thermal-noise variance of each column / row current (normalized units²).
    instance: the fabricated instance the state lives on (for writes and drift).
    """

    g: Array
    w_eff: Array
    read_var: Array
    col_var: Array
    row_var: Array
    instance: ResistiveInstance


@dataclass(frozen=True)
class ResistiveCrossbar:
    """Differential-pair resistive crossbar with programming, read, thermal noise, drift and in-situ writes."""

    # a crossbar conducts both ways (mvm_t) and takes write pulses in place (apply_update)
    transposed_read: ClassVar[bool] = True
    in_situ_write: ClassVar[bool] = True
    output_load: ClassVar[bool] = False
    skew_link: ClassVar[bool] = False
    #: the parameters of the energy and time model (printed by ``anasim devices``)
    energy_params: ClassVar[tuple] = ("g_min_s", "g_max_s", "t_read_s", "v_read_v", "v_write_v", "i_write_a",
                                      "pulse_width_s", "pulses_full_range")

    w_max: float = param(0.5, "1", 0.0, doc="normalized full-scale weight (G⁺ − G⁻ = G_max − G_min)", lo_open=True)
    g_min_s: float = param(50e-6, "S", 0.0, 1.0, "minimum conductance",
                           source="RRAM 50-225 µS (docs/design.md, 'Published device figures')")
    g_max_s: float = param(225e-6, "S", 0.0, 1.0, "maximum conductance (nominal)", lo_open=True,
                           source="RRAM 50-225 µS (docs/design.md, 'Published device figures')")
    bits: int = param(0, "bit", 0, 24, "programmable levels 2^bits (0 = continuous)")
    d2d_sigma: float = param(0.0, "1", 0.0, 0.5, "device-to-device spread of G_max (relative std)")
    prog_noise: tuple = param((0.0, 0.0, 0.0), "1", doc="programming noise std / G_max = p0 + p1 x + p2 x², x = G/G_max")
    read_noise: float = param(0.0, "1", 0.0, 1.0, "read noise std relative to G")
    v_read_v: float = param(0.2, "V", 0.0, 10.0, "read voltage at full-scale input", lo_open=True,
                            source="assumed: 0.2 V, well below the ~1 V and more that switches "
                                   "metal-oxide RRAM (Wong et al., 'Metal-oxide RRAM', Proc. IEEE 100, "
                                   "1951 (2012)), so a read does not disturb the state")
    bandwidth_hz: float = param(0.0, "Hz", 0.0, 1e12, "read bandwidth for thermal noise (0 = off)")
    temperature_k: float = param(300.0, "K", 0.0, 1e4, "device temperature")
    drift_nu: float = param(0.0, "1", 0.0, 1.0, "drift exponent ν (mean)")
    drift_nu_sigma: float = param(0.0, "1", 0.0, 1.0, "device-to-device spread of ν (std)")
    drift_t0_s: float = param(1.0, "s", 0.0, doc="reference time t0 after programming", lo_open=True)
    soft_bounds: bool = param(False, "", doc="write steps shrink towards the bounds")
    gain_potentiation: float = param(1.0, "1", 0.0, 10.0, "potentiation step / requested step")
    gain_depression: float = param(1.0, "1", 0.0, 10.0, "depression step / requested step")
    cycle_noise: float = param(0.0, "1", 0.0, 2.0, "cycle-to-cycle write noise (relative std of a step)")
    # Energy and time (module docstring). Each default's source is its `source`.
    t_read_s: float = param(100e-9, "s", 0.0, 1.0, "read cycle t_read (one relaxation iteration)",
                            lo_open=True,
                            source="assumed: 100 ns, the order of the crossbar read cycle of ISAAC-style "
                                   "accelerator studies (Shafiee et al., ISCA 2016)")
    v_write_v: float = param(2.0, "V", 0.0, 100.0, "write pulse amplitude", lo_open=True,
                             source="metal-oxide RRAM switches at ~1-3 V (Wong et al., 'Metal-oxide "
                                    "RRAM', Proc. IEEE 100, 1951 (2012)); 2 V: mid-range")
    i_write_a: float = param(100e-6, "A", 0.0, 1.0, "device current during a write pulse",
                             source="tens to hundreds of µA during switching (Wong et al., Proc. IEEE "
                                    "2012); 100 µA: mid-range. 2 V x 100 µA x 50 ns = 10 pJ per pulse")
    pulse_width_s: float = param(50e-9, "s", 0.0, 1.0, "write pulse width", lo_open=True,
                                 source="RRAM switches within 10-100 ns pulses (Wong et al., Proc. IEEE "
                                        "2012); 50 ns: mid-range")
    pulses_full_range: int = param(100, "1", 1, 10**9, "pulses from G_min to G_max when bits = 0",
                                   source="assumed: 100 identical pulses take a device across its range")

    def __post_init__(self):
        if not self.g_max_s > self.g_min_s:
            raise ValueError(f"g_max_s ({self.g_max_s}) must exceed g_min_s ({self.g_min_s})")
        p = tuple(float(v) for v in self.prog_noise)
        if len(p) != 3:
            raise ValueError("prog_noise must have 3 coefficients [p0, p1, p2]")
        object.__setattr__(self, "prog_noise", p)
        if min(p[0] + p[1] * x + p[2] * x * x for x in [i / 100 for i in range(101)]) < 0:
            raise ValueError("prog_noise polynomial is negative somewhere in [0, 1]")

    @property
    def g_range(self) -> float:
        return self.g_max_s - self.g_min_s

    @property
    def g_step(self) -> float:
        """Conductance step between levels (0 when continuous)."""
        return self.g_range / (2 ** self.bits - 1) if self.bits else 0.0

    # --- energy and time (docs/energy.md) ----------------------------------------------

    def read_time_s(self) -> float:
        """Time of one read (s): the read cycle ``t_read_s``."""
        return self.t_read_s

    @property
    def pulse_step_s(self) -> float:
        """Nominal conductance change of one write pulse (S)."""
        return self.g_step if self.bits else self.g_range / self.pulses_full_range

    def read_energy_j(self, shape, x=1.0, state=None, transposed: bool = False) -> float:
        """Energy of one read (J): ``t_read Σ G_ij (x_i V_read)²`` over both devices of
        every pair. ``x``: scalar drive of every input line (1 = full scale) or the
        vector driven (rows for ``transposed``); ``state`` None: every device at the
        mid conductance ``(G_min + G_max)/2``."""
        n_out, n_in = shape
        if state is None:
            g = jnp.full((2, n_out, n_in), 0.5 * (self.g_min_s + self.g_max_s))
        else:
            g = state.g
        x2 = jnp.square(jnp.asarray(x, g.dtype)) * self.v_read_v ** 2
        per = (jnp.sum(g, axis=0).T if transposed else jnp.sum(g, axis=0))   # (n_lines_out, n_driven)
        return float(self.t_read_s * jnp.sum(per * x2))

    def write_pulses(self, shape, old=None, new=None):
        """Pulses per device of the write ``old → new``, shape ``(2, n_out, n_in)``; a
        full program from G_min when ``old`` is None, every device to mid range when both are."""
        n_out, n_in = shape
        g_old = jnp.full((2, n_out, n_in), self.g_min_s) if old is None else old.g
        g_new = jnp.full((2, n_out, n_in), 0.5 * (self.g_min_s + self.g_max_s)) if new is None else new.g
        return jnp.abs(g_new - g_old) / self.pulse_step_s

    def write_energy_j(self, shape, old=None, new=None) -> float:
        """Energy of the write ``old → new`` (J): ``V_write I_write t_pulse Σ |ΔG| / ΔG_pulse``."""
        return float(self.v_write_v * self.i_write_a * self.pulse_width_s
                     * jnp.sum(self.write_pulses(shape, old, new)))

    def write_time_s(self, shape, old=None, new=None) -> float:
        """Latency of the write (s): rows one after another, ``t_pulse Σ_rows max_row pulses``."""
        p = jnp.max(self.write_pulses(shape, old, new), axis=(0, 2))
        return float(self.pulse_width_s * jnp.sum(jnp.ceil(p - 1e-9)))

    # --- contract -----------------------------------------------------------------

    def fabricate(self, key: Array, shape: tuple[int, int]) -> ResistiveInstance:
        shp = (2,) + tuple(shape)
        kd, kn = jax.random.split(key)
        g_max = jnp.full(shp, self.g_max_s)
        if self.d2d_sigma:
            # a device cannot be made to reach below G_min: keep its range positive
            g_max = jnp.maximum(g_max * (1 + self.d2d_sigma * jax.random.normal(kd, shp)),
                                self.g_min_s + 0.05 * self.g_range)
        nu = jnp.full(shp, self.drift_nu)
        if self.drift_nu_sigma:
            nu = jnp.maximum(nu + self.drift_nu_sigma * jax.random.normal(kn, shp), 0.0)
        return ResistiveInstance(g_max=g_max, nu=nu)

    def _quantize(self, g: Array) -> Array:
        if self.bits:
            g = self.g_min_s + self.g_step * jnp.round((g - self.g_min_s) / self.g_step)
        return g

    def _finish(self, g: Array, inst: ResistiveInstance) -> ResistiveState:
        dt = g.dtype
        scale = self.w_max / self.g_range  # normalized units per siemens
        w = scale * (g[0] - g[1])
        if self.read_noise:
            read_var = (scale * self.read_noise) ** 2 * (g[0] ** 2 + g[1] ** 2)
        else:
            read_var = jnp.zeros((0, 0), dt)
        if self.bandwidth_hz:
            # i_n² = 4kTΔf ΣG on a line, in units of the output current V_read G_range / w_max
            c = 4 * K_B * self.temperature_k * self.bandwidth_hz * (scale / self.v_read_v) ** 2
            gs = g[0] + g[1]
            col_var, row_var = c * gs.sum(1), c * gs.sum(0)
        else:
            col_var = row_var = jnp.zeros((0,), dt)
        return ResistiveState(g=g, w_eff=w, read_var=read_var, col_var=col_var, row_var=row_var,
                              instance=inst)

    def program(self, instance: ResistiveInstance, key: Array, w_target: Array) -> ResistiveState:
        """Write ``w_target`` (normalized, ``(n_out, n_in)``) by program-and-verify to the nearest
        level, then programming noise; conductances stay in each device's range."""
        w = jnp.asarray(w_target)
        dt = w.dtype
        g_max = instance.g_max.astype(dt)
        frac = jnp.stack([jnp.maximum(w, 0), jnp.maximum(-w, 0)]) / self.w_max
        g = self._quantize(self.g_min_s + frac * self.g_range)
        p0, p1, p2 = self.prog_noise
        if p0 or p1 or p2:
            x = g / self.g_max_s
            std = self.g_max_s * (p0 + p1 * x + p2 * x * x)
            g = g + std * jax.random.normal(key, g.shape, dt)
        g = jnp.clip(g, self.g_min_s, g_max).astype(dt)
        return self._finish(g, instance_cast(instance, dt))

    def _read(self, w: Array, var: Array, line_var: Array, x: Array, key: Array) -> Array:
        y = x @ w
        if self.read_noise or self.bandwidth_hz:
            v = jnp.zeros(y.shape, y.dtype)
            if self.read_noise:
                v = v + (x * x) @ var
            if self.bandwidth_hz:
                v = v + line_var
            y = y + jnp.sqrt(v) * counter_normal(key, y.shape, y.dtype)
        return y

    def mvm(self, state: ResistiveState, x: Array, key: Array) -> Array:
        """Column currents ``W x`` (+ read and thermal noise); ``x (..., n_in)`` → ``(..., n_out)``."""
        return self._read(state.w_eff.T, state.read_var.T, state.col_var, x, key)

    def mvm_t(self, state: ResistiveState, y: Array, key: Array) -> Array:
        """Row currents ``Wᵀ y`` when driving the columns (same devices); ``(..., n_out)`` → ``(..., n_in)``."""
        return self._read(state.w_eff, state.read_var, state.row_var, y, key)

    def effective(self, state: ResistiveState) -> Array:
        return state.w_eff

    # --- in-situ operation ------------------------------------------------------------

    def apply_update(self, state: ResistiveState, key: Array, dw: Array) -> ResistiveState:
        """In-situ write of the increment ``dw`` (normalized, ``(n_out, n_in)``) through the
        device write response; the result stays in ``[G_min, G_max_dev]`` for any ``dw``."""
        g = state.g
        dt = g.dtype
        g_max = state.instance.g_max.astype(dt)
        dg = jnp.asarray(dw, dt) * (self.g_range / self.w_max)  # requested change of G⁺ − G⁻ (S)
        # The pair keeps one device near G_min: an increment first lowers the
        # opposite device down to G_min, then raises its own with the rest.
        room_neg, room_pos = g[1] - self.g_min_s, g[0] - self.g_min_s
        take_neg = jnp.minimum(jnp.maximum(dg, 0), room_neg)
        take_pos = jnp.minimum(jnp.maximum(-dg, 0), room_pos)
        req = jnp.stack([jnp.maximum(dg, 0) - take_neg - take_pos,
                         jnp.maximum(-dg, 0) - take_pos - take_neg])  # requested change per device (S)
        return self._finish(self.write_response(g, req, g_max, key), state.instance)

    def write_response(self, g: Array, req: Array, g_max: Array, key: Array) -> Array:
        """Conductances (S) after one write of the requested changes ``req`` (S) to devices
        at ``g`` (S) whose ceilings are ``g_max`` (S), all of one shape: the gains
        (potentiation for ``req > 0``, depression otherwise), soft bounds, the
        ``bits``-level conductance grid and cycle-to-cycle noise; clipped to
        ``[G_min, g_max]``. With unit gains and no bounds, levels or noise it is
        ``clip(g + req)``."""
        span = g_max - self.g_min_s
        if self.soft_bounds:
            up = self.gain_potentiation * (g_max - g) / span
            down = self.gain_depression * (g - self.g_min_s) / span
        else:
            up, down = self.gain_potentiation, self.gain_depression
        step = jnp.where(req > 0, up, down) * req
        if self.bits:
            step = self.g_step * jnp.round(step / self.g_step)
        if self.cycle_noise:
            step = step * (1 + self.cycle_noise * jax.random.normal(key, step.shape, g.dtype))
        return jnp.clip(g + step, self.g_min_s, g_max)

    def drift(self, state: ResistiveState, elapsed_s) -> ResistiveState:
        """Conductances ``elapsed_s`` seconds after the reference time t0:
        ``G (1 + elapsed/t0)^−ν`` per device, floored at G_min."""
        t = 1.0 + jnp.asarray(elapsed_s, state.g.dtype) / self.drift_t0_s
        g = jnp.maximum(state.g * t ** (-state.instance.nu.astype(state.g.dtype)), self.g_min_s)
        return self._finish(g, state.instance)


def instance_cast(inst: ResistiveInstance, dt) -> ResistiveInstance:
    return ResistiveInstance(g_max=inst.g_max.astype(dt), nu=inst.nu.astype(dt))


__all__ = ["ResistiveCrossbar", "ResistiveInstance", "ResistiveState"]
