"""Lipschitz bounds and estimates against closed forms and measured equilibria."""

import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from anasim.analysis.lipschitz import (
    empirical_estimate,
    general_bound,
    linearized_bound,
    relax_effective,
)
from anasim.circuits import (
    CircuitSpec,
    EffectiveCircuit,
    build,
    effective_matrices,
    init_params,
    load_circuit,
    relax,
)
from anasim.cli import main
from anasim.devices import DeviceProfile, ideal_profile

from anasim.testing import bounded_sym_matrices, gyrator_mismatches, input_pairs, seeds, skew_matrices


@pytest.fixture
def x64():
    """float64 for this test's own JAX computations (the library scopes its own)."""
    with jax.enable_x64(True):
        yield


def single_layer(W, activation="hard_sigmoid"):
    """A circuit whose only layer has recurrent matrix W and the input injected as is (θ_0 = I)."""
    n = W.shape[0]
    gain = 0.5 if activation == "tempered_hard_sigmoid" else 1.0
    return EffectiveCircuit(W=np.asarray(W, np.float64), theta0=np.eye(n), bias=np.zeros(n),
                            sizes=(n, n), gains=np.full(n, gain), activations=(activation,))


def measured_ratio(eff, x1, x2):
    s, res, _ = relax_effective(eff, np.concatenate([x1, x2]), max_iters=20000, tol=1e-12)
    s, res = np.asarray(s), np.asarray(res)
    b = x1.shape[0]
    du = np.linalg.norm((x1 - x2) @ eff.theta0.T, axis=1)
    return np.linalg.norm(s[:b] - s[b:], axis=1), du, float(res.max())


@pytest.mark.slow
@settings(max_examples=15)
@given(W=skew_matrices(), pair=input_pairs(12), act=st.sampled_from(["hard_sigmoid", "relu"]))
def test_skew_symmetric_equilibria_are_non_expansive(W, pair, act):
    n = W.shape[0]
    x1, x2 = (p[:, :n] for p in pair)
    ds, du, res = measured_ratio(single_layer(W, act), x1, x2)
    assert res <= 1e-9
    assert np.all(ds <= du * (1 + 1e-9) + 1e-8)


# λ_max(sym W) = 0.93 under a skew part of norm 2.2: the linearized iteration at
# the skew-bound η has |1 − η(1 − μ)| ≈ 1.0002, so it settles only at a halved η
_EDGE_W = np.array([[0.69354285, 2.48767366], [-1.97935587, 0.67271275]])
_EDGE_PAIR = (np.array([[0.0472865, 1.80185479]]), np.array([[-0.68107313, 1.15371481]]))


@settings(max_examples=15)
@given(W=bounded_sym_matrices(), pair=input_pairs(12),
       act=st.sampled_from(["hard_sigmoid", "relu", "tempered_hard_sigmoid"]))
@example(W=_EDGE_W, pair=_EDGE_PAIR, act="hard_sigmoid")
@pytest.mark.slow
def test_general_bound_holds(W, pair, act):
    n = W.shape[0]
    eff = single_layer(W, act)
    gen = general_bound(eff)
    lam_max = np.linalg.eigvalsh((W + W.T) / 2)[-1]
    g = eff.gains[0]
    # closed form for a uniform gain g: λ_min(I/g − sym W) = 1/g − λ_max(sym W)
    assert gen.margin == pytest.approx(1 / g - lam_max, abs=1e-9)
    x1, x2 = (p[:, :n] for p in pair)
    ds, du, res = measured_ratio(eff, x1, x2)
    assert res <= 1e-9
    assert np.all(ds <= gen.current * du * (1 + 1e-9) + 1e-8)


def test_relaxation_at_the_edge_of_the_default_damping_settles():
    """On _EDGE_W the default η's linearized iteration does not contract; the
    returned state is a fixed point of s = clip(W s + u, 0, 1), checked in numpy."""
    eff = single_layer(_EDGE_W)
    x = np.concatenate(_EDGE_PAIR)
    mu = np.linalg.eigvals(_EDGE_W)
    eta0 = 1 / (1 + np.linalg.norm(_EDGE_W, 2) ** 2)
    assert np.max(np.abs(1 - eta0 * (1 - mu))) > 1          # the skew-bound η does not contract
    s, res, iters = relax_effective(eff, x, max_iters=20000, tol=1e-12)
    s = np.asarray(s)
    assert int(iters) < 20000
    np.testing.assert_allclose(s, np.clip(s @ _EDGE_W.T + x, 0.0, 1.0), atol=1e-9)


def test_linearized_bound_closed_forms(x64):
    """Skew: 1/√(1+σ_min(θ)²) for a balanced bipartite W; feedforward: the finite
    Neumann series; symmetric: 1/min|1 − μ|."""
    rng = np.random.default_rng(0)
    th0, th1 = rng.standard_normal((6, 4)) * 0.4, rng.standard_normal((6, 6)) * 0.4
    for lam in (0.0, 0.5, 1.0):
        spec = CircuitSpec(sizes=(4, 6, 6), lam=lam, dtype="float64")
        params = init_params(spec, jax.random.key(0))
        params = replace(params, theta0=jnp.asarray(th0), thetas=(jnp.asarray(th1),))
        eff = effective_matrices(spec, build(spec, ideal_profile(), params, jax.random.key(1)))
        lin = linearized_bound(eff)
        W = eff.W
        if lam == 0.0:
            want = 1 / np.sqrt(1 + np.linalg.svd(th1, compute_uv=False)[-1] ** 2)
            assert want < 1
        elif lam == 0.5:
            want = np.linalg.norm(np.eye(12) + W, 2)             # W² = 0 for two layers
        else:
            want = 1 / np.min(np.abs(1 - np.linalg.eigvalsh(W)))
        assert lin.hidden == pytest.approx(want, rel=1e-10)
        # output map: x ↦ s_2 of the linear circuit, solved block by block
        if lam == 0.5:
            assert lin.output == pytest.approx(np.linalg.norm(th1 @ th0, 2), rel=1e-10)


def test_untrained_skew_4x500_hidden_constant_is_one(capsys, repo_root):
    """`anasim lipschitz` on the skew 4×500 network reports 1.0. Closed form: W is
    skew, so ‖(I − W)x‖² = ‖x‖² + ‖Wx‖² ≥ ‖x‖² and the constant is ≤ 1; W is
    bipartite between odd layers (500 + 500 + 10 = 1010 units) and even ones
    (1000), so it has a null vector v, (I − W)^{-1} v = v: exactly 1."""
    path = str(repo_root / "circuits/skew-4x500.toml")
    assert main(["lipschitz", path, "--json", "--pairs", "0"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["linearized"]["hidden"] == pytest.approx(1.0, abs=1e-6)
    assert rep["general"]["lam_max_sym"] == pytest.approx(0.0, abs=1e-12)
    sizes = load_circuit(path).sizes[1:]
    assert sum(sizes[0::2]) == 1010 and sum(sizes[1::2]) == 1000


@pytest.mark.slow
@settings(max_examples=3)
@given(eps=gyrator_mismatches(0.3), seed=seeds())
def test_gyrator_mismatch_stays_under_effective_bound(eps, seed):
    """λ = 0 built from gyrators with mismatch ε: the measured constant of the hardware
    relaxation (the engine, through the devices) stays under 1/λ_min(D⁻¹ − sym W_eff)."""
    from anasim.devices.gyrator import GyratorArray

    spec = CircuitSpec(sizes=(5, 6, 5, 4), lam=0.0, backward="gyrator", eta=0.2, max_iters=6000,
                       tol=1e-11, dtype="float64", init_scale=1.5)
    prof = DeviceProfile(name="gyr", coupling=GyratorArray(w_max=2.0, epsilon=eps, epsilon_sigma=0.05,
                                                           g_out_s=1e-6))
    params = init_params(spec, jax.random.key(seed))
    hw = build(spec, prof, params, jax.random.key(seed + 1))
    eff = effective_matrices(spec, hw)
    gen = general_bound(eff)
    sym_part = (eff.W + eff.W.T) / 2
    assert np.max(np.abs(sym_part)) > 0 if eps else True
    assert gen.margin > 0
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(0, 1, (4, 5)), rng.uniform(0, 1, (4, 5))
    e1 = relax(spec, hw, x1, jax.random.key(0))
    e2 = relax(spec, hw, x2, jax.random.key(0))
    assert bool(e1.converged) and bool(e2.converged)
    s1 = np.concatenate([np.asarray(v) for v in e1.s_plus], 1)
    s2 = np.concatenate([np.asarray(v) for v in e2.s_plus], 1)
    du = np.linalg.norm((x1 - x2) @ eff.theta0.T, axis=1)
    assert np.all(np.linalg.norm(s1 - s2, axis=1) <= gen.current * du * (1 + 1e-6) + 1e-8)
    # the dense twin on effective() agrees with the engine on the devices
    s_twin, _, _ = relax_effective(eff, x1, tol=1e-12, max_iters=50000)
    np.testing.assert_allclose(np.asarray(s_twin), s1, atol=1e-7)


@pytest.mark.slow
def test_empirical_estimate_is_below_the_bounds():
    spec = CircuitSpec(sizes=(6, 8, 8, 3), lam=0.0, dtype="float64")
    params = init_params(spec, jax.random.key(3))
    eff = effective_matrices(spec, build(spec, ideal_profile(), params, jax.random.key(4)))
    emp = empirical_estimate(eff, jax.random.key(0), n_pairs=6, ascent_steps=5)
    gen = general_bound(eff)
    assert emp.max_residual <= 1e-9
    assert 0 < emp.hidden_random <= emp.hidden <= gen.current * (1 + 1e-9)
    assert emp.hidden <= 1.0 + 1e-9                  # skew: non-expansive in the current


@pytest.mark.slow
def test_cli_lipschitz_json_and_errors(tmp_path, capsys, repo_root):
    assert main(["lipschitz", str(repo_root / "circuits/tiny.toml"), "--json", "--pairs", "2", "--ascent-steps", "1"]) == 0
    rep = json.loads(capsys.readouterr().out)
    spec = load_circuit(str(repo_root / "circuits/tiny.toml"))
    k_w, k_hw, _ = jax.random.split(jax.random.key(0), 3)
    hw = build(spec, ideal_profile(), init_params(spec, k_w), k_hw)
    assert rep["linearized"]["hidden"] == pytest.approx(linearized_bound(effective_matrices(spec, hw)).hidden)
    assert rep["device"] == "ideal" and set(rep) >= {"linearized", "general", "empirical"}
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nsizes = [4, 3]\nlamda = 0.5\n")
    assert main(["lipschitz", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "lamda" in err and str(bad) in err and "\n" not in err
    assert main(["lipschitz", str(repo_root / "circuits/tiny.toml"), "--pairs", "-1"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("tty", [False, True])
def test_cli_lipschitz_progress_only_on_a_terminal(capsys, monkeypatch, repo_root, tty):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert main(["lipschitz", str(repo_root / "circuits/tiny.toml"), "--pairs", "2", "--ascent-steps", "2"]) == 0
    err = capsys.readouterr().err
    if tty:   # 1 (bounds) + 1 (random pairs) + 2 ascent steps + 1 (final pairs)
        assert "lipschitz" in err and "/5 [" in err
    else:
        assert err == ""


def test_empirical_steps_counts_the_report_steps():
    from anasim.analysis.lipschitz import empirical_steps

    assert empirical_steps(0, 10) == 1
    assert empirical_steps(4, 0) == 2
    assert empirical_steps(4, 3) == 6
