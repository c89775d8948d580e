"""Local learning rules: equilibrium states in, per-coupling updates out.

A rule sees only what the controller read from the hardware through the ADC:
the clamped input ``x`` (shape (batch, n_0)) and, per phase, the layer states
``s = (s_1, ..., s_L)`` (each (batch, n_k), normalized units in [0, 1]). It
never differentiates through the relaxation. Every rule returns an update to
*descend along* as a dict with the shapes of the circuit parameters, averaged
over the batch::

    {"theta0": (n_1, n_0),                      # input projection x -> s_1
     "thetas": ((n_2, n_1), ..., (n_L, n_{L-1})),  # coupling layer k -> k+1
     "biases": ((n_1,), ..., (n_L,))}

What the update is the gradient of differs between rules (tested in
tests/test_rules.py): dyadic learning and EP estimate the gradient of the loss
ℓ at the free equilibrium (exactly as β → 0); CL and CpL are exact gradients of
energy gaps between a clamped and another equilibrium, which are not the loss
(see :func:`contrastive` and :func:`coupled`).

Matrices follow the device convention ``y = W x`` (shape (n_out, n_in)).

Dyadic learning (Høier et al., "Dyadic learning in recurrent and feedforward
models", eq. 5), for any structure λ of W_λ = θ + (2λ − 1) θᵀ, λ̄ = 1 − λ::

    ∇θ_k = −(1/2β) [λ (s⁺_{k+1} s⁺_kᵀ − s⁻_{k+1} s⁻_kᵀ) + λ̄ (s⁺_{k+1} s⁻_kᵀ − s⁻_{k+1} s⁺_kᵀ)]
    ∇θ_0 = −(1/2β) (s⁺_1 − s⁻_1) xᵀ,      ∇b_k = −(1/2β) (s⁺_k − s⁻_k)

where s⁺ relaxed with −β∇ℓ and s⁻ with +β∇ℓ added to its pre-activation.
The θ_0 and bias lines are the θ formula applied to the clamped block s_0 = x
(x is the same in both compartments, so λ drops out) and to a constant unit;
they carry 1/(2β). (docs/design.md, “Learning” writes 1/β for these two lines; expanding
s± = s ± δ shows that 1/β would double their gradient relative to the θ
blocks, and the implicit-differentiation test in tests/test_rules.py fixes the
factor at 1/(2β).) To first order in β the dyadic difference s⁺ − s⁻ solves
exactly the adjoint equation of the free fixed point of W_λ for every λ, and
the estimator is even in β, so its error is O(β²).

Energy-based rules (symmetric circuits, λ = 1; Scellier et al., "Energy-based
learning algorithms for analog computing"): with the Hopfield energy
E = Σ_i Φ(s_i) − ½ sᵀ W s − sᵀ θ_0 x − bᵀ s, Φ' = f⁻¹ (½s² for the hard
sigmoid; its stationary points are the fixed points s = f(W s + θ_0 x + b)) and
θ-derivatives ∂E/∂θ_k = −s_{k+1} s_kᵀ, ∂E/∂θ_0 = −s_1 xᵀ, ∂E/∂b = −s, two
phases a, b give

    ∇ = (∂E/∂θ(s_a) − ∂E/∂θ(s_b)) / (β_a − β_b)

EP: nudging (β_a, β_b) = (β, 0) positive, (0, −β) negative, (β, −β) centered;
CL: output clamped to y vs free (scale 1); CpL: output clamped to
(1 − β) o* + β y vs free, scale 1/β (P), to (1 + β) o* − β y (N), or both (C,
scale 1/(2β)).

What CL and CpL compute (Scellier et al., comparative study). Let Ẽ(θ; c) be
the energy minimized over the hidden layers with the output clamped at c, and
Ẽ_free(θ) = min_c Ẽ(θ; c), reached at the free output o*. By the envelope
theorem ∂_θ Ẽ(θ; c) = ∂E/∂θ at the clamped equilibrium, so

* CL is exactly ∇_θ [Ẽ(θ; y) − Ẽ_free(θ)], the contrastive energy gap, for any
  network. It is not an estimate of ∇ℓ: it vanishes only where the free output
  already equals y, and with saturating neurons it can even point against ∇ℓ
  (a hard-sigmoid output at a rail has zero loss gradient, yet a clamp moves it;
  cosine −0.2 on the 6-8-7-4 test circuit).
* CpL-P is exactly ∇_θ [Ẽ(θ; c₊) − Ẽ_free(θ)]/β with c₊ = (1 − β) o* + β y held
  fixed (N and C likewise). As β → 0 it tends to (y − o*)ᵀ ∂_c∂_θ Ẽ, while
  ∇ℓ = −(∂_c∂_θ Ẽ)ᵀ H⁻¹ (o* − y) with H = ∂²Ẽ/∂c² at o*: CpL estimates the
  gradient of ½ (o* − y)ᵀ H (o* − y) (H frozen), the loss gradient only where
  H = I. Sigmoid neurons give H ⪰ 4I roughly (Φ'' = 1/(s(1 − s)) ≥ 4), hence
  the same direction as ∇ℓ but steps several times longer.

Passive resistive circuits (the node-level λ = 1 circuit of
:mod:`anasim.nodal.hopfield`): there the energy is the network's
co-content, and a coupling w realized as a differential conductance pair adds,
besides −s_i s_j, the leak ½ sign(w)(s_i² + s_j²): raising |w| raises the
conductance both its nodes leak through. Every energy-based rule takes
``leak`` = :func:`coupling_signs` of the realized couplings to include it
(None: the Hopfield energy of an active circuit).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from anasim.errors import AnasimError

Updates = dict


def _outer(a, b):
    """Batch mean of a_i b_jᵀ: (batch, n) x (batch, m) -> (n, m)."""
    return jnp.einsum("bi,bj->ij", a, b) / a.shape[0]


def _check(x, *phases):
    if x.ndim != 2:
        raise AnasimError(f"x: expected (batch, n_0) input, got shape {tuple(x.shape)}")
    n = len(phases[0])
    for s in phases:
        if len(s) != n:
            raise AnasimError("states: every phase must hold the same number of layers")
        for sk in s:
            if sk.ndim != 2 or sk.shape[0] != x.shape[0]:
                raise AnasimError(
                    f"states: expected (batch={x.shape[0]}, n_k) per layer, got shape {tuple(sk.shape)}"
                )


def dyadic(x, s_plus: Sequence, s_minus: Sequence, beta: float, lam: float,
           leak: dict | None = None) -> Updates:
    """Dyadic-learning gradient estimate for structure ``lam`` (λ in [0, 1]).

    ``s_plus``/``s_minus``: the two compartments of each layer at the nudged
    equilibrium (nudge strength ``beta`` > 0). Units: θ updates in
    (state units)² / loss units, like the gradient they estimate. At λ = 1 the
    rule is centered EP on the two compartments, and ``leak``
    (:func:`energy_gradient`) adds a passive network's leak; other λ refuse it.
    """
    if not 0.0 <= lam <= 1.0:
        raise AnasimError(f"lam: expected a structure parameter in [0, 1], got {lam}")
    if isinstance(beta, (int, float)) and beta == 0:
        raise AnasimError("beta: the dyadic rule needs a nonzero nudge strength")
    _check(x, s_plus, s_minus)
    if leak is not None:
        if lam != 1.0:
            raise AnasimError(f"leak: only the lam = 1 (passive, resistive) circuit has a co-content leak "
                              f"term, got lam = {lam}")
        return energy_difference(x, s_plus, s_minus, 1.0 / (2.0 * beta), leak)
    c = -1.0 / (2.0 * beta)
    lb = 1.0 - lam
    thetas = tuple(
        c * (lam * (_outer(s_plus[k + 1], s_plus[k]) - _outer(s_minus[k + 1], s_minus[k]))
             + lb * (_outer(s_plus[k + 1], s_minus[k]) - _outer(s_minus[k + 1], s_plus[k])))
        for k in range(len(s_plus) - 1)
    )
    theta0 = c * _outer(s_plus[0] - s_minus[0], x)
    biases = tuple(c * jnp.mean(sp - sm, axis=0) for sp, sm in zip(s_plus, s_minus))
    return {"theta0": theta0, "thetas": thetas, "biases": biases}


def coupling_signs(theta0, thetas) -> dict:
    """``leak`` argument of the energy-based rules: the signs of the realized
    couplings θ_0 (n_1, n_0) and θ_k (n_{k+1}, n_k), i.e. which conductance of
    each differential pair carries the weight."""
    return {"theta0": jnp.sign(theta0), "thetas": tuple(jnp.sign(t) for t in thetas)}


def energy_gradient(x, s: Sequence, leak: dict | None = None) -> Updates:
    """∂E/∂θ at states ``s`` (batch mean): −s_{k+1}s_kᵀ, −s_1xᵀ, −s for the Hopfield energy.

    ``leak`` (:func:`coupling_signs`): the energy is instead the co-content of a
    passive network of differential conductance pairs, G⁺ = g_min + g max(w, 0)
    between like nodes and G⁻ = g_min + g max(−w, 0) between opposite ones, whose
    co-content per coupling, G⁺(s_i − s_j)² + G⁻(s_i + s_j)² over 2g, adds
    ½ sign(w)(s_i² + s_j²) to each θ entry (the biases are unchanged).
    """
    _check(x, s)
    lowers = (x,) + tuple(s[:-1])
    mats = [-_outer(s[k], lowers[k]) for k in range(len(s))]
    if leak is not None:
        signs = (leak["theta0"],) + tuple(leak["thetas"])
        if len(signs) != len(s):
            raise AnasimError(f"leak: expected signs for {len(s)} coupling matrices, got {len(signs)}")
        msq = lambda a: jnp.mean(a * a, axis=0)  # noqa: E731
        mats = [m + 0.5 * sg * (msq(up)[:, None] + msq(lo)[None, :])
                for m, sg, up, lo in zip(mats, signs, s, lowers)]
    return {
        "theta0": mats[0],
        "thetas": tuple(mats[1:]),
        "biases": tuple(-jnp.mean(sk, axis=0) for sk in s),
    }


def energy_difference(x, s_a: Sequence, s_b: Sequence, scale: float, leak: dict | None = None) -> Updates:
    """``scale · (∂E/∂θ(s_a) − ∂E/∂θ(s_b))``: the common form of EP, CL and CpL
    (``leak``: :func:`energy_gradient`)."""
    _check(x, s_a, s_b)
    ga, gb = energy_gradient(x, s_a, leak), energy_gradient(x, s_b, leak)
    return {
        "theta0": scale * (ga["theta0"] - gb["theta0"]),
        "thetas": tuple(scale * (a - b) for a, b in zip(ga["thetas"], gb["thetas"])),
        "biases": tuple(scale * (a - b) for a, b in zip(ga["biases"], gb["biases"])),
    }


def ep(x, s_a: Sequence, s_b: Sequence, beta_a: float, beta_b: float, leak: dict | None = None) -> Updates:
    """Equilibrium propagation from two phases nudged with ``beta_a`` and ``beta_b``
    (β > 0 pulls toward the target; β = 0 is the free phase; ``leak``: :func:`energy_gradient`)."""
    if isinstance(beta_a, (int, float)) and isinstance(beta_b, (int, float)) and beta_a == beta_b:
        raise AnasimError("nudge: the two EP phases need different nudge strengths")
    return energy_difference(x, s_a, s_b, 1.0 / (beta_a - beta_b), leak)


def ep_positive(x, s_free, s_plus, beta, leak: dict | None = None):
    """EP with nudgings (0, +β): one-sided, bias O(β)."""
    return ep(x, s_plus, s_free, beta, 0.0, leak)


def ep_negative(x, s_minus, s_free, beta, leak: dict | None = None):
    """EP with nudgings (−β, 0): one-sided, bias O(β)."""
    return ep(x, s_free, s_minus, 0.0, -beta, leak)


def ep_centered(x, s_minus, s_plus, beta, leak: dict | None = None):
    """EP with nudgings (−β, +β): symmetric difference, bias O(β²)."""
    return ep(x, s_plus, s_minus, beta, -beta, leak)


def contrastive(x, s_free, s_clamped, leak: dict | None = None) -> Updates:
    """Contrastive learning: output clamped to the target vs the free phase.

    Exactly ∇_θ [Ẽ(θ; y) − Ẽ_free(θ)] (module docstring), not a loss-gradient
    estimate; no β, scale 1.
    """
    return energy_difference(x, s_clamped, s_free, 1.0, leak)


def coupled_clamp(o_free, y, beta: float):
    """Output clamp value of coupled learning: (1 − β) o* + β y (β < 0 for the N phase)."""
    return (1.0 - beta) * o_free + beta * y


def coupled(x, s_a, s_b, beta: float, variant: str = "P", leak: dict | None = None) -> Updates:
    """Coupled learning. ``variant`` "P": s_a clamped at (1−β)o*+βy, s_b free;
    "N": s_a free, s_b clamped at (1+β)o*−βy; "C": s_a at +β, s_b at −β clamp.

    Exactly the gradient of the energy gap between the two phases divided by β
    (2β for C), clamps held fixed; as β → 0 the gradient of the output-Hessian
    weighted squared error ½ (o* − y)ᵀ H (o* − y) (module docstring), with bias
    O(β) for P/N and O(β²) for C. The N clamp must stay inside the output range
    (β < o*/(1 − o*) for y = 1 … ).
    """
    if isinstance(beta, (int, float)) and beta == 0:
        raise AnasimError("beta: coupled learning needs a nonzero clamp strength")
    scale = {"P": 1.0 / beta, "N": 1.0 / beta, "C": 1.0 / (2.0 * beta)}.get(variant)
    if scale is None:
        raise AnasimError(f"variant: expected 'P', 'N' or 'C', got {variant!r}")
    return energy_difference(x, s_a, s_b, scale, leak)


def flatten(updates: Updates):
    """All entries of an update dict as one vector (for cosines and norms)."""
    parts = [updates["theta0"].ravel()]
    parts += [t.ravel() for t in updates["thetas"]]
    parts += [b.ravel() for b in updates["biases"]]
    return jnp.concatenate(parts)


def cosine(u: Updates, v: Updates) -> float:
    """Cosine similarity between two updates (flattened over all couplings)."""
    a, b = flatten(u), flatten(v)
    return float(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


RULES = ("dyadic", "ep-positive", "ep-negative", "ep-centered", "cl", "cpl-p", "cpl-n", "cpl-c")

__all__ = [
    "RULES", "Updates", "contrastive", "cosine", "coupled", "coupled_clamp", "coupling_signs", "dyadic",
    "energy_difference", "energy_gradient", "ep", "ep_centered", "ep_negative", "ep_positive", "flatten",
]
