"""Circuit specs: the shipped files load, bad files fail with one line naming file and key."""

from pathlib import Path

import jax
import numpy as np
import pytest

from anasim.circuits import CircuitSpec, build, init_params, load_circuit, relax, resolve_device_path
from anasim.devices import ideal_profile, load_profile
from anasim.devices.slm import SLMCrossbar
from anasim.devices.profile import DeviceProfile
from anasim.errors import ProfileError



def test_shipped_specs_load_and_name_an_existing_profile(repo_root):
    shipped = sorted((repo_root / "circuits").glob("*.toml"))
    assert len(shipped) >= 8
    for path in shipped:
        spec = load_circuit(path)
        assert spec.sizes[0] == 784 or spec.name == "tiny", path.name
        dev = resolve_device_path(spec)
        assert dev is not None and dev.exists(), path.name
        load_profile(dev)
        assert spec.engine in ("iterative", "nodal")
        hash(spec)  # a static argument of jit
        hash(spec.physics())


def test_paper_networks_are_there(repo_root):
    for name, lam in (("skew", 0.0), ("ff", 0.5), ("sym", 1.0)):
        for suffix, device in (("", "ideal"), ("-slm", "slm-10bit-500")):
            spec = load_circuit(repo_root / "circuits" / f"{name}-4x500{suffix}.toml")
            assert spec.sizes == (784, 500, 500, 500, 500, 10) and spec.lam == lam
            assert Path(spec.device).stem == device


BAD = [
    ("[network]\nsizes = [4, 3]\nfoo = 1\n", "network.foo"),
    ("bar = 1\n[network]\nsizes = [4, 3]\n", "'bar'"),
    ("[network]\nsizes = [4, 3]\nlam = nan\n", "network.lam"),
    ("[network]\nsizes = [4, 3]\nlam = 1.5\n", "network.lam"),
    ("[network]\nsizes = [4, 3]\nlam = \"skew\"\n", "network.lam"),
    ("[network]\nsizes = [4, 3]\nactivation = \"tanh\"\n", "network.activation"),
    ("[network]\nsizes = [4, 3]\nbackward = \"mirror\"\n", "network.backward"),
    ("[network]\nsizes = [4, 3]\nbackward = \"independent\"\n", "independent"),
    ("[network]\nsizes = [4, \"3\"]\n", "network.sizes"),
    ("[network]\nsizes = [4]\n", "network.sizes"),
    ("[network]\nlam = 0.0\n", "network.sizes"),
    ("[network]\nsizes = [4, 3]\n[relaxation]\neta = 0\n", "relaxation.eta"),
    ("[network]\nsizes = [4, 3]\n[relaxation]\neta = 2.0\n", "relaxation.eta"),
    ("[network]\nsizes = [4, 3]\n[relaxation]\nmax_iters = 2.5\n", "relaxation.max_iters"),
    ("[network]\nsizes = [4, 3]\n[relaxation]\nschedule = \"random\"\n", "relaxation.schedule"),
    ("[network]\nsizes = [4, 3]\n[relaxation]\ntol = inf\n", "relaxation.tol"),
    ("[network]\nsizes = [4, 3]\n[training]\nbeta = nan\n", "training.beta"),
    ("[network]\nsizes = [4, 3\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,key", BAD)
def test_bad_specs_name_file_and_key(tmp_path, text, key):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_circuit(path)
    msg = str(err.value)
    assert str(path) in msg and key in msg and "\n" not in msg


def test_missing_file():
    with pytest.raises(ProfileError, match="no such circuit spec"):
        load_circuit("/nonexistent/c.toml")


def test_realization_needs_a_capable_device():
    spec = CircuitSpec(sizes=(4, 3, 2), backward="transpose")
    slm = DeviceProfile(name="slm", coupling=SLMCrossbar())
    with pytest.raises(ProfileError, match="copy"):
        build(spec, slm, init_params(spec, jax.random.key(0)), jax.random.key(1))
    with pytest.raises(ProfileError, match="gyrator"):
        spec_g = CircuitSpec(sizes=(4, 3, 2), backward="gyrator")
        build(spec_g, ideal_profile(), init_params(spec_g, jax.random.key(0)), jax.random.key(1))


def test_flawless_slm_circuit_is_the_ideal_circuit():
    """An SLM with every non-ideality off (continuous levels, no leak, no noise)
    realizes the exact matrices: the circuit reduces to the ideal one."""
    spec = CircuitSpec(sizes=(6, 5, 3), lam=0.0, backward="copy", eta=0.4, max_iters=500, tol=1e-6)
    params = init_params(spec, jax.random.key(0))
    x = np.random.default_rng(0).uniform(0, 1, (3, 6))
    y = np.eye(3)
    ideal = relax(spec, build(spec, ideal_profile(), params, jax.random.key(1)), x, jax.random.key(2),
                  nudge=(0.1, 0.1), target=y)
    slm = DeviceProfile(name="slm-perfect", coupling=SLMCrossbar(bits=0))
    real = relax(spec, build(spec, slm, params, jax.random.key(1)), x, jax.random.key(2),
                 nudge=(0.1, 0.1), target=y)
    for a, b in zip(ideal.s_plus + ideal.s_minus, real.s_plus + real.s_minus):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert int(ideal.iterations) == int(real.iterations)


def test_nodal_table_is_left_to_the_nodal_package(tmp_path):
    """The [nodal] table belongs to anasim.nodal (it validates it); the circuit spec
    accepts it, ignores it, and takes the engine from [relaxation]."""
    path = tmp_path / "c.toml"
    path.write_text("[network]\nsizes = [4, 3]\nlam = 1.0\n[relaxation]\nengine = \"nodal\"\n"
                    "[nodal]\nnode_capacitance_f = 1e-15\nwhatever = 1\n")
    spec = load_circuit(path)
    assert spec.engine == "nodal" and not hasattr(spec, "nodal")
    assert spec.physics() == CircuitSpec(sizes=(4, 3), lam=1.0, engine="nodal")
    with pytest.raises(ProfileError, match="engine"):
        CircuitSpec(sizes=(4, 3), lam=0.5, engine="nodal")
