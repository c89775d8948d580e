"""Device profiles: the shipped files load, the ideal one is exact, bad files give one-line errors."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.devices import (
    ADC,
    GyratorArray,
    IdealConverter,
    IdealCoupling,
    ResistiveCrossbar,
    SLMCrossbar,
    ideal_profile,
    iteration_time_s,
    load_profile,
    profile_from_dict,
)
from anasim.errors import AnasimError, ProfileError


@pytest.fixture
def x64():
    """float64 for this test's own JAX computations (the library scopes its own)."""
    with jax.enable_x64(True):
        yield

SHIPPED = ["ideal", "slm-10bit", "reram", "pcm", "gyrator-gmc", "adc-8bit", "slm-10bit-adc8", "slm-10bit-500"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_are_hashable(name, repo_root):
    p = load_profile((repo_root / "devices") / f"{name}.toml")
    assert p.name == name
    hash(p)  # static argument of jitted functions


def test_shipped_values_are_the_cited_figures(repo_root):
    slm = load_profile((repo_root / "devices") / "slm-10bit.toml")
    c = slm.coupling
    assert isinstance(c, SLMCrossbar) and c.bits == 10 and c.t_min == pytest.approx(0.05)
    assert iteration_time_s(slm) == pytest.approx(20e-9)     # 1/(2Δf) at 25 MHz: the AOC's loop
    assert c.responsivity_a_per_w == 1.0 and c.dark_current_a == pytest.approx(1e-10) and c.temperature_k == 300.0
    assert 0.004 <= c.crosstalk_path <= 0.0095 and 0.05 <= c.crosstalk_detector <= 0.07
    reram = load_profile((repo_root / "devices") / "reram.toml").coupling
    assert isinstance(reram, ResistiveCrossbar)
    assert (reram.g_min_s, reram.g_max_s) == (50e-6, 225e-6)
    assert 0.009 <= reram.prog_noise[0] <= 0.058 and reram.read_noise == pytest.approx(0.01)
    pcm = load_profile((repo_root / "devices") / "pcm.toml").coupling
    x = 0.6
    assert 25e-6 * (pcm.prog_noise[0] + pcm.prog_noise[1] * x + pcm.prog_noise[2] * x * x) == pytest.approx(
        (0.26 + 1.97 * x - 1.17 * x * x) * 1e-6, rel=1e-3)
    assert 0.05 <= pcm.drift_nu <= 0.1
    assert isinstance(load_profile((repo_root / "devices") / "gyrator-gmc.toml").coupling, GyratorArray)
    adc = load_profile((repo_root / "devices") / "adc-8bit.toml")
    assert isinstance(adc.adc, ADC) and adc.adc.bits == 8 and isinstance(adc.coupling, IdealCoupling)
    both = load_profile((repo_root / "devices") / "slm-10bit-adc8.toml")  # include: parts merged
    assert both.coupling == c and both.adc == adc.adc and iteration_time_s(both) == iteration_time_s(slm)


@pytest.mark.slow
def test_slm_500_profile_noise(repo_root):
    """slm-10bit-500 (8 mW, 250 kHz) on a 784 → 500 layer: its pixels receive the power
    slm-10bit (2 mW) gives a 784 → 128 layer (8.0 vs 7.8 µW), and every noise source
    scales as √Δf, so its normalized read noise is √(250 kHz / 25 MHz) = 1/10 of that
    (within the 2.5 % power difference); at 25 MHz it is the same as the default's."""
    x = jax.random.uniform(jax.random.key(3), (16, 784))

    def noise(coupling, n_out):
        w = jax.random.uniform(jax.random.key(1), (n_out, 784), minval=-1, maxval=1) / math.sqrt(784)
        s = coupling.program(coupling.fabricate(jax.random.key(0), w.shape), jax.random.key(2), w)
        return float(jnp.mean(coupling.noise_std(s, x)))

    default = load_profile((repo_root / "devices") / "slm-10bit.toml")
    scaled = load_profile((repo_root / "devices") / "slm-10bit-500.toml")
    base = noise(default.coupling, 128)
    assert noise(scaled.coupling, 500) == pytest.approx(base / 10, rel=0.05)
    assert noise(dataclasses.replace(scaled.coupling, bandwidth_hz=25e6), 500) == pytest.approx(base, rel=0.05)
    assert noise(default.coupling, 500) > 2.5 * base
    assert iteration_time_s(scaled) == pytest.approx(2e-6)
    assert dataclasses.replace(scaled.coupling, source_power_w=2e-3, bandwidth_hz=25e6) == default.coupling


def test_slm_profile_noise_is_visible_but_small(repo_root):
    # the derivation in slm-10bit.toml: ≈ 6e-3 normalized per read on a 784 → 128 layer
    dev = load_profile((repo_root / "devices") / "slm-10bit.toml").coupling
    w = jax.random.uniform(jax.random.key(1), (128, 784), minval=-1, maxval=1) / math.sqrt(784)
    x = jax.random.uniform(jax.random.key(3), (16, 784))

    @jax.jit  # one compilation instead of one per eager operation
    def mean_std(w, x):
        s = dev.program(dev.fabricate(jax.random.key(0), w.shape), jax.random.key(2), w)
        return jnp.mean(dev.noise_std(s, x))

    sd = float(mean_std(w, x))
    assert 1e-3 < sd < 1e-2


def test_ideal_profile_is_exact(repo_root, x64):
    for p in (load_profile((repo_root / "devices") / "ideal.toml"), ideal_profile()):
        assert isinstance(p.coupling, IdealCoupling) and isinstance(p.dac, IdealConverter)
        w = jax.random.normal(jax.random.key(0), (5, 7))
        x = jax.random.normal(jax.random.key(1), (3, 7))
        s = p.coupling.program(p.coupling.fabricate(jax.random.key(2), w.shape), jax.random.key(3), w)
        y = p.coupling.mvm(s, x, jax.random.key(4))
        ref = np.einsum("oi,bi->bo", np.asarray(w), np.asarray(x))
        np.testing.assert_allclose(y, ref, rtol=1e-13, atol=1e-14)
        xd = p.dac.convert(p.dac.fabricate(jax.random.key(0), (7,)), x, jax.random.key(1))
        assert np.array_equal(np.asarray(xd), np.asarray(x))


def _write(tmp_path, text, name="p.toml"):
    f = tmp_path / name
    f.write_text(text)
    return f


BAD = [
    ("[slm]\nbits = -1\n", "[slm] bits"),
    ("[slm]\nbits = 4.5\n", "[slm] bits"),
    ("[slm]\nbits = \"ten\"\n", "[slm] bits"),
    ("[slm]\nw_max = nan\n", "[slm] w_max"),
    ("[slm]\npixel_gain_sigma = -0.1\n", "[slm] pixel_gain_sigma"),
    ("[slm]\nbitz = 10\n", "[slm] bitz"),
    ("[resistive]\nsoft_bounds = 1\n", "[resistive] soft_bounds"),
    ("[resistive]\ng_min_s = 3e-4\ng_max_s = 1e-4\n", "[resistive]"),
    ("[resistive]\nprog_noise = [0.1, 0.2]\n", "[resistive] prog_noise"),
    ("[resistive]\nread_noise = inf\n", "[resistive] read_noise"),
    ("[gyrator]\nepsilon = true\n", "[gyrator] epsilon"),
    ("[gyrator]\nbits = 1\n", "[gyrator]"),
    ("[adc]\nbits = 8\nv_min = 1.0\nv_max = 0.0\n", "[adc]"),
    ("[dac]\nnoise_lsb = nan\n", "[dac] noise_lsb"),
    ("[profile]\nloop_time_s = -1e-9\n", "[profile] loop_time_s"),
    ("[profile]\ncolour = \"red\"\n", "[profile] colour"),
    ("[optics]\nbits = 3\n", "optics"),
    ("slm = 3\n", "[slm]"),
    ("[slm]\n[resistive]\n", "more than one coupling"),
    ("[slm\nbits = 3\n", "not valid TOML"),
    ("include = [\"nope.toml\"]\n", "nope.toml"),
]


@pytest.mark.parametrize("text,where", BAD)
def test_bad_profiles_fail_with_one_line_naming_file_and_key(tmp_path, text, where):
    f = _write(tmp_path, text)
    with pytest.raises(ProfileError) as err:
        load_profile(f)
    msg = str(err.value)
    assert "\n" not in msg and str(f) in msg and where in msg
    assert isinstance(err.value, AnasimError)


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(tmp_path / "absent.toml")


def test_include_is_relative_to_the_file_and_the_file_wins(tmp_path):
    (tmp_path / "parts").mkdir()
    _write(tmp_path / "parts", "[adc]\nbits = 6\nnoise_lsb = 0.5\n[profile]\nloop_time_s = 1e-9\n", "adc.toml")
    f = _write(tmp_path, "include = [\"parts/adc.toml\"]\n[adc]\nnoise_lsb = 0.1\n[slm]\nbits = 8\n")
    p = load_profile(f)
    assert p.adc == ADC(bits=6, noise_lsb=0.1) and p.coupling == SLMCrossbar(bits=8)
    assert p.loop_time_s == 1e-9 and p.name == "p"
    _write(tmp_path, "include = [\"q.toml\"]\n", "q.toml")
    with pytest.raises(ProfileError, match="cycle"):
        load_profile(tmp_path / "q.toml")


def test_profile_from_dict_defaults_and_extinction_inf():
    p = profile_from_dict({"slm": {"extinction_ratio": math.inf}}, source="inline")
    assert p.coupling.t_min == 0.0 and p.name == "inline"
    assert profile_from_dict({}).coupling == IdealCoupling()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["slm-10bit-adc8", "gyrator-gmc"])
def test_shipped_parts_follow_the_contract_in_float32_under_jit(name, repo_root):
    p = load_profile((repo_root / "devices") / f"{name}.toml")
    dev = p.coupling
    n_out, n_in = 5, 7
    w = (0.1 * jax.random.normal(jax.random.key(0), (n_out, n_in))).astype(jnp.float32)
    x = jax.random.uniform(jax.random.key(1), (3, n_in), jnp.float32)

    @jax.jit
    def run(w, x, key):
        k = jax.random.split(key, 6)
        s = dev.program(dev.fabricate(k[0], (n_out, n_in)), k[1], w)
        y = dev.mvm(s, x, k[2])
        back = dev.mvm_t(s, y, k[3]) if hasattr(dev, "mvm_t") else x
        conv = p.adc.convert(p.adc.fabricate(k[4], (n_out,)), jnp.clip(y, 0, 1), k[5])
        return y, back, conv

    y, back, conv = run(w, x, jax.random.key(2))
    assert y.shape == (3, n_out) and back.shape == (3, n_in) and conv.shape == (3, n_out)
    assert y.dtype == back.dtype == conv.dtype == jnp.float32
    y2 = run(w, x, jax.random.key(2))[0]
    assert np.array_equal(np.asarray(y), np.asarray(y2))
