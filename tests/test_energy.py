"""Energy and time of each device against hand computations, and the step accounting."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import pytest

from anasim.circuits import CircuitSpec
from anasim.devices import (
    ADC,
    DAC,
    DeviceProfile,
    GyratorArray,
    IdealConverter,
    IdealCoupling,
    ResistiveCrossbar,
    SLMCrossbar,
    ideal_profile,
    iteration_time_s,
)
from anasim.learning import cost
from anasim.learning.cost import CostMeter


def test_slm_read_write_formulas():
    d = SLMCrossbar(source_power_w=2e-3, bandwidth_hz=25e6, wall_plug_efficiency=0.2, receiver_power_w=1e-3,
                    frame_rate_hz=500.0, slm_power_w=3.0)
    t = 1 / (2 * 25e6)                                            # 20 ns
    assert d.read_time_s() == pytest.approx(20e-9)
    # 30 inputs at full scale: 30 × 2 mW × 20 ns / 0.2 = 6 nJ; 2 × 10 receivers × 1 mW × 20 ns = 0.4 nJ
    assert d.read_energy_j((10, 30)) == pytest.approx(30 * 2e-3 * t / 0.2 + 2 * 10 * 1e-3 * t)
    assert d.read_energy_j((10, 30)) == pytest.approx(6.4e-9)
    # only the lit channels draw source power
    x = jnp.zeros(30).at[:3].set(0.5)
    assert d.read_energy_j((10, 30), x) == pytest.approx(1.5 * 2e-3 * t / 0.2 + 2 * 10 * 1e-3 * t)
    assert d.write_energy_j((10, 30)) == pytest.approx(2 * 3.0 / 500.0)       # one frame per array
    assert d.write_time_s((10, 30)) == pytest.approx(2e-3)
    assert math.isnan(SLMCrossbar().read_time_s())                            # Δf = 0: no band to settle


def test_slm_array_energy_scales_with_width_as_the_formula_says():
    d = SLMCrossbar(bandwidth_hz=1e6)
    e = lambda n_out, n_in: d.read_energy_j((n_out, n_in))   # noqa: E731
    # sources scale with the inputs, receivers with the outputs
    assert e(10, 200) - e(10, 100) == pytest.approx(100 * d.source_power_w * d.read_time_s() / d.wall_plug_efficiency)
    assert e(20, 100) - e(10, 100) == pytest.approx(2 * 10 * d.receiver_power_w * d.read_time_s())


def test_resistive_read_and_write_formulas():
    d = ResistiveCrossbar(g_min_s=10e-6, g_max_s=110e-6, v_read_v=0.2, t_read_s=50e-9, v_write_v=2.0,
                          i_write_a=100e-6, pulse_width_s=10e-9, pulses_full_range=100)
    g = jnp.stack([jnp.full((2, 3), 60e-6), jnp.full((2, 3), 10e-6)])      # G⁺ = 60 µS, G⁻ = 10 µS
    state = d._finish(g, d.fabricate(jax.random.key(0), (2, 3)))
    # 6 pairs × 70 µS × (0.2 V)² × 50 ns
    assert d.read_energy_j((2, 3), 1.0, state) == pytest.approx(6 * 70e-6 * 0.04 * 50e-9, rel=1e-5)
    x = jnp.asarray([1.0, 0.5, 0.0])
    assert d.read_energy_j((2, 3), x, state) == pytest.approx(2 * 70e-6 * 0.04 * 50e-9 * (1 + 0.25), rel=1e-5)
    # transposed read drives the 2 rows
    y = jnp.asarray([1.0, 0.0])
    assert d.read_energy_j((2, 3), y, state, transposed=True) == pytest.approx(3 * 70e-6 * 0.04 * 50e-9, rel=1e-5)
    assert d.read_time_s() == 50e-9
    # write: G⁺ of one device 60 → 80 µS = 20 pulses of 1 µS at 2 V × 100 µA × 10 ns = 2 pJ each
    g2 = g.at[0, 1, 2].set(80e-6)
    new = d._finish(g2, state.instance)
    assert float(d.write_pulses((2, 3), state, new).sum()) == pytest.approx(20, rel=1e-4)
    assert d.write_energy_j((2, 3), state, new) == pytest.approx(20 * 2.0 * 100e-6 * 10e-9, rel=1e-4)
    assert d.write_time_s((2, 3), state, new) == pytest.approx(20 * 10e-9, rel=1e-4)   # one row moves
    # bits > 0: one pulse per level
    q = dataclasses.replace(d, bits=4)
    assert q.pulse_step_s == pytest.approx(100e-6 / 15)


def test_gyrator_read_formula():
    d = GyratorArray(g_max_s=100e-6, c_node_f=100e-15, v_dd_v=1.2, v_ov_v=0.2, w_max=0.5)
    assert d.read_time_s() == pytest.approx(1e-9)                   # C / g_max
    # full scale: 6 links × (100 µS × 0.2 V / 2 = 10 µA) × 1.2 V × 1 ns
    assert d.read_energy_j((2, 3)) == pytest.approx(6 * 10e-6 * 1.2 * 1e-9)
    theta = jnp.full((2, 3), 0.25)                                 # half scale
    st = d.program(d.fabricate(jax.random.key(0), (2, 3)), jax.random.key(1), theta)
    assert d.read_energy_j((2, 3), 1.0, st) == pytest.approx(6 * 5e-6 * 1.2 * 1e-9, rel=1e-5)
    assert d.write_energy_j((2, 3)) == 0.0


def test_converter_walden_formula():
    a = ADC(bits=8, fom_j_per_step=10e-15, sample_rate_hz=50e6)
    assert a.conversion_energy_j() == pytest.approx(10e-15 * 256)
    assert dataclasses.replace(a, enob=6.5).conversion_energy_j() == pytest.approx(10e-15 * 2 ** 6.5)
    assert a.conversion_time_s() == pytest.approx(20e-9)
    assert DAC(bits=6).conversion_energy_j() == pytest.approx(DAC().fom_j_per_step * 64)
    assert math.isnan(IdealConverter().conversion_energy_j()) and IdealConverter().conversion_time_s() == 0.0
    assert math.isnan(IdealCoupling().read_energy_j((2, 3)))


def test_iteration_time_from_physics_and_override():
    p = DeviceProfile(coupling=SLMCrossbar(bandwidth_hz=25e6), dac=DAC(sample_rate_hz=100e6))
    assert iteration_time_s(p) == pytest.approx(20e-9 + 10e-9)
    assert iteration_time_s(dataclasses.replace(p, loop_time_s=5e-9)) == 5e-9
    assert math.isnan(iteration_time_s(ideal_profile()))


SPEC = CircuitSpec(sizes=(6, 4, 3), lam=0.0, activations=("tempered_hard_sigmoid",), eta=0.5, max_iters=10,
                   tol=0.0, name="t")


def _meter(profile, spec=SPEC, rule="dyadic", phases="sequential"):
    return CostMeter(spec, profile, rule, phases)


def test_meter_counts_by_hand_and_is_linear_in_iterations_and_examples():
    dev = GyratorArray()
    p = DeviceProfile(coupling=dev, dac=DAC(bits=8), adc=ADC(bits=8))
    spec = dataclasses.replace(SPEC, backward="gyrator")
    e_read = dev.read_energy_j((4, 6)) + 2 * dev.read_energy_j((3, 4))   # θ_0, θ_1 forward and backward
    assert cost.read_energy_per_iteration(spec, p) == pytest.approx(e_read)
    assert cost.dac_conversions_per_iteration(spec) == 4 + 3
    m = _meter(p, spec)
    m.step(None, None, None, None, iterations=10, compartment_iterations=15, batch=2)
    e_conv = DAC(bits=8).conversion_energy_j()
    e_adc = ADC(bits=8).conversion_energy_j()
    want_conv = 2 * ((15 * 7 + 2 * 6) * e_conv + (1 * 2 * 7 + 3) * e_adc)
    got = m.metrics()
    assert got["energy_arrays_j"] == pytest.approx(2 * 15 * e_read)
    assert got["energy_converters_j"] == pytest.approx(want_conv)
    t_iter = dev.read_time_s() + DAC().conversion_time_s()
    assert got["hardware_time_s"] == pytest.approx(2 * (10 * t_iter + 1 * 1e-8 + 2 * 1e-8))
    # linear in iterations and in examples
    m2 = _meter(p, spec)
    m2.step(None, None, None, None, iterations=20, compartment_iterations=30, batch=2)
    m3 = _meter(p, spec)
    m3.step(None, None, None, None, iterations=10, compartment_iterations=15, batch=6)
    assert m2.metrics()["energy_arrays_j"] == pytest.approx(2 * got["energy_arrays_j"])
    assert m3.metrics()["energy_arrays_j"] == pytest.approx(3 * got["energy_arrays_j"])
    assert m3.metrics()["digital_energy_j"] == pytest.approx(3 * got["digital_energy_j"])
    assert got["digital_energy_j"] == pytest.approx(2 * 6 * (6 * 4 + 4 * 3) * 400 / 19.5e12)


def test_ideal_profile_energy_is_not_modelled_but_noiseless_device_costs():
    m = _meter(ideal_profile())
    m.step(None, None, None, None, 10, 15, 2)
    got = m.metrics()
    assert math.isnan(got["energy_j"]) and all(math.isnan(got[f"energy_{k}_j"]) for k in cost.PARTS)
    assert got["digital_energy_j"] > 0
    quiet = DeviceProfile(coupling=ResistiveCrossbar(read_noise=0.0, prog_noise=(0.0, 0.0, 0.0)))
    m = _meter(quiet, dataclasses.replace(SPEC, backward="transpose"))
    m.step(None, None, None, None, 10, 15, 2)
    assert m.metrics()["energy_j"] > 0 and m.metrics()["hardware_time_s"] == pytest.approx(2 * 10 * 100e-9)
    assert math.isnan(m.metrics()["energy_converters_j"])          # ideal converters: not modelled


def test_slm_noise_and_energy_trade_through_the_integration_time():
    # Hand computation: R = 0.5 A/W (Si at 850 nm), 1 mW per channel, no loss, 10 rows:
    # P_px = 0.1 mW, one normalized unit I_u = R P_px / w_max = 0.5 × 1e-4 / 0.5 = 1e-4 A.
    d = SLMCrossbar(w_max=0.5, responsivity_a_per_w=0.5, source_power_w=1e-3, dark_current_a=1e-9,
                    temperature_k=300.0, feedback_resistance_ohm=1e3, bandwidth_hz=1e6,
                    wall_plug_efficiency=0.3, receiver_power_w=1e-3)
    a, b = d.noise_coefficients(10)
    # shot: 2 q Δf / I_u = 2 × 1.602176634e-19 × 1e6 / 1e-4
    assert a == pytest.approx(3.204353268e-9, rel=1e-9)
    # dark shot 4 q Δf I_d + thermal 8 k T Δf / R_f, over I_u²:
    # (6.408706536e-22 + 8 × 1.380649e-23 × 300 × 1e6 / 1e3) / 1e-8
    assert b == pytest.approx((6.408706536e-22 + 3.3135576e-17) / 1e-8, rel=1e-9)
    # the read integrates for t = 1/(2Δf) = 500 ns: 20 inputs × 1 mW × t / 0.3 + 2 × 10 × 1 mW × t
    assert d.read_time_s() == pytest.approx(500e-9)
    assert d.read_energy_j((10, 20)) == pytest.approx(20 * 1e-3 * 500e-9 / 0.3 + 20 * 1e-3 * 500e-9)
    # ten times the band: ten times the noise variance, a tenth of the time and energy per read
    f = dataclasses.replace(d, bandwidth_hz=1e7)
    assert f.noise_coefficients(10) == pytest.approx((10 * a, 10 * b), rel=1e-12)
    assert f.read_energy_j((10, 20)) == pytest.approx(d.read_energy_j((10, 20)) / 10)
    # variance × energy per read does not depend on the band: the trade-off is one curve
    for df in (1e5, 1e8, 1e10):
        g = dataclasses.replace(d, bandwidth_hz=df)
        assert g.noise_coefficients(10)[1] * g.read_energy_j((10, 20)) == pytest.approx(
            b * d.read_energy_j((10, 20)), rel=1e-9)
    # Δf = 0: the ideal limit, no noise and no finite read time
    z = dataclasses.replace(d, bandwidth_hz=0.0)
    assert z.noise_coefficients(10) == (0.0, 0.0) and math.isnan(z.read_time_s())


def test_every_energy_and_time_parameter_has_a_unit_and_a_source():
    from anasim.devices.params import energy_sources

    classes = {"slm": SLMCrossbar, "resistive": ResistiveCrossbar, "gyrator": GyratorArray, "adc": ADC, "dac": DAC}
    rows = energy_sources(classes)
    assert {r["part"] for r in rows} == set(classes)
    for r in rows:
        assert r["unit"], f"{r['part']}.{r['name']}: no unit"
        assert len(r["source"]) > 10, f"{r['part']}.{r['name']}: no source"
        # a figure is either cited (a name and a year or a datasheet) or marked assumed
        cited = any(ch.isdigit() for ch in r["source"]) or "datasheet" in r["source"]
        assert cited or "assumed" in r["source"] or "definition" in r["source"], r
    # every parameter an energy or time formula reads is listed
    names = {(r["part"], r["name"]) for r in rows}
    assert {("slm", "source_power_w"), ("slm", "bandwidth_hz"), ("resistive", "v_read_v"),
            ("resistive", "g_max_s"), ("gyrator", "g_max_s")} <= names


def test_digital_references_from_the_datasheets():
    # A100 SXM: 400 W / 19.5 TFLOP/s; H100 SXM: 700 W / 67 TFLOP/s (FP32, dense)
    assert cost.DIGITAL_REFERENCES["A100"][1] == pytest.approx(20.51e-12, rel=1e-3)
    assert cost.DIGITAL_REFERENCES["H100"][1] == pytest.approx(10.45e-12, rel=1e-3)
    spec = CircuitSpec(sizes=(784, 128, 10))
    flops = 6 * (784 * 128 + 128 * 10)
    assert cost.digital_flops_per_example(spec) == flops
    assert cost.digital_energy_j(spec, 3, "H100") == pytest.approx(3 * flops * 700 / 67e12)
    assert cost.digital_energy_j(spec, 3) == pytest.approx(3 * flops * 400 / 19.5e12)
    with pytest.raises(ValueError, match="gpu: expected one of A100, H100, got 'V100'"):
        cost.digital_energy_j(spec, 3, "V100")
