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
