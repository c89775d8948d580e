"""Deep resistive networks: the block solver against a hand-solved circuit, the whole-netlist
Newton solver, an active-set linear solve, ngspice, finite differences (EP) and the
thermal-noise model; the device model reduces to the ideal network."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anasim.devices.resistive import ResistiveCrossbar
from anasim.errors import AnasimError
from anasim.nodal import blocks as bl
from anasim.nodal import drn, drn_devices as dd, ngspice
from anasim.nodal.noise import thermal_covariance, thermal_fluctuation
from anasim.nodal.solver import solve_op

TIGHT = dict(tol_v=1e-13, max_sweeps=2000, newton_steps=40)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _random(sizes, seed, zero_frac=0.3, bias=0.2, dtype=np.float64):
    """Random couplings (some exactly 0) and biases, float64 arrays."""
    rng = np.random.default_rng(seed)
    nodes = (2 * sizes[0],) + tuple(sizes[1:])
    w = tuple(rng.uniform(0, 1, (a, b)) * (rng.uniform(size=(a, b)) > zero_frac) for a, b in zip(nodes[:-1], nodes[1:]))
    b = tuple(rng.uniform(-bias, bias, n) for n in nodes[1:])
    return bl.DrnParams(tuple(a.astype(dtype) for a in w), tuple(a.astype(dtype) for a in b))


def test_ideal_three_node_circuit_by_hand(x64):
    """Inputs +2 V and −1 V; an excitatory node e (1 S to +2 V, 3 S to −1 V), an
    inhibitory node i (the same), an output o joined to e by 1 S and to i by 2 S.
    Unclamped, e would sit at (o − 1)/5 < 0, so its diode holds it at 0; then
    i = (2o − 1)/6 and o = 2i/3 give o = −1/7, i = −3/14 (≤ 0: its diode is off)."""
    p = bl.DrnParams((jnp.array([[1.0, 1.0], [3.0, 3.0]]), jnp.array([[1.0], [2.0]])),
                     (jnp.zeros(2), jnp.zeros(1)))
    ph = bl.DrnPhysics(diode="ideal", **TIGHT)
    (h, o), _, change = bl.solve(p, jnp.array([[2.0, -1.0]]), ph)
    np.testing.assert_allclose(np.asarray(h)[0], [0.0, -3 / 14], atol=1e-12)
    np.testing.assert_allclose(np.asarray(o)[0], [-1 / 7], atol=1e-12)


@pytest.mark.parametrize("nudge", [0.0, 0.7])
def test_shockley_block_solution_is_the_newton_dc_point(x64, nudge):
    """The block solver's fixed point equals the whole-netlist Newton solve (float64) to 1e-9 V,
    free and nudged, with diodes conducting on both sides."""
    p = _random((5, 8, 3), seed=1, bias=4.0)
    ph = bl.DrnPhysics(input_gain_v=3.0, g_unit_s=1e-3, **TIGHT)
    x = np.random.default_rng(2).uniform(0, 1, (4, 5))
    vin = np.asarray(bl.input_voltages(x, ph))
    y = np.eye(3)[[0, 1, 2, 1]]
    c, vals, nodes = drn.drn_circuit(p, ph, vin, beta=nudge, target=y)
    ref = solve_op(c, vals)
    op, layers = drn.block_operating_point(p, vin, ph, beta=nudge, target=y)
    np.testing.assert_allclose(op.voltages, ref.voltages, rtol=0, atol=1e-9)
    assert float(jnp.max(bl.kcl_residual(p, vin, layers, ph, beta=nudge, target=y))) < 1e-12   # A
    assert op.residual.shape == (4,) and op.residual.max() < 1e-12   # the operating point reports it
    bad = (layers[0] + 1e-6,) + tuple(layers[1:])
    assert float(jnp.min(bl.kcl_residual(p, vin, bad, ph, beta=nudge, target=y))) > 1e-10
    h = layers[0]
    assert (h[:, :4] < 0).any() and (h[:, 4:] > 0).any()        # clamps conducting (knees near 0 V)
    assert (h[:, :4] > 0.1).any() and (h[:, 4:] < -0.1).any()   # and nodes whose diode is off


def test_ideal_block_solution_solves_kcl_with_its_active_set(x64):
    """Ideal diodes: the clamped nodes sit at 0 and need a diode current of the right sign;
    the rest satisfy the linear KCL of the network with those nodes held at 0 (solved
    independently with numpy) to 1e-9 V."""
    p = _random((6, 10, 4), seed=3, bias=1.0)
    ph = bl.DrnPhysics(diode="ideal", **TIGHT)
    vin = np.asarray(bl.input_voltages(np.random.default_rng(4).uniform(0, 1, (3, 6)), ph))
    (h, o), _, _ = bl.solve(jax.tree_util.tree_map(jnp.asarray, p), jnp.asarray(vin), ph)
    assert float(jnp.max(bl.kcl_residual(p, vin, (h, o), ph))) < 1e-12
    h, o = np.asarray(h), np.asarray(o)
    w0, w1 = p.w
    sign = np.where(np.arange(10) < 5, 1.0, -1.0)
    n_h = 10
    for s in range(3):
        clamped = np.abs(h[s]) < 1e-12
        assert clamped.any() and (~clamped).any()
        # G v = rhs over the free hidden nodes and the outputs
        N = n_h + 4
        G = np.zeros((N, N))
        rhs = np.concatenate([vin[s] @ w0 + p.b[0], p.b[1]])
        G[:n_h, :n_h] = np.diag(w0.sum(0) + w1.sum(1))
        G[n_h:, n_h:] = np.diag(w1.sum(0))
        G[:n_h, n_h:] = -w1
        G[n_h:, :n_h] = -w1.T
        keep = np.concatenate([~clamped, np.ones(4, bool)])
        v = np.zeros(N)
        v[keep] = np.linalg.solve(G[np.ix_(keep, keep)], rhs[keep])
        np.testing.assert_allclose(np.concatenate([h[s], o[s]]), v, atol=1e-9)
        # the diode of a clamped node must push: KCL without it would pull the node past 0
        net = (rhs - G @ v)[:n_h]
        assert np.all(sign[clamped] * net[clamped] <= 1e-12)
        assert np.all(sign[~clamped] * h[s][~clamped] >= 0)


def test_ep_gradient_matches_finite_differences(x64):
    """Centered EP at small β is the gradient of ½‖o − y‖² through the equilibrium."""
    p = _random((4, 6, 3), seed=5, zero_frac=0.0)
    ph = bl.DrnPhysics(diode="ideal", **TIGHT)
    vin = jnp.asarray(bl.input_voltages(np.random.default_rng(6).uniform(0, 1, (2, 4)), ph))
    y = jnp.asarray(np.eye(3)[[0, 2]])
    p = jax.tree_util.tree_map(jnp.asarray, p)
    g, _ = bl.ep_gradient(p, vin, y, ph, 1e-4)

    def loss(q):
        layers, _, _ = bl.solve(q, vin, ph)
        return float(0.5 * jnp.mean(jnp.sum((layers[-1] - y) ** 2, -1)))

    h = 1e-6
    for k, (i, j) in [(0, (1, 2)), (0, (6, 4)), (1, (3, 1)), (1, (0, 2))]:
        wp = list(p.w)
        wp[k] = wp[k].at[i, j].add(h)
        wm = list(p.w)
        wm[k] = wm[k].at[i, j].add(-h)
        fd = (loss(p._replace(w=tuple(wp))) - loss(p._replace(w=tuple(wm)))) / (2 * h)
        assert abs(float(g.w[k][i, j]) - fd) < 1e-5 * max(1.0, abs(fd)), (k, i, j)
    bp = list(p.b)
    bp[0] = bp[0].at[2].add(h)
    bm = list(p.b)
    bm[0] = bm[0].at[2].add(-h)
    fd = (loss(p._replace(b=tuple(bp))) - loss(p._replace(b=tuple(bm)))) / (2 * h)
    assert abs(float(g.b[0][2]) - fd) < 1e-5 * max(1.0, abs(fd))


def test_sgd_step_keeps_conductances_non_negative():
    p = bl.init_params((20, 8, 3), jax.random.PRNGKey(0))
    ph = bl.DrnPhysics(diode="ideal", input_gain_v=100.0, tol_v=1e-4)
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 20))
    q, _ = bl.sgd_step(p, bl.input_voltages(x, ph), jnp.eye(3)[jnp.array([0, 1, 2, 0])], ph, 1.0, 10.0)
    assert all(float(w.min()) >= 0.0 for w in q.w)
    assert any(float(jnp.sum(w == 0)) > float(jnp.sum(v == 0)) for w, v in zip(q.w, p.w))


def test_device_network_reduces_to_the_ideal_one():
    """A device without G_min, spread, levels, noise or write asymmetry realizes the
    weights and the SGD step exactly (the clip at 0 is the clip at G_min = 0)."""
    xbar = ResistiveCrossbar(g_min_s=0.0, g_max_s=1.0)
    dev = dd.DrnDevices(xbar, 1.0)
    p = bl.init_params((10, 6, 3), jax.random.PRNGKey(0))
    g_max = dd.fabricate(dev, p, jax.random.PRNGKey(1))
    q = dd.program(dev, g_max, p, jax.random.PRNGKey(2))
    for a, b in zip(q.w, p.w):
        np.testing.assert_array_equal(a, b)
    assert dd.read(dev, q, jax.random.PRNGKey(3)) is q
    dw = tuple(jax.random.normal(jax.random.PRNGKey(4), w.shape) * 0.05 for w in p.w)
    r = dd.write(dev, g_max, q, dw, jax.random.PRNGKey(5))
    for a, w, d in zip(r.w, p.w, dw):
        np.testing.assert_allclose(a, jnp.maximum(w + d, 0.0), rtol=1e-6, atol=1e-7)
    m = dd.diode_mismatch(p, 0.0, jax.random.PRNGKey(6))
    assert all(float(jnp.abs(k).max()) == 0.0 for k in m.knee)


def test_diode_mismatch_moves_the_ideal_clamp():
    """An ideal excitatory node with knee δ cannot go below δ."""
    p = bl.DrnParams((jnp.array([[1.0, 1.0], [3.0, 3.0]]), jnp.array([[1.0], [2.0]])),
                     (jnp.zeros(2), jnp.zeros(1)), (jnp.array([0.25, 0.0]),))
    (h, _), _, _ = bl.solve(p, jnp.array([[2.0, -1.0]]), bl.DrnPhysics(diode="ideal", tol_v=1e-7))
    assert abs(float(h[0, 0]) - 0.25) < 1e-6


def test_bad_input_names_the_argument():
    with pytest.raises(AnasimError, match="diode"):
        bl.DrnPhysics(diode="zener")
    p = bl.init_params((4, 2, 2), jax.random.PRNGKey(0))
    with pytest.raises(AnasimError, match="vin"):
        bl.solve(p, jnp.zeros((1, 5)), bl.DrnPhysics())
    with pytest.raises(AnasimError, match="ideal diode"):
        drn.drn_circuit(p, bl.DrnPhysics(diode="ideal"), np.zeros((1, 8)))


def test_thermal_noise_about_the_block_dc_point_is_the_newton_one(x64):
    """The thermal fluctuation drawn about the block solver's DC point equals the one drawn
    about the Newton solver's (same covariance, same key), and with every clamp diode off
    each node shows k_B T / C (equipartition of a resistive network)."""
    p = _random((3, 4, 2), seed=7)
    ph = bl.DrnPhysics(input_gain_v=0.3, g_unit_s=1e-3, diode_bias_v=0.0, **TIGHT)
    vin = np.asarray(bl.input_voltages(np.random.default_rng(8).uniform(0, 1, (2, 3)), ph))
    C = 1e-15
    c, vals, nodes = drn.drn_circuit(p, ph, vin)
    ref = solve_op(c, vals)
    op, _ = drn.block_operating_point(p, vin, ph)
    key = jax.random.PRNGKey(0)
    np.testing.assert_allclose(thermal_fluctuation(c, vals, op, key, C), thermal_fluctuation(c, vals, ref, key, C),
                               rtol=1e-6, atol=1e-12)
    lay = drn.thermal_layers(p, vin, ph, key, C)
    assert [a.shape for a in lay] == [(2, 4), (2, 2)]
    # rails at 0 V and ±50 mV inputs: no junction carries more than ~1e-13 A (off): equipartition
    ph_off = bl.DrnPhysics(input_gain_v=0.05, g_unit_s=1e-3, diode_bias_v=0.0, **TIGHT)
    vin = np.asarray(bl.input_voltages(np.random.default_rng(8).uniform(0, 1, (1, 3)), ph_off))
    c, vals, nodes = drn.drn_circuit(p._replace(b=tuple(0 * b for b in p.b)), ph_off, vin)
    op, _ = drn.block_operating_point(p._replace(b=tuple(0 * b for b in p.b)), vin, ph_off)
    one = jax.tree_util.tree_map(lambda a: np.asarray(a)[0] if np.ndim(a) == 2 else np.asarray(a), vals)
    op1 = dataclasses.replace(op, voltages=op.voltages[0], iterations=op.iterations[0], residual=op.residual[0])
    cov, free = thermal_covariance(c, one, op1, node_capacitance_f=C)
    kt_c = 1.380649e-23 * ph_off.temperature_k / C
    np.testing.assert_allclose(np.diag(np.asarray(cov)), kt_c, rtol=1e-3)


def _benchmark():
    """benchmarks/drn_vs_ngspice.py, which runs the same check on DRN-XS and DRN-1H."""
    spec = importlib.util.spec_from_file_location(
        "drn_vs_ngspice", Path(__file__).resolve().parent.parent / "benchmarks" / "drn_vs_ngspice.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
def test_trained_small_drn_dc_point_matches_ngspice():
    """A 49-20-10 DRN (100 V inputs) after EP steps: every node within 1 µV of ngspice
    (DRN-XS and DRN-1H: ``benchmarks/drn_vs_ngspice.py``, minutes of ngspice each)."""
    assert _benchmark().max_deviation_v((49, 20, 10), 100.0, n_examples=2) < 1e-6


@pytest.mark.parametrize("diode", ["ideal", "shockley"])
def test_warm_start_reaches_the_same_dc_point_and_a_sweep_budget_stops(x64, diode):
    """A solve started from another input's DC point (the reference's warm start) ends at
    the DC point a solve from 0 V finds, and a budget of k sweeps stops after k with the
    last sweep's change reported; the DC point satisfies KCL (kcl_residual) either way."""
    p = _random((6, 9, 4), seed=5, bias=2.0)
    ph = bl.DrnPhysics(diode=diode, input_gain_v=3.0, g_unit_s=1e-3, **TIGHT)
    rng = np.random.default_rng(6)
    vin_a = bl.input_voltages(rng.uniform(0, 1, (3, 6)), ph)
    vin_b = bl.input_voltages(rng.uniform(0, 1, (3, 6)), ph)
    cold, _, _ = bl.solve(p, vin_a, ph)
    other, _, _ = bl.solve(p, vin_b, ph)
    warm, _, _ = bl.solve(p, vin_a, ph, init=other)
    for c, w in zip(cold, warm, strict=True):
        np.testing.assert_allclose(np.asarray(w), np.asarray(c), atol=1e-9)
    assert float(jnp.max(bl.kcl_residual(p, vin_a, warm, ph))) < 1e-9 * ph.g_unit_s * 1e3
    short, n, change = bl.solve(p, vin_a, ph, init=other, max_sweeps=1)
    assert int(n) == 1 and float(change) > ph.tol_v
