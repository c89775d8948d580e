"""The update gain η of the layered relaxation: the fastest stable damping of
skew-symmetric circuits, and over-relaxation of symmetric ones (last section).

A layered circuit with λ = 0 has hidden couplings W = θ − θᵀ (block
tridiagonal, skew-symmetric). Linearized around a state, one damped step is
a ← (1 − η) a + η J a with J = g D W, D the 0/1 mask of the neurons inside
their linear range and g the activation gain (slope of f). The active block
D W D is still skew-symmetric, so J's eigenvalues are ±iσ_j with
σ_j ≤ σ = g ‖W‖₂. Per mode:

* **sync** (all layers at once): the step multiplies the mode by
  1 − η ± iησ, of modulus √((1 − η)² + η²σ²). It contracts iff
  η < 2 / (1 + σ²); the fastest rate, σ/√(1 + σ²), is at η = 1/(1 + σ²).

* **async** (even layers, then odd ones): the layer graph is bipartite, and
  for one singular pair of the even↔odd coupling G (singular value σ_j) the
  two half-steps e ← (1−η) e + ησ_j o, o ← (1−η) o − ησ_j e give the 2×2
  matrix [[1−η, ησ_j], [−ησ_j(1−η), 1−η−η²σ_j²]], with determinant (1−η)²
  and trace 2(1−η) − η²σ_j². While η²σ_j² ≤ 4(1 − η) its eigenvalues are
  complex, of modulus 1 − η; beyond that they are real, the larger one
  growing with η, and it reaches −1 at ησ_j = 2 − η. So the iteration
  contracts iff η < 2/(1 + σ), and fastest (rate 1 − η) at the edge of the
  complex regime, η²σ² = 4(1 − η): η* = 2(√(1 + σ²) − 1)/σ².

The dyadic nudged phase at λ = 0 couples a⁺ to s⁻ and a⁻ to s⁺ through the
same W; the combined operator [[0, W], [W, 0]] is again skew-symmetric with
the same singular values and the same bipartite layer colouring, so the same
bound applies. The nudge adds −βg to the output layer's diagonal, which only
damps further.

As the dyadic rule grows the couplings during training, σ grows and a fixed
η that was stable at the start stops converging (measured on the 4×500 skew
network of Fashion-MNIST: η = 0.5 async converged in 17 iterations after one
epoch and hit its 200-iteration budget half-way through the second).
``relaxation.eta_auto`` makes the engine use min(η, η*) on every relaxation,
the fastest damping below the stability edge,
with σ from a power iteration on the realized couplings: the loop gain a
controller would set from the weights it has just written.

**Symmetric circuits over-relax.** With λ = 1, W is symmetric, and the
linearized relaxation solves (I − J) a = b by block iteration. The async
schedule is block Gauss–Seidel at η = 1 and block SOR at 1 < η < 2. The
even/odd layer colouring makes I − J consistently ordered. So, by Young's
theorem, if I − J is positive definite (Jacobi spectral radius ρ_J < 1),
SOR contracts for every 0 < η < 2. Gauss–Seidel's rate is ρ_J², and the
fastest η is η_opt = 2/(1 + √(1 − ρ_J²)), with rate η_opt − 1. The trained
4×500 symmetric network is near that singular edge (hidden Lipschitz
constant in the thousands), where η = 1 crawls.

Measured on that network after 12 epochs (256 test images, tol 1e-4): η = 1
needed 116 free and 104 nudged iterations. η = 1.6 needed 24 and 29; η = 1.4
51 and 49; η = 1.8 46 and 26. Against a float64 reference (η = 1.6, tol 1e-12),
the η = 1.6 state is 4.3e-4 off and the η = 1 state 1.9e-3: the faster
contraction also leaves less error behind the same residual. (ρ_GS = 0.924
from 116 iterations gives ρ_J = 0.961 and η_opt ≈ 1.57.) Over-relaxation
also amplifies read noise: for one unit with a fixed target t, a ← (1 − η) a
+ η(t + n) keeps a stationary variance η/(2 − η) times the per-read noise
variance, 4× at η = 1.6. So the noisy-device specs stay at η = 1.

Faster relaxation did not mean better training: on full Fashion-MNIST the
4×500 network trained worse at η = 1.6 than at η = 1 (README, "Over-relaxing
symmetric circuits"), so its spec keeps η = 1.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

#: σ is estimated from below by the power iteration (and the nonlinear
#: dynamics are only bounded by the linearization); this factor on σ keeps η
#: inside the stable region.
SIGMA_MARGIN = 1.1

#: power-iteration steps on WᵀW. On the 4×500 skew couplings after 20 epochs of
#: Fashion-MNIST, 10 steps land 0.7 % below the converged value (5 steps 1.7 %),
#: well inside SIGMA_MARGIN; each step is two sequential passes over W, about
#: 0.2 ms there, and it runs once per chip and training step (before every
#: relaxation when ``relax`` is called without ``eta``).
POWER_ITERS = 10


def stable_eta(sigma: Array, schedule: str) -> Array:
    """The damping η at which the linearized skew-symmetric iteration contracts
    fastest, for spectral radius ``sigma`` = g‖W‖₂ of the step's Jacobian
    (module docstring): 2(√(1 + σ²) − 1)/σ² for ``"async"`` (stable up to
    2/(1 + σ)), 1/(1 + σ²) for ``"sync"`` (stable up to 2/(1 + σ²)).
    Dimensionless; 1 at σ = 0."""
    s2 = jnp.square(jnp.asarray(sigma, jnp.float32))
    if schedule == "async":
        # 2(√(1+s²) − 1)/s² written as 2/(√(1+s²) + 1): no 0/0 at s = 0
        return 2.0 / (jnp.sqrt(1.0 + s2) + 1.0)
    if schedule == "sync":
        return 1.0 / (1.0 + s2)
    raise ValueError(f"schedule must be 'async' or 'sync', got {schedule!r}")


def block_tridiagonal_norm(blocks: Sequence[Array], coef: float, sizes: Sequence[int],
                           iters: int = POWER_ITERS) -> Array:
    """‖W‖₂ of the block-tridiagonal W with W[k+1, k] = F_k and W[k, k+1] = coef·F_kᵀ,
    F_k = ``blocks[k]`` of shape (sizes[k+1], sizes[k]), by power iteration on WᵀW
    from a fixed start vector (jittable; W is never formed)."""
    sizes = tuple(int(n) for n in sizes)

    def apply(v: list, transpose: bool) -> list:
        out = [jnp.zeros_like(x) for x in v]
        for k, F in enumerate(blocks):
            # W v: row block k+1 gets F_k v_k, row block k gets coef F_kᵀ v_{k+1};
            # Wᵀ v: row block k gets F_kᵀ v_{k+1}, row block k+1 gets coef F_k v_k.
            # F_kᵀ v is written v F_k: as F.T @ v, XLA's CPU backend copies the
            # transpose first, about 3× the time of the product itself on a 500×500 block
            if not transpose:
                out[k + 1] = out[k + 1] + F @ v[k]
                out[k] = out[k] + coef * (v[k + 1] @ F)
            else:
                out[k] = out[k] + v[k + 1] @ F
                out[k + 1] = out[k + 1] + coef * (F @ v[k])
        return out

    def norm(v: list) -> Array:
        return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in v))

    # a fixed, generic start vector: a deterministic key, so the estimate is a
    # pure function of the couplings
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes))
    v = [jax.random.normal(k, (n,), jnp.float32) for k, n in zip(keys, sizes)]

    def step(_, carry):
        v, _ = carry
        w = apply(apply(v, False), True)
        nw = norm(w)
        nv = norm(v)
        return [x / jnp.maximum(nw, 1e-30) for x in w], jnp.sqrt(nw / jnp.maximum(nv, 1e-30))

    _, sigma = jax.lax.fori_loop(0, iters, step, (v, jnp.asarray(0.0, jnp.float32)))
    return sigma


def auto_eta(eta_max: float, schedule: str, blocks: Sequence[Array], coef: float, sizes: Sequence[int],
             gain: float) -> Array:
    """min(η_max, η*(SIGMA_MARGIN · gain · ‖W‖₂)): the damping ``relaxation.eta_auto`` uses."""
    sigma = SIGMA_MARGIN * gain * block_tridiagonal_norm(blocks, coef, sizes)
    return jnp.minimum(jnp.asarray(eta_max, jnp.float32), stable_eta(sigma, schedule))
