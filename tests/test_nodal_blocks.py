"""The resistive circuit's block solver against the whole-netlist Newton solve."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from anasim.errors import AnasimError, ProfileError
from anasim.nodal.hopfield import LayeredWeights, NodalPhysics, solve_layers
from anasim.nodal.hopfield_blocks import resistive_layers
from anasim.nodal.physics import load_nodal_physics

SIZES = (12, 7, 5, 3)     # three couplings: the sweep's odd and even layers both hold two neighbours
N = sum(SIZES[1:])


def _weights(rng, scale, bias=0.5):
    mats = [rng.uniform(-scale, scale, (b, a)) for a, b in zip(SIZES[:-1], SIZES[1:])]
    return LayeredWeights(theta0=mats[0], thetas=tuple(mats[1:]), bias=rng.uniform(-bias, bias, N))


def _both(ph, w, x, **kw):
    blocks = solve_layers(SIZES, ph, w, x, **kw)
    newton = solve_layers(SIZES, NodalPhysics(**{**ph.__dict__, "solver": "newton"}), w, x, **kw)
    return blocks, newton


@pytest.mark.parametrize("case", ["free", "nudged", "clamped"])
def test_block_dc_point_is_the_newton_dc_point_node_by_node(case):
    """Every node voltage (p and m nodes, through the OperatingPoint) within 1 nV of
    the Newton solve, with strong couplings that drive clamp diodes past their knee,
    a per-circuit signed nudge (the − compartment's β < 0 is a VCCS that lowers the
    output's conductance) and outputs held by sources."""
    rng = np.random.default_rng(11)
    ph = NodalPhysics(kind="resistive", g_min_s=1e-6)
    w = _weights(rng, 2.5, bias=20.0)     # bias currents of ±20 g_unit·V_fs: clamps past the knee
    x = rng.uniform(0, 2, (6, SIZES[0]))
    y = rng.uniform(0, 1, (6, SIZES[-1]))
    kw = {"free": {}, "nudged": dict(beta=np.array([0.5, -0.5, 0.2, -0.2, 1.0, 0.0]), target=y),
          "clamped": dict(clamp=y)}[case]
    (b0, b1, bop), (n0, n1, nop) = _both(ph, w, x, **kw)
    assert bop.voltages.shape == nop.voltages.shape
    np.testing.assert_allclose(bop.voltages, nop.voltages, rtol=0, atol=1e-9)
    for a, b in zip(b0 + b1, n0 + n1):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    # the diodes conduct: some node beyond a rail's knee (rails at 0.5 V, clamps near 0 and 1 V)
    assert np.max(np.abs(np.concatenate(n0, 1))) > 0.95
    assert np.all(bop.residual < 1e-12)


def test_block_solve_without_node_voltages_returns_the_same_layers():
    rng = np.random.default_rng(12)
    ph = NodalPhysics(kind="resistive", g_min_s=1e-6)
    w = _weights(rng, 1.0)
    x = rng.uniform(0, 1, (3, SIZES[0]))
    full, _, _ = solve_layers(SIZES, ph, w, x)
    bare, _, op = solve_layers(SIZES, ph, w, x, node_voltages=False)
    assert op.voltages.shape == (3, 0)
    for a, b in zip(full, bare):
        np.testing.assert_array_equal(a, b)


def test_thermal_draw_about_the_block_dc_point_is_the_newton_one():
    """The fluctuation is drawn about the DC point from the same key: the two solvers'
    noisy states agree to the DC points' agreement."""
    rng = np.random.default_rng(13)
    ph = NodalPhysics(kind="resistive", g_min_s=1e-6, node_capacitance_f=1e-16)
    w = _weights(rng, 1.5)
    x = rng.uniform(0, 1, (4, SIZES[0]))
    key = jax.random.key(5)
    (b0, _, bop), (n0, _, nop) = _both(ph, w, x, key=key)
    quiet, _, _ = solve_layers(SIZES, ph, w, x)
    for a, b, q in zip(b0, n0, quiet):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
        assert np.std(a - q) > 1e-3          # a draw of mV size (√(k_B T / C) = 6.4 mV at 0.1 fF)


def test_block_solver_refuses_what_it_cannot_solve():
    with pytest.raises(AnasimError, match="solver = 'blocks' solves resistive"):
        NodalPhysics(kind="gyrator", solver="blocks")
    with pytest.raises(ProfileError, match="nodal.solver"):
        load_nodal_physics({"network": {"lam": 1.0}, "nodal": {"solver": "fast"}}, where="spec.toml")
    assert load_nodal_physics({"network": {"lam": 1.0}, "nodal": {"solver": "newton"}}).solver == "newton"
    rng = np.random.default_rng(14)
    ph = NodalPhysics(kind="resistive", g_min_s=1e-6)
    w = _weights(rng, 0.5)
    x = rng.uniform(0, 1, (2, SIZES[0]))
    # an output's conductances sum to ≤ 5 × 0.5 g_unit + pairs' floors: β = −10 drains more
    with pytest.raises(AnasimError, match="beta = -10"):
        resistive_layers(w, ph, x, beta=-10.0, target=np.zeros((2, SIZES[-1])))
    with pytest.raises(AnasimError, match="clamp rail"):
        resistive_layers(w, NodalPhysics(kind="resistive", clamp_hi_v=0.8, diode_drop_v=0.5), x)
    one_sweep = NodalPhysics(kind="resistive", g_min_s=1e-6, max_sweeps=1)
    with pytest.raises(AnasimError, match="did not settle"):
        resistive_layers(w, one_sweep, x)
    _, sweeps, res = resistive_layers(w, one_sweep, x, raise_on_failure=False)
    assert np.all(sweeps == 1) and np.all(res > 1e-12)        # returned unsettled, and says so
