"""SLM optical crossbar: levels, leak floor, crosstalk folding, photodetector noise."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import convolve2d

from anasim.devices import IdealCoupling, SLMCrossbar


@pytest.fixture(autouse=True)
def _float64():
    """These tests check the device physics in float64 (their own arrays are float64):
    float64 on for each test (the library leaves the global flag alone)."""
    with jax.enable_x64(True):
        yield

K = 1.380649e-23
Q = 1.602176634e-19


def _w(shape, scale=0.3, seed=1, dtype=jnp.float64):
    return (scale * jax.random.normal(jax.random.key(seed), shape)).astype(dtype)


@settings(max_examples=10)
@given(bits=st.sampled_from([1, 3, 10]), er=st.sampled_from([2.0, 20.0]), scale=st.floats(0.01, 2.0),
       seed=st.integers(0, 1000))
def test_levels_and_no_negative_transmission(bits, er, scale, seed):
    dev = SLMCrossbar(w_max=0.5, bits=bits, extinction_ratio=er)
    w = _w((6, 8), scale, seed)  # some targets beyond the range on purpose
    st_ = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    t_min = 1 / er
    for t in (np.asarray(st_.t_pos), np.asarray(st_.t_neg)):
        assert t.min() >= t_min * (1 - 1e-12) > 0
        assert t.max() <= 1 + 1e-12
    levels = np.unique(np.concatenate([np.ravel(st_.t_pos), np.ravel(st_.t_neg)]))
    assert len(np.unique(np.round(levels, 9))) <= 2**bits


@settings(max_examples=10)
@given(bits=st.sampled_from([1, 3, 10]), er=st.sampled_from([2.0, 20.0, 1e4]), seed=st.integers(0, 1000))
def test_quantization_error_at_most_half_lsb(bits, er, seed):
    dev = SLMCrossbar(w_max=0.5, bits=bits, extinction_ratio=er)
    w_lim = 0.5 * (1 - 1 / er)  # representable range of |w|
    w = jnp.clip(_w((6, 8), 0.3, seed), -w_lim, w_lim)
    st_ = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    lsb = 0.5 * (1 - 1 / er) / (2**bits - 1)
    assert np.abs(np.asarray(dev.effective(st_) - w)).max() <= lsb / 2 * (1 + 1e-9)


def test_zeroed_slm_equals_the_ideal():
    dev = SLMCrossbar(w_max=2.0, bits=0)  # infinite extinction, no crosstalk, no noise
    w = _w((6, 8), 0.3)
    x = jax.random.uniform(jax.random.key(2), (4, 8), minval=-1, maxval=1)  # signed inputs too
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    ideal = IdealCoupling()
    si = ideal.program(None, None, w)
    np.testing.assert_allclose(dev.effective(s), w, rtol=0, atol=1e-15)
    np.testing.assert_allclose(dev.mvm(s, x, jax.random.key(3)), ideal.mvm(si, x, None), rtol=1e-13, atol=1e-14)
    # a noiseless read draws no random numbers: one matmul only
    jaxpr = str(jax.make_jaxpr(dev.mvm)(s, x, jax.random.key(3)))
    assert "random" not in jaxpr and jaxpr.count("dot_general") == 1


def test_crosstalk_and_loss_fold_into_the_realized_matrix():
    w = _w((6, 8), 0.15)
    c = 0.01
    # pixel crosstalk: a linear blur of both arrays, hence of W (leak floors cancel in the interior)
    dev = SLMCrossbar(w_max=1.0, bits=0, crosstalk_pixel=c)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    kern = np.array([[0, c, 0], [c, 1 - 4 * c, c], [0, c, 0]])
    np.testing.assert_allclose(dev.effective(s), convolve2d(np.asarray(w), kern, mode="same"), atol=1e-14)
    # detector crosstalk: W_eff = M W with M tridiagonal (1 − 2c, c)
    dev = SLMCrossbar(w_max=1.0, bits=0, crosstalk_detector=c)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    m = (1 - 2 * c) * np.eye(6) + c * (np.eye(6, k=1) + np.eye(6, k=-1))
    np.testing.assert_allclose(dev.effective(s), m @ np.asarray(w), atol=1e-14)
    # path crosstalk: a fraction c of each path on the other detector: W_eff = (1 − 2c) W
    dev = SLMCrossbar(w_max=1.0, bits=0, extinction_ratio=20.0, crosstalk_path=c, loss_db=10.0)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    np.testing.assert_allclose(dev.effective(s), (1 - 2 * c) * np.asarray(w), atol=1e-14)


@pytest.mark.parametrize("shape", [(6, 8), (1, 5), (7, 1)])
def test_every_optical_error_at_once_matches_the_paths_mixed_one_by_one(shape):
    """Gains, fringing, fan-out shares, detector and path crosstalk together: the signal and
    photocurrent arrays equal a numpy reference that sends each signed path through the
    optics step by step (the device passes the paths' difference and sum through one stencil)."""
    cp, cd, cpath, t_min = 0.01, 0.05, 0.004, 0.05
    dev = SLMCrossbar(w_max=0.5, bits=0, extinction_ratio=1 / t_min, pixel_gain_sigma=0.02, crosstalk_pixel=cp,
                      crosstalk_detector=cd, crosstalk_path=cpath, fanout_sigma=0.05)
    w = _w(shape, 0.1)
    inst = dev.fabricate(jax.random.key(4), shape)
    s = dev.program(inst, jax.random.key(0), w)
    wn, g, f = np.asarray(w), np.asarray(inst.pixel_gain), np.asarray(inst.fanout)
    t = t_min + np.abs(wn) / 0.5
    paths = [g[0] * np.where(wn > 0, t, t_min), g[1] * np.where(wn < 0, t, t_min)]
    kern = np.array([[0, cp, 0], [cp, 1 - 4 * cp, cp], [0, cp, 0]])
    n = shape[0]
    m = (1 - 2 * cd) * np.eye(n) + cd * (np.eye(n, k=1) + np.eye(n, k=-1))
    paths = [m @ (f[:, None] * convolve2d(a, kern, mode="same")) for a in paths]
    pos, neg = (1 - cpath) * paths[0] + cpath * paths[1], (1 - cpath) * paths[1] + cpath * paths[0]
    np.testing.assert_allclose(np.asarray(s.w_eff), 0.5 * (pos - neg), rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.asarray(s.s_eff), 0.5 * (pos + neg), rtol=0, atol=1e-15)


def test_gain_nonuniformity_unbalances_the_leak_floor_and_fanout_conserves_power():
    dev = SLMCrossbar(w_max=1.0, bits=0, extinction_ratio=20.0, pixel_gain_sigma=0.05, fanout_sigma=0.1)
    inst = dev.fabricate(jax.random.key(5), (6, 8))
    assert float(jnp.mean(inst.fanout)) == pytest.approx(1.0, abs=1e-12)
    s = dev.program(inst, jax.random.key(0), jnp.zeros((6, 8)))
    # a zero target realizes the leak times the gain difference of the two paths
    expect = 0.05 * inst.fanout[:, None] * (inst.pixel_gain[0] - inst.pixel_gain[1])
    np.testing.assert_allclose(dev.effective(s), expect, atol=1e-15)


def test_photodetector_noise_std_matches_closed_form():
    n_out, n_in = 6, 8
    p_src, loss_db, resp, i_dark, df, temp, r_f, w_max = 1e-4, 3.0, 0.8, 1e-9, 1e8, 300.0, 1e3, 0.5
    dev = SLMCrossbar(w_max=w_max, bits=0, extinction_ratio=10.0, source_power_w=p_src, loss_db=loss_db,
                      responsivity_a_per_w=resp, dark_current_a=i_dark, bandwidth_hz=df,
                      temperature_k=temp, feedback_resistance_ohm=r_f)
    w = _w((n_out, n_in), 0.1)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    x = jnp.linspace(0.1, 1.0, n_in)
    # independent SI computation: photocurrents of the two detectors of each row
    p_px = p_src * 10 ** (-loss_db / 10) / n_out
    i_pos = resp * p_px * (np.asarray(s.t_pos) @ np.asarray(x))
    i_neg = resp * p_px * (np.asarray(s.t_neg) @ np.asarray(x))
    var_i = 2 * Q * df * (i_pos + i_neg + 2 * i_dark) + 2 * 4 * K * temp * df / r_f
    sigma = np.sqrt(var_i) * w_max / (resp * p_px)  # amperes → normalized units
    np.testing.assert_allclose(dev.noise_std(s, x), sigma, rtol=1e-10)
    keys = jax.random.split(jax.random.key(9), 20000)
    ys = np.asarray(jax.vmap(lambda k: dev.mvm(s, x, k))(keys))
    np.testing.assert_allclose(ys.mean(0), np.asarray(x @ w.T), atol=5 * sigma.max() / math.sqrt(20000))
    assert np.all(np.abs(ys.std(0) / sigma - 1) < 4 / math.sqrt(2 * 20000))


def test_float32_jit_seeds_and_cost_with_noise():
    dev = SLMCrossbar(extinction_ratio=20.0, bandwidth_hz=25e6, feedback_resistance_ohm=166.0,
                      dark_current_a=1e-10, pixel_gain_sigma=0.01, crosstalk_detector=0.05)
    w = _w((6, 8), 0.1, dtype=jnp.float32)
    s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(0), w)
    assert s.w_eff.dtype == jnp.float32
    x = jax.random.uniform(jax.random.key(1), (4, 8), jnp.float32)
    f = jax.jit(dev.mvm)
    a, b, c = f(s, x, jax.random.key(2)), f(s, x, jax.random.key(2)), f(s, x, jax.random.key(3))
    assert a.dtype == jnp.float32
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))
    # two products: the signal, and the photocurrent that sets the shot noise (either stream)
    assert str(jax.make_jaxpr(dev.mvm)(s, x, jax.random.key(2))).count("dot_general") == 2
    old = dataclasses.replace(dev, noise_draw="threefry")
    assert str(jax.make_jaxpr(old.mvm)(s, x, jax.random.key(2))).count("dot_general") == 2


def test_writes_return_the_fabricated_parts_they_were_given():
    """A write changes the programmed state only: the fabricated parts come back as the
    caller's own arrays (a compiled function would otherwise copy them on every write),
    through ``reprogram`` and through a training step."""
    from anasim.circuits import CircuitSpec, build, init_params, reprogram
    from anasim.learning import TrainConfig
    from anasim.learning.optim import optimizer, optimizer_settings
    from anasim.learning.step import StepKind, train_step
    from anasim.circuits.engine import engine_for
    from anasim.devices import DeviceProfile

    dev = SLMCrossbar(pixel_gain_sigma=0.02, crosstalk_pixel=0.01, bandwidth_hz=25e6,
                      feedback_resistance_ohm=166.0)
    profile = DeviceProfile(name="slm", coupling=dev)
    spec = CircuitSpec(sizes=(12, 8, 4), lam=0.0, backward="copy", max_iters=20, name="fwd")
    params = init_params(spec, jax.random.key(0))
    hw = build(spec, profile, params, jax.random.key(1))
    params2 = jax.tree_util.tree_map(lambda a: 0.5 * a, params)
    new = reprogram(spec, hw, params2, jax.random.key(2))
    assert new.input_inst.pixel_gain is hw.input_inst.pixel_gain
    assert all(a is b for a, b in zip(jax.tree_util.tree_leaves(new.forward_inst),
                                      jax.tree_util.tree_leaves(hw.forward_inst), strict=True))
    assert not np.array_equal(np.asarray(new.forward[0].w_eff), np.asarray(hw.forward[0].w_eff))

    # a rate large enough that the step moves some 10-bit levels
    cfg = TrainConfig(epochs=1, batch_size=4, train_size=4, test_size=4, learning_rate=50.0)
    engine = engine_for(spec)
    settings = optimizer_settings(spec, cfg, params, 1, [1])
    opt_state = optimizer(settings).init(params)
    x = jax.random.uniform(jax.random.key(3), (4, 12))
    y = jnp.eye(4)[jnp.arange(4)]
    out = train_step(spec, StepKind.of(cfg), engine, params, opt_state, settings, hw, None, x, y,
                     jnp.asarray(0.1), jnp.asarray(0.0), jax.random.key(4))
    stepped, hw2 = out[2], out[3]
    assert hw2 is None
    assert stepped.backward_inst[0].pixel_gain is hw.backward_inst[0].pixel_gain
    # the step wrote its new couplings (whether a small update moves a 10-bit level is
    # the quantizer's business): the chip holds what programming them gives
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(out[0]),
                                                        jax.tree_util.tree_leaves(params)))
    written = reprogram(spec, hw, out[0], jax.random.key(5))    # SLM pixels are set digitally: any key
    arrays = lambda h: [np.asarray(s.w_eff) for s in (h.input_state, *h.forward, *h.backward)]  # noqa: E731
    assert any(not np.array_equal(a, b) for a, b in zip(arrays(written), arrays(hw)))   # levels moved
    for got, want in zip(arrays(stepped), arrays(written)):
        np.testing.assert_array_equal(got, want)
