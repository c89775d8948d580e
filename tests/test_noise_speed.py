"""Noise at the price of a matmul (docs/noise_speed.md): the per-read generator,
the one-product SLM read and the floor stop keep the physics.

The references are independent: the photocurrent and the noise variance are
computed in SI units with numpy from the programmed transmissions, the normal
quantiles come from scipy, and the floor is the one a full-budget run of the
same chip settles on.
"""

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr, ndtri

from anasim.circuits import CircuitSpec, build, init_params, load_circuit, relax
from anasim.circuits.effective import relaxation_eta
from anasim.circuits.relaxation import floor_quantile, floor_scale, floor_variance
from anasim.devices import SLMCrossbar, ideal_profile, load_profile
from anasim.devices.noise import counter_normal, normal_table

REPO = Path(__file__).resolve().parents[1]
Q, K = 1.602176634e-19, 1.380649e-23


# --- the generator ------------------------------------------------------------------------

def test_normal_table_is_the_normal_quantiles():
    t = normal_table("float64")
    n = t.size
    assert n == 2 ** 16
    # equiprobable midpoint quantiles, rescaled by a factor within 2e-4 of 1
    raw = ndtri((np.arange(n) + 0.5) / n)
    scale = t[n // 4] / raw[n // 4]
    assert abs(scale - 1) < 2e-4
    np.testing.assert_allclose(t, scale * raw, rtol=1e-12, atol=1e-12)
    assert abs(np.mean(t)) < 1e-12 and abs(np.mean(t * t) - 1) < 1e-12


def test_counter_normal_moments_and_distribution():
    n = 400_000
    z = np.asarray(counter_normal(jax.random.key(11), (n,)), np.float64)
    assert z.dtype == np.float64 and z.shape == (n,)
    se = 1 / math.sqrt(n)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1) < 5 * math.sqrt(2) * se
    assert abs(np.mean(z ** 4) - 3) < 5 * math.sqrt(96) * se      # Var(z⁴) = 105 − 9 = 96
    # the empirical distribution function against Φ (Kolmogorov bound at the 1e-4 level)
    zs = np.sort(z)
    grid = np.linspace(-3.5, 3.5, 57)
    ecdf = np.searchsorted(zs, grid) / n
    assert np.max(np.abs(ecdf - ndtr(grid))) < 2.2 / math.sqrt(n)


def test_counter_normal_is_reproducible_and_keyed():
    a = counter_normal(jax.random.key(1), (3, 5))
    b = counter_normal(jax.random.key(1), (3, 5))
    c = counter_normal(jax.random.key(2), (3, 5))
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))
    assert counter_normal(jax.random.PRNGKey(1), (4,)).shape == (4,)           # raw uint32 keys too
    assert counter_normal(jax.random.key(1), (0, 3)).shape == (0, 3)
    assert counter_normal(jax.random.key(1), (7,), jnp.bfloat16).dtype == jnp.bfloat16


def _engine_keys(key, n_iters, layer=1, n_layers=5):
    """The key of one forward read of ``layer`` in iterations 0 … n−1, as the layered engine derives it."""
    return [jax.random.split(jax.random.split(jax.random.fold_in(key, i), n_layers)[layer], 4)[0]
            for i in range(n_iters)]


def test_consecutive_reads_are_uncorrelated():
    m, n_iters = 2000, 101
    keys = _engine_keys(jax.random.key(5), n_iters)
    z = np.stack([np.asarray(counter_normal(k, (m,)), np.float64) for k in keys])   # (iterations, outputs)
    pairs = (n_iters - 1) * m
    bound = 4.5 / math.sqrt(pairs)           # |corr| of independent draws: std 1/√pairs
    assert abs(np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]) < bound
    # the same output in consecutive reads, and neighbouring outputs of one read
    per_output = np.mean(z[:-1] * z[1:], axis=0)
    assert abs(per_output.mean()) < 4.5 / math.sqrt(pairs)
    assert abs(np.corrcoef(z[:, :-1].ravel(), z[:, 1:].ravel())[0, 1]) < 4.5 / math.sqrt(n_iters * (m - 1))
    # the two halves of one 32-bit word (outputs k and k + m/2)
    h = m // 2
    assert abs(np.corrcoef(z[:, :h].ravel(), z[:, h:].ravel())[0, 1]) < 4.5 / math.sqrt(n_iters * h)


# --- the SLM read ---------------------------------------------------------------------------

def _slm(**kw):
    base = dict(w_max=0.5, bits=0, extinction_ratio=10.0, source_power_w=1e-4, loss_db=3.0,
                responsivity_a_per_w=0.8, dark_current_a=1e-9, bandwidth_hz=1e8, temperature_k=300.0,
                feedback_resistance_ohm=1e3, pixel_gain_sigma=0.02, crosstalk_detector=0.05)
    base.update(kw)
    return SLMCrossbar(**base)


def _variance_si(dev, state, x):
    """a·s + b from the programmed transmissions in SI units (amperes² → normalized²)."""
    n_out = state.w_eff.shape[0]
    p_px = dev.source_power_w * 10 ** (-dev.loss_db / 10) / n_out
    i_u = dev.responsivity_a_per_w * p_px / dev.w_max
    # realized transmissions of both paths: s_eff / w_max (gains, crosstalk folded in)
    i_tot = dev.responsivity_a_per_w * p_px * (np.abs(np.asarray(x, np.float64)) @ (np.asarray(state.s_eff, np.float64).T / dev.w_max))
    var_i = (2 * Q * dev.bandwidth_hz * (i_tot + 2 * dev.dark_current_a)
             + 2 * 4 * K * dev.temperature_k * dev.bandwidth_hz / dev.feedback_resistance_ohm)
    return var_i / i_u ** 2


@pytest.mark.parametrize("sign", ["positive", "negative", "mixed"])
def test_read_variance_matches_shot_and_thermal_noise(sign):
    """Sample variance of the counter-generator reads against a·s + b, within 2 % over 1.2e5 draws
    (the one-product branch for one-sign inputs, the two-product branch for mixed signs)."""
    dev = _slm()
    n_out, n_in = 8, 12
    w = jax.random.uniform(jax.random.key(0), (n_out, n_in), jnp.float32, -0.2, 0.2)
    state = dev.program(dev.fabricate(jax.random.key(1), w.shape), jax.random.key(2), w)
    x = jax.random.uniform(jax.random.key(3), (n_in,), jnp.float32, 0.1, 1.0)
    x = {"positive": x, "negative": -x, "mixed": x * jnp.where(jnp.arange(n_in) % 2 == 0, 1.0, -1.0)}[sign]
    var = _variance_si(dev, state, x)
    draws = 15000
    ys = np.asarray(jax.jit(jax.vmap(lambda k: dev.mvm(state, x, k)))(jax.random.split(jax.random.key(4), draws)),
                    np.float64)
    mean = np.asarray(x, np.float64) @ np.asarray(state.w_eff, np.float64).T
    np.testing.assert_allclose(ys.mean(0), mean, atol=5 * math.sqrt(var.max() / draws))
    z = (ys - ys.mean(0)) / np.sqrt(var)
    assert z.size >= 1e5
    assert abs(z.var() - 1) < 0.02
    # the variance the read reports is the same a·s + b
    _, v = dev.read(state, x, jax.random.key(5))
    np.testing.assert_allclose(np.asarray(v, np.float64), var, rtol=1e-4)


def test_read_variance_is_a_s_plus_b_for_inputs_of_any_sign():
    """The reported variance is a·(|x| @ Sᵀ) + b, computed here in float64 from the
    realized sum matrix, for inputs of one sign, the other and mixed signs (the
    ``x⁻`` channel lights the swapped paths: shot noise sees |x|)."""
    dev = _slm()
    w = jax.random.uniform(jax.random.key(0), (16, 24), jnp.float32, -0.2, 0.2)
    state = dev.program(dev.fabricate(jax.random.key(1), w.shape), jax.random.key(2), w)
    x = jax.random.uniform(jax.random.key(3), (5, 24), jnp.float32)
    a, b = dev.noise_coefficients(16)
    mixed = x * jnp.where(jnp.arange(24) % 3 == 0, -1.0, 1.0)
    for xi in (x, -x, mixed):
        want = b + a * (np.abs(np.asarray(xi, np.float64)) @ np.asarray(state.s_eff, np.float64).T)
        for d in (dev, dataclasses.replace(dev, noise_draw="threefry")):
            _, v = d.read(state, xi, jax.random.key(6))
            np.testing.assert_allclose(np.asarray(v, np.float64), want, rtol=1e-5)


def test_threefry_draw_is_the_earlier_stream():
    """noise_draw = "threefry": y = W x + √(a·s + b) · jax.random.normal(key), computed by hand."""
    dev = _slm(noise_draw="threefry")
    w = jax.random.uniform(jax.random.key(0), (6, 8), jnp.float32, -0.2, 0.2)
    state = dev.program(dev.fabricate(jax.random.key(1), w.shape), jax.random.key(2), w)
    x = jax.random.uniform(jax.random.key(3), (4, 8), jnp.float32)
    a, b = dev.noise_coefficients(6)
    want = x @ state.w_eff.T + jnp.sqrt(b + a * (x @ state.s_eff.T)) * jax.random.normal(jax.random.key(7), (4, 6))
    np.testing.assert_array_equal(np.asarray(dev.mvm(state, x, jax.random.key(7))), np.asarray(want))
    with pytest.raises(ValueError, match="noise_draw"):
        _slm(noise_draw="philox")


def test_noiseless_slm_reads_exactly():
    dev = _slm(bandwidth_hz=0.0)
    w = jax.random.uniform(jax.random.key(0), (6, 8), jnp.float32, -0.2, 0.2)
    state = dev.program(dev.fabricate(jax.random.key(1), w.shape), jax.random.key(2), w)
    assert state.w_s.shape == (0, 8)
    x = jax.random.uniform(jax.random.key(3), (4, 8), jnp.float32)
    y, var = dev.read(state, x, jax.random.key(4))
    assert var is None
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x @ state.w_eff.T))


# --- the floor stop ------------------------------------------------------------------------

SPEC = CircuitSpec(sizes=(64, 48, 48, 10), lam=0.0, activations=("tempered_hard_sigmoid",),
                   backward="copy", eta=0.5, schedule="async", max_iters=200, tol=1e-4, init_scale=3.0)


def _chip(spec, profile):
    return build(spec, profile, init_params(spec, jax.random.key(0)), jax.random.key(1))


def _x():
    return jax.random.uniform(jax.random.key(2), (32, SPEC.sizes[0]), dtype=jnp.float32)


def test_floor_quantile_closed_form():
    # n = 1: the p quantile of |N(0, 1)| is Φ⁻¹((1 + p)/2)
    assert floor_quantile(1, 0.5) == pytest.approx(0.6744897501960817, rel=1e-12)
    assert floor_quantile(1, 0.99) == pytest.approx(2.5758293035489004, rel=1e-12)
    # the largest of n draws is below z with probability (2Φ(z) − 1)^n = p
    for n in (10, 1000, 10 ** 6):
        z = floor_quantile(n)
        assert (2 * ndtr(z) - 1) ** n == pytest.approx(0.99, rel=1e-9)
    with pytest.raises(ValueError):
        floor_quantile(0)


@pytest.mark.parametrize("eta", [0.5, 1.0, 1.5])
def test_floor_variance_is_the_damped_iterations_stationary_spread(eta):
    """A unit in its linear region, s ← (1 − η) s + η g (t + ε) with a fresh read noise ε of
    variance v at every step: its residual g (t + ε') − s, simulated in numpy, spreads with the
    variance floor_variance predicts (the state keeps η/(2 − η) v, the next read adds v)."""
    g, v, steps = 0.5, 0.3, 400_000
    rng = np.random.default_rng(7)
    eps = rng.normal(0.0, math.sqrt(v), steps + 1)
    s, gaps = 0.0, np.empty(steps)
    for i in range(steps):
        gaps[i] = g * (1.0 + eps[i]) - s        # the residual the loop measures before the update
        s = (1.0 - eta) * s + eta * g * (1.0 + eps[i])
    stationary = gaps[1000:]                       # past the transient from s = 0
    assert np.var(stationary) == pytest.approx(float(floor_variance(v, g, eta)), rel=0.02)
    assert float(floor_scale(v, g, eta)) == pytest.approx(math.sqrt(float(floor_variance(v, g, eta))), rel=1e-6)


@pytest.mark.slow
def test_floor_stop_ends_within_the_full_runs_residual():
    chip = _chip(SPEC, load_profile(REPO / "devices/slm-10bit.toml"))
    for nudge, target in (((0.0, 0.0), None), ((0.05, 0.05), jax.nn.one_hot(jnp.arange(32) % 10, 10))):
        full = relax(SPEC, chip, _x(), jax.random.key(3), nudge=nudge, target=target)
        assert int(full.iterations) == SPEC.max_iters and not bool(full.converged)
        trace = np.asarray(full.trace)
        floor = np.median(trace[SPEC.max_iters // 2:])       # the stationary part of the full run
        early = relax(dataclasses.replace(SPEC, floor_stop=True), chip, _x(), jax.random.key(3), nudge=nudge,
                      target=target)
        n = int(early.iterations)
        assert n < SPEC.max_iters // 4
        assert bool(early.oscillating) and not bool(early.converged)
        assert float(early.residual) <= 1.5 * floor
        # the early run is the full run cut short: same noise, same states up to the stop
        np.testing.assert_array_equal(np.asarray(early.trace[:n]), trace[:n])


def test_a_layers_two_reads_take_one_draw_of_their_summed_variance():
    """A layer fed by the coupling below and the one above draws its read noise once,
    of the summed variance (the two detectors' noises are independent Gaussians).
    After one synchronous iteration from a fixed state, the middle layer's
    pre-activation spreads by η²·(var_below + var_above), both computed in SI units
    from the programmed transmissions: within 2 % over 1.28e5 draws, and the two-draw
    path of earlier versions (``noise_draw = "threefry"``) has the same mean and spread."""
    spec = CircuitSpec(sizes=(12, 16, 16, 10), lam=0.0, activations=("tempered_hard_sigmoid",), backward="copy",
                       eta=0.5, schedule="sync", max_iters=2, tol=1e-9, init_scale=3.0)
    # two iterations: the run returns the state its last residual was measured on, one update on
    dev = _slm()
    chip = _chip(spec, dataclasses.replace(ideal_profile(), coupling=dev))
    x = jax.random.uniform(jax.random.key(2), (8, 12), dtype=jnp.float32)
    start = relax(dataclasses.replace(spec, max_iters=20), chip, x, jax.random.key(3))
    keys = jax.random.split(jax.random.key(4), 1000)

    def middle(d):
        hw = dataclasses.replace(chip, profile=dataclasses.replace(chip.profile, coupling=d))
        a = jax.jit(jax.vmap(lambda k: relax(spec, hw, x, k, state0=start).a_plus[1]))(keys)
        return np.asarray(a, np.float64).reshape(len(keys), 8, 16)

    s0, s2 = (np.asarray(start.s_plus[k], np.float64).reshape(8, -1) for k in (0, 2))
    # the backward array sees (2λ − 1)·s = −s at λ = 0; shot noise sees |x|
    var = spec.eta ** 2 * (_variance_si(dev, chip.forward[0], s0) + _variance_si(dev, chip.backward[1], -s2))
    one, two = middle(dev), middle(dataclasses.replace(dev, noise_draw="threefry"))
    for a in (one, two):
        z = (a - a.mean(0)) / np.sqrt(var)
        assert z.size >= 1e5 and abs(z.var() - 1) < 0.02
    np.testing.assert_allclose(one.mean(0), two.mean(0), atol=5 * math.sqrt(var.max() / len(keys)))


def test_floor_stop_changes_nothing_without_noise():
    spec = dataclasses.replace(SPEC, floor_stop=True)
    quiet = load_profile(REPO / "devices/slm-10bit.toml")
    quiet = dataclasses.replace(quiet, coupling=dataclasses.replace(quiet.coupling, bandwidth_hz=0.0))
    for profile in (ideal_profile(), quiet):
        chip = _chip(SPEC, profile)
        a = relax(SPEC, chip, _x(), jax.random.key(3))
        b = relax(spec, chip, _x(), jax.random.key(3))
        assert bool(a.converged) and bool(b.converged)
        assert int(a.iterations) == int(b.iterations)
        for sa, sb in zip(a.s_plus, b.s_plus):
            np.testing.assert_array_equal(np.asarray(sa), np.asarray(sb))


def test_floor_stop_is_read_from_the_spec_file(tmp_path):
    text = (REPO / "circuits/tiny.toml").read_text()
    f = tmp_path / "c.toml"
    f.write_text(text.replace("[relaxation]", "[relaxation]\nfloor_stop = true", 1))
    assert load_circuit(f).floor_stop is True
    assert load_circuit(REPO / "circuits/skew-4x500-slm.toml").floor_stop is True
    assert load_circuit(REPO / "circuits/tiny.toml").floor_stop is False


# --- η inside the jit -----------------------------------------------------------------------

def test_eta_auto_inside_the_relaxation_is_the_eta_passed_in():
    spec = dataclasses.replace(SPEC, eta_auto=True, backward="transpose", tol=1e-5)
    chip = _chip(spec, ideal_profile())
    eta = relaxation_eta(spec, chip)
    a = relax(spec, chip, _x(), jax.random.key(3))
    b = relax(spec, chip, _x(), jax.random.key(3), eta=eta)
    assert int(a.iterations) == int(b.iterations)
    for sa, sb in zip(a.s_plus, b.s_plus):
        np.testing.assert_allclose(np.asarray(sa), np.asarray(sb), atol=1e-6)


# --- resuming across processes (the SLM column runs over several sittings) -------------------

def test_engine_identity_does_not_depend_on_string_hashing():
    """A checkpoint's identity holds the engine; its abilities are a frozenset, whose repr
    follows the process's string hashing: two processes must still agree."""
    import os
    import subprocess
    import sys

    code = ("from anasim.circuits.layered import LayeredEngine; "
            "from anasim.learning.controller import engine_identity; print(engine_identity(LayeredEngine()))")
    out = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "JAX_PLATFORMS": "cpu"}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                           check=True)
        out.add(r.stdout.strip())
    assert len(out) == 1 and "abilities=['complex_nudge', 'jit', 'settling', 'warm_start']" in out.pop()
