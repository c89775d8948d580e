"""Device abilities are declared on the class and are what the circuits ask.

Each coupling model's declared abilities must match the parts it has
(transposed_read ⇔ mvm_t, in_situ_write ⇔ apply_update, output_load ⇔
output_conductance, skew_link ⇒ a transposed read with forward/effective_t),
and the builders must decide from the declaration, never from a method that
happens to exist or from the class name.
"""

from dataclasses import dataclass
from typing import ClassVar

import jax
import pytest

from anasim.circuits import CircuitSpec, ConvCircuitSpec, ConvLayer, build, conv, init_params
from anasim.devices import GyratorArray, IdealCoupling, ResistiveCrossbar, SLMCrossbar, load_profile
from anasim.devices.base import CouplingDevice
from anasim.devices.profile import DeviceProfile
from anasim.errors import ProfileError

MODELS = (IdealCoupling, SLMCrossbar, ResistiveCrossbar, GyratorArray)
ABILITY_METHODS = {"transposed_read": "mvm_t", "in_situ_write": "apply_update", "output_load": "output_conductance"}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_declared_abilities_match_the_methods(model):
    for ability, method in ABILITY_METHODS.items():
        declared = getattr(model, ability)
        assert isinstance(declared, bool)
        assert declared == callable(getattr(model, method, None)), (model.__name__, ability)
    if model.skew_link:
        assert model.transposed_read
        assert callable(getattr(model, "forward", None)) and callable(getattr(model, "effective_t", None))


def test_shipped_profiles_declare_every_ability(repo_root):
    for path in sorted((repo_root / "devices").glob("*.toml")):
        dev = load_profile(path).coupling
        assert isinstance(dev, CouplingDevice)
        for ability in ("transposed_read", "in_situ_write", "output_load", "skew_link"):
            assert isinstance(getattr(type(dev), ability), bool), (path.name, ability)


@dataclass(frozen=True)
class _OneWayCrossbar:
    """An exact matrix (not an ideal part) that has an ``mvm_t`` method but declares
    no transposed read (say, a read path the model has but the chip does not)."""

    transposed_read: ClassVar[bool] = False
    in_situ_write: ClassVar[bool] = False
    output_load: ClassVar[bool] = False
    skew_link: ClassVar[bool] = False

    def fabricate(self, key, shape):
        return IdealCoupling().fabricate(key, shape)

    def program(self, instance, key, w_target):
        return IdealCoupling().program(instance, key, w_target)

    def mvm(self, state, x, key):
        return IdealCoupling().mvm(state, x, key)

    def mvm_t(self, state, y, key):
        return IdealCoupling().mvm_t(state, y, key)

    def effective(self, state):
        return IdealCoupling().effective(state)


@dataclass(frozen=True)
class GyratorLookalike(IdealCoupling):
    """Named like a gyrator, behaves like a reciprocal crossbar: the name must not matter."""


def _profile(coupling) -> DeviceProfile:
    return DeviceProfile(name="test", coupling=coupling)


def test_transpose_refused_without_declared_transposed_read_even_with_mvm_t():
    assert callable(getattr(_OneWayCrossbar, "mvm_t", None))
    spec = CircuitSpec(sizes=(4, 3, 2), lam=0.0, backward="transpose")
    params = init_params(spec, jax.random.PRNGKey(0))
    with pytest.raises(ProfileError, match="copy"):
        build(spec, _profile(_OneWayCrossbar()), params, jax.random.PRNGKey(1))
    hw = build(CircuitSpec(sizes=(4, 3, 2), lam=0.0, backward="copy"), _profile(_OneWayCrossbar()), params,
               jax.random.PRNGKey(1))
    assert len(hw.backward) == 1


def test_transpose_refused_on_the_conv_engine_without_declared_transposed_read():
    spec = ConvCircuitSpec(input_shape=(4, 4, 1), layers=(ConvLayer("conv", 2), ConvLayer("dense", 3)))
    params = conv.init_params(spec, jax.random.PRNGKey(0))
    with pytest.raises(ProfileError, match="copy"):
        conv.build(spec, _profile(_OneWayCrossbar()), params, jax.random.PRNGKey(1))


def test_class_name_does_not_decide():
    spec = CircuitSpec(sizes=(4, 3, 2), lam=0.0, backward="transpose")
    params = init_params(spec, jax.random.PRNGKey(0))
    hw = build(spec, _profile(GyratorLookalike()), params, jax.random.PRNGKey(1))   # a reciprocal device
    assert hw.backward_mode == "transpose"
    gyr = CircuitSpec(sizes=(4, 3, 2), lam=0.0, backward="gyrator")
    with pytest.raises(ProfileError, match="gyrator"):
        build(gyr, _profile(GyratorLookalike()), params, jax.random.PRNGKey(1))


def test_conv_engine_refuses_skew_links():
    spec = ConvCircuitSpec(input_shape=(4, 4, 1), layers=(ConvLayer("conv", 2), ConvLayer("dense", 3)), lam=0.0)
    params = conv.init_params(spec, jax.random.PRNGKey(0))
    with pytest.raises(ProfileError, match="gyrator arrays are not supported"):
        conv.build(spec, _profile(GyratorArray()), params, jax.random.PRNGKey(1))
