"""Sweeps of real measurements on the shipped Fashion-MNIST subset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anasim.errors import AnasimError
from anasim.study import parse_sweep, run_sweep

TINY = {
    "name": "sweep-test",
    "network": {"sizes": [784, 12, 10], "lam": 0.0, "activation": "hard_sigmoid",
                "backward": "transpose", "cost": "squared"},
    "relaxation": {"eta": 0.5, "schedule": "async", "max_iters": 40, "tol": 1e-4},
    "training": {"epochs": 2, "batch_size": 50, "beta": 0.1, "learning_rate": 0.05,
                 "train_size": 100, "test_size": 100, "data": "subset"},
}


@pytest.mark.slow
def test_2x2x2_training_sweep_on_the_shipped_subset(tmp_path):
    spec = parse_sweep({
        "measurement": "train",
        "base": {"circuit": TINY},
        "parameters": {"circuit.lam": [0.0, 1.0], "rule.beta": [0.05, 0.2], "seed": [0, 1]},
    })
    res = run_sweep(spec, tmp_path / "train.nc", progress=False)
    ds = res.dataset
    assert dict(ds.sizes) == {"circuit.lam": 2, "rule.beta": 2, "seed": 2, "epoch": 2}
    assert ds["test_accuracy"].dims == ("circuit.lam", "rule.beta", "seed", "epoch")
    assert list(ds["circuit.lam"].values) == [0.0, 1.0]
    assert list(ds["rule.beta"].values) == [0.05, 0.2]
    swept = dict(json.loads(ds.attrs["anasim_swept"]))
    assert swept == {"circuit.lam": "circuit.network.lam", "rule.beta": "circuit.training.beta", "seed": "seed"}
    # Fixed parameters as attributes, swept ones not.
    assert ds.attrs["circuit.training.train_size"] == 100
    assert ds.attrs["circuit.network.sizes"].tolist() == [784, 12, 10]
    assert "circuit.network.lam" not in ds.attrs and "circuit.training.beta" not in ds.attrs
    # The per-epoch nudge the controller records is the swept β at each point.
    np.testing.assert_array_equal(
        ds["beta"].isel(epoch=0).values, np.broadcast_to(np.array([0.05, 0.2])[None, :, None], (2, 2, 2))
    )
    acc = ds["test_accuracy"].values
    assert np.all((acc >= 0) & (acc <= 1))
    # Skew-symmetric couplings are 1-Lipschitz (hidden-layer bound of the chip as built).
    np.testing.assert_allclose(ds["lipschitz"].sel({"circuit.lam": 0.0}).values, 1.0, atol=1e-6)
    assert bool((ds["lipschitz"].sel({"circuit.lam": 1.0}) > 1.0).all())
    # Two seeds are two chips and initializations: different results.
    assert acc[0, 0, 0, -1] != acc[0, 0, 1, -1]
    # A finished sweep is never recomputed.
    again = run_sweep(spec, tmp_path / "train.nc", progress=False)
    assert again.computed == 0
    np.testing.assert_array_equal(again.dataset["test_accuracy"].values, acc)


@pytest.mark.slow
def test_gradient_alignment_is_high_on_the_ideal_device():
    # With the ideal profile and weak nudging the dyadic update is the gradient
    # (Høier et al.): cosine close to 1 at every coupling, for every λ.
    spec = parse_sweep({
        "measurement": "gradient_alignment",
        "base": {"circuit": TINY},
        "fixed": {"alignment.beta": 0.01, "alignment.batch": 8, "relaxation.tol": 1e-7,
                  "relaxation.max_iters": 400},
        "parameters": {"circuit.lam": [0.0, 1.0]},
    })
    ds = run_sweep(spec, None, progress=False).dataset
    assert ds["alignment"].dims == ("circuit.lam", "coupling") and ds.sizes["coupling"] == 2
    assert float(ds["alignment"].min()) > 0.99


def test_value_outside_the_circuit_loaders_range_fails_before_work():
    with pytest.raises(AnasimError) as info:
        parse_sweep({
            "measurement": "train",
            "base": {"circuit": TINY},
            "parameters": {"circuit.lam": [0.0, 1.5]},
        }, source="bad.toml")
    msg = str(info.value)
    assert "\n" not in msg and "circuit.lam" in msg and "1.5" in msg
    with pytest.raises(AnasimError, match="rule.beta"):
        parse_sweep({"measurement": "train", "base": {"circuit": TINY},
                     "parameters": {"rule.beta": [0.1, -0.1]}})


def test_device_parameters_are_sweepable_and_range_checked_by_the_profile_loader():
    circuit = dict(TINY, network=dict(TINY["network"], backward="copy"))
    base = {"circuit": circuit, "device": {"profile": {"name": "slm"}, "slm": {"bits": 8}}}
    # A model parameter the profile leaves at its default is still a known path.
    spec = parse_sweep({"measurement": "lipschitz", "base": base,
                        "parameters": {"slm.pixel_gain_sigma": [0.0, 0.1]}})
    assert spec.axes[0].path == "device.slm.pixel_gain_sigma"
    assert json.loads(spec.base_json)["device"]["slm"]["bits"] == 8
    for params, key in [({"slm.bits": [4, 40]}, "slm.bits"),
                        ({"slm.pixel_gain_sigma": [0.1, 0.9]}, "slm.pixel_gain_sigma"),
                        ({"slm.bitz": [4]}, "slm.bitz")]:
        with pytest.raises(AnasimError) as info:
            parse_sweep({"measurement": "lipschitz", "base": base, "parameters": params}, source="s.toml")
        msg = str(info.value)
        assert "\n" not in msg and f"parameters.{key}" in msg


def _profile_numbers(config):
    """The numbers of the profile a point's hardware measurements are built on."""
    from anasim.study.hardware import device_profile

    p = device_profile(config)
    return {"slm_bits": p.coupling.bits, "adc_bits": p.adc.bits, "adc_noise": p.adc.noise_lsb,
            "loop_time": p.loop_time_s}


def test_sweep_over_parameters_of_a_profile_that_uses_include(tmp_path):
    from anasim.study import Measurement, register_measurement

    register_measurement(Measurement(
        name="test-profile-numbers", fn=_profile_numbers,
        outputs={"slm_bits": (), "adc_bits": (), "adc_noise": (), "loop_time": ()}), replace=True)
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "adc.toml").write_text("[adc]\nbits = 6\nnoise_lsb = 0.5\n[profile]\nloop_time_s = 1e-9\n")
    (parts / "optics.toml").write_text('include = ["adc.toml"]\n[slm]\nbits = 10\n')
    (tmp_path / "chip.toml").write_text('include = ["parts/optics.toml"]\n[adc]\nnoise_lsb = 0.25\n')
    spec_file = tmp_path / "sweep.toml"
    spec_file.write_text(
        'measurement = "test-profile-numbers"\n[base]\ndevice = "chip.toml"\n'
        '[fixed]\n"profile.loop_time_s" = 2e-9\n'
        '[parameters]\n"slm.bits" = [4, 8]\n"adc.bits" = [5, 7]\n')
    from anasim.study import load_sweep

    ds = run_sweep(load_sweep(spec_file), None, progress=False).dataset
    # Swept values from the nested include and the direct one override the files';
    # the including file's own key wins over its include's; [fixed] overrides both.
    np.testing.assert_array_equal(ds["slm_bits"].values, [[4, 4], [8, 8]])
    np.testing.assert_array_equal(ds["adc_bits"].values, [[5, 7], [5, 7]])
    assert np.all(ds["adc_noise"].values == 0.25) and np.all(ds["loop_time"].values == 2e-9)
    # An inline profile table with an include (relative to the spec's folder) sweeps the same way.
    inline = parse_sweep({"measurement": "test-profile-numbers",
                          "base": {"device": {"include": ["chip.toml"], "adc": {"noise_lsb": 0.125}}},
                          "parameters": {"adc.bits": [5, 7]}}, source=str(spec_file))
    ds = run_sweep(inline, None, progress=False).dataset
    np.testing.assert_array_equal(ds["adc_bits"].values, [5, 7])
    assert np.all(ds["slm_bits"].values == 10) and np.all(ds["adc_noise"].values == 0.125)
    # A missing include is a one-line error naming it, before any work.
    (tmp_path / "broken.toml").write_text('include = ["absent.toml"]\n[slm]\nbits = 8\n')
    with pytest.raises(AnasimError) as info:
        parse_sweep({"measurement": "test-profile-numbers", "base": {"device": "broken.toml"},
                     "parameters": {"slm.bits": [4, 6]}}, source=str(spec_file))
    assert "absent.toml" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_asymmetry_angle_is_sweepable_though_the_circuit_file_leaves_it_out():
    import jax

    from anasim.circuits import init_params
    from anasim.study.hardware import circuit_spec

    circuit = {"name": "asym", "network": {"sizes": [6, 5, 4], "lam": "asymmetric", "activation": "hard_sigmoid",
                                           "backward": "independent", "cost": "squared"},
               "relaxation": {"eta": 0.5, "schedule": "async", "max_iters": 50, "tol": 1e-4}}
    spec = parse_sweep({"measurement": "lipschitz", "base": {"circuit": circuit, "device": "ideal"},
                        "fixed": {"lipschitz_estimate.n_pairs": 1, "lipschitz_estimate.ascent_steps": 1},
                        "parameters": {"circuit.asymmetry_angle": [0.0, 180.0]}})
    assert spec.axes[0].path == "circuit.network.asymmetry_angle"
    ds = run_sweep(spec, None, progress=False).dataset
    lam = ds["lam_max_sym"].values
    # α = 180°: ψ = −θᵀ (to float32's sin π ≈ 1e-7), W is skew and its symmetric part vanishes.
    assert abs(lam[1]) < 1e-6
    # α = 0°: ψ = θᵀ, W = [[0, θ_1ᵀ], [θ_1, 0]] whose largest eigenvalue is σ_max(θ_1).
    cfg = spec.point_config(next(iter(spec.points())))
    k_init = jax.random.split(jax.random.PRNGKey(cfg["seed"]), 3)[0]
    theta1 = np.asarray(init_params(circuit_spec(cfg), k_init).thetas[0], np.float64)
    assert lam[0] == pytest.approx(np.linalg.norm(theta1, 2), rel=1e-6)
    # The circuit loader still guards the key: a symmetric circuit rejects an angle.
    with pytest.raises(AnasimError, match="asymmetry_angle"):
        parse_sweep({"measurement": "lipschitz",
                     "base": {"circuit": dict(circuit, network=dict(circuit["network"], lam=1.0,
                                                                    backward="transpose")),
                              "device": "ideal"},
                     "parameters": {"circuit.asymmetry_angle": [0.0, 90.0]}})


@pytest.mark.slow
def test_gradient_alignment_of_a_cross_entropy_circuit():
    # The spec's cost "cross_entropy" reaches the reference gradient under its own name:
    # the measurement runs (it once failed after validation had passed) and the dyadic
    # update of the ideal chip is the cross-entropy gradient.
    circuit = dict(TINY, network=dict(TINY["network"], cost="cross_entropy"))
    spec = parse_sweep({
        "measurement": "gradient_alignment",
        "base": {"circuit": circuit},
        "fixed": {"alignment.beta": 0.01, "alignment.batch": 8, "relaxation.tol": 1e-7,
                  "relaxation.max_iters": 400},
        "parameters": {"circuit.lam": [0.0]},
    })
    ds = run_sweep(spec, None, progress=False).dataset
    assert float(ds["alignment"].min()) > 0.99
