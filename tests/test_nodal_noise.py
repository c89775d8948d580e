"""Thermal noise: kT/C equipartition of the SDE, output noise vs ngspice .noise and √(4kTR)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import anasim  # noqa: F401
from anasim.circuits import ngspice
from anasim.circuits.netlist import parse_netlist
from anasim.circuits.nodal import (
    K_BOLTZMANN, Circuit, CircuitValues, output_noise_density, simulate_transient)

T = 300.15


def test_rc_stationary_variance_is_kT_over_C():
    r, c = 1e3, 1e-12  # τ = 1 ns, kT/C ≈ 4.1e-9 V² (σ ≈ 64 µV)
    circ = Circuit.from_netlist(parse_netlist(f"rc\nR1 a 0 {r}\nC1 a 0 {c}\n.end\n"))
    chains = 400
    vals = CircuitValues(g=np.full((chains, 1), 1 / r), c=np.full((chains, 1), c), i_s=np.zeros((chains, 0)),
                         n=np.zeros((chains, 0)), v=np.zeros((chains, 0)), i=np.zeros((chains, 0)),
                         gm=np.zeros((chains, 0)))
    tau = r * c
    a = 0.02  # dt g / C
    tr = simulate_transient(circ, jax.random.PRNGKey(0), dt=a * tau, n_steps=1500, every=50, values=vals,
                            v0=np.zeros((chains, 1)))
    v = np.asarray(tr.voltages)[:, 4:, 0]  # drop 4 τ of burn-in (starts at the DC point); samples 1 τ apart
    var = v.var()
    expected = K_BOLTZMANN * T / c
    # Euler–Maruyama's stationary variance of this OU process is kT/C / (1 − a/2)
    assert abs(var / (expected / (1 - a / 2)) - 1) < 0.08, var / expected  # ≈ 4 σ of the estimate
    assert abs(var / expected - 1) < 0.09
    assert abs(v.mean()) < 4 * np.sqrt(expected / v.size * 3)


def test_rc_network_covariance_is_kT_times_inverse_capacitance():
    """Equipartition for a network: stationary covariance k_B T C⁻¹ whatever the resistors
    (drift-implicit stepping, two coupled nodes, one held by a source through a resistor)."""
    text = """net
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
    ia, ib = circ.node_index("a"), circ.node_index("b")
    v_dc = np.zeros(circ.n_nodes)
    v_dc[[ia, ib]] = [0.3 * 8 / 10, 0.3 * 3 / 10]  # the divider's DC point
    tr = simulate_transient(circ, jax.random.PRNGKey(1), dt=1e-10, n_steps=1200, every=40, values=vals,
                            method="implicit", v0=v_dc[circ.layout.free])
    ia, ib = circ.node_index("a"), circ.node_index("b")
    v = np.asarray(tr.voltages)[:, 3:][..., [ia, ib]].reshape(-1, 2)
    cov = np.cov(v.T)
    Cm = np.array([[2e-12 + 0.5e-12, -0.5e-12], [-0.5e-12, 1e-12 + 0.5e-12]])
    expected = K_BOLTZMANN * T * np.linalg.inv(Cm)
    np.testing.assert_allclose(cov, expected, rtol=0.1, atol=0.1 * np.abs(expected).max())
    # the mean is the DC operating point (a divider of 0.3 V)
    np.testing.assert_allclose(v.mean(0), [0.3 * 8 / 10, 0.3 * 3 / 10], atol=2e-6)


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


@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
def test_output_noise_matches_ngspice_noise_and_nyquist():
    text = LADDER.format(extra="")
    circ = Circuit.from_netlist(parse_netlist(text))
    ours = output_noise_density(circ, "out", frequency_hz=1.0)
    ref = ngspice.run_noise(text, "out", "v1", frequency_hz=1.0)
    assert ours == pytest.approx(ref, rel=1e-9)


@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
def test_output_noise_with_capacitor_matches_ngspice():
    text = LADDER.format(extra="C1 out 0 100p\nC2 a 0 47p")
    circ = Circuit.from_netlist(parse_netlist(text))
    for f in (1e3, 3e5):
        ours = output_noise_density(circ, "out", frequency_hz=f)
        ref = ngspice.run_noise(text, "out", "v1", frequency_hz=f)
        assert ours == pytest.approx(ref, rel=1e-9)
