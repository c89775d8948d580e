"""SPICE-subset netlists: values, errors, round trip, and the `anasim op` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from anasim.nodal import ngspice
from anasim.nodal.netlist import (
    DiodeModel, Element, Netlist, NetlistError, format_netlist, parse_netlist, parse_value, read_netlist)
from anasim.nodal.solver import Circuit, solve_op
from anasim.cli import main
from anasim.errors import AnasimError


@pytest.mark.parametrize("text,value", [
    ("4.7k", 4.7e3), ("1meg", 1e6), ("1MEG", 1e6), ("2m", 2e-3), ("10uF", 10e-6), ("3n", 3e-9),
    ("5p", 5e-12), ("7f", 7e-15), ("1e-3", 1e-3), ("-2.5", -2.5), (".5g", 5e8), ("1t", 1e12),
    ("10kOhm", 1e4), ("1mil", 25.4e-6)])
def test_si_suffixes(text, value):
    assert parse_value(text) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("body,line,expect", [
    ("R1 a 0 abc\n", 2, "expected a number"),
    ("R1 a 0\n", 2, "expected 'Rname n\\+ n- ohms'"),
    ("Q1 a b c npn\n", 2, "expected an element card"),
    ("R1 a 0 1k\nD1 a 0 nomodel\n", 3, "expected a .model named 'nomodel'"),
    ("R1 a 0 1k\n.model dm D(IS=1e-14 BV=5)\n", 3, "unsupported diode parameter 'BV'"),
    ("R1 a 0 -5\n", 2, "resistance must be > 0"),
    ("R1 a 0 1k\nR1 a b 2k\n", 3, "duplicate element name"),
    ("R1 a 0 1k\n.subckt x a b\n", 3, "unsupported dot card"),
    ("R1 a 0 1k\n.tran 1n 1u\n", 3, "unsupported analysis card '.tran'"),
    ("R1 a 0 1k\n.ac dec 10 1 1meg\n", 3, "unsupported analysis card '.ac'"),
    ("R1 a 0 1k\n.temp -300\n", 3, "temperature -300 °C outside the physical range"),
    ("R1 a 0 1k\n.temp 1500\n", 3, "temperature 1500 °C outside the physical range"),
    ("R1 a 0 1k\n.options temp=-273.15\n", 3, "outside the physical range"),
    ("G1 a 0 b\n", 2, "expected 'Gname n\\+ n- nc\\+ nc- siemens'"),
])
def test_parse_errors_name_file_line_and_expectation(tmp_path, body, line, expect):
    path = tmp_path / "bad.cir"
    path.write_text("title\n" + body + ".end\n")
    with pytest.raises(NetlistError, match=rf"bad.cir:line {line}: .*{expect}"):
        read_netlist(path)


def test_missing_file_and_empty():
    with pytest.raises(AnasimError, match="nope.cir: no such netlist file"):
        read_netlist("nope.cir")
    with pytest.raises(NetlistError, match="x.cir: no elements"):
        parse_netlist("title only\n.end\n", "x.cir")


def test_continuation_comments_and_control_block():
    text = ("t\n* comment\nV1 a 0 DC 2 AC 1\nR1 a\n+ b 1k ; inline\nR2 b 0 1k\n"
            ".control\nop\nprint all\n.endc\n.end\n")
    net = parse_netlist(text)
    assert [e.name for e in net.elements] == ["v1", "r1", "r2"]
    assert net.elements[0].ac == 1.0
    assert solve_op(Circuit.from_netlist(net)).as_dict()["b"] == pytest.approx(1.0, rel=1e-15)


_names = st.sampled_from(["a", "b", "c", "d", "0"])
_pos = st.floats(1e-3, 1e6, allow_nan=False, allow_infinity=False)
_any = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def netlists(draw):
    els = []
    for k in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from("RCDVIG"))
        nodes = tuple(draw(_names) for _ in range(4 if kind == "G" else 2))
        if kind == "V" and nodes[0] == nodes[1]:
            continue
        value = draw(_pos) if kind in "RC" else (1.0 if kind == "D" else draw(_any))
        els.append(Element(kind, f"{kind.lower()}{k}", nodes, value, model="dm" if kind == "D" else ""))
    if not els:
        els.append(Element("R", "r0", ("a", "0"), 1.0))
    return Netlist(title="rt", elements=tuple(els),
                   models=(DiodeModel("dm", draw(st.floats(1e-16, 1e-6)), draw(st.floats(0.5, 3.0))),),
                   temperature_k=draw(st.floats(250.0, 400.0)))


@settings(max_examples=40, deadline=None)
@given(netlists())
def test_write_then_read_is_exact(net):
    back = parse_netlist(format_netlist(net, control="op"), "rt.cir")
    assert back.elements == tuple(Element(e.kind, e.name, e.nodes, e.value, e.model, e.ac, line=b.line)
                                  for e, b in zip(net.elements, back.elements))
    assert back.models == net.models
    assert back.temperature_k == pytest.approx(net.temperature_k, abs=1e-9)


def test_cli_op_json_and_human_output(repo_root, capsys):
    path = str(repo_root / "circuits" / "diode-clamp.cir")
    assert main(["op", path, "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main(["op", path, "--method", "sparse", "--json"]) == 0
    sparse = json.loads(capsys.readouterr().out)
    assert ours.keys() == sparse.keys()
    for node, v in ours.items():
        assert abs(v - sparse[node]) <= 1e-9, node
    assert main(["op", path]) == 0
    human = capsys.readouterr().out
    assert "node" in human and "h " in human


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
def test_cli_op_json_matches_ngspice(repo_root, capsys):
    path = str(repo_root / "circuits" / "diode-clamp.cir")
    assert main(["op", path, "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    ref = ngspice.run_op([read_netlist(path)])[0]
    for node, v in ours.items():
        assert abs(v - ref[node]) <= max(1e-6 * abs(ref[node]), 1e-6)


def test_cli_op_bad_netlist_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.cir"
    bad.write_text("t\nR1 a 0 1k\nV1 a 0 DC\n.end\n")
    assert main(["op", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.cir:line 3" in err


def test_ngspice_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ANASIM_NGSPICE", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AnasimError, match="ngspice not found"):
        ngspice.run_op(["t\nR1 a 0 1\n.end\n"])


@pytest.mark.ngspice
@pytest.mark.skipif(not ngspice.available(), reason="ngspice not installed")
def test_example_netlists_match_ngspice(repo_root):
    paths = [repo_root / "circuits" / "resistive-hopfield-small.cir", repo_root / "circuits" / "gyrator-hopfield-small.cir"]
    nets = [read_netlist(p) for p in paths]
    refs = ngspice.run_op(nets)
    for net, ref in zip(nets, refs):
        ours = solve_op(Circuit.from_netlist(net), method="sparse").as_dict()
        for node, v in ours.items():
            assert abs(v - ref[node]) <= max(1e-6 * abs(ref[node]), 1e-6), (net.source, node)


# --- topology refused before the Newton solve ---------------------------------------

@pytest.mark.parametrize("body,expect", [
    ("R1 a b 1k\nV1 a b 1\n", r"bad.cir: no ground node: no element connects to node 0"),
    ("V1 a 0 1\nV2 a b 1\nV3 b 0 1\nR1 a 0 1k\n",
     r"bad.cir:line 4: v3: voltage sources v2, v1, v3 form a loop"),
    ("V1 a 0 1\nR1 a 0 1k\nV2 a gnd 2\n", r"bad.cir:line 4: v2: voltage sources v1, v2 form a loop"),
    ("R1 a 0 1k\nI1 0 x 1m\n", r"bad.cir:line 3: i1: current source into open node 'x'"),
    ("V1 a 0 1\nR1 a b 1k\nC1 b c 1p\nR2 c d 1k\n",
     r"bad.cir:line 4: node 'c' \(with 'd'\) has no DC path to ground: it connects to the rest only through c1"),
    ("R1 a 0 1k\nI1 0 x 1m\nC1 x 0 1p\n", r"bad.cir:line 3: node 'x' has no DC path to ground: .*through i1, c1"),
    ("R1 a 0 1k\nG1 0 x a 0 1m\nC1 x 0 1p\n", r"node 'x' has no DC path to ground"),
    ("R1 a 0 1k\nR2 p q 1k\n", r"bad.cir:line 3: node 'p' \(with 'q'\) has no DC path to ground: "
                               r"it connects to nothing outside itself"),
])
def test_topology_errors_name_file_and_element_before_the_solve(tmp_path, body, expect):
    path = tmp_path / "bad.cir"
    path.write_text("title\n" + body + ".end\n")
    with pytest.raises(NetlistError, match=expect):
        Circuit.from_netlist(read_netlist(path))


def test_topology_error_through_op_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "open.cir"
    path.write_text("t\nV1 a 0 1\nR1 a 0 1k\nI1 0 x 1m\n.end\n")
    assert main(["op", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "open.cir:line 4: i1: current source into open node 'x'" in err
    assert "did not converge" not in err


@pytest.mark.parametrize("body", [
    "R1 a 0 1k\nG1 a 0 a 0 1m\nI1 0 a 1m\n",            # a VCCS sensing its own pair is a conductance
    "I1 0 a 1m\nD1 a 0 dm\nC1 a 0 1p\n.model dm D(IS=1e-14 N=1)\n",  # a diode conducts (gmin)
    "V1 a 0 1\nR1 a b 1k\nR2 b gnd 1k\nC1 b 0 1p\n",    # gnd is ground
])
def test_valid_topologies_still_solve(body):
    c = Circuit.from_netlist(parse_netlist("t\n" + body + ".end\n", "ok.cir"))
    assert np.isfinite(list(solve_op(c).as_dict().values())).all()
