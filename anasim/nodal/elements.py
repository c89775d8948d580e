"""Element physics of the nonlinear junctions: the diode's current and slope, and
SPICE's junction-voltage limiting of a Newton step."""

from __future__ import annotations

import jax.numpy as jnp

#: Beyond this exponent the diode exponential continues linearly (no overflow
#: while Newton explores; a junction there would carry > 1e50 × I_s).
_EXP_LIMIT = 120.0

def _diode_iv(vd, i_s, vte, gmin, xp=jnp):
    """Junction current (A) and conductance (S) at junction voltage vd (V)."""
    x = vd / vte
    xc = xp.minimum(x, _EXP_LIMIT)
    e = xp.exp(xc)
    e_lin = e * (1.0 + (x - xc))  # linear continuation beyond the limit
    i = i_s * (e_lin - 1.0) + gmin * vd
    g = i_s * e / vte + gmin
    return i, g


def _pnjlim(vnew, vold, vte, vcrit, xp=jnp):
    """Junction-voltage limiting: SPICE's ``pnjlim`` for large forward steps, and the same
    logarithmic map for a forward-biased junction retreating from an overshoot.

    Both replace the step by the junction voltage at which the exponential
    carries the current the Newton step predicted, i_old (1 + Δv / nV_T). SPICE
    applies it above vcrit only; below, a junction pushed past its operating
    current retreats by at most one nV_T per Newton step (Newton on an
    exponential from above), so a retreat whose predicted current falls below
    half of i_old is mapped too. Near the solution steps are ≪ nV_T and neither
    map acts: quadratic convergence is kept.
    """
    arg = 1.0 + (vnew - vold) / vte
    up = (vnew > vcrit) & (xp.abs(vnew - vold) > 2.0 * vte)
    log_step = vold + vte * xp.log(xp.maximum(arg, 1e-300))
    from_pos = xp.where(arg > 0, log_step, vcrit)
    from_neg = vte * xp.log(xp.maximum(vnew / vte, 1e-300))
    down = ~up & (vold > 10.0 * vte) & (arg > 0) & (arg < 0.5)
    lim = xp.where(up, xp.where(vold > 0, from_pos, from_neg), xp.where(down, log_step, vnew))
    return lim, up | down
