"""Reference gradients of the ideal layered circuit, by implicit differentiation.

The ideal circuit (docs/design.md, “Circuits and relaxation”) has layers s_1 … s_L driven by the clamped
input x, pre-activations a_k and states s_k = f_k(a_k). Its free equilibrium
is the fixed point

    a = W_λ s + θ_0 x + b,   W_λ = θ + (2λ − 1) θᵀ

(block (k+1, k) of θ is θ_k; block (k, k+1) of W is (2λ − 1) θ_kᵀ, or an
independent backward matrix ψ_k for the fully asymmetric structure). The loss
is ℓ(s_L, y) at that fixed point, averaged over the batch.

By the implicit-function theorem, with F(a, p) the right-hand side,
dℓ/dp = g ᵀ ∂F/∂p with the adjoint g solving (I − ∂F/∂a)ᵀ g = ∂ℓ/∂a. Here it
is computed in float64 with dense Jacobians (per example, vmapped), so it is
meant for small circuits: it is the yardstick every local rule is tested
against, not a training method.

The same module solves the *dyadic* nudged equilibrium of Høier et al. eq. 8
and EP/clamped phases exactly (damped iteration, then Newton polish), so the
rules can be tested on exact states independently of the relaxation engines.

Parameters are a dict {"theta0", "thetas", "biases"} (or any object with those
attributes, such as :class:`~anasim.circuits.layered.Params`) and, for
independent backward couplings ψ_k (``lam = "asymmetric"``), their matrices
under ``backward`` (the field of ``Params``) or ``backs``; shapes as in
:mod:`anasim.learning.rules`. Inside this module, and in the gradients it
returns, ψ is keyed ``"backs"``. Activations are callables a -> s.

Every public function computes in float64 (its own float64 scope: the global
``jax_enable_x64`` flag is left alone); the arrays it returns are float64.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from anasim.circuits.precision import in_float64
from anasim.errors import AnasimError


def hard_sigmoid(a):
    """clip(a, 0, 1): the proximal map of the box [0, 1] (units: normalized state)."""
    return jnp.clip(a, 0.0, 1.0)


@in_float64
def as_dict(params) -> dict:
    """Parameters as a float64 dict {"theta0", "thetas", "biases"[, "backs"]}.

    The independent backward couplings ψ_k are read from ``backward`` (the
    field of :class:`~anasim.circuits.layered.Params`; an empty tuple means
    none) or from ``backs``; they are keyed ``"backs"`` in the result.
    """
    get = params.get if isinstance(params, dict) else (lambda k, d=None: getattr(params, k, d))
    out = {
        "theta0": jnp.asarray(get("theta0"), jnp.float64),
        "thetas": tuple(jnp.asarray(t, jnp.float64) for t in get("thetas")),
        "biases": tuple(jnp.asarray(b, jnp.float64) for b in get("biases")),
    }
    backward, backs = get("backward", None), get("backs", None)
    if backward is not None and len(backward) and backs is not None and len(backs):
        raise AnasimError("params: give the backward couplings once, as 'backward' or as 'backs'")
    psi = backward if backward is not None and len(backward) else backs
    if psi is not None and len(psi):
        if len(psi) != len(out["thetas"]):
            raise AnasimError(f"params: expected one backward coupling per θ_k ({len(out['thetas'])}), "
                              f"got {len(psi)}")
        out["backs"] = tuple(jnp.asarray(t, jnp.float64) for t in psi)
    return out


def _sizes(p):
    return tuple(int(b.shape[0]) for b in p["biases"])


def _split(z, sizes):
    out, i = [], 0
    for n in sizes:
        out.append(z[i:i + n])
        i += n
    return out


def loss_value(s_out, y, cost: str):
    """ℓ(s_L, y) for one example: "squared" ½‖s_L − y‖², "cross-entropy" −Σ y log softmax(s_L)."""
    if cost == "squared":
        return 0.5 * jnp.sum((s_out - y) ** 2)
    if cost == "cross-entropy":
        return -jnp.sum(y * jax.nn.log_softmax(s_out))
    raise AnasimError(f"cost: expected 'squared' or 'cross-entropy', got {cost!r}")


def _forward_backward(p, s_fwd, s_bwd, lam):
    """Drive of each layer from its neighbours: θ_{k-1} s_fwd_{k-1} + B_k s_bwd_{k+1}."""
    L = len(p["biases"])
    drive = []
    for k in range(L):
        d = p["biases"][k]
        if k > 0:
            d = d + p["thetas"][k - 1] @ s_fwd[k - 1]
        if k < L - 1:
            back = p["backs"][k] if "backs" in p else (2.0 * lam - 1.0) * p["thetas"][k].T
            d = d + back @ s_bwd[k + 1]
        drive.append(d)
    return drive


def free_map(p, z, x, lam, act):
    """F(a) = W_λ f(a) + θ_0 x + b for one example (flattened pre-activations)."""
    sizes = _sizes(p)
    s = [act(a) for a in _split(z, sizes)]
    drive = _forward_backward(p, s, s, lam)
    drive[0] = drive[0] + p["theta0"] @ x
    return jnp.concatenate(drive)


def _solve(G, z0, eta, iters, newton):
    """Fixed point z = G(z): damped iteration, then Newton steps kept only if they help."""
    z = jax.lax.fori_loop(0, iters, lambda _, z: (1 - eta) * z + eta * G(z), z0)

    def newton_step(_, z):
        r = z - G(z)
        J = jnp.eye(z.shape[0]) - jax.jacfwd(G)(z)
        z_new = z - jnp.linalg.solve(J, r)
        better = jnp.linalg.norm(z_new - G(z_new)) < jnp.linalg.norm(r)
        return jnp.where(better, z_new, z)

    z = jax.lax.fori_loop(0, newton, newton_step, z)
    return z, jnp.max(jnp.abs(z - G(z)))


@partial(jax.jit, static_argnames=("act", "eta", "iters", "newton"))
def _free_one(p, x, lam, act, eta=0.2, iters=4000, newton=0):
    n = sum(_sizes(p))
    return _solve(lambda z: free_map(p, z, x, lam, act), jnp.zeros(n), eta, iters, newton)


@in_float64
def free_equilibrium(params, x, *, lam: float, act: Callable = hard_sigmoid,
                     eta: float = 0.2, iters: int = 4000):
    """Free fixed point: (states per layer, each (batch, n_k); max residual |a − F(a)|)."""
    p = as_dict(params)
    z, res = _free_batch(p, jnp.asarray(x, jnp.float64), lam, act, eta, iters)
    return [act(a) for a in _split_batched(z, _sizes(p))], float(jnp.max(res))


@partial(jax.jit, static_argnames=("act", "eta", "iters"))
def _free_batch(p, x, lam, act, eta, iters):
    return jax.vmap(lambda xi: _free_one(p, xi, lam, act, eta, iters))(x)


def _split_batched(z, sizes):
    out, i = [], 0
    for n in sizes:
        out.append(z[:, i:i + n])
        i += n
    return out


@in_float64
def reference_gradient(params, x, y, *, lam: float, act: Callable = hard_sigmoid,
                       cost: str = "squared", eta: float = 0.2, iters: int = 4000):
    """(loss, gradient dict, max residual) of the batch-mean loss at the free fixed point.

    ``y``: targets, (batch, n_L) (one-hot for classification). The gradient is
    with respect to every entry of ``params`` (θ_k counts in both its forward
    block and its (2λ − 1)θ_kᵀ backward block).
    """
    p = as_dict(params)
    loss, grads, res = _reference_batch(p, jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64),
                                        lam, act, cost, eta, iters)
    return float(loss), grads, float(res)


@partial(jax.jit, static_argnames=("act", "cost", "eta", "iters"))
def _reference_batch(p, x, y, lam, act, cost, eta, iters):
    sizes = _sizes(p)

    def one(xi, yi):
        z, res = _free_one(p, xi, lam, act, eta, iters)
        ell = lambda z: loss_value(act(_split(z, sizes)[-1]), yi, cost)  # noqa: E731
        u = jax.grad(ell)(z)
        J = jax.jacfwd(lambda z: free_map(p, z, xi, lam, act))(z)
        g = jnp.linalg.solve((jnp.eye(z.shape[0]) - J).T, u)
        _, vjp = jax.vjp(lambda q: free_map(q, z, xi, lam, act), p)
        return ell(z), vjp(g)[0], res

    losses, grads, res = jax.vmap(one)(x, y)
    grads = jax.tree_util.tree_map(lambda t: jnp.mean(t, axis=0), grads)
    return jnp.mean(losses), grads, jnp.max(res)


def _nudge_grad(s_out, y, cost):
    return jax.grad(lambda s: loss_value(s, y, cost))(s_out)


@partial(jax.jit, static_argnames=("act", "cost", "eta", "iters", "newton"))
def _dyadic_one(p, x, y, beta, lam, act, cost, eta=0.2, iters=4000, newton=0):
    sizes = _sizes(p)
    n = sum(sizes)
    lb = 1.0 - lam

    def G(z):
        zp, zm = z[:n], z[n:]
        sp = [act(a) for a in _split(zp, sizes)]
        sm = [act(a) for a in _split(zm, sizes)]
        mixp = [lam * a + lb * b for a, b in zip(sp, sm)]
        mixm = [lam * b + lb * a for a, b in zip(sp, sm)]
        difp = [lam * a - lb * b for a, b in zip(sp, sm)]
        difm = [lam * b - lb * a for a, b in zip(sp, sm)]
        # Forward through θ of the mixed state, backward through θᵀ of the difference
        # state (Høier et al. eq. 8); with "backs" the backward matrix replaces θᵀ.
        q = dict(p)
        q_back = p["backs"] if "backs" in p else tuple(t.T for t in p["thetas"])
        q["backs"] = q_back
        dp = _forward_backward(q, mixp, difp, 1.0)
        dm = _forward_backward(q, mixm, difm, 1.0)
        dp[0] = dp[0] + p["theta0"] @ x
        dm[0] = dm[0] + p["theta0"] @ x
        dp[-1] = dp[-1] - beta * _nudge_grad(sp[-1], y, cost)
        dm[-1] = dm[-1] + beta * _nudge_grad(sm[-1], y, cost)
        return jnp.concatenate(dp + dm)

    return _solve(G, jnp.zeros(2 * n), eta, iters, newton)


@in_float64
def dyadic_equilibrium(params, x, y, beta: float, *, lam: float, act: Callable = hard_sigmoid,
                       cost: str = "squared", eta: float = 0.2, iters: int = 4000):
    """Exact nudged dyadic equilibrium (Høier et al. eq. 8): (s_plus, s_minus, residual).

    s⁺ has −β∇ℓ and s⁻ has +β∇ℓ added to the output pre-activation.
    """
    p = as_dict(params)
    if "backs" in p:
        raise AnasimError("params: the dyadic dynamics are defined for W_λ; drop 'backs'")
    sizes = _sizes(p)
    n = sum(sizes)
    z, res = _dyadic_batch(p, jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64), beta, lam, act, cost,
                           eta, iters)
    sp = [act(a) for a in _split_batched(z[:, :n], sizes)]
    sm = [act(a) for a in _split_batched(z[:, n:], sizes)]
    return sp, sm, float(jnp.max(res))


@partial(jax.jit, static_argnames=("act", "cost", "eta", "iters"))
def _dyadic_batch(p, x, y, beta, lam, act, cost, eta, iters):
    return jax.vmap(lambda xi, yi: _dyadic_one(p, xi, yi, beta, lam, act, cost, eta, iters))(x, y)


@partial(jax.jit, static_argnames=("use", "act", "cost", "eta", "iters"))
def _phase_batch(p, x, y, beta, clamp, use, lam, act, cost, eta, iters):
    return jax.vmap(lambda xi, yi, ci: _phase_one(p, xi, yi, beta, ci, use, lam, act, cost, eta, iters))(
        x, y, clamp)


@partial(jax.jit, static_argnames=("act", "cost", "eta", "iters", "newton"))
def _phase_one(p, x, y, beta, clamp, use_clamp, lam, act, cost, eta=0.2, iters=4000, newton=0):
    sizes = _sizes(p)
    n = sum(sizes)

    def states(z):
        s = [act(a) for a in _split(z, sizes)]
        s[-1] = jnp.where(use_clamp, clamp, s[-1])
        return s

    def G(z):
        s = states(z)
        d = _forward_backward(p, s, s, lam)
        d[0] = d[0] + p["theta0"] @ x
        d[-1] = d[-1] - beta * _nudge_grad(s[-1], y, cost)
        return jnp.concatenate(d)

    z, res = _solve(G, jnp.zeros(n), eta, iters, newton)
    return jnp.concatenate(states(z)), res


@in_float64
def phase_equilibrium(params, x, y=None, *, beta: float = 0.0, clamp=None, lam: float = 1.0,
                      act: Callable = hard_sigmoid, cost: str = "squared", eta: float = 0.2,
                      iters: int = 4000):
    """One EP phase (nudge β: −β∇ℓ on the output) or a clamped phase (output
    states fixed to ``clamp``, (batch, n_L)). Returns (states per layer, residual)."""
    p = as_dict(params)
    sizes = _sizes(p)
    x = jnp.asarray(x, jnp.float64)
    y = jnp.zeros((x.shape[0], sizes[-1])) if y is None else jnp.asarray(y, jnp.float64)
    use = clamp is not None
    clamp = jnp.zeros_like(y) if clamp is None else jnp.asarray(clamp, jnp.float64)
    s, res = _phase_batch(p, x, y, beta, clamp, use, lam, act, cost, eta, iters)
    return _split_batched(s, sizes), float(jnp.max(res))


__all__ = [
    "as_dict", "dyadic_equilibrium", "free_equilibrium", "free_map", "hard_sigmoid", "loss_value",
    "phase_equilibrium", "reference_gradient",
]
