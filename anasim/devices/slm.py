"""Optical crossbar: spatial light modulator (SLM) between a fanned-out source and photodetectors.

Physics (docs/design.md, “Device contract”). Input ``i`` is a light intensity ``x_i · P_src`` (W),
non-negative; the fan-out optics divides it among the ``n_out`` rows, so pixel
``(j, i)`` receives ``P_px = P_src · η / n_out`` at full scale, with ``η =
10^(−loss_db/10)`` the optical transmission of the path. The SLM pixel
attenuates by its transmission ``T_ij ∈ [t_min, 1]`` (``2^bits`` levels, ``t_min
= 1/extinction_ratio`` the leak floor: an SLM only attenuates and never fully
blocks); a photodetector sums each row: ``I_j = R Σ_i P_px T_ij x_i``.

Signed weights take two arrays (positive and negative optical paths, each with
its photodetector array, as in the AOC): ``W = w_max (T⁺ − T⁻)``; the receiver
subtracts the two photocurrents and its gain maps ``R · P_px / w_max`` amperes
onto one normalized unit. A weight ``w ≥ 0`` is programmed as
``T⁺ = t_min + w / w_max``, ``T⁻ = t_min`` (and mirrored for w < 0), so the leak
floor cancels in the difference unless the two paths differ (pixel gain, crosstalk).

Signed inputs take two channels: ``x = x⁺ − x⁻`` with ``x± = max(±x, 0)``; the
``x⁻`` source is routed through the swapped arrays, so ``y = W x`` holds for any
sign. States of the circuits are in [0, 1], so ``x⁻`` is dark in practice.

Non-idealities (all folded into the programmed state, so a read is cheap):

* quantization of ``T`` to ``2^bits`` levels (``bits = 0``: continuous),
* finite extinction ratio (``t_min > 0``),
* pixel gain non-uniformity ``pixel_gain_sigma`` (relative std, fixed per pixel),
* nearest-neighbour pixel crosstalk ``crosstalk_pixel``: a fraction of each pixel's
  light passes through each of its 4 neighbours' regions instead,
* photodetector crosstalk ``crosstalk_detector``: a fraction of row ``j``'s light
  lands on each neighbouring detector ``j ± 1``,
* path crosstalk ``crosstalk_path``: a fraction of the light of one signed path
  reaches the other path's detectors (beam-splitter leakage),
* fan-out imbalance ``fanout_sigma``: row ``j`` receives ``(1 + δ_j)/n_out`` of the
  power instead of ``1/n_out`` (δ normalized to conserve power),
* optical loss ``loss_db`` (the receiver gain is calibrated for it, so it costs SNR, not scale),
* photodetector noise (per read, per output): shot noise ``2 q (I + I_dark) Δf`` on
  each of the two detectors and TIA thermal noise ``4 k T Δf / R_f`` on each.

Energy and time (docs/energy.md). One read integrates the photocurrents for
``t = 1 / (2 Δf)`` (the detector's settling at bandwidth ``Δf = bandwidth_hz``;
NaN when noise is off, ``Δf = 0``: give the profile's ``loop_time_s``). Its energy
is the electrical energy of the lit sources plus the receivers::

    E_read = Σ_i x_i · P_src · t / η_wp  +  2 n_out · P_rx · t

(``x_i`` the input drive of channel ``i``, only one of its two signed channels
lit; ``η_wp`` the source's wall-plug efficiency; two photodetector + TIA
receivers per row, one per signed path, each drawing ``P_rx``). A write loads one
frame into each of the two SLM arrays: ``E_write = 2 P_slm / f_frame`` and the
write latency is one frame, ``1 / f_frame``.

Cost of a read: one matmul ``x @ W_effᵀ``. With noise on (``bandwidth_hz > 0``)
the shot noise needs the photocurrent ``|x| @ Sᵀ`` (``S`` = the sum of both
paths' realized transmissions, precomputed): a second product of the same size.
(Earlier versions stacked ``[W_eff; S]`` for one product of twice the rows when
the inputs shared one sign; measured in the relaxation loop on the CPU it was
slower than the two products, and its copy of both matrices cost every write.)
The noise is drawn by :func:`~anasim.devices.noise.counter_normal`
(``noise_draw = "counter"``). ``noise_draw = "threefry"`` keeps the stream of
earlier versions (``jax.random.normal``), for
comparisons and for results recorded before (docs/noise_speed.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from anasim.devices.noise import K_B, Q_E, counter_normal
from anasim.devices.params import param

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SLMInstance:
    """Fixed pattern of one fabricated SLM crossbar (a pytree).

    pixel_gain: relative pixel transmission gain, shape ``(2, n_out, n_in)`` (paths +, −).
    fanout: relative power share of each row, shape ``(n_out,)`` (mean 1).
    """

    pixel_gain: Array
    fanout: Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SLMState:
    """A programmed SLM crossbar (a pytree).

    t_pos, t_neg: programmed (quantized) transmissions, shape ``(n_out, n_in)``, in [t_min, 1].
    w_eff: realized signed matrix (normalized units), ``(n_out, n_in)``.
    s_eff: realized sum of both paths' matrices (normalized units, ≥ 0), ``(n_out, n_in)``;
        ``|x| @ s_effᵀ · R P_px / w_max`` is the total photocurrent of the two detectors.
    w_s: empty, ``(0, n_in)``: the place where checkpoints of earlier versions stored
        ``[w_eff; s_eff]`` (their loader ignores what an empty slot held).
    """

    t_pos: Array
    t_neg: Array
    w_eff: Array
    s_eff: Array
    w_s: Array


def _crosstalk(x: Array, fanout: Array | None, c_pixel: float, c_detector: float) -> Array:
    """The light of an array's pixels ``x`` (n_out, n_in) as its detectors receive it:
    a fraction ``c_pixel`` of each pixel's light to each of its four neighbours
    (fringing), each row scaled by its fan-out share ``fanout`` (n_out,) (None: even
    shares), then a fraction ``c_detector`` of each row's light to each neighbouring
    detector. Light that leaves the array is lost; the centre keeps 1 − 4 c_pixel and
    1 − 2 c_detector at the edges too.

    Linear in ``x``: the signed difference and the sum of the two paths go through it
    as they are. Both stencils read one padded copy and compose, with the fan-out
    between them, into one pass: on the CPU every pass over the array is a trip
    through memory, and a write reprograms every array of the chip."""
    if not (c_pixel or c_detector):
        return x if fanout is None else fanout[:, None] * x
    n = x.shape[0]
    xp = jnp.pad(x, ((2, 2), (1, 1)))          # rows ±2 (pixel, then detector), columns ±1 (pixel)
    z = xp[1:-1, 1:-1]                          # rows −1 … n
    if c_pixel:
        z = (1.0 - 4 * c_pixel) * z + c_pixel * (xp[:-2, 1:-1] + xp[2:, 1:-1] + xp[1:-1, :-2] + xp[1:-1, 2:])
    # the rows just outside hold the fringe light that left the array: a zero
    # fan-out share there drops it before the detector stencil reads it
    f = jnp.ones((n,), x.dtype) if fanout is None else fanout
    y = jnp.pad(f, 1)[:, None] * z
    if not c_detector:
        return y[1:-1]
    return (1.0 - 2 * c_detector) * y[1:-1] + c_detector * (y[:-2] + y[2:])


@dataclass(frozen=True)
class SLMCrossbar:
    """SLM optical crossbar with split signed arrays and photodetector readout.

    Normalized full scale: ``w_max`` is the weight of a pixel at ``T = 1`` over the
    other path's ``T = t_min`` (minus the leak): weights are clipped to
    ``±w_max (1 − t_min)``.
    """

    # optics is not reciprocal: the backward direction needs a second SLM (backward = "copy")
    transposed_read: ClassVar[bool] = False
    in_situ_write: ClassVar[bool] = False
    output_load: ClassVar[bool] = False
    skew_link: ClassVar[bool] = False
    #: the parameters of the energy and time model (printed by ``anasim devices``)
    energy_params: ClassVar[tuple] = ("bandwidth_hz", "source_power_w", "wall_plug_efficiency",
                                      "receiver_power_w", "frame_rate_hz", "slm_power_w")

    w_max: float = param(0.5, "1", 0.0, doc="normalized full-scale weight (T⁺ − T⁻ = 1)", lo_open=True)
    bits: int = param(10, "bit", 0, 24, "transmission levels 2^bits per array (0 = continuous)")
    extinction_ratio: float = param(math.inf, "1", 1.0, doc="T_max/T_min; t_min = 1/extinction_ratio",
                                    lo_open=True, finite=False)
    pixel_gain_sigma: float = param(0.0, "1", 0.0, 0.5, "pixel transmission gain non-uniformity (std)")
    crosstalk_pixel: float = param(0.0, "1", 0.0, 0.2, "fraction of a pixel's light to each of 4 neighbours")
    crosstalk_detector: float = param(0.0, "1", 0.0, 0.45, "fraction of a row's light to each neighbouring detector")
    crosstalk_path: float = param(0.0, "1", 0.0, 0.5, "fraction of light leaking to the other signed path",
                                  hi_open=True)
    fanout_sigma: float = param(0.0, "1", 0.0, 0.5, "fan-out power share imbalance per row (std)")
    loss_db: float = param(0.0, "dB", 0.0, 100.0, "optical loss source → detector")
    source_power_w: float = param(1e-3, "W", 0.0, 10.0, "full-scale optical power per input channel",
                                  lo_open=True,
                                  source="assumed: 1 mW, the order of one datacom VCSEL's output; "
                                         "devices/slm-10bit.toml derives its 2 mW from the noise budget")
    responsivity_a_per_w: float = param(1.0, "A/W", 0.0, 10.0, "photodetector responsivity", lo_open=True,
                                        source="assumed: 1 A/W, the photonic simulators' default; a Si "
                                               "photodiode gives ~0.5 A/W at 850 nm, InGaAs ~1 A/W at 1550 nm")
    dark_current_a: float = param(0.0, "A", 0.0, 1e-3, "photodetector dark current")
    # Δf sets both the noise (variance ∝ Δf) and the read time t = 1/(2Δf) (module docstring)
    bandwidth_hz: float = param(0.0, "Hz", 0.0, 1e12, "detection bandwidth Δf (0 = noiseless)",
                                source="0 = off (the ideal limit); the AOC's 20 ns loop is 25 MHz "
                                       "(Kalinin et al., Nature 2025; devices/slm-10bit.toml)")
    temperature_k: float = param(300.0, "K", 0.0, 1e4, "TIA temperature")
    feedback_resistance_ohm: float = param(math.inf, "Ω", 0.0, doc="TIA feedback resistance R_f (inf = no thermal noise)",
                                           lo_open=True, finite=False)
    # Energy and time (module docstring). Each default's source is its `source`:
    # a published figure, or "assumed" with the reasoning where none exists.
    wall_plug_efficiency: float = param(0.3, "1", 0.0, 1.0, "source wall-plug efficiency (optical / electrical)",
                                        lo_open=True,
                                        source="VCSELs reach 40-48 % peak power-conversion efficiency (oxide-"
                                               "confined 940 nm: 48 %, Wang et al., Research Square 2022, "
                                               "doi:10.21203/rs.3.rs-1278067/v1); 0.3: below the peak, as "
                                               "arrays run; microLEDs (the AOC's sources) are lower")
    receiver_power_w: float = param(1e-3, "W", 0.0, 10.0, "power of one photodetector + TIA receiver",
                                    source="assumed: 1 mW, a low-power CMOS transimpedance channel at "
                                           "tens of MHz (no single part; discrete TIAs draw tens of mW)")
    frame_rate_hz: float = param(1e3, "Hz", 0.0, 1e12, "SLM frame rate (one write = one frame)", lo_open=True,
                                 source="LCOS SLM datasheets span 60 Hz (Holoeye PLUTO-2) to ~1.4 kHz "
                                        "(Meadowlark high-speed 512x512, overdrive); 1 kHz: the fast end")
    slm_power_w: float = param(1.0, "W", 0.0, 1e3, "electrical drive power of one SLM array",
                               source="assumed: 1 W, the order of an LCOS panel with its driver board "
                                      "(a few W per head), one array of a split pair")
    # Simulation, not physics: how the per-read Gaussian noise is drawn (module docstring).
    noise_draw: str = param("counter", doc="per-read noise generator: 'counter' (fast) or 'threefry' "
                            "(the stream of earlier versions)")

    #: the device reports each read's noise variance (:meth:`read`): the engine's floor stop uses it
    noise_report: ClassVar[bool] = True

    def __post_init__(self):
        if self.noise_draw not in ("counter", "threefry"):
            raise ValueError(f"noise_draw must be 'counter' or 'threefry', got {self.noise_draw!r}")

    # --- energy and time (docs/energy.md) ----------------------------------------------

    def read_time_s(self) -> float:
        """Integration time of one read (s): ``1 / (2 Δf)``; NaN when noiseless (``Δf = 0``)."""
        return 1.0 / (2.0 * self.bandwidth_hz) if self.bandwidth_hz else float("nan")

    def read_energy_j(self, shape, x=1.0, state=None, transposed: bool = False) -> float:
        """Energy of one read of an ``(n_out, n_in)`` array (J):
        ``Σ_i x_i P_src t / η_wp + 2 n_out P_rx t``; ``x`` a scalar drive of every
        input (1 = full scale) or the input vector. ``state`` does not matter (the
        source power does not depend on the transmissions); optics has no transposed read."""
        del state
        if transposed:
            raise ValueError("an SLM crossbar has no transposed read")
        n_out, n_in = shape
        t = self.read_time_s()
        lit = float(jnp.sum(jnp.abs(jnp.asarray(x)))) if jnp.ndim(x) else n_in * abs(float(x))
        return lit * self.source_power_w * t / self.wall_plug_efficiency + 2 * n_out * self.receiver_power_w * t

    def write_energy_j(self, shape, old=None, new=None) -> float:
        """Energy of one write (J): one frame into each of the two arrays, ``2 P_slm / f_frame``."""
        del shape, old, new
        return 2.0 * self.slm_power_w / self.frame_rate_hz

    def write_time_s(self, shape, old=None, new=None) -> float:
        """Latency of one write (s): one frame, ``1 / f_frame``."""
        del shape, old, new
        return 1.0 / self.frame_rate_hz

    @property
    def t_min(self) -> float:
        """Leak floor (darkest transmission), ``1 / extinction_ratio``."""
        return 1.0 / self.extinction_ratio

    @property
    def t_step(self) -> float:
        """Transmission step between levels (0 when continuous)."""
        return (1.0 - self.t_min) / (2 ** self.bits - 1) if self.bits else 0.0

    def pixel_power_w(self, n_out: int) -> float:
        """Full-scale optical power on one pixel (W): source power after fan-out and loss."""
        return self.source_power_w * 10 ** (-self.loss_db / 10) / n_out

    def noise_coefficients(self, n_out: int) -> tuple[float, float]:
        """``(a, b)`` with per-output noise variance ``a · s + b`` in normalized units².

        ``s = |x| @ s_effᵀ`` is the summed photocurrent of both detectors in normalized
        units; one normalized unit is ``I_u = R P_px / w_max`` amperes. With
        ``σ_I² = 2qΔf (I⁺ + I⁻ + 2 I_dark) + 2 · 4kTΔf/R_f`` (two detectors):
        ``a = 2qΔf / I_u``, ``b = (4qΔf I_dark + 8kTΔf/R_f) / I_u²``.
        """
        if not self.bandwidth_hz:
            return 0.0, 0.0
        i_u = self.responsivity_a_per_w * self.pixel_power_w(n_out) / self.w_max
        df = self.bandwidth_hz
        a = 2 * Q_E * df / i_u
        b = (4 * Q_E * df * self.dark_current_a + 8 * K_B * self.temperature_k * df / self.feedback_resistance_ohm) / i_u**2
        return a, b

    # --- contract -----------------------------------------------------------------

    def fabricate(self, key: Array, shape: tuple[int, int]) -> SLMInstance:
        n_out, n_in = shape
        kg, kf = jax.random.split(key)
        gain = jnp.ones((2, n_out, n_in))
        if self.pixel_gain_sigma:
            gain = jnp.maximum(gain + self.pixel_gain_sigma * jax.random.normal(kg, gain.shape), 0.0)
        fan = jnp.ones((n_out,))
        if self.fanout_sigma:
            fan = jnp.maximum(fan + self.fanout_sigma * jax.random.normal(kf, (n_out,)), 0.0)
            fan = fan / jnp.mean(fan)  # the splitter conserves power
        return SLMInstance(pixel_gain=gain, fanout=fan)

    def quantize_transmission(self, t: Array) -> Array:
        """Clip to ``[t_min, 1]`` and round to the nearest of the ``2^bits`` levels."""
        t = jnp.clip(t, self.t_min, 1.0)
        if self.bits:
            t = self.t_min + self.t_step * jnp.round((t - self.t_min) / self.t_step)
        return t

    def program(self, instance: SLMInstance, key: Array, w_target: Array) -> SLMState:
        del key  # SLM pixels are set digitally: no programming noise
        # materialize the target: a transposed view (the backward copy's θᵀ) would be
        # read with strides by every pass below, about 3× slower on the CPU
        w = jax.lax.optimization_barrier(jnp.asarray(w_target))
        dt = w.dtype
        # one path carries |w| over the leak floor, the other sits at the floor (quantize(t_min) = t_min)
        t = self.quantize_transmission(self.t_min + jnp.abs(w) / self.w_max).astype(dt)
        floor = jnp.asarray(self.t_min, dt)
        t_pos, t_neg = jnp.where(w > 0, t, floor), jnp.where(w < 0, t, floor)
        a_pos, a_neg = t_pos, t_neg
        if self.pixel_gain_sigma:
            g = instance.pixel_gain.astype(dt)
            a_pos, a_neg = g[0] * a_pos, g[1] * a_neg
        f = instance.fanout.astype(dt) if self.fanout_sigma else None
        # The optics after the pixels is linear and the same for both paths, so it
        # carries their difference (the signal) and their sum (the photocurrent) directly.
        # Path crosstalk moves a fraction c of each path's light into the other: the
        # sum keeps it, the difference shrinks by 1 − 2c.
        c = self.crosstalk_path
        w_eff = (self.w_max * (1.0 - 2 * c)) * _crosstalk(a_pos - a_neg, f, self.crosstalk_pixel,
                                                         self.crosstalk_detector)
        s_eff = self.w_max * _crosstalk(a_pos + a_neg, f, self.crosstalk_pixel, self.crosstalk_detector)
        w_s = jnp.zeros((0, w.shape[1]), dt)
        return SLMState(t_pos=t_pos, t_neg=t_neg, w_eff=w_eff, s_eff=s_eff, w_s=w_s)

    def read_mean(self, state: SLMState, x: Array) -> tuple[Array, Array | None]:
        """The noiseless part of one read and its noise variance: ``(W_eff x, a·s + b)``
        (normalized units and units², :meth:`noise_coefficients`; ``s = |x| @ s_effᵀ``);
        the variance is None when the device is noiseless. ``x (..., n_in)`` → ``(..., n_out)``.

        The noise of a read is additive, zero-mean Gaussian and independent of every
        other read's, so currents summed on one node (a layer's input from the
        coupling below and the one above) carry the noise of one draw of the summed
        variance: :meth:`add_noise` of the summed means and variances is the same
        distribution as the sum of two :meth:`read` results, at half the draws."""
        y = x @ state.w_eff.T
        a, b = self.noise_coefficients(state.w_eff.shape[0])
        if not (a or b):
            return y, None
        if a:
            return y, b + a * (jnp.abs(x) @ state.s_eff.T)
        return y, jnp.full(y.shape, b, y.dtype)

    def add_noise(self, y: Array, var: Array | None, key: Array) -> Array:
        """``y`` plus zero-mean Gaussian noise of per-entry variance ``var`` (None: ``y``)."""
        if var is None:
            return y
        if self.noise_draw == "threefry":
            return y + jnp.sqrt(var) * jax.random.normal(key, y.shape, y.dtype)
        return y + jnp.sqrt(var) * counter_normal(key, y.shape, y.dtype)

    def read(self, state: SLMState, x: Array, key: Array) -> tuple[Array, Array | None]:
        """One read with its noise: ``(y, var)``, ``y = W_eff x`` plus photodetector
        noise of per-output variance ``var`` (:meth:`read_mean`); ``var`` is None when
        the device is noiseless. ``x (..., n_in)`` → ``(..., n_out)``."""
        y, var = self.read_mean(state, x)
        return self.add_noise(y, var, key), var

    def mvm(self, state: SLMState, x: Array, key: Array) -> Array:
        """``y = W_eff x`` plus photodetector noise; ``x (..., n_in)`` → ``(..., n_out)``."""
        return self.read(state, x, key)[0]

    def noise_std(self, state: SLMState, x: Array) -> Array:
        """Per-output noise std of one read at input ``x`` (normalized units)."""
        a, b = self.noise_coefficients(state.w_eff.shape[0])
        return jnp.sqrt(b + a * (jnp.abs(x) @ state.s_eff.T))

    def effective(self, state: SLMState) -> Array:
        return state.w_eff


__all__ = ["SLMCrossbar", "SLMInstance", "SLMState"]
