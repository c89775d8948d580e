"""The node-level package's own interfaces: the ``[nodal]`` table
(:func:`anasim.nodal.load_nodal_physics`), the ``"nodal"`` engine
(:class:`anasim.nodal.NodalEngine`) and float64 scoped to the package's calls."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

import anasim.nodal
from anasim.circuits import load_circuit
from anasim.circuits.engine import ABILITIES, Engine, engine_for
from anasim.circuits.spec import CircuitSpec
from anasim.errors import ProfileError
from anasim.nodal import (
    Circuit,
    CircuitValues,
    NodalEngine,
    NodalPhysics,
    load_nodal_physics,
    parse_netlist,
    solve_op,
)
from anasim.tables import read_tables


def _write(tmp_path, text: str):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


# --- [nodal] table -------------------------------------------------------------------

def test_nodal_table_from_the_shipped_spec_file(repo_root):
    ph = load_nodal_physics(repo_root / "circuits" / "resistive-nodal.toml")
    assert ph == NodalPhysics(kind="resistive", g_min_s=1e-7, node_capacitance_f=1e-16)


def test_nodal_table_from_a_dict_kind_from_lam_or_given():
    data = {"network": {"sizes": [4, 3], "lam": 0.0}, "nodal": {"temperature_k": 310, "max_newton": 40}}
    ph = load_nodal_physics(data)
    assert (ph.kind, ph.temperature_k, ph.max_newton) == ("gyrator", 310, 40)
    assert load_nodal_physics(data, kind="resistive").kind == "resistive"
    assert data["nodal"] == {"temperature_k": 310, "max_newton": 40}      # the source is not modified
    assert load_nodal_physics({}) == NodalPhysics()                        # no table: every default
    assert load_nodal_physics({"network": {"sizes": [4, 3], "lam": 0.5}}).kind == NodalPhysics().kind


@pytest.mark.parametrize("body,message", [
    ("[nodal]\nkind = \"gyrator\"\n", "unknown key 'nodal.kind' (allowed: v_fs_v, "),
    ("[nodal]\nvfs = 1.0\n", "unknown key 'nodal.vfs'"),
    ("[nodal]\ng_unit_s = \"1e-4\"\n", "key 'nodal.g_unit_s' must be a number, got '1e-4'"),
    ("[nodal]\nmax_newton = 50.0\n", "key 'nodal.max_newton' must be an integer, got 50.0"),
    ("[nodal]\nnode_capacitance_f = true\n", "key 'nodal.node_capacitance_f' must be a number, got True"),
    ("[nodal]\ntemperature_k = nan\n", "key 'nodal.temperature_k' must be finite"),
    ("[nodal]\ng_unit_s = -1e-4\n", "nodal.g_unit_s must be > 0, got -0.0001"),
    ("[nodal]\nnode_capacitance_f = 0\n", "nodal.node_capacitance_f must be > 0 F or None"),
    ("nodal = 3\n", "key 'nodal' must be a table"),
])
def test_nodal_table_errors_name_the_file_and_the_key(tmp_path, body, message):
    path = _write(tmp_path, body + "[network]\nsizes = [4, 3]\nlam = 1.0\n")
    with pytest.raises(ProfileError) as err:
        load_nodal_physics(path)
    assert str(err.value).startswith(f"{path}: "), str(err.value)
    assert message in str(err.value)
    assert "NodalPhysics" not in str(err.value)


def test_nodal_table_errors_of_a_dict_and_of_a_missing_file(tmp_path):
    with pytest.raises(ProfileError, match=r"^circuit spec \(dict\): unknown key 'nodal.x' .*kind follows network.lam"):
        load_nodal_physics({"nodal": {"x": 1}})
    with pytest.raises(ProfileError, match=r"^sweep point 3: unknown key 'nodal.x'"):
        load_nodal_physics({"nodal": {"x": 1}}, where="sweep point 3")
    with pytest.raises(ProfileError, match="no such circuit spec"):
        load_nodal_physics(tmp_path / "missing.toml")


# --- the engine ------------------------------------------------------------------------

def test_engine_for_the_shipped_nodal_spec_is_a_nodal_engine(repo_root):
    path = repo_root / "circuits" / "resistive-nodal.toml"
    spec = load_circuit(path)
    engine = engine_for(spec, read_tables(path)[0])
    assert isinstance(engine, NodalEngine) and isinstance(engine, Engine)
    assert engine.name == "nodal" == spec.engine
    assert engine.physics == load_nodal_physics(path)
    assert engine.abilities == frozenset({"thermal_noise"}) and engine.abilities <= set(ABILITIES)
    assert "jit" not in engine.abilities
    hash(engine)  # a jit static argument
    assert engine == engine_for(spec, read_tables(path)[0])


def test_engine_kind_follows_lam_and_no_capacitance_means_no_thermal_noise():
    gyr = engine_for(CircuitSpec(sizes=(3, 2), lam=0.0, engine="nodal"), {"nodal": {"g_leak_s": 2e-4}})
    assert gyr.physics == NodalPhysics(kind="gyrator", g_leak_s=2e-4)
    assert gyr.abilities == frozenset()
    with pytest.raises(ProfileError, match="unknown key 'nodal.bogus'"):
        engine_for(CircuitSpec(sizes=(3, 2), lam=1.0, engine="nodal"), {"nodal": {"bogus": 1}})


def test_engine_relaxes_as_hopfield_relax_and_reads_through_the_adcs():
    """The engine's calls are the layered chip's and the node-level relax with its physics."""
    from anasim.circuits import layered
    from anasim.devices import ideal_profile
    from anasim.nodal import relax

    spec = CircuitSpec(sizes=(4, 5, 3), lam=1.0, dtype="float64", init_scale=2.0, engine="nodal")
    ph = NodalPhysics(kind="resistive", g_min_s=1e-6, node_capacitance_f=1e-15)
    engine = NodalEngine(ph)
    params = engine.init_params(spec, jax.random.PRNGKey(0))
    assert all(np.asarray(p).dtype == np.float64 for p in jax.tree_util.tree_leaves(params))
    hw = engine.build(spec, ideal_profile(), params, jax.random.PRNGKey(1))
    x = np.random.default_rng(0).uniform(0, 1, (3, 4))
    y = np.eye(3)
    eq = engine.relax(spec, hw, x, jax.random.PRNGKey(2), nudge=(0.1, -0.1), target=y)
    with jax.enable_x64(True):
        ref = relax(spec, hw, x, jax.random.PRNGKey(2), nudge=(0.1, -0.1), target=y, physics=ph)
    for a, b in zip(eq.s_plus + eq.s_minus, ref.s_plus + ref.s_minus):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.float64
    sp, sm = engine.read(hw, eq, jax.random.PRNGKey(3))
    with jax.enable_x64(True):
        rp, rm = layered.read_states(hw, eq, jax.random.PRNGKey(3))
    for a, b in zip(sp + sm, rp + rm):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    hw2 = engine.reprogram(spec, hw, params, jax.random.PRNGKey(4))
    assert jax.tree_util.tree_structure(hw2) == jax.tree_util.tree_structure(hw)
    assert jax.config.jax_enable_x64 is False


# --- float64, scoped --------------------------------------------------------------------

def test_solve_op_is_float64_and_leaves_the_flag_off():
    """A divider with a diode: V_T-scale currents need float64. The solve's voltages
    are float64 and equal the closed form; the caller's float32 default is untouched."""
    assert jax.config.jax_enable_x64 is False
    c = Circuit.from_netlist(parse_netlist("divider\nV1 a 0 1\nR1 a b 1k\nR2 b 0 3k\n.end\n"))
    assert np.asarray(c.values.g).dtype == np.float64
    op = solve_op(c)
    assert op.voltages.dtype == np.float64
    assert op.as_dict()["b"] == pytest.approx(0.75, rel=1e-14)
    vals = CircuitValues(g=np.array([1e-3, 1 / 3e3 + 1e-12]), c=np.zeros(0), i_s=np.zeros(0), n=np.zeros(0),
                         v=np.array([1.0]), i=np.zeros(0), gm=np.zeros(0))
    # a change of 1e-12 S in 3.3e-4 S moves b by ~2e-9 V: invisible in float32
    shift = solve_op(c, vals).as_dict()["b"] - op.as_dict()["b"]
    assert shift == pytest.approx(-0.75 * 0.25 * 1e-12 / (1 / 3e3), rel=1e-3)
    assert jax.config.jax_enable_x64 is False
    assert jax.numpy.zeros(1).dtype == np.float32


def test_import_anasim_nodal_leaves_float32_the_default(repo_root):
    code = ("import jax, jax.numpy as jnp\n"
            "import anasim.nodal\n"
            "from anasim.nodal import Circuit, parse_netlist, solve_op\n"
            "op = solve_op(Circuit.from_netlist(parse_netlist('t\\nV1 a 0 1\\nR1 a b 1k\\nR2 b 0 1k\\n.end\\n')))\n"
            "assert jax.config.jax_enable_x64 is False\n"
            "assert jnp.zeros(1).dtype == jnp.float32\n"
            "assert op.voltages.dtype.name == 'float64'\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_nodal_registers_its_engine():
    from anasim.circuits.engine import engine_names

    assert "nodal" in engine_names()
    assert anasim.nodal.nodal_engine_factory is not None
