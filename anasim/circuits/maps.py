"""The ideal circuit's maps: neuron nonlinearities, costs and the fixed-point maps.

Pure functions of the parameters (no devices): the activations f and their
gains, the costs ℓ and ∇ℓ, and the maps of the IDEAL layered circuit
(docs/design.md, “Circuits and relaxation”) whose fixed points are its equilibria, so that implicit
differentiation, the analysis and the tests can use them directly:

    fixed_point_map(spec, params, x, s) -> s_new          # ideal free map
    preactivation_map(spec, params, x, s) -> a            # its drive, before f
    fixed_point_residual(spec, params, x, s) -> tuple     # s_new − s
    dyadic_map(spec, params, x, s_plus, s_minus, nudge, target) -> (s+, s-)
    cost(spec, s_out, y), cost_grad(spec, s_out, y)
    activation(name)(a), activation_gain(name)

``params`` is a :class:`~anasim.circuits.layered.Params` (or anything with
its fields ``theta0``, ``thetas``, ``biases``, ``backward``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from anasim.circuits.spec import CircuitSpec
from anasim.devices import nonlinearity
from anasim.errors import AnasimError

Array = jax.Array
Params = Any   # anasim.circuits.layered.Params (defined there, with the hardware it programs)


# --- neuron nonlinearities -------------------------------------------------------

def _identity(a):
    return a


_ACTIVATIONS: dict[str, tuple[Callable, float]] = {
    # name: (f, gain g) with f(a) = P(g a), P a projection onto a box/orthant
    "hard_sigmoid": (nonlinearity.hard_sigmoid, 1.0),
    "tempered_hard_sigmoid": (nonlinearity.tempered_hard_sigmoid, 0.5),
    "relu": (nonlinearity.relu, 1.0),
    "identity": (_identity, 1.0),
    # logistic 1/(1 + e^{−a}) = P(a/4) with P(u) = 1/(1 + e^{−4u}) monotone, slope ≤ 1;
    # analytic, so it also runs on complex pre-activations (holomorphic EP)
    "sigmoid": (jax.nn.sigmoid, 0.25),
}

#: Activations that are holomorphic (complex-analytic) functions of the
#: pre-activation: the only ones a complex-valued relaxation may use.
HOLOMORPHIC_ACTIVATIONS = ("sigmoid", "identity")


def activation(name: str) -> Callable[[Array], Array]:
    """The neuron nonlinearity ``name`` as an elementwise function of the pre-activation.

    hard_sigmoid = clip(a, 0, 1); tempered_hard_sigmoid = clip(a/2, 0, 1);
    relu = max(a, 0); identity = a; sigmoid = 1/(1 + e^{−a}).
    """
    try:
        return _ACTIVATIONS[name][0]
    except KeyError:
        raise AnasimError(f"activation {name!r} not one of {tuple(_ACTIVATIONS)}") from None


def activation_gain(name: str) -> float:
    """Slope g of the nonlinearity's linear region: f(a) = P(g a) with P a projection."""
    return _ACTIVATIONS[name][1]


# --- costs -----------------------------------------------------------------------

def cost(spec: CircuitSpec, s_out: Array, y: Array) -> Array:
    """Per-sample cost ℓ(s_L; y), shape (batch,).

    squared: ½‖s_L − y‖²; cross_entropy: −Σ y log softmax(s_L) (the output
    states read as logits; y one-hot or a distribution).
    """
    if spec.cost == "squared":
        return 0.5 * jnp.sum((s_out - y) ** 2, axis=-1)
    return -jnp.sum(y * jax.nn.log_softmax(s_out, axis=-1), axis=-1)


def cost_grad(spec: CircuitSpec, s_out: Array, y: Array) -> Array:
    """∇ℓ with respect to s_L, shape (batch, n_L): s_L − y, or softmax(s_L) − y·Σy."""
    if spec.cost == "squared":
        return s_out - y
    if jnp.iscomplexobj(s_out):
        # softmax continued analytically: the real shift cancels in the ratio
        e = jnp.exp(s_out - jnp.max(s_out.real, axis=-1, keepdims=True))
        return e / jnp.sum(e, axis=-1, keepdims=True) * jnp.sum(y, axis=-1, keepdims=True) - y
    return jax.nn.softmax(s_out, axis=-1) * jnp.sum(y, axis=-1, keepdims=True) - y



# --- the ideal maps (pure functions of the parameters) ---------------------------------

def backward_coupling(spec: CircuitSpec, params: Params, k: int) -> Array:
    """The matrix that carries layer k+2 into layer k+1 (0-based k), (n_{k+1}, n_{k+2}) in 1-based sizes."""
    if spec.asymmetric:
        return params.backward[k]
    return params.thetas[k].T


def preactivation_map(spec: CircuitSpec, params: Params, x: Array, s: tuple) -> tuple:
    """The free drive of the IDEAL circuit: a_k = θ_{k−1}s_{k−1} + B_k s_{k+1} + b_k per layer.

    B_k = (2λ − 1) θ_kᵀ (or ψ_k for asymmetric); ``s`` a tuple of (batch, n_k).
    Affine in ``s`` (its s-Jacobian is the recurrent matrix W), pure and
    differentiable; :func:`fixed_point_map` applies the activations to it.
    """
    L = spec.n_layers
    coef = 1.0 if spec.asymmetric else 2.0 * spec.lam_mix - 1.0
    out = []
    for j in range(L):
        total = (x @ params.theta0.T) if j == 0 else s[j - 1] @ params.thetas[j - 1].T
        if j < L - 1:
            total = total + coef * (s[j + 1] @ backward_coupling(spec, params, j).T)
        out.append(total + params.biases[j])
    return tuple(out)


def fixed_point_map(spec: CircuitSpec, params: Params, x: Array, s: tuple) -> tuple:
    """One undamped free update of the IDEAL circuit: s_k ← f_k(θ_{k−1}s_{k−1} + B_k s_{k+1} + b_k).

    B_k = (2λ − 1) θ_kᵀ (or ψ_k for asymmetric). ``s`` is a tuple of
    (batch, n_k), k = 1 … L; the fixed points of this map are the free
    equilibria, so implicit differentiation can use it directly. Pure and
    differentiable in ``params``, ``x`` and ``s``.
    """
    pre = preactivation_map(spec, params, x, s)
    return tuple(activation(name)(a) for name, a in zip(spec.activations, pre))


def fixed_point_residual(spec: CircuitSpec, params: Params, x: Array, s: tuple) -> tuple:
    """``fixed_point_map(spec, params, x, s) − s`` per layer (zero at a free equilibrium)."""
    return tuple(n - o for n, o in zip(fixed_point_map(spec, params, x, s), s))


def dyadic_map(spec: CircuitSpec, params: Params, x: Array, s_plus: tuple, s_minus: tuple,
               nudge=(0.0, 0.0), target: Array | None = None) -> tuple[tuple, tuple]:
    """One undamped update of both compartments of the IDEAL circuit (docs/design.md, “Circuits and relaxation”, eq. 8)."""
    L = spec.n_layers
    lam = spec.lam_mix
    lbar = 1.0 - lam
    bp, bm = nudge
    new_p, new_m = [], []
    for j in range(L):
        if j == 0:
            fp = fm = x @ params.theta0.T
        else:
            W = params.thetas[j - 1]
            fp = (lam * s_plus[j - 1] + lbar * s_minus[j - 1]) @ W.T
            fm = (lam * s_minus[j - 1] + lbar * s_plus[j - 1]) @ W.T
        if j < L - 1:
            B = backward_coupling(spec, params, j)
            fp = fp + (lam * s_plus[j + 1] - lbar * s_minus[j + 1]) @ B.T
            fm = fm + (lam * s_minus[j + 1] - lbar * s_plus[j + 1]) @ B.T
        fp = fp + params.biases[j]
        fm = fm + params.biases[j]
        if j == L - 1 and target is not None:
            fp = fp - bp * cost_grad(spec, s_plus[-1], target)
            fm = fm + bm * cost_grad(spec, s_minus[-1], target)
        f = activation(spec.activations[j])
        new_p.append(f(fp))
        new_m.append(f(fm))
    return tuple(new_p), tuple(new_m)


__all__ = ["HOLOMORPHIC_ACTIVATIONS", "activation", "activation_gain", "backward_coupling", "cost", "cost_grad",
           "dyadic_map", "fixed_point_map", "fixed_point_residual", "preactivation_map"]
