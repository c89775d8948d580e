"""Jacobian homeostasis: how far a circuit's fixed point is from functional symmetry.

Laborieux & Zenke ("Improving equilibrium propagation without weight symmetry
through Jacobian homeostasis", ICLR 2024) show that holomorphic EP estimates
J⁻¹-type error vectors where the gradient needs J⁻ᵀ, J the Jacobian of the
dynamics at the free fixed point, so its bias vanishes when J is symmetric.
They penalize the asymmetry with the homeostatic loss

    L_homeo = E_ε[ ‖J ε‖² − εᵀ J² ε ],   ε ~ N(0, I),

whose expectation is tr(JᵀJ) − tr(J²) = ½ ‖J − Jᵀ‖²_F (write J = S + A with
S symmetric and A skew: tr(JᵀJ) = ‖S‖² + ‖A‖², tr(J²) = ‖S‖² − ‖A‖²). The
Hutchinson estimator needs only a Jacobian-vector product Jε and a
vector-Jacobian product Jᵀε, since εᵀJ²ε = (Jᵀε)·(Jε).

The circuit's Jacobian. At a free fixed point s* = f(a*), a* = W s* + θ_0 x + b
(W the recurrent matrix over the layers 1 … L), let D = diag f'(a*). The
relaxation ȧ = −a + W f(a) + … linearizes to −I + W D. In the coordinates
z = D^{1/2} δa (= D^{−1/2} δs, halfway between pre-activation and state
perturbations, where the nudge and the read-out enter alike) it reads

    J = D^{1/2} W D^{1/2} − I,

and the error vector holomorphic EP measures, ds*/dβ = D^{1/2} J⁻¹ D^{1/2} e
(e = ∇ℓ on the output layer), differs from the one the gradient needs,
D^{1/2} J⁻ᵀ D^{1/2} e, exactly by J versus Jᵀ. J − Jᵀ = D^{1/2}(W − Wᵀ)D^{1/2}
is *functional* asymmetry: the weight asymmetry seen through the slopes of the
neurons at this fixed point (saturated neurons do not count). The identity
part cancels in the homeostatic loss; :func:`circuit_jacobian` returns the
coupling part K = D^{1/2} W D^{1/2} = J + I, on which the functional-symmetry
measure ‖S‖/(‖S‖ + ‖A‖) is reported (on J itself the identity would push it
towards 1 for any W).

Public API::

    homeostatic_samples(matvec, rmatvec, eps) -> (n,)        # Hutchinson terms
    homeostatic_loss_exact(J) -> tr(JᵀJ) − tr(J²)
    asymmetry_norm(J) -> ½‖J − Jᵀ‖²_F
    functional_symmetry(J) -> ‖S‖/(‖S‖ + ‖A‖)
    neuron_slopes(spec, params, x, s) -> D per layer
    circuit_jacobian(spec, params, x, s) -> K, (batch, N, N)
    circuit_homeostatic_loss(spec, params, x, s, key, probes) -> scalar
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from anasim.circuits.layered import activation, preactivation_map
from anasim.circuits.spec import CircuitSpec
from anasim.errors import AnasimError

Array = jax.Array


# --- any matrix --------------------------------------------------------------------

def homeostatic_samples(matvec: Callable[[Array], Array], rmatvec: Callable[[Array], Array],
                        eps: Array) -> Array:
    """‖J εᵢ‖² − εᵢᵀ J² εᵢ for each probe εᵢ (rows of ``eps``, shape (n, N)).

    ``matvec(v) = J v`` and ``rmatvec(v) = Jᵀ v`` act on single vectors (N,).
    Their mean over ε ~ N(0, I) estimates ½‖J − Jᵀ‖²_F without forming J.
    """
    eps = jnp.asarray(eps)
    if eps.ndim != 2:
        raise AnasimError(f"eps: expected probes of shape (n, N), got {tuple(eps.shape)}")

    def one(e):
        je = matvec(e)
        return jnp.sum(je * je) - jnp.sum(rmatvec(e) * je)

    return jax.vmap(one)(eps)


def _square(J) -> Array:
    J = jnp.asarray(J)
    if J.ndim < 2 or J.shape[-1] != J.shape[-2]:
        raise AnasimError(f"J: expected square matrices (..., N, N), got shape {tuple(J.shape)}")
    return J


def homeostatic_loss_exact(J) -> Array:
    """The exact expectation of the homeostatic loss: tr(JᵀJ) − tr(J²) (batched over leading axes)."""
    J = _square(J)
    return jnp.sum(J * J, axis=(-2, -1)) - jnp.einsum("...ij,...ji->...", J, J)


def asymmetry_norm(J) -> Array:
    """½ ‖J − Jᵀ‖²_F (batched over leading axes)."""
    J = _square(J)
    A = J - jnp.swapaxes(J, -1, -2)
    return 0.5 * jnp.sum(A * A, axis=(-2, -1))


def functional_symmetry(J) -> Array:
    """‖S‖_F / (‖S‖_F + ‖A‖_F) with S = (J + Jᵀ)/2, A = (J − Jᵀ)/2: 1 symmetric, ½ unrelated, 0 skew."""
    J = _square(J)
    Jt = jnp.swapaxes(J, -1, -2)
    s = jnp.linalg.norm(0.5 * (J + Jt), axis=(-2, -1))
    a = jnp.linalg.norm(0.5 * (J - Jt), axis=(-2, -1))
    return s / (s + a)


# --- the circuit at its fixed point ---------------------------------------------------------

def neuron_slopes(spec: CircuitSpec, params, x: Array, s: tuple) -> tuple:
    """D = f'(a*) per layer, a* the free drive at states ``s`` (each (batch, n_k)).

    At a free fixed point s = f(a*); the slope is taken by forward-mode autodiff
    of each layer's activation (1 or 0 on the pieces of a piecewise-linear one).
    """
    pre = preactivation_map(spec, params, x, s)
    out = []
    for name, a in zip(spec.activations, pre):
        _, d = jax.jvp(activation(name), (a,), (jnp.ones_like(a),))
        out.append(d)
    return tuple(out)


def _flat(t: tuple) -> Array:
    return jnp.concatenate(t, axis=-1)


def _unflat(v: Array, sizes) -> tuple:
    out, i = [], 0
    for n in sizes:
        out.append(v[..., i:i + n])
        i += n
    return tuple(out)


def _coupling_ops(spec: CircuitSpec, params, x1: Array, s1: tuple, root_d: Array):
    """K v = D^{1/2} W D^{1/2} v and Kᵀ v for one example (x1: (1, n_in), s1 per layer (1, n_k))."""
    sizes = spec.sizes[1:]

    def drive(v):
        return _flat(preactivation_map(spec, params, x1, _unflat(v[None], sizes)))[0]

    s_flat = _flat(s1)[0]
    _, vjp = jax.vjp(drive, s_flat)

    def matvec(v):
        return root_d * jax.jvp(drive, (s_flat,), (root_d * v,))[1]

    def rmatvec(v):
        return root_d * vjp(root_d * v)[0]

    return matvec, rmatvec


def circuit_jacobian(spec: CircuitSpec, params, x: Array, s: tuple) -> Array:
    """K = D^{1/2} W D^{1/2} at states ``s`` per example, shape (batch, N, N), N = Σ n_k.

    The Jacobian of the relaxation in symmetric coordinates is J = K − I
    (module docstring); J − Jᵀ = K − Kᵀ. Dense: for analysis of small circuits
    or a few examples.
    """
    D = _flat(neuron_slopes(spec, params, x, s))
    root = jnp.sqrt(D)
    N = D.shape[-1]

    def one(xi, si, ri):
        matvec, _ = _coupling_ops(spec, params, xi[None], tuple(t[None] for t in si), ri)
        return jax.vmap(matvec, out_axes=1)(jnp.eye(N, dtype=ri.dtype))

    return jax.vmap(one)(x, tuple(s), root)


def circuit_homeostatic_loss(spec: CircuitSpec, params, x: Array, s: tuple, key: Array,
                             probes: int = 4) -> Array:
    """Hutchinson estimate of E[½‖J − Jᵀ‖²_F] over the batch, ``probes`` ε per example.

    J is taken at the free fixed point ``s`` (states per layer, (batch, n_k)).
    The fixed point and the neuron slopes D are held constant (stop-gradient):
    differentiating this with respect to ``params`` gives the gradient of the
    regularizer through the couplings of the Jacobian only. That gradient is
    computed by autodiff in the controller, which is acceptable for a
    regularizer (it is not a learning signal the circuit has to produce).
    """
    s = tuple(jax.lax.stop_gradient(t) for t in s)
    D = jax.lax.stop_gradient(_flat(neuron_slopes(spec, params, x, s)))
    root = jnp.sqrt(D)
    batch, N = D.shape
    eps = jax.random.normal(key, (batch, probes, N), D.dtype)

    def one(xi, si, ri, ei):
        matvec, rmatvec = _coupling_ops(spec, params, xi[None], tuple(t[None] for t in si), ri)
        return jnp.mean(homeostatic_samples(matvec, rmatvec, ei))

    return jnp.mean(jax.vmap(one)(x, tuple(s), root, eps))


__all__ = [
    "asymmetry_norm", "circuit_homeostatic_loss", "circuit_jacobian", "functional_symmetry",
    "homeostatic_loss_exact", "homeostatic_samples", "neuron_slopes",
]
