"""Gyrator arrays: non-reciprocal links that realize skew-symmetric couplings.

A gyrator link between node ``a`` (lower layer) and node ``b`` (upper layer) is
two transconductors back to back (gm-C): ``i_a = g v_b`` into a from b and
``i_b = −(1 + ε) g v_a`` into b from a, so the links' contribution to the node
equations is skew-symmetric when ε = 0 (docs/design.md, “Device contract”). We write the coupling
in the sign convention of the circuits: with θ the programmed target,
``(n_b, n_a)``::

    mvm(x_a)   = (1 + ε) ∘ θ x_a (+ offset_b)      current into layer b
    mvm_t(y_b) = −θᵀ y_b (+ offset_a)              current into layer a

so at ε = 0 the pair is the skew block ``[[0, −θᵀ], [θ, 0]]``.
:meth:`GyratorArray.effective` returns the realized block matrix of both layers
``[[−G_a, −θᵀ], [(1 + ε) ∘ θ, −G_b]]`` (``G_a``, ``G_b`` diagonal output
conductances summed over the OTAs on each node), square of side ``n_a + n_b``;
its symmetric part is ``[[−G_a, ε∘θᵀ/2], [ε∘θ/2, −G_b]]``.

Normalization: θ = ``w_max · g / g_max_s``; node voltages ``v = x · v_fs_v``;
one normalized current unit is ``g_max_s · v_fs_v / w_max`` amperes.

Non-idealities:

* ε: systematic mismatch ``epsilon`` plus per-link spread ``epsilon_sigma`` (fixed
  at fabrication; there is no single published figure, it is *the* knob to sweep),
* ``bits``: transconductances set by a bias DAC with ``2^bits − 1`` levels symmetric
  around 0 over ``[−w_max, w_max]`` (0 = continuous); θ is clipped to ±w_max,
* output conductance: a leak to ground on each OTA's output node, in
  ``effective`` and :meth:`output_conductance` (a load on the node's own voltage,
  not part of ``mvm``, which sees only the other layer). An OTA's output
  conductance g_o ≈ I_bias / V_A and its transconductance g_m ∝ I_bias both
  follow the bias current that programs g, so their ratio, the inverse intrinsic
  gain 1 / (g_m r_o), is fixed by the design and not by the programmed value:
  ``g_out_s`` is g_o of an OTA biased at full scale ``g_max_s``, and a link of
  transconductance |g| loads its output node with ``|g| · g_out_s / g_max_s``
  (an unbiased link, θ = 0, loads nothing). A node sums the loads of the OTAs
  that drive it, one per link, so in normalized units its leak is
  ``(g_out_s / g_max_s) · Σ_links |θ|``,
* output current offset per OTA (``offset_sigma_a`` std, fixed), summed per node,
* OTA output current noise ``4 k T γ |g| Δf`` per transconductor (``bandwidth_hz > 0``),
  independent of the signal: an elementwise draw, no extra matmul.

Energy and time (docs/energy.md). A node settles with the gm-C time constant
``t = C_node / g_max_s`` (the time of one relaxation iteration). A square-law OTA
of transconductance ``|g|`` is biased at ``I_D = |g| V_ov / 2``; it draws
``I_D V_DD`` from the supply for the settling time. One read (one direction of
every link, one OTA each) costs::

    E_read = Σ_links (|g| V_ov / 2) V_DD · C_node / g_max_s

(``|g| = |θ| g_max_s / w_max``; without a state, every link at full scale). A write
sets the links' bias DACs: not modelled, counted 0 (a register write per link,
negligible next to the bias currents; assumed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from anasim.devices.noise import K_B, counter_normal
from anasim.devices.params import param

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GyratorInstance:
    """Fixed pattern of one gyrator array (a pytree).

    eps: per-link mismatch ε, shape ``(n_b, n_a)``.
    offset_b, offset_a: summed OTA offset currents per node (normalized), ``(n_b,)``, ``(n_a,)``.
    """

    eps: Array
    offset_b: Array
    offset_a: Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GyratorState:
    """A programmed gyrator array (a pytree).

    theta: realized (quantized) θ, ``(n_b, n_a)``.
    fwd: ``(1 + ε) ∘ θ``, ``(n_b, n_a)``.
    offset_b, offset_a: offset currents per node (normalized).
    std_b, std_a: OTA noise std per node (normalized), ``(n_b,)``, ``(n_a,)`` (empty when off).
    """

    theta: Array
    fwd: Array
    offset_b: Array
    offset_a: Array
    std_b: Array
    std_a: Array


@dataclass(frozen=True)
class GyratorArray:
    """Array of gm-C gyrator links between a lower layer a and an upper layer b."""

    # the OTA pair's reverse read is −θᵀ, and each OTA loads its output node
    transposed_read: ClassVar[bool] = True
    in_situ_write: ClassVar[bool] = False
    output_load: ClassVar[bool] = True
    skew_link: ClassVar[bool] = True
    #: the parameters of the energy and time model (printed by ``anasim devices``)
    energy_params: ClassVar[tuple] = ("g_max_s", "c_node_f", "v_dd_v", "v_ov_v")

    w_max: float = param(0.5, "1", 0.0, doc="normalized full-scale coupling (g = g_max_s)", lo_open=True)
    g_max_s: float = param(100e-6, "S", 0.0, 1.0, "full-scale transconductance", lo_open=True,
                           source="assumed design value: 100 µS, with C_node a 1 ns node time constant")
    v_fs_v: float = param(0.5, "V", 0.0, 100.0, "node voltage at normalized state 1", lo_open=True)
    bits: int = param(0, "bit", 0, 24, "bias-DAC resolution of g (0 = continuous)")
    epsilon: float = param(0.0, "1", -1.0, 1.0, "systematic mismatch ε of the b-side transconductor")
    epsilon_sigma: float = param(0.0, "1", 0.0, 1.0, "per-link spread of ε (std)")
    g_out_s: float = param(0.0, "S", 0.0, 1.0, "output conductance of one OTA biased at full scale g_max_s "
                           "(scales with |g|)")
    offset_sigma_a: float = param(0.0, "A", 0.0, 1.0, "output offset current of one OTA (std)")
    noise_factor: float = param(2.0 / 3.0, "1", 0.0, 100.0, "OTA excess noise factor γ (i² = 4kTγ|g|Δf)")
    bandwidth_hz: float = param(0.0, "Hz", 0.0, 1e12, "noise bandwidth Δf (0 = noiseless)")
    temperature_k: float = param(300.0, "K", 0.0, 1e4, "temperature")
    # Energy and time (module docstring). Each default's source is its `source`.
    v_dd_v: float = param(1.2, "V", 0.0, 100.0, "OTA supply voltage", lo_open=True,
                          source="assumed: 1.2 V, a common core supply of the CMOS nodes OTAs are built in")
    v_ov_v: float = param(0.2, "V", 0.0, 10.0, "OTA input-pair overdrive voltage V_ov", lo_open=True,
                          source="g_m/I_D = 2/V_ov = 10 /V, the strong-inversion end of the 5-25 /V of "
                                 "the g_m/I_D method (Jespers & Murmann, Systematic Design of Analog "
                                 "CMOS Circuits, 2017); square law (Razavi, Design of Analog CMOS "
                                 "Integrated Circuits, ch. 2-3); gives g_m r_o = 50 in gyrator-gmc.toml")
    c_node_f: float = param(100e-15, "F", 0.0, 1.0, "node capacitance C (settling C / g_max_s)", lo_open=True,
                            source="assumed: 100 fF, the upper end of the tens to hundreds of fF of OTA "
                                   "output capacitance (docs/design.md, 'Published device figures')")

    def __post_init__(self):
        if self.bits == 1:
            raise ValueError("bits must be 0 (continuous) or >= 2 (levels symmetric around 0)")

    @property
    def current_unit_a(self) -> float:
        """Amperes per normalized current unit: ``g_max_s · v_fs_v / w_max``."""
        return self.g_max_s * self.v_fs_v / self.w_max

    @property
    def leak_per_theta(self) -> float:
        """Output conductance per unit |θ| of transconductance, ``g_out_s / g_max_s`` = 1 / (g_m r_o).

        Normalized conductance is ``w_max · G / g_max_s`` and a link's
        transconductance is ``|θ| g_max_s / w_max``, so the ``w_max`` cancels.
        """
        return self.g_out_s / self.g_max_s

    # --- energy and time (docs/energy.md) ----------------------------------------------

    def read_time_s(self) -> float:
        """Settling time of a node (s): ``C_node / g_max_s``."""
        return self.c_node_f / self.g_max_s

    def read_energy_j(self, shape, x=1.0, state=None, transposed: bool = False) -> float:
        """Energy of one read, one OTA per link (J): ``Σ_links (|g| V_ov / 2) V_DD C / g_max``.

        The bias current does not depend on the input ``x``; ``state`` None: every link at
        full scale ``g_max_s`` (an upper bound)."""
        del x, transposed
        n_b, n_a = shape
        if state is None:
            g_sum = n_b * n_a * self.g_max_s
        else:
            g_sum = float(jnp.sum(jnp.abs(state.theta))) * self.g_max_s / self.w_max
        return g_sum * self.v_ov_v / 2 * self.v_dd_v * self.read_time_s()

    def write_energy_j(self, shape, old=None, new=None) -> float:
        """A write sets bias DACs: counted 0 (assumed negligible; module docstring)."""
        del shape, old, new
        return 0.0

    def write_time_s(self, shape, old=None, new=None) -> float:
        """The bias currents settle within a node time constant: ``C_node / g_max_s``."""
        del shape, old, new
        return self.read_time_s()

    def fabricate(self, key: Array, shape: tuple[int, int]) -> GyratorInstance:
        n_b, n_a = shape
        ke, kb, ka = jax.random.split(key, 3)
        eps = jnp.full((n_b, n_a), self.epsilon)
        if self.epsilon_sigma:
            eps = eps + self.epsilon_sigma * jax.random.normal(ke, (n_b, n_a))
        off_b, off_a = jnp.zeros((n_b,)), jnp.zeros((n_a,))
        if self.offset_sigma_a:
            # each node carries one OTA output per link: n_a on b, n_b on a
            s = self.offset_sigma_a / self.current_unit_a
            off_b = s * jnp.sqrt(n_a) * jax.random.normal(kb, (n_b,))
            off_a = s * jnp.sqrt(n_b) * jax.random.normal(ka, (n_a,))
        return GyratorInstance(eps=eps, offset_b=off_b, offset_a=off_a)

    def quantize(self, theta: Array) -> Array:
        theta = jnp.clip(theta, -self.w_max, self.w_max)
        if self.bits:
            step = self.w_max / (2 ** (self.bits - 1) - 1)
            theta = step * jnp.round(theta / step)
        return theta

    def program(self, instance: GyratorInstance, key: Array, w_target: Array) -> GyratorState:
        """Set the links' transconductances to θ = ``w_target`` ``(n_b, n_a)``."""
        del key
        theta = jnp.asarray(w_target)
        dt = theta.dtype
        theta = self.quantize(theta)
        fwd = theta * (1 + instance.eps.astype(dt)) if (self.epsilon or self.epsilon_sigma) else theta
        if self.bandwidth_hz:
            # i² = 4kTγ|g|Δf per OTA; a node sums one OTA per link; in normalized units
            c = 4 * K_B * self.temperature_k * self.noise_factor * self.bandwidth_hz
            g_per_theta = self.g_max_s / self.w_max
            std_b = jnp.sqrt(c * g_per_theta * jnp.abs(fwd).sum(1)) / self.current_unit_a
            std_a = jnp.sqrt(c * g_per_theta * jnp.abs(theta).sum(0)) / self.current_unit_a
        else:
            std_b = std_a = jnp.zeros((0,), dt)
        return GyratorState(theta=theta, fwd=fwd, offset_b=instance.offset_b.astype(dt),
                            offset_a=instance.offset_a.astype(dt), std_b=std_b.astype(dt),
                            std_a=std_a.astype(dt))

    def mvm(self, state: GyratorState, x: Array, key: Array) -> Array:
        """Current into layer b, ``(1 + ε) ∘ θ x_a`` (+ offset, noise); ``(..., n_a)`` → ``(..., n_b)``."""
        y = x @ state.fwd.T
        if self.offset_sigma_a:
            y = y + state.offset_b
        if self.bandwidth_hz:
            y = y + state.std_b * counter_normal(key, y.shape, y.dtype)
        return y

    def mvm_t(self, state: GyratorState, y: Array, key: Array) -> Array:
        """Current into layer a, ``−θᵀ y_b`` (+ offset, noise); ``(..., n_b)`` → ``(..., n_a)``."""
        x = -(y @ state.theta)
        if self.offset_sigma_a:
            x = x + state.offset_a
        if self.bandwidth_hz:
            x = x + state.std_a * counter_normal(key, x.shape, x.dtype)
        return x

    def forward(self, state: GyratorState) -> Array:
        """Realized b ← a coupling ``(1 + ε) ∘ θ``, ``(n_b, n_a)``."""
        return state.fwd

    def backward(self, state: GyratorState) -> Array:
        """Realized a ← b coupling ``−θᵀ``, ``(n_a, n_b)``."""
        return -state.theta.T

    def effective_t(self, state: GyratorState) -> Array:
        """The realized matrix of the transposed read ``mvm_t``: ``−θᵀ``, ``(n_a, n_b)``."""
        return -state.theta.T

    def output_conductance(self, state: GyratorState) -> tuple[Array, Array]:
        """Total output conductance on each node (normalized): ``(G_a (n_a,), G_b (n_b,))``.

        Node a is driven by the OTAs of transconductance |θ| (``i_a = g v_b``),
        node b by those of |(1 + ε) θ|; each loads it in proportion to its g.
        """
        r = self.leak_per_theta
        dt = state.theta.dtype
        return ((r * jnp.abs(state.theta).sum(0)).astype(dt), (r * jnp.abs(state.fwd).sum(1)).astype(dt))

    def effective(self, state: GyratorState) -> Array:
        """Realized block matrix ``[[−G_a, −θᵀ], [(1+ε)∘θ, −G_b]]``, ``(n_a+n_b, n_a+n_b)``."""
        g_a, g_b = self.output_conductance(state)
        top = jnp.concatenate([-jnp.diag(g_a), -state.theta.T], axis=1)
        bot = jnp.concatenate([state.fwd, -jnp.diag(g_b)], axis=1)
        return jnp.concatenate([top, bot], axis=0)


__all__ = ["GyratorArray", "GyratorInstance", "GyratorState"]
