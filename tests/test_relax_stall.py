"""Stopping a noisy relaxation at its noise floor (``relaxation.stall_window``).

With temporal device noise the fixed-point residual settles on a floor set by
the noise; the reference floor here is measured by an independent full-budget
run of the same chip, and the early stop must land on it.
"""

from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.circuits import CircuitSpec, build, init_params, load_circuit, relax
from anasim.devices import ideal_profile, load_profile
from anasim.errors import ProfileError

REPO = Path(__file__).resolve().parents[1]

SPEC = CircuitSpec(sizes=(64, 48, 10), lam=0.0, activations=("tempered_hard_sigmoid",),
                   backward="copy", eta=0.5, schedule="async", max_iters=200, tol=1e-4)


def _chip(profile):
    params = init_params(SPEC, jax.random.key(0))
    return build(SPEC, profile, params, jax.random.key(1))


def _x():
    return jax.random.uniform(jax.random.key(2), (32, SPEC.sizes[0]), dtype=jnp.float32)


@pytest.mark.slow
def test_noisy_relaxation_stops_on_its_noise_floor():
    chip = _chip(load_profile(REPO / "devices/slm-10bit.toml"))
    full = relax(SPEC, chip, _x(), jax.random.key(3))
    assert int(full.iterations) == SPEC.max_iters and not bool(full.converged)
    trace = np.asarray(full.trace)
    floor = np.median(trace[SPEC.max_iters // 2:])       # stationary part of the full run
    early = relax(replace(SPEC, stall_window=10), chip, _x(), jax.random.key(3))
    assert int(early.iterations) < SPEC.max_iters // 2
    assert bool(early.oscillating) and not bool(early.converged)
    assert float(early.residual) <= 1.5 * floor
    # the early run is the full run cut short: same noise, same states up to the stop
    n = int(early.iterations)
    np.testing.assert_array_equal(np.asarray(early.trace[:n]), trace[:n])


def test_stall_window_changes_nothing_without_noise():
    chip = _chip(ideal_profile())
    a = relax(SPEC, chip, _x(), jax.random.key(3))
    b = relax(replace(SPEC, stall_window=5), chip, _x(), jax.random.key(3))
    assert bool(a.converged) and bool(b.converged)
    assert int(a.iterations) == int(b.iterations)
    for sa, sb in zip(a.s_plus, b.s_plus):
        np.testing.assert_array_equal(np.asarray(sa), np.asarray(sb))


def test_stall_window_is_read_and_validated(tmp_path):
    text = (REPO / "circuits/tiny.toml").read_text()
    f = tmp_path / "c.toml"
    f.write_text(text.replace("[relaxation]", "[relaxation]\nstall_window = 7", 1))
    assert load_circuit(f).stall_window == 7
    f.write_text(text.replace("[relaxation]", "[relaxation]\nstall_window = -1", 1))
    with pytest.raises(ProfileError, match="stall_window"):
        load_circuit(f)
