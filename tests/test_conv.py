"""Convolutional Hopfield circuits: the unrolled device realization, squeeze pooling,
the dyadic kernel rule against implicit differentiation, and reduction to the ideal.

References are computed independently of the code under test: the Toeplitz
matrix by explicit numpy loops, the transposed convolution by ``jax.vjp`` of
``lax.conv_general_dilated``, the gradient by the implicit-function theorem on
the ideal fixed-point map (dense Jacobian solve in float64).
"""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anasim.circuits import conv as cv
from anasim.devices import DeviceProfile, ResistiveCrossbar, SLMCrossbar, ideal_profile, load_profile
from anasim.errors import AnasimError
from anasim.learning.conv_rules import dyadic_conv


@pytest.fixture
def x64():
    """float64 for this test's own JAX computations (the library scopes its own)."""
    with jax.enable_x64(True):
        yield



def toeplitz_numpy(K: np.ndarray, H: int, W: int) -> np.ndarray:
    """Dense matrix of a same-padded stride-1 cross-correlation, NHWC-flattened, by loops."""
    k, _, ci, co = K.shape
    r = k // 2
    M = np.zeros((H * W * co, H * W * ci))
    for h in range(H):
        for w in range(W):
            for o in range(co):
                row = (h * W + w) * co + o
                for dy in range(k):
                    for dx in range(k):
                        hi, wi = h + dy - r, w + dx - r
                        if 0 <= hi < H and 0 <= wi < W:
                            for c in range(ci):
                                M[row, (hi * W + wi) * ci + c] += K[dy, dx, c, o]
    return M


def one_conv_spec(k=3, ci=2, co=3, H=5, W=6, backward="transpose"):
    return cv.ConvCircuitSpec(input_shape=(H, W, ci), layers=(cv.ConvLayer("conv", co, k),),
                              dtype="float64", backward=backward)


def clean_slm():
    return SLMCrossbar(bits=0)


@pytest.mark.slow
@pytest.mark.parametrize("k", [3, 5])
def test_ideal_realized_matrix_is_toeplitz_and_transpose_is_vjp(k, x64):
    spec = one_conv_spec(k=k)
    p = cv.init_params(spec, jax.random.key(k))
    K = np.asarray(p.kernels[0])
    ref = toeplitz_numpy(K, 5, 6)
    hw = cv.build(spec, ideal_profile(), p, jax.random.key(1))
    M = cv.forward_matrix(spec, hw, 1)
    np.testing.assert_array_equal(M, ref)            # conv primitive: exact
    # the per-copy tile bank on an SLM with every non-ideality off realizes the same matrix
    hw_slm = cv.build(replace(spec, backward="copy"), DeviceProfile(name="c", coupling=clean_slm()), p,
                      jax.random.key(2))
    np.testing.assert_allclose(cv.forward_matrix(spec, hw_slm, 1), ref, atol=1e-14)
    # transposed convolution = jax.vjp of the conv = Mᵀ
    x = jax.random.uniform(jax.random.key(3), (2, 5, 6, 2), jnp.float64)
    u = jax.random.normal(jax.random.key(4), (2, 5, 6, 3), jnp.float64)
    _, vjp = jax.vjp(lambda v: jax.lax.conv_general_dilated(v, p.kernels[0], (1, 1), "SAME",
                                                            dimension_numbers=("NHWC", "HWIO", "NHWC")), x)
    (ref_t,) = vjp(u)
    np.testing.assert_allclose(cv.conv_transpose(u, p.kernels[0]), ref_t, atol=1e-13)
    np.testing.assert_allclose(np.asarray(u).reshape(2, -1) @ ref, np.asarray(ref_t).reshape(2, -1), atol=1e-13)
    # the reciprocal read of a tile bank (resistive crossbar, mvm_t) is the same transpose
    hw_r = cv.build(spec, DeviceProfile(name="r", coupling=ResistiveCrossbar()), p, jax.random.key(5))
    np.testing.assert_allclose(cv.backward_matrix(spec, hw_r, 1), ref.T, atol=1e-12)
    bank = cv._bank_read(hw_r.profile.coupling, hw_r.forward[0], u, k, jax.random.key(6), transposed=True)
    np.testing.assert_allclose(bank, ref_t, atol=1e-12)


@settings(max_examples=30)
@given(b=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 3), seed=st.integers(0, 99))
def test_squeeze_is_a_norm_preserving_permutation(b, h, w, c, seed):
    # numpy arrays in, numpy out (no compilation per shape); the same code traces under jit
    x = np.random.default_rng(seed).normal(size=(b, 2 * h, 2 * w, c))
    y = cv.squeeze(x)
    assert y.shape == (b, h, w, 4 * c)
    np.testing.assert_array_equal(cv.unsqueeze(y), x)
    np.testing.assert_allclose(np.linalg.norm(y), np.linalg.norm(x), rtol=1e-14)
    idx = np.arange(x.size, dtype=np.float64).reshape(x.shape)
    np.testing.assert_array_equal(np.sort(cv.squeeze(idx).ravel()), np.arange(x.size))
    # a 2×2 block of one channel becomes the channels of one pixel
    np.testing.assert_array_equal(y[0, 0, 0, :4 * c:c], [x[0, 0, 0, 0], x[0, 0, 1, 0], x[0, 1, 0, 0], x[0, 1, 1, 0]])
    with pytest.raises(AnasimError):
        cv.squeeze(np.zeros((1, 3, 2, 1)))


def _tiny(lam, output_layer=0, k=3):
    layers = (cv.ConvLayer("conv", 3, k), cv.ConvLayer("conv", 4, 3, pool=True), cv.ConvLayer("dense", 3))
    if output_layer == 1:
        layers = (cv.ConvLayer("conv", 1, k), cv.ConvLayer("conv", 3, k), cv.ConvLayer("dense", 4, pool=True))
    return cv.ConvCircuitSpec(input_shape=(6, 6, 1), layers=layers, lam=lam, output_layer=output_layer,
                              dtype="float64", tol=1e-13, max_iters=3000, eta=0.5, init_scale=1.5)


def _implicit_gradient(spec, p, x, y, s_star):
    """dL/dθ at the free equilibrium by the implicit-function theorem (dense solve)."""
    sizes = [int(np.prod(s.shape)) for s in s_star]
    shapes = [s.shape for s in s_star]

    def unflat(z):
        out, i = [], 0
        for n, sh in zip(sizes, shapes):
            out.append(z[i:i + n].reshape(sh))
            i += n
        return tuple(out)

    def phi(params, z):
        return jnp.concatenate([s.ravel() for s in cv.fixed_point_map(spec, params, x, unflat(z))])

    def loss(z):
        o = unflat(z)[spec.output_layer - 1]
        return 0.5 * jnp.sum((o - y) ** 2) / x.shape[0]

    z = jnp.concatenate([s.ravel() for s in s_star])
    np.testing.assert_allclose(phi(p, z), z, atol=1e-10)      # it is a fixed point
    J = jax.jacfwd(lambda v: phi(p, v))(z)
    g = jnp.linalg.solve(jnp.eye(z.size) - J.T, jax.grad(loss)(z))
    _, vjp = jax.vjp(lambda q: phi(q, z), p)
    (grad,) = vjp(g)
    return grad


def _flat(p: cv.ConvParams):
    return jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(p)])


@pytest.mark.slow
@pytest.mark.parametrize("lam,output_layer,k", [(1.0, 0, 3), (0.0, 0, 3), (0.0, 1, 5)])
def test_dyadic_kernel_rule_matches_implicit_gradient(lam, output_layer, k, x64):
    spec = _tiny(lam, output_layer, k)
    p = cv.init_params(spec, jax.random.key(11))
    p = replace(p, biases=tuple(0.3 + 0.1 * jax.random.normal(jax.random.key(20 + i), b.shape, jnp.float64)
                                for i, b in enumerate(p.biases)))
    hw = cv.build(spec, ideal_profile(), p, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(12), (2, 6, 6, 1), jnp.float64)
    y = jax.random.uniform(jax.random.key(13), (2,) + spec.output_shape, jnp.float64)
    free = cv.relax(spec, hw, x, jax.random.key(1))
    assert bool(free.converged)
    ref = _implicit_gradient(spec, p, x, y, free.s_plus)
    beta = 1e-4
    eq = cv.relax(spec, hw, x, jax.random.key(2), nudge=(beta, beta), target=y, state0=free)
    assert bool(eq.converged)
    est = dyadic_conv(spec, x, eq.s_plus, eq.s_minus, beta)
    a, b = _flat(est), _flat(ref)
    cos = float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
    assert cos >= 0.99, cos
    assert float(jnp.linalg.norm(a) / jnp.linalg.norm(b)) == pytest.approx(1.0, abs=0.05)
    # a shared kernel's update is the sum of its per-copy outer products: compare with
    # autodiff of Σ_positions u ⊗ v through the conv primitive
    u, v = eq.s_plus[1], eq.s_plus[0]
    kern = p.kernels[1]
    auto = jax.grad(lambda K: jnp.sum(u * cv.ideal_forward(spec, 2, K, v)) / x.shape[0])(kern)
    from anasim.learning.conv_rules import correlation
    np.testing.assert_allclose(correlation(spec, 2, u, v), auto, atol=1e-12)


@pytest.mark.slow
def test_relaxation_reaches_the_ideal_fixed_point_sync_and_async(x64):
    # λ = 1 and 0 reach their fixed points in the gradient tests above (same specs)
    x = jax.random.uniform(jax.random.key(4), (2, 6, 6, 1), jnp.float64)
    for lam in (0.0, 0.5, "asymmetric"):
        spec = _tiny(lam)
        p = cv.init_params(spec, jax.random.key(3))
        hw = cv.build(spec, ideal_profile(), p, jax.random.key(0))
        ea = cv.relax(spec, hw, x, jax.random.key(1))
        assert bool(ea.converged) and not bool(ea.diverged)
        # the equilibrium is a fixed point of the independently written ideal map
        for sa, sm in zip(ea.s_plus, cv.fixed_point_map(spec, p, x, ea.s_plus)):
            np.testing.assert_allclose(sm, sa, atol=1e-11)
        if lam == 0.0:      # the synchronous schedule reaches the same point, in more iterations
            es = cv.relax(replace(spec, schedule="sync"), hw, x, jax.random.key(1))
            assert bool(es.converged) and int(ea.iterations) <= int(es.iterations)
            for sa, ss in zip(ea.s_plus, es.s_plus):
                np.testing.assert_allclose(sa, ss, atol=1e-10)


def test_divergence_is_flagged():
    spec = replace(_tiny(1.0), activations=("identity",) * 3, init_scale=30.0, max_iters=200)
    p = cv.init_params(spec, jax.random.key(3))
    hw = cv.build(spec, ideal_profile(), p, jax.random.key(0))
    eq = cv.relax(spec, hw, jnp.ones((1, 6, 6, 1)), jax.random.key(1))
    assert bool(eq.diverged) and not bool(eq.converged)


def _zeroed_slm(d: SLMCrossbar) -> SLMCrossbar:
    return replace(d, bits=0, extinction_ratio=float("inf"), pixel_gain_sigma=0.0, crosstalk_pixel=0.0,
                   crosstalk_detector=0.0, crosstalk_path=0.0, fanout_sigma=0.0, bandwidth_hz=0.0)


def _zeroed_resistive(d: ResistiveCrossbar) -> ResistiveCrossbar:
    return replace(d, bits=0, d2d_sigma=0.0, prog_noise=(0.0, 0.0, 0.0), read_noise=0.0, bandwidth_hz=0.0)


@pytest.mark.parametrize("profile_file,zero,backward", [("slm-10bit.toml", _zeroed_slm, "copy"),
                                                        ("reram.toml", _zeroed_resistive, "transpose")])
@pytest.mark.slow
def test_zero_nonidealities_reduce_to_the_ideal_conv(profile_file, zero, backward, repo_root):
    prof = load_profile(repo_root / "devices" / profile_file)
    spec = cv.ConvCircuitSpec(input_shape=(6, 6, 1), layers=_tiny(0.0).layers[:2], lam=0.0, dtype="float64",
                              tol=1e-13, max_iters=3000, init_scale=1.5, backward=backward)
    p = cv.init_params(spec, jax.random.key(5))
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.key(6), (2, 6, 6, 1), jnp.float64)
    ideal = cv.relax(spec, cv.build(spec, ideal_profile(), p, jax.random.key(0)), x, jax.random.key(1))
    clean = replace(prof, coupling=zero(prof.coupling))
    hw = cv.build(spec, clean, p, jax.random.key(7))
    for k in (1, 2):
        ref = toeplitz_numpy(np.asarray(p.kernels[k - 1]), *spec.coupling_in_shape(k)[:2])
        M = cv.forward_matrix(spec, hw, k)
        if k == 2:      # the coupling sees the squeezed lower layer: undo the permutation
            perm = np.asarray(cv.squeeze(jnp.arange(M.shape[1], dtype=jnp.float64).reshape(
                (1,) + spec.shapes[1]))).ravel().astype(int)
            M = M[:, perm]
        np.testing.assert_allclose(M, ref, atol=1e-12)
    eq = cv.relax(spec, hw, x, jax.random.key(1))
    for a, b in zip(eq.s_plus, ideal.s_plus):
        np.testing.assert_allclose(a, b, atol=1e-10)
    # and the profile as shipped does differ (the check above can fail)
    hw_real = cv.build(spec, prof, p, jax.random.key(7))
    assert np.max(np.abs(cv.forward_matrix(spec, hw_real, 1) - toeplitz_numpy(np.asarray(p.kernels[0]), 6, 6))) > 1e-6


@pytest.mark.parametrize("device", [SLMCrossbar(bits=0, pixel_gain_sigma=0.05),
                                    ResistiveCrossbar(prog_noise=(0.01, 0.0, 0.0))])
@pytest.mark.slow
def test_per_copy_fixed_pattern_makes_copies_of_one_weight_differ(device):
    spec = one_conv_spec(k=3, ci=2, co=3, H=4, W=4, backward="copy")
    p = cv.init_params(spec, jax.random.key(8))
    hw = cv.build(spec, DeviceProfile(name="fpn", coupling=device), p, jax.random.key(9))
    w = np.asarray(cv.tile_weights(spec, hw, 1))                # (H, W, C_out, k², C_in)
    K = np.asarray(p.kernels[0])                                # (k, k, C_in, C_out)
    target = K.reshape(9, 2, 3).transpose(2, 0, 1)              # (C_out, k², C_in)
    copies = w.reshape(16, 3, 9, 2)
    assert np.all(np.std(copies, axis=0) > 0)                   # every weight's copies differ
    assert not np.allclose(copies[0], copies[5])
    # the errors are per copy around the intended weight, not a shared offset
    np.testing.assert_allclose(copies.mean(axis=0), target, atol=0.1 * np.abs(K).max())
    # an unrolled matrix with per-copy errors is no longer a Toeplitz matrix
    M = cv.forward_matrix(spec, hw, 1)
    assert np.max(np.abs(M - toeplitz_numpy(K, 4, 4))) > 1e-4


def test_spec_validation():
    with pytest.raises(AnasimError, match="pool"):
        cv.ConvCircuitSpec(input_shape=(5, 5, 1), layers=(cv.ConvLayer("conv", 2, 3, pool=True),))
    with pytest.raises(AnasimError, match="odd kernel"):
        cv.ConvCircuitSpec(input_shape=(4, 4, 1), layers=(cv.ConvLayer("conv", 2, 4),))
    with pytest.raises(AnasimError, match="independent"):
        cv.ConvCircuitSpec(input_shape=(4, 4, 1), layers=(cv.ConvLayer("conv", 2, 3),), backward="independent")
    with pytest.raises(AnasimError, match="dense"):
        cv.ConvCircuitSpec(input_shape=(4, 4, 1), layers=(cv.ConvLayer("dense", 2), cv.ConvLayer("conv", 2)))
