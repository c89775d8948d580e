"""Node-level layered Hopfield circuits: ngspice, closed forms in the linear
region, the (skew-)Lipschitz bound, and the relax() interface."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from anasim.circuits import layered
from anasim.nodal import ngspice
from anasim.nodal.hopfield import (
    LayeredWeights, NodalPhysics, hopfield_netlist, relax, solve_layers, weights_from_hardware)
from anasim.circuits.spec import CircuitSpec
from anasim.devices.gyrator import GyratorArray
from anasim.devices.profile import DeviceProfile
from anasim.errors import AnasimError

SIZES = (4, 6, 3)
N = sum(SIZES[1:])


@pytest.fixture
def x64():
    """float64 for the test's own JAX reference computations (implicit
    differentiation to 1e-12 A, a float64 spec traced in jax.jit); the library
    scopes float64 for itself."""
    with jax.enable_x64(True):
        yield


def _weights(rng, scale=0.8, gyrator=False):
    th0 = rng.uniform(-scale, scale, (SIZES[1], SIZES[0]))
    th1 = rng.uniform(-scale, scale, (SIZES[2], SIZES[1]))
    eps = rng.uniform(-0.2, 0.2, th1.shape) if gyrator else 0.0
    return LayeredWeights(theta0=th0, thetas=((1 + eps) * th1,), bias=rng.uniform(-0.1, 0.1, N),
                          backward=(-th1.T,), self_coupling=np.zeros(N))


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
@pytest.mark.parametrize("kind,solver", [("resistive", "blocks"), ("resistive", "newton"), ("gyrator", "auto")])
def test_hopfield_netlists_match_ngspice(kind, solver):
    rng = np.random.default_rng(3)
    ph = NodalPhysics(kind=kind, g_min_s=1e-6 if kind == "resistive" else 0.0, solver=solver)
    w = _weights(rng, scale=2.0, gyrator=kind == "gyrator")  # strong: clamps past the knee
    w = LayeredWeights(**{**w.__dict__, "bias": rng.uniform(-20, 20, N)})
    x = rng.uniform(0, 1, (4, SIZES[0]))
    y = rng.uniform(0, 1, (4, SIZES[-1]))
    beta = 0.3 if kind == "resistive" else (0.3, 0.2)
    _, _, op = solve_layers(SIZES, ph, w, x, beta=beta, target=y)
    nets = [hopfield_netlist(SIZES, ph, w, x[k], beta=beta, target=y[k:k + 1]) for k in range(2)]
    refs = ngspice.run_op(nets)
    for k in range(2):
        ours = op.as_dict(k)
        for node, v in refs[k].items():
            if node in ours:
                assert abs(ours[node] - v) <= max(1e-6 * abs(v), 1e-6), (node, ours[node], v)
    # some clamp diode is forward-biased near or past its knee (rails at 0.5 V, ±0.5 V)
    assert max(max(abs(r[n]) for n in r if n.startswith("l")) for r in refs) > 0.95


def _linear_physics(kind):
    # clamp diodes with I_s so small they never conduct: the circuit is linear
    return NodalPhysics(kind=kind, diode_is_a=1e-40, g_min_s=2e-6 if kind == "resistive" else 0.0)


def test_gyrator_circuit_linear_region_is_the_dyadic_fixed_point():
    """s± = W_off s∓ + diag(W) s± + θ0 x + b ± β±(y − s±)[out]  (λ = 0, leak = g_unit)."""
    rng = np.random.default_rng(4)
    w = _weights(rng, scale=0.6, gyrator=True)
    w = LayeredWeights(**{**w.__dict__, "self_coupling": -rng.uniform(0, 0.1, N)})
    x = rng.uniform(0, 1, (4, SIZES[0]))
    y = rng.uniform(0, 1, (4, SIZES[-1]))
    bp, bm = 0.4, 0.25
    ph = _linear_physics("gyrator")
    sp, sm, _ = solve_layers(SIZES, ph, w, x, beta=(bp, bm), target=y)
    gj = ph.gmin / ph.g_unit_s  # the junctions' gmin to the rails (2 per node)
    rails = gj * (ph.rail_hi_v + ph.rail_lo_v) / ph.v_fs_v
    W = np.zeros((N, N))
    W[SIZES[1]:, :SIZES[1]] = w.thetas[0]
    W[:SIZES[1], SIZES[1]:] = w.backward[0]
    D = np.diag(w.self_coupling)
    out = np.zeros(N)
    out[SIZES[1]:] = 1.0
    I = (1 + 2 * gj) * np.eye(N)
    A = np.block([[I - D + bp * np.diag(out), -W], [-W, I - D - bm * np.diag(out)]])
    for k in range(4):
        u = np.zeros(N)
        u[:SIZES[1]] = w.theta0 @ x[k]
        u = u + w.bias + rails
        yy = np.zeros(N)
        yy[SIZES[1]:] = y[k]
        s = np.linalg.solve(A, np.concatenate([u + bp * yy, u - bm * yy]))
        np.testing.assert_allclose(np.concatenate([sp[0][k], sp[1][k]]), s[:N], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(np.concatenate([sm[0][k], sm[1][k]]), s[N:], rtol=1e-7, atol=1e-9)


def test_resistive_circuit_linear_region_and_mirror_symmetry():
    """p nodes: Σ_j w_ij s_j − d_i s_i + b_i = 0 with d_i = Σ_j (G⁺+G⁻)/g_unit (all neighbours),
    and the m nodes carry exactly −v."""
    rng = np.random.default_rng(5)
    ph = _linear_physics("resistive")
    w = _weights(rng, scale=0.7)
    x = rng.uniform(0, 1, (4, SIZES[0]))
    sp, sm, _ = solve_layers(SIZES, ph, w, x)
    gmin_u = ph.g_min_s / ph.g_unit_s
    W = np.zeros((N, N))
    W[SIZES[1]:, :SIZES[1]] = w.thetas[0]
    W = W + W.T
    deg = np.abs(W).sum(1) + 2 * gmin_u * (W != 0).sum(1)
    deg[:SIZES[1]] += np.abs(w.theta0).sum(1) + 2 * gmin_u * SIZES[0]
    # a tiny junction leak gmin per diode (4 per neuron, 2 on each node, rails at ±0.5 V)
    gj = ph.gmin / ph.g_unit_s
    for k in range(4):
        u = np.zeros(N)
        u[:SIZES[1]] = w.theta0 @ x[k]
        u = u + w.bias
        s = np.linalg.solve(np.diag(deg + 2 * gj) - W, u + gj * (ph.rail_hi_v + ph.rail_lo_v) / ph.v_fs_v)
        np.testing.assert_allclose(np.concatenate([sp[0][k], sp[1][k]]), s, rtol=1e-9, atol=1e-12)
    for a, b in zip(sp, sm):
        np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("eps,eps_sigma", [(0.0, 0.0), (0.3, 0.1)])
def test_gyrator_network_obeys_lipschitz_bound_from_effective(eps, eps_sigma):
    """‖s(x1) − s(x2)‖ ≤ ‖θ0 (x1 − x2)‖ / (1 − λ_max(sym W)), W the realized matrix from
    the device's ``effective()`` (node equation s − W s + clamp(s) = θ0 x + b, clamp monotone):
    at ε = 0, sym W = 0 and the bound is ‖θ0 Δx‖ (skew-symmetric)."""
    dev = GyratorArray(w_max=2.0, epsilon=eps, epsilon_sigma=eps_sigma)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    rng = np.random.default_rng(1)
    st0 = dev.program(dev.fabricate(keys[0], (SIZES[1], SIZES[0])), keys[1],
                      rng.uniform(-1.5, 1.5, (SIZES[1], SIZES[0])))
    st1 = dev.program(dev.fabricate(keys[2], (SIZES[2], SIZES[1])), keys[3],
                      rng.uniform(-1.5, 1.5, (SIZES[2], SIZES[1])))
    theta0 = np.asarray(dev.forward(st0), np.float64)
    w = LayeredWeights(theta0=theta0, thetas=(np.asarray(dev.forward(st1)),), bias=np.zeros(N),
                       backward=(np.asarray(dev.backward(st1)),), self_coupling=np.zeros(N))
    W = np.asarray(dev.effective(st1), np.float64)  # layers 1, 2 block matrix
    lam_max = float(np.linalg.eigvalsh(0.5 * (W + W.T)).max())
    if eps == 0.0:
        assert abs(lam_max) < 1e-12
    else:
        assert 0.05 < lam_max < 1.0
    x1 = rng.uniform(0, 1, (24, SIZES[0]))
    x2 = np.clip(x1 + rng.normal(0, 0.3, x1.shape), 0, 1)
    xs = np.stack([x1, x2], 1).reshape(-1, 4, SIZES[0])  # batches of 4: one compiled solve
    ph = NodalPhysics(kind="gyrator")
    s = np.concatenate([np.concatenate(solve_layers(SIZES, ph, w, xb)[0], 1) for xb in xs]).reshape(24, 2, -1)
    ds = np.linalg.norm(s[:, 0] - s[:, 1], axis=1)
    bound = np.linalg.norm((x1 - x2) @ theta0.T, axis=1) / (1.0 - lam_max)
    ratio = ds / bound
    assert ratio.max() <= 1.0 + 1e-6
    # the clamps are active: some states sit at or beyond a clamp level
    assert (s > 0.95).any() or (s < 0.05).any()


def test_relax_interface_gyrator_chip():
    spec = CircuitSpec(sizes=SIZES, lam=0.0, backward="gyrator", dtype="float64", init_scale=2.0)
    prof = DeviceProfile(name="gyr", coupling=GyratorArray(w_max=2.0, epsilon=0.1))
    hw = layered.build(spec, prof, layered.init_params(spec, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    x = np.random.default_rng(2).uniform(0, 1, (4, SIZES[0]))
    eq = relax(spec, hw, x, None)
    w, ph = weights_from_hardware(spec, hw)
    np.testing.assert_allclose(w.backward[0], -np.asarray(hw.forward[0].theta).T)
    sp, _, _ = solve_layers(SIZES, ph, w, x)
    np.testing.assert_allclose(np.asarray(eq.s_plus[1]), sp[1])
    np.testing.assert_array_equal(np.asarray(eq.s_plus[1]), np.asarray(eq.s_minus[1]))


@pytest.mark.slow
def test_relax_interface_resistive_free_and_nudged():
    spec = CircuitSpec(sizes=SIZES, lam=1.0, dtype="float64", init_scale=2.0)
    prof = DeviceProfile()
    hw = layered.build(spec, prof, layered.init_params(spec, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    x2 = np.random.default_rng(0).uniform(0, 1, (2, SIZES[0]))
    x = np.concatenate([x2, x2])
    y = np.full((2, SIZES[-1]), 0.8)
    free = relax(spec, hw, x, jax.random.PRNGKey(2))
    assert isinstance(free, layered.Equilibrium)
    assert [a.shape for a in free.s_plus] == [(4, SIZES[1]), (4, SIZES[2])]
    np.testing.assert_array_equal(free.s_plus[1], free.s_minus[1])
    nud = relax(spec, hw, x2, jax.random.PRNGKey(2), nudge=(0.5, 0.5), target=y)
    err_free = np.abs(np.asarray(free.output)[:2] - y)
    assert (np.abs(np.asarray(nud.s_plus[1]) - y) < err_free).all()     # pulled towards y
    assert (np.abs(np.asarray(nud.s_minus[1]) - y) > err_free).all()    # pushed away
    # contrastive phase: + compartment clamped, − compartment free (exactly the free phase)
    cl = relax(spec, hw, x2, None, clamp=(y, None))
    np.testing.assert_array_equal(np.asarray(cl.s_plus[1]), y)
    np.testing.assert_allclose(np.asarray(cl.s_minus[1]), np.asarray(free.s_plus[1])[:2], atol=1e-12)
    with pytest.raises(AnasimError, match="lam = 1.*lam = 0.*gyrators across"):
        relax(CircuitSpec(sizes=SIZES, lam=0.5), hw, x2, None)
    with pytest.raises(AnasimError, match="cross-entropy.*softmax"):
        relax(CircuitSpec(sizes=SIZES, lam=1.0, cost="cross_entropy"), hw, x2, None, nudge=(0.1, 0.1), target=y)


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
@pytest.mark.parametrize("kind", ["resistive", "gyrator"])
def test_clamped_outputs_are_the_source_voltages_and_the_rest_matches_ngspice(kind):
    """Output clamping by voltage sources: the clamped output nodes sit exactly at c·V_fs
    (p at +c, m at −c for the differential circuit) and every other node agrees with
    ngspice on the netlist with the same sources, diodes past their knees."""
    rng = np.random.default_rng(11)
    ph = NodalPhysics(kind=kind, g_min_s=1e-6 if kind == "resistive" else 0.0, v_fs_v=0.8)
    w = _weights(rng, scale=2.0, gyrator=kind == "gyrator")
    w = LayeredWeights(**{**w.__dict__, "bias": rng.uniform(-20, 20, N)})
    x = rng.uniform(0, 1, (3, SIZES[0]))
    c = rng.uniform(0, 1, (3, SIZES[-1]))
    clamp = c if kind == "resistive" else (c, None)   # gyrator: + compartment clamped, − free
    y = rng.uniform(0, 1, (3, SIZES[-1]))
    beta = 0.0 if kind == "resistive" else (0.0, 0.4)
    sp, sm, op = solve_layers(SIZES, ph, w, x, clamp=clamp, beta=beta, target=y)
    np.testing.assert_array_equal(sp[-1] * ph.v_fs_v, c * ph.v_fs_v)
    if kind == "resistive":
        np.testing.assert_array_equal(sm[-1] * ph.v_fs_v, c * ph.v_fs_v)   # m nodes at −c·V_fs
    else:
        assert np.abs(sm[-1] - c).max() > 1e-3                          # the free copy is not held
    refs = ngspice.run_op([hopfield_netlist(SIZES, ph, w, x[k], clamp=(c[k:k + 1] if kind == "resistive"
                                                                        else (c[k:k + 1], None)),
                                            beta=beta, target=y[k:k + 1]) for k in range(3)])
    for k in range(3):
        ours = op.as_dict(k)
        for node, v in refs[k].items():
            if node in ours:
                assert abs(ours[node] - v) <= 1e-6, (node, ours[node], v)
    assert max(max(abs(r[n]) for n in r if n.startswith("l1")) for r in refs) > 0.95


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
def test_relax_on_resistive_crossbar_uses_its_conductances_and_matches_ngspice():
    from anasim.devices.resistive import ResistiveCrossbar

    spec = CircuitSpec(sizes=SIZES, lam=1.0, dtype="float64")
    dev = ResistiveCrossbar(g_min_s=10e-6, g_max_s=100e-6, prog_noise=(0.02, 0.0, 0.0))
    hw = layered.build(spec, DeviceProfile(name="rram", coupling=dev),
                       layered.init_params(spec, jax.random.PRNGKey(3)), jax.random.PRNGKey(4))
    w, ph = weights_from_hardware(spec, hw)
    np.testing.assert_array_equal(w.g_pos[1], np.asarray(hw.forward[0].g[0]))
    assert ph.g_unit_s == pytest.approx((100e-6 - 10e-6) / dev.w_max)
    x = np.random.default_rng(5).uniform(0, 1, (4, SIZES[0]))
    eq = relax(spec, hw, x, None)
    ref = ngspice.run_op([hopfield_netlist(SIZES, ph, w, x[k]) for k in range(2)])
    for k in range(2):
        for i in range(SIZES[2]):
            assert float(eq.s_plus[1][k, i]) == pytest.approx(ref[k][f"l2_{i}"] / ph.v_fs_v, abs=1e-9)


def _implicit_gradient(ph, w, x, y):
    """dℓ/d(θ0, θ1, b) of ℓ = ½‖v_out/V_fs − y‖² (batch mean) by the implicit function
    theorem on a KCL residual written here from the topology (independent of the
    solver): dv/dθ = −(∂F/∂v)⁻¹ ∂F/∂θ at the DC point."""
    import jax.numpy as jnp

    from anasim.nodal.solver import thermal_voltage
    from anasim.nodal.hopfield import hopfield_circuit

    hc = hopfield_circuit(SIZES, ph)
    c = hc.circuit
    n = c.n_nodes
    R, D, I = (np.asarray(t, np.int64) for t in (c.resistors, c.diodes, c.isources))
    fixed = np.asarray([p for p, _ in c.vsources])
    free = np.setdiff1d(np.arange(n), fixed)
    vte = ph.diode_n * thermal_voltage(ph.temperature_k)
    gu, vfs = ph.g_unit_s, ph.v_fs_v
    shapes = [(SIZES[1], SIZES[0]), (SIZES[2], SIZES[1])]

    def unpack(p):
        th0 = p[:shapes[0][0] * shapes[0][1]].reshape(shapes[0])
        th1 = p[th0.size:th0.size + shapes[1][0] * shapes[1][1]].reshape(shapes[1])
        return th0, th1, p[th0.size + th1.size:]

    def residual(vf, p, xk):
        th0, th1, b = unpack(p)
        g = jnp.concatenate([jnp.stack([gp, gp, gn, gn], -1).reshape(-1) for gp, gn in (
            (ph.g_min_s + gu * jnp.maximum(t, 0), ph.g_min_s + gu * jnp.maximum(-t, 0)) for t in (th0, th1))])
        fixed_v = jnp.concatenate([jnp.stack([xk * vfs, -xk * vfs], -1).reshape(-1),
                                   jnp.asarray([ph.rail_hi_v, ph.rail_lo_v, -ph.rail_hi_v, -ph.rail_lo_v])])
        v = jnp.zeros(n + 1).at[free].set(vf).at[fixed].set(fixed_v)
        leave = jnp.zeros(n + 1)
        i = g * (v[R[:, 0]] - v[R[:, 1]])
        leave = leave.at[R[:, 0]].add(i).at[R[:, 1]].add(-i)
        vd = v[D[:, 0]] - v[D[:, 1]]
        i = ph.diode_is_a * jnp.expm1(vd / vte) + ph.gmin * vd
        leave = leave.at[D[:, 0]].add(i).at[D[:, 1]].add(-i)
        inj = jnp.stack([b * gu * vfs, -b * gu * vfs], -1).reshape(-1)   # ground → node
        leave = leave.at[I[:, 1]].add(-inj)
        return leave[free]

    p = np.concatenate([w.theta0.ravel(), w.thetas[0].ravel(), w.bias])
    _, _, op = solve_layers(SIZES, ph, w, x)
    out = np.asarray([np.flatnonzero(free == k)[0] for k in hc.layer_nodes[0][-1]])
    grad = np.zeros_like(p)
    jac = jax.jit(jax.jacfwd(residual, (0, 1)))
    for k in range(x.shape[0]):
        vf = np.asarray(op.voltages[k])[free]
        assert np.abs(residual(vf, p, x[k])).max() < 1e-12          # same DC point
        Jv, Jp = (np.asarray(a) for a in jac(vf, p, x[k]))
        dv = -np.linalg.solve(Jv, Jp)
        grad += (vf[out] / vfs - y[k]) @ dv[out] / vfs
    return grad / x.shape[0]


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
def test_ep_from_nodal_equilibria_matches_implicit_differentiation_and_a_step_lowers_the_loss():
    from anasim.nodal.hopfield import cocontent_gradient

    rng = np.random.default_rng(21)
    ph = NodalPhysics(kind="resistive", g_min_s=1e-6)
    w = _weights(rng, scale=1.5)
    w = LayeredWeights(**{**w.__dict__, "bias": rng.uniform(-0.5, 0.5, N)})
    x = rng.uniform(0, 1, (6, SIZES[0]))
    y = rng.uniform(0, 0.5, (6, SIZES[-1]))
    ref = _implicit_gradient(ph, w, x, y)
    beta = 0.02
    sp, _, _ = solve_layers(SIZES, ph, w, x, beta=beta, target=y)
    sm, _, _ = solve_layers(SIZES, ph, w, x, beta=-beta, target=y)
    gp, gm = cocontent_gradient(w, x, sp), cocontent_gradient(w, x, sm)
    ep = np.concatenate([((gp["theta0"] - gm["theta0"]) / (2 * beta)).ravel(),
                         ((gp["thetas"][0] - gm["thetas"][0]) / (2 * beta)).ravel(),
                         np.concatenate([(a - b) / (2 * beta) for a, b in zip(gp["biases"], gm["biases"])])])
    cos = ep @ ref / np.linalg.norm(ep) / np.linalg.norm(ref)
    assert cos >= 0.999, cos
    assert np.linalg.norm(ep) == pytest.approx(np.linalg.norm(ref), rel=0.01)
    # the clamps take part: some hidden node sits below 0 V, where its lower clamp diode
    # (rail at +0.5 V) carries a current comparable to the couplings'
    s_free, _, _ = solve_layers(SIZES, ph, w, x)
    assert s_free[0].min() < -0.05

    def loss(wt):
        out = solve_layers(SIZES, ph, wt, x)[0][-1]
        return 0.5 * np.mean(np.sum((out - y) ** 2, 1))

    n0, n1 = SIZES[1] * SIZES[0], SIZES[2] * SIZES[1]
    lr = 0.5
    stepped = LayeredWeights(theta0=w.theta0 - lr * ep[:n0].reshape(w.theta0.shape),
                             thetas=(w.thetas[0] - lr * ep[n0:n0 + n1].reshape(w.thetas[0].shape),),
                             bias=w.bias - lr * ep[n0 + n1:], backward=w.backward, self_coupling=w.self_coupling)
    assert loss(stepped) < loss(w)


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
def test_dyadic_from_gyrator_circuit_matches_implicit_differentiation():
    """λ = 0: rules.dyadic on the two cross-coupled compartment copies estimates the
    gradient of ℓ at the free DC point of the gyrator circuit, computed by the implicit
    function theorem on a KCL residual (leaks, clamp diodes, VCCS) written here."""
    import jax.numpy as jnp

    from anasim.nodal.solver import thermal_voltage
    from anasim.nodal.hopfield import hopfield_circuit
    from anasim.learning import rules

    rng = np.random.default_rng(8)
    ph = NodalPhysics(kind="gyrator")
    w = _weights(rng, scale=1.5, gyrator=False)
    w = LayeredWeights(**{**w.__dict__, "bias": rng.uniform(-0.3, 0.6, N)})
    x = rng.uniform(0, 1, (5, SIZES[0]))
    y = rng.uniform(0, 1, (5, SIZES[-1]))
    c = hopfield_circuit(SIZES, ph).circuit
    n = c.n_nodes
    R, D, I, Q = (np.asarray(t, np.int64) for t in (c.resistors, c.diodes, c.isources, c.vccs))
    fixed = np.asarray([p for p, _ in c.vsources])
    free = np.setdiff1d(np.arange(n), fixed)
    vte = ph.diode_n * thermal_voltage(ph.temperature_k)
    gu, vfs = ph.g_unit_s, ph.v_fs_v
    n0, n1 = SIZES[1] * SIZES[0], SIZES[2] * SIZES[1]

    def residual(vf, p, xk):
        th0, th1, b = p[:n0], p[n0:n0 + n1].reshape(SIZES[2], SIZES[1]), p[n0 + n1:]
        one_copy = jnp.concatenate([th0, th1.ravel(), -th1.T.ravel(), jnp.zeros(N + SIZES[-1])]) * gu
        gm = jnp.concatenate([one_copy, one_copy])           # element order of the topology
        inj = jnp.concatenate([b, b]) * gu * vfs
        v = jnp.zeros(n + 1).at[free].set(vf).at[fixed].set(
            jnp.concatenate([xk * vfs, jnp.asarray([ph.rail_hi_v, ph.rail_lo_v])]))
        leave = jnp.zeros(n + 1)
        i = ph.leak_s * (v[R[:, 0]] - v[R[:, 1]])
        leave = leave.at[R[:, 0]].add(i).at[R[:, 1]].add(-i)
        vd = v[D[:, 0]] - v[D[:, 1]]
        i = ph.diode_is_a * jnp.expm1(vd / vte) + ph.gmin * vd
        leave = leave.at[D[:, 0]].add(i).at[D[:, 1]].add(-i)
        i = gm * (v[Q[:, 2]] - v[Q[:, 3]])                     # VCCS p → n, here ground → node
        leave = leave.at[Q[:, 0]].add(i).at[Q[:, 1]].add(-i)
        leave = leave.at[I[:, 1]].add(-inj)
        return leave[free]

    p = np.concatenate([w.theta0.ravel(), w.thetas[0].ravel(), w.bias])
    sp0, _, op = solve_layers(SIZES, ph, w, x)
    out = np.asarray([np.flatnonzero(free == k)[0] for k in hopfield_circuit(SIZES, ph).layer_nodes[0][-1]])
    jac = jax.jit(jax.jacfwd(residual, (0, 1)))
    ref = np.zeros_like(p)
    for k in range(len(x)):
        vf = np.asarray(op.voltages[k])[free]
        assert np.abs(residual(vf, p, x[k])).max() < 1e-12
        Jv, Jp = (np.asarray(a) for a in jac(vf, p, x[k]))
        ref += (vf[out] / vfs - y[k]) @ (-np.linalg.solve(Jv, Jp))[out] / vfs
    ref /= len(x)
    s_all = np.concatenate(sp0, 1)
    assert s_all.max() > 0.97 or s_all.min() < 0.03, (s_all.min(), s_all.max())   # a clamp diode conducts
    beta = 0.01
    sp, sm, _ = solve_layers(SIZES, ph, w, x, beta=(beta, beta), target=y)
    g = rules.dyadic(jnp.asarray(x), sp, sm, beta, 0.0)
    est = np.concatenate([np.ravel(g["theta0"]), np.ravel(g["thetas"][0]),
                          np.concatenate([np.ravel(b) for b in g["biases"]])])
    cos = est @ ref / np.linalg.norm(est) / np.linalg.norm(ref)
    assert cos >= 0.999, cos
    assert np.linalg.norm(est) == pytest.approx(np.linalg.norm(ref), rel=0.01)


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
def test_relax_in_jit_equals_relax():
    """The host-callback form runs inside jax.jit (as a jitted training step would call
    the iterative engine) and returns the same equilibrium."""
    from anasim.nodal.hopfield import relax_in_jit

    spec = CircuitSpec(sizes=SIZES, lam=1.0, dtype="float64", init_scale=2.0)
    hw = layered.build(spec, DeviceProfile(), layered.init_params(spec, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    x = np.random.default_rng(0).uniform(0, 1, (3, SIZES[0]))
    y = np.full((3, SIZES[-1]), 0.8)
    ref = relax(spec, hw, x, None, nudge=(0.4, 0.3), target=y, clamp=(None, y * 0.5))
    step = jax.jit(lambda hw, x, b, y: relax_in_jit(spec, hw, x, None, nudge=(b, 0.3), target=y,
                                                      clamp=(None, y * 0.5)))
    eq = step(hw, x, 0.4, y)
    for a, b in zip(eq.s_plus + eq.s_minus, ref.s_plus + ref.s_minus):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(eq.iterations) == int(ref.iterations)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["ep-centered", "dyadic"])
@pytest.mark.usefixtures("x64")
def test_controller_rules_on_the_resistive_circuit_follow_its_exact_gradient(rule):
    """The jitted controller (engine "nodal", λ = 1) differentiates the passive circuit's
    co-content, leak included: its update matches implicit differentiation of the KCL
    residual, where the Hopfield energy alone visibly does not."""
    from anasim.learning import rules
    from anasim.learning.controller import TrainConfig, local_update

    spec = CircuitSpec(sizes=SIZES, lam=1.0, dtype="float64", init_scale=2.0, engine="nodal")
    hw = layered.build(spec, DeviceProfile(), layered.init_params(spec, jax.random.PRNGKey(5)),
                       jax.random.PRNGKey(6))
    w, ph = weights_from_hardware(spec, hw)
    rng = np.random.default_rng(8)
    x = rng.uniform(0, 1, (6, SIZES[0]))
    y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], 6)]
    ref = _implicit_gradient(ph, w, x, y)
    beta = 0.01
    got = np.asarray(rules.flatten(local_update(spec, TrainConfig(rule=rule, beta=beta),
                                                hw, x, y, jax.random.PRNGKey(7))))
    cos = got @ ref / np.linalg.norm(got) / np.linalg.norm(ref)
    assert cos >= 0.9999, cos
    assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(ref), rel=0.01)
    sp, _, _ = solve_layers(SIZES, ph, w, x, beta=beta, target=y)
    sm, _, _ = solve_layers(SIZES, ph, w, x, beta=-beta, target=y)
    hop = np.asarray(rules.flatten(rules.ep_centered(x, sm, sp, beta)))
    assert hop @ ref / np.linalg.norm(hop) / np.linalg.norm(ref) < 0.999        # measured 0.997
