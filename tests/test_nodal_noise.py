"""Thermal noise: kT/C equipartition of the SDE, output noise vs ngspice .noise and √(4kTR)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from anasim.nodal import ngspice
from anasim.nodal.netlist import parse_netlist
from anasim.nodal.solver import K_BOLTZMANN, Circuit
from anasim.nodal.noise import output_noise_density, simulate_transient

T = 300.15


def test_stationary_variance_kT_over_C_and_network_equipartition():
    """An isolated RC node has stationary variance kT/C; a coupled RC network has
    covariance k_B T C⁻¹ whatever its resistors (equipartition). One netlist holds
    both: node c (1 kΩ ∥ 1 pF to ground, τ = 1 ns, kT/C ≈ 4.1e-9 V²) and nodes a, b
    (coupled by resistors and capacitors, one held by a 0.3 V source)."""
    text = """noise
R9 c 0 1k
C9 c 0 1p
V1 s 0 0.3
R1 s a 2k
R2 a b 5k
R3 b 0 3k
C1 a 0 2p
C2 b 0 1p
C3 a b 0.5p
.end
"""
    circ = Circuit.from_netlist(parse_netlist(text))
    chains = 400
    vals = jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a), (chains,) + np.shape(a)), circ.values)
    ia, ib, ic = (circ.node_index(n) for n in "abc")
    v_dc = np.zeros(circ.n_nodes)
    v_dc[[ia, ib]] = [0.3 * 8 / 10, 0.3 * 3 / 10]  # the divider's DC point
    dt = 5e-11
    tr = simulate_transient(circ, jax.random.PRNGKey(1), dt=dt, n_steps=1600, every=40, values=vals,
                            method="implicit", v0=v_dc[circ.layout.free])
    v = np.asarray(tr.voltages)[:, 3:]  # drop 6 ns of burn-in; samples 2 ns apart
    # RC node: the drift-implicit step's OU variance is kT/C / (1 + a/2), a = dt/τ
    a = dt / 1e-9
    kTC = K_BOLTZMANN * T / 1e-12
    var_c = v[..., ic].var()
    assert abs(var_c / (kTC / (1 + a / 2)) - 1) < 0.08, var_c / kTC   # ≈ 4 σ of the estimate
    assert abs(var_c / kTC - 1) < 0.1
    # network: covariance k_B T C⁻¹ (±10 %: sampling error and O(dt/τ) bias)
    vab = v[..., [ia, ib]].reshape(-1, 2)
    cov = np.cov(vab.T)
    Cm = np.array([[2e-12 + 0.5e-12, -0.5e-12], [-0.5e-12, 1e-12 + 0.5e-12]])
    expected = K_BOLTZMANN * T * np.linalg.inv(Cm)
    np.testing.assert_allclose(cov, expected, rtol=0.1, atol=0.1 * np.abs(expected).max())
    np.testing.assert_allclose(vab.mean(0), [0.3 * 8 / 10, 0.3 * 3 / 10], atol=2e-6)
    # the isolated node is uncorrelated with the network
    assert abs(np.corrcoef(v[..., ic].ravel(), v[..., ia].ravel())[0, 1]) < 0.05


def test_noiseless_transient_is_the_exponential_decay():
    r, c = 1e3, 1e-9
    circ = Circuit.from_netlist(parse_netlist(f"rc\nR1 a 0 {r}\nC1 a 0 {c}\n.end\n"))
    dt = 1e-3 * r * c
    tr = simulate_transient(circ, jax.random.PRNGKey(0), dt=dt, n_steps=2000, every=100, v0=[1.0], noise=False)
    exact = np.exp(-tr.times / (r * c))
    np.testing.assert_allclose(np.asarray(tr.voltages)[:, 0], exact, rtol=2e-3)


LADDER = """ladder
V1 in 0 DC 0 AC 1
R1 in a 1k
R2 a 0 2.2k
R3 a out 4.7k
R4 out 0 10k
{extra}
.end
"""


def test_resistor_network_output_noise_closed_form():
    circ = Circuit.from_netlist(parse_netlist(LADDER.format(extra="")))
    r_eq = 1 / (1 / ((1 / (1 / 1e3 + 1 / 2.2e3)) + 4.7e3) + 1 / 10e3)
    ours = output_noise_density(circ, "out")
    assert ours == pytest.approx(np.sqrt(4 * K_BOLTZMANN * T * r_eq), rel=1e-12)


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
def test_output_noise_matches_ngspice_noise_and_nyquist():
    text = LADDER.format(extra="")
    circ = Circuit.from_netlist(parse_netlist(text))
    ours = output_noise_density(circ, "out", frequency_hz=1.0)
    ref = ngspice.run_noise(text, "out", "v1", frequency_hz=1.0)
    assert ours == pytest.approx(ref, rel=1e-9)


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
def test_output_noise_with_capacitor_matches_ngspice():
    text = LADDER.format(extra="C1 out 0 100p\nC2 a 0 47p")
    circ = Circuit.from_netlist(parse_netlist(text))
    for f in (1e3, 3e5):
        ours = output_noise_density(circ, "out", frequency_hz=f)
        ref = ngspice.run_noise(text, "out", "v1", frequency_hz=f)
        assert ours == pytest.approx(ref, rel=1e-9)


def test_thermal_covariance_of_a_mismatched_gyrator_matches_the_sde():
    """Non-reciprocal circuit (a gyrator with ε = 2, so no equipartition): the Lyapunov
    covariance at the operating point equals the sample covariance of the
    Euler–Maruyama-free, drift-implicit SDE of :func:`simulate_transient`, and
    differs from k_B T C⁻¹ by far more than the tolerance."""
    from anasim.nodal.noise import thermal_covariance

    text = """gyrator rc
R1 a 0 1k
R2 b 0 2k
R3 a b 3k
C1 a 0 1p
C2 b 0 2p
G1 0 a b 0 0.5m
G2 0 b a 0 -1.5m
.end
"""
    circ = Circuit.from_netlist(parse_netlist(text))
    sigma, free = thermal_covariance(circ)
    kT = K_BOLTZMANN * T
    equi = kT * np.diag([1e12, 0.5e12])
    assert abs(sigma[1, 1] / equi[1, 1] - 1) > 0.3
    chains = 300
    vals = jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a), (chains,) + np.shape(a)), circ.values)
    tr = simulate_transient(circ, jax.random.PRNGKey(3), dt=1e-11, n_steps=1500, every=50, values=vals,
                            method="implicit", v0=[0.0, 0.0])
    v = np.asarray(tr.voltages)[:, 10:].reshape(-1, 2)     # 5 ns burn-in (τ ≈ 1.1 ns)
    cov = np.cov(v.T)
    np.testing.assert_allclose(cov, sigma, rtol=0.08, atol=0.08 * np.abs(sigma).max())


@pytest.mark.parametrize("kind", ["resistive", "gyrator"])
def test_relax_noise_is_kT_over_C_per_node(kind):
    """With node capacitance C, each node of a linear resistive network — and of an
    ideal (ε = 0) gyrator network, whose skew part leaves equipartition intact —
    fluctuates with variance k_B T / C about the DC point, independently."""
    from anasim.nodal.hopfield import LayeredWeights, NodalPhysics, solve_layers

    sizes = (3, 4, 2)
    n = 6
    rng = np.random.default_rng(0)
    th0 = rng.uniform(-0.8, 0.8, (4, 3))
    th1 = rng.uniform(-0.8, 0.8, (2, 4))
    w = LayeredWeights(theta0=th0, thetas=(th1,), bias=rng.uniform(-0.1, 0.1, n), backward=(-th1.T,),
                       self_coupling=np.zeros(n))
    cap = 1e-15
    ph = NodalPhysics(kind=kind, diode_is_a=1e-40, g_min_s=2e-6 if kind == "resistive" else 0.0,
                      node_capacitance_f=cap, v_fs_v=0.5)
    draws = 800
    x = np.broadcast_to(rng.uniform(0, 1, 3), (draws, 3))
    s0, s1, _ = solve_layers(sizes, ph, w, x)     # noiseless DC point (same compiled solve)
    sn0, sn1, _ = solve_layers(sizes, ph, w, x, key=jax.random.PRNGKey(5))
    dc = np.concatenate(s0, 1)
    noisy = np.concatenate(sn0, 1)
    if kind == "gyrator":   # both compartment copies are nodes of the circuit
        dc, noisy = np.concatenate([dc, np.concatenate(s1, 1)], 1), np.concatenate([noisy, np.concatenate(sn1, 1)], 1)
    dv = (noisy - dc) * ph.v_fs_v
    kTC = K_BOLTZMANN * T / cap
    var = dv.var(0)
    assert np.all(np.abs(var / kTC - 1) < 0.25), var / kTC         # each node (5 σ of the estimate)
    assert abs(var.mean() / kTC - 1) < 0.1                         # pooled (≥ 4 σ)
    corr = np.corrcoef(dv.T)
    assert np.abs(corr - np.eye(len(var))).max() < 0.15            # independent nodes
    assert np.abs(dv.mean(0)).max() < 6 * np.sqrt(kTC / draws)      # zero mean about the DC point


DIODE = """diode noise
I1 0 a DC {i_bias} AC 1
D1 a 0 dm
R1 a b 10k
R2 b 0 4.7k
C1 a 0 1p
C2 b 0 2p
.model dm D(IS={i_s} N={n})
.end
"""


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
@pytest.mark.parametrize("i_bias", ["50u", "2m"])
def test_output_noise_with_forward_diode_matches_ngspice(i_bias):
    """Shot noise 2q I_D of a forward-biased diode, with the resistors' Johnson noise,
    at both nodes: ngspice's .noise (2q|I_D|, equal here: I_D ≫ I_s)."""
    text = DIODE.format(i_bias=i_bias, i_s="1e-14", n="1.3")
    circ = Circuit.from_netlist(parse_netlist(text))
    for node in ("a", "b"):
        for f in (1.0, 1e7):
            ours = output_noise_density(circ, node, frequency_hz=f)
            ref = ngspice.run_noise(text, node, "i1", frequency_hz=f)
            assert ours == pytest.approx(ref, rel=1e-6), (node, f)


def test_diode_node_variance_zero_bias_equipartition_and_forward_half():
    """A diode ∥ C to ground (the capacitor alone stores the fluctuation): at zero bias
    (n = 1) the junction's shot noise is its conductance's Johnson noise, so the node
    shows k_B T / C (equilibrium); forward biased, 2q I_D = 2 n k_B T g_d gives
    n k_B T / (2C). gmin (1e-12 S, noiseless) is negligible beside g_d here."""
    from anasim.nodal.noise import thermal_covariance

    kT, C = K_BOLTZMANN * T, 1e-12
    zero = Circuit.from_netlist(parse_netlist("d0\nD1 a 0 dm\nC1 a 0 1p\n.model dm D(IS=1e-9 N=1)\n.end\n"))
    sigma, _ = thermal_covariance(zero)
    assert sigma[0, 0] == pytest.approx(kT / C, rel=1e-3)
    fwd = Circuit.from_netlist(parse_netlist("d1\nI1 0 a 1m\nD1 a 0 dm\nC1 a 0 1p\n.model dm D(IS=1e-14 N=1.5)\n.end\n"))
    sigma, _ = thermal_covariance(fwd)
    assert sigma[0, 0] == pytest.approx(1.5 * kT / (2 * C), rel=1e-6)


@pytest.mark.slow
def test_diode_shot_noise_in_the_transient_and_lyapunov_match_the_linearized_circuit():
    """Node a: 100 µA through a diode (g_d = 3.9 mS) ∥ 1 pF, joined by 10 kΩ to node b
    (4.7 kΩ ∥ 0.2 pF). The covariance written here from the linearized circuit
    (scipy's Lyapunov solver; shot noise q(I_D + 2 I_s) two-sided at a, Johnson
    noise 2 k_B T g per resistor) is what ``thermal_covariance`` returns and what the
    SDE (state-dependent shot noise, Itô) settles to; the shot noise sets node a's
    variance: without it that variance would be 14× smaller."""
    import scipy.linalg

    from anasim.nodal.solver import Q_ELECTRON, solve_op, thermal_voltage
    from anasim.nodal.noise import thermal_covariance

    text = DIODE.format(i_bias="100u", i_s="1e-14", n="1").replace("C2 b 0 2p", "C2 b 0 0.2p")
    circ = Circuit.from_netlist(parse_netlist(text))
    ia, ib = circ.node_index("a"), circ.node_index("b")
    va = float(np.asarray(solve_op(circ).voltages)[ia])
    vt = thermal_voltage(T)
    i_d = 1e-14 * np.expm1(va / vt)
    g_d, g1, g2, kT = 1e-14 * np.exp(va / vt) / vt + circ.gmin, 1e-4, 1 / 4.7e3, K_BOLTZMANN * T
    G = np.array([[g_d + g1, -g1], [-g1, g1 + g2]])
    Ci = np.diag([1e12, 5e12])
    johnson = 2 * kT * np.array([[g1, -g1], [-g1, g1 + g2]])
    shot = np.diag([Q_ELECTRON * (i_d + 2e-14), 0.0])
    ref = scipy.linalg.solve_continuous_lyapunov(-Ci @ G, -Ci @ (johnson + shot) @ Ci)
    no_shot = scipy.linalg.solve_continuous_lyapunov(-Ci @ G, -Ci @ johnson @ Ci)
    assert ref[0, 0] / no_shot[0, 0] > 10, ref[0, 0] / no_shot[0, 0]      # 14.4
    order = [list(circ.layout.free).index(k) for k in (ia, ib)]
    sigma, _ = thermal_covariance(circ)
    np.testing.assert_allclose(sigma[np.ix_(order, order)], ref, rtol=1e-6)
    chains = 300
    vals = jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a), (chains,) + np.shape(a)), circ.values)
    tr = simulate_transient(circ, jax.random.PRNGKey(4), dt=2e-12, n_steps=4000, every=40, values=vals,
                            method="implicit")
    v = np.asarray(tr.voltages)[:, 25:][..., [ia, ib]].reshape(-1, 2)    # 2 ns burn-in (τ_b ≈ 0.6 ns)
    cov = np.cov(v.T)
    np.testing.assert_allclose(cov, ref, rtol=0.08, atol=0.08 * np.abs(ref).max())


GYRATOR = """ideal gyrator between two RC nodes
R1 a 0 1k
R2 b 0 1k
C1 a 0 1p
C2 b 0 1p
G1 0 a b 0 2m
G2 0 b a 0 -2m
.end
"""


def test_ota_noise_of_an_ideal_gyrator_closed_forms():
    """Each OTA (γ, g_m = 2 mS) injects 4 k_B T γ g_m into its output node (leak g = 1 mS).
    Stationary: the skew coupling leaves Σ = σ I with σ = k_B T (1 + γ g_m / g) / C
    (7/3 k_B T / C at γ = 2/3), in the Lyapunov covariance and in the SDE. At DC the
    output noise is 4 k_B T (g + γ g_m) / (g² + g_m²) (solving the two KCL equations)."""
    from anasim.nodal.noise import thermal_covariance

    gamma, g, gm, C, kT = 2 / 3, 1e-3, 2e-3, 1e-12, K_BOLTZMANN * T
    circ = Circuit.from_netlist(parse_netlist(GYRATOR))
    sigma0, _ = thermal_covariance(circ)
    np.testing.assert_allclose(sigma0, kT / C * np.eye(2), rtol=1e-9, atol=1e-20)   # noiseless OTAs: kT/C
    sigma, _ = thermal_covariance(circ, vccs_noise_factor=gamma)
    np.testing.assert_allclose(sigma, kT / C * (1 + gamma * gm / g) * np.eye(2), rtol=1e-9, atol=1e-20)
    ours = output_noise_density(circ, "a", vccs_noise_factor=gamma)
    assert ours == pytest.approx(np.sqrt(4 * kT * (g + gamma * gm) / (g ** 2 + gm ** 2)), rel=1e-12)
    chains = 300
    vals = jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a), (chains,) + np.shape(a)), circ.values)
    tr = simulate_transient(circ, jax.random.PRNGKey(6), dt=1e-11, n_steps=1500, every=50, values=vals,
                            method="implicit", v0=[0.0, 0.0], vccs_noise_factor=gamma)
    v = np.asarray(tr.voltages)[:, 10:].reshape(-1, 2)     # 5 ns burn-in (τ = 1 ns)
    np.testing.assert_allclose(np.cov(v.T), sigma, rtol=0.08, atol=0.08 * np.abs(sigma).max())
    with pytest.raises(Exception, match="vccs_noise_factor"):
        thermal_covariance(circ, vccs_noise_factor=-1.0)


@pytest.mark.slow
def test_gyrator_chip_ota_noise_raises_every_node_above_kT_over_C():
    """weights_from_hardware takes the gyrator array's noise factor; with it the
    relaxed states of the node-level circuit fluctuate more than k_B T / C per node
    (added noise intensity can only grow the stationary covariance)."""
    from anasim.circuits import layered
    from anasim.nodal.hopfield import NodalPhysics, solve_layers, weights_from_hardware
    from anasim.circuits.spec import CircuitSpec
    from anasim.devices.gyrator import GyratorArray
    from anasim.devices.profile import DeviceProfile

    sizes = (3, 4, 2)
    spec = CircuitSpec(sizes=sizes, lam=0.0, backward="gyrator", dtype="float64", init_scale=1.0)
    prof = DeviceProfile(name="gyr", coupling=GyratorArray(w_max=2.0, noise_factor=1.5))
    hw = layered.build(spec, prof, layered.init_params(spec, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    cap = 1e-15
    w, ph = weights_from_hardware(spec, hw, NodalPhysics(kind="gyrator", diode_is_a=1e-40,
                                                          node_capacitance_f=cap, v_fs_v=0.5))
    assert ph.ota_noise_factor == 1.5
    draws = 600
    x = np.broadcast_to(np.random.default_rng(0).uniform(0, 1, 3), (draws, 3))
    s0, s1, _ = solve_layers(sizes, ph, w, x)
    sn0, sn1, _ = solve_layers(sizes, ph, w, x, key=jax.random.PRNGKey(5))
    dv = np.concatenate([np.concatenate(a, 1) - np.concatenate(b, 1) for a, b in ((sn0, s0), (sn1, s1))], 1)
    var = (dv * ph.v_fs_v).var(0) / (K_BOLTZMANN * T / cap)
    assert var.min() > 1.25, var     # ≥ 1 exactly; measured 2.2–3.6; without OTA noise 1 ± 0.06


def test_small_signal_batch_of_different_circuits_equals_each_alone():
    """Stamps whose values differ across the batch (here the resistors and VCCS)
    and stamps shared by every circuit (capacitors) assemble to the matrices
    each circuit gives on its own."""
    import dataclasses

    from anasim.nodal.noise import _small_signal_batch

    text = """mixed
V1 in 0 1
R1 in a 1k
R2 a b 2k
R3 b 0 3k
C1 a 0 1p
C2 b 0 2p
G1 0 a b 0 0.5m
D1 a 0 dmod
.model dmod D(IS=1e-14 N=1.5)
.end
"""
    circ = Circuit.from_netlist(parse_netlist(text))
    base = circ.values
    scale = np.array([[1.0], [0.5], [2.0]])
    vals = dataclasses.replace(base, g=np.asarray(base.g)[None] * scale, gm=np.asarray(base.gm)[None] * scale,
                               **{k: np.broadcast_to(getattr(base, k), (3,) + np.shape(getattr(base, k)))
                                  for k in ("c", "i_s", "n", "v", "i")})
    volts = np.random.default_rng(0).uniform(0, 0.7, (3, circ.n_nodes))
    batch = _small_signal_batch(circ, vals, volts, 1e-15, 0.5)
    for k in range(3):
        one = jax.tree_util.tree_map(lambda a, k=k: np.asarray(a)[k:k + 1], vals)
        alone = _small_signal_batch(circ, one, volts[k:k + 1], 1e-15, 0.5)
        for got, ref in zip(batch, alone, strict=True):
            np.testing.assert_allclose(got[k], ref[0], rtol=1e-12, atol=0)
    assert not np.allclose(batch[0][0], batch[0][1])   # the circuits do differ


def test_thermal_draw_does_not_hang_on_the_eigenbasis():
    """Equal RC nodes have Σ = k_B T / C · I: every basis diagonalizes it. The draw
    uses the symmetric root of Σ, so a conductance change in the 12th digit
    changes the draw for the same key in about the 12th digit, not wholesale;
    and over many draws each node still shows k_B T / C."""
    import dataclasses

    from anasim.nodal.solver import solve_op
    from anasim.nodal.noise import thermal_fluctuation

    text = """equal nodes
R1 a 0 1k
R2 b 0 1k
R3 c 0 1k
R4 a b 2k
R5 b c 2k
C1 a 0 1p
C2 b 0 1p
C3 c 0 1p
.end
"""
    circ = Circuit.from_netlist(parse_netlist(text))
    key = jax.random.PRNGKey(7)
    vals = circ.values
    nudged = dataclasses.replace(vals, g=np.asarray(vals.g) * (1 + 1e-12))
    a = thermal_fluctuation(circ, vals, solve_op(circ, vals), key)
    b = thermal_fluctuation(circ, nudged, solve_op(circ, nudged), key)
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=0)
    many = dataclasses.replace(vals, **{k: np.broadcast_to(getattr(vals, k), (4000,) + np.shape(getattr(vals, k)))
                                         for k in ("g", "c", "i_s", "n", "v", "i", "gm")})
    draws = thermal_fluctuation(circ, many, solve_op(circ, many), key)
    np.testing.assert_allclose(draws.var(0), K_BOLTZMANN * T / 1e-12, rtol=0.08)


def test_reciprocal_lyapunov_solves_the_same_equation_as_the_general_one():
    """The symmetric-G, diagonal-C path (eigh in C^{-1/2} coordinates) against the
    Lyapunov residual A Σ + Σ Aᵀ − C⁻¹ N C⁻¹ and against the general solver; a
    circuit with a gyrator (non-symmetric G) is not sent down it."""
    from anasim.nodal.noise import _lyapunov_batch, _lyapunov_reciprocal, _reciprocal

    rng = np.random.default_rng(21)
    nb, n = 5, 9
    M = rng.standard_normal((nb, n, n))
    G = M @ np.swapaxes(M, -1, -2) + 0.1 * np.eye(n)         # a resistive network's G: symmetric, > 0
    K = rng.standard_normal((nb, n, n))
    N = K @ np.swapaxes(K, -1, -2) * 1e-21                    # two-sided noise intensities (A²/Hz)
    c = rng.uniform(0.5, 2.0, (nb, n)) * 1e-15                # node capacitances (F)
    Cm = c[:, :, None] * np.eye(n)
    assert _reciprocal(G, Cm)
    S = _lyapunov_reciprocal(G, N, c)
    A = G / c[:, :, None]
    Q = N / c[:, :, None] / c[:, None, :]
    resid = A @ S + S @ np.swapaxes(A, -1, -2) - Q
    assert np.abs(resid).max() <= 1e-10 * np.abs(Q).max()
    np.testing.assert_allclose(S, _lyapunov_batch(A, Q), rtol=1e-8, atol=1e-12 * np.abs(S).max())
    gyr = G.copy()
    gyr[:, 0, 1] += 1e-3                                      # a VCCS between two nodes
    assert not _reciprocal(gyr, Cm)
