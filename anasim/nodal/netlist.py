"""SPICE-subset netlists: read, validate and write.

The subset (docs/design.md, “Public surfaces”) is what the nodal solver understands:

==========  =====================================  ===============================
card        syntax                                 meaning
==========  =====================================  ===============================
``R``       ``Rname n+ n- ohms``                   resistor (must be > 0)
``C``       ``Cname n+ n- farads``                 capacitor (≥ 0; open at DC)
``D``       ``Dname anode cathode model [area]``   Shockley junction diode
``V``       ``Vname n+ n- [DC] volts [AC mag]``    independent voltage source
``I``       ``Iname n+ n- [DC] amps [AC mag]``     independent current source;
                                                   current flows n+ → source → n-
``G``       ``Gname n+ n- nc+ nc- siemens``        VCCS: i = gm·(v(nc+) − v(nc-))
                                                   flowing n+ → source → n-
``.model``  ``.model name D(IS=.. N=..)``          diode model (IS in A, N ideality)
``.temp``   ``.temp celsius``                      circuit temperature
``.options`` ``.options key=value ...``            accepted; ``temp``/``gmin`` read
``.end``    end of the netlist
==========  =====================================  ===============================

The first line is the title (as in SPICE). ``*`` starts a comment line, ``;``
an inline comment, ``+`` continues the previous card; ``.control … .endc``
blocks are skipped, so a written netlist that ngspice runs is read back.
Names are case-insensitive and stored lower-case (as ngspice reports them);
``0`` and ``gnd`` are ground. Numbers take the SPICE scale suffixes
``t g meg k m mil u n p f`` (``m`` is milli, ``meg`` mega); letters after
the suffix are ignored (``10kOhm``, ``1uF``).

Diode model parameters other than IS and N are rejected. The temperature
(``.temp`` or ``.options temp=``) sets V_T = k_B T / q; I_s is taken at that
temperature as given (``tnom`` is not read: the writer sets ``tnom = temp``
so that ngspice does not rescale I_s either).

Any error names the file, the line number and what was expected, as an
:class:`~anasim.errors.AnasimError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from anasim.errors import AnasimError

#: Default circuit temperature (K): ngspice's default of 27 °C.
DEFAULT_TEMPERATURE_K = 300.15
#: Conductance ngspice puts across every junction (S), ``.options gmin``.
DEFAULT_GMIN = 1e-12

GROUND_NAMES = ("0", "gnd")

_SUFFIX = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "m": 1e-3, "mil": 25.4e-6,
           "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(meg|mil|[tgkmunpf])?[a-z]*$")


class NetlistError(AnasimError):
    """A netlist that cannot be read: the message names file, line and expectation."""


def parse_value(token: str, where: str = "value") -> float:
    """A SPICE number with an optional scale suffix (``4.7k``, ``1meg``, ``10uF``).

    Raises:
        NetlistError: not a finite number; ``where`` prefixes the message.
    """
    m = _NUMBER.match(token.strip().lower())
    if not m:
        raise NetlistError(f"{where}: expected a number with optional suffix "
                           f"(t g meg k m u n p f), got {token!r}")
    value = float(m.group(1)) * _SUFFIX.get(m.group(2) or "", 1.0)
    if not math.isfinite(value):
        raise NetlistError(f"{where}: expected a finite number, got {token!r}")
    return value


def format_value(x: float) -> str:
    """A float in a form SPICE reads back exactly (17 significant digits)."""
    return repr(float(x))


@dataclass(frozen=True)
class DiodeModel:
    """``.model NAME D(IS=… N=…)``: saturation current ``i_s`` (A) and ideality ``n``."""

    name: str
    i_s: float = 1e-14
    n: float = 1.0


@dataclass(frozen=True)
class Element:
    """One card. ``kind`` is one of R C D V I G; ``nodes`` are 2 (4 for G) node names.

    ``value`` is in SI units: Ω (R), F (C), V (V), A (I), S (G), area factor (D).
    ``ac`` is the AC magnitude of a source (used only by noise analyses).
    """

    kind: str
    name: str
    nodes: tuple[str, ...]
    value: float
    model: str = ""
    ac: float = 0.0
    line: int = 0


@dataclass(frozen=True)
class Netlist:
    """A parsed netlist: title, elements in file order, diode models, options."""

    title: str = "anasim circuit"
    elements: tuple[Element, ...] = ()
    models: tuple[DiodeModel, ...] = ()
    temperature_k: float = DEFAULT_TEMPERATURE_K
    gmin: float = DEFAULT_GMIN
    source: str = ""

    def model(self, name: str) -> DiodeModel:
        for m in self.models:
            if m.name == name:
                return m
        raise NetlistError(f"{self.source or 'netlist'}: no .model named {name!r}")

    @property
    def node_names(self) -> tuple[str, ...]:
        """Non-ground nodes in order of first appearance."""
        seen: dict[str, None] = {}
        for e in self.elements:
            for n in e.nodes:
                if n not in GROUND_NAMES:
                    seen.setdefault(n, None)
        return tuple(seen)


# --- reading ------------------------------------------------------------------------

_NODE_COUNT = {"r": 2, "c": 2, "d": 2, "v": 2, "i": 2, "g": 4}
_KIND_HELP = "an element card R, C, D, V, I or G, or .model/.temp/.options/.end"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, card) pairs with comments removed and '+' continuations joined."""
    out: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0].rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("*"):
            continue
        if stripped.startswith("+"):
            if not out:
                raise NetlistError(f"line {lineno}: continuation '+' with no card before it")
            n, prev = out[-1]
            out[-1] = (n, prev + " " + stripped[1:])
            continue
        out.append((lineno, stripped))
    return out


def _norm_node(tok: str) -> str:
    t = tok.lower()
    return "0" if t in GROUND_NAMES else t


# analyses of SPICE that the node-level solver does not run: refused rather than ignored
_UNSUPPORTED_ANALYSES = (".tran", ".ac", ".dc", ".four", ".pz", ".sens", ".tf", ".disto", ".pss", ".sp")

# .temp range accepted (°C): above absolute zero, below where no device model holds
TEMP_MIN_C, TEMP_MAX_C = -273.15, 1000.0


def _kelvin(celsius: float, where: str) -> float:
    if not (TEMP_MIN_C < celsius <= TEMP_MAX_C):
        raise NetlistError(f"{where}: temperature {celsius:g} °C outside the physical range "
                           f"({TEMP_MIN_C:g} °C, {TEMP_MAX_C:g} °C]")
    return celsius + 273.15


def _parse_model(tokens: list[str], where: str) -> DiodeModel:
    # ".model NAME D(IS=1e-14 N=1.5)" or ".model NAME D IS=1e-14 N=1.5"
    joined = " ".join(tokens[1:])
    m = re.match(r"^(\S+)\s+d\s*(?:\((.*)\)|(.*))$", joined, flags=re.I)
    if not m:
        raise NetlistError(f"{where}: expected '.model NAME D(IS=... N=...)' (only diode models)")
    name = m.group(1).lower()
    params = (m.group(2) if m.group(2) is not None else m.group(3) or "").replace(",", " ")
    i_s, n = 1e-14, 1.0
    for item in re.findall(r"(\w+)\s*=\s*(\S+)", params):
        key, val = item[0].lower(), item[1]
        if key == "is":
            i_s = parse_value(val, f"{where}: .model {name} IS")
        elif key == "n":
            n = parse_value(val, f"{where}: .model {name} N")
        else:
            raise NetlistError(f"{where}: .model {name}: unsupported diode parameter {key.upper()!r} "
                               "(expected IS or N)")
    leftover = re.sub(r"(\w+)\s*=\s*(\S+)", "", params).strip()
    if leftover:
        raise NetlistError(f"{where}: .model {name}: expected KEY=VALUE pairs, got {leftover!r}")
    if not (i_s > 0 and n > 0):
        raise NetlistError(f"{where}: .model {name}: IS and N must be > 0")
    return DiodeModel(name=name, i_s=i_s, n=n)


def _parse_source(kind: str, name: str, toks: list[str], where: str) -> tuple[float, float]:
    """Value and AC magnitude of ``V``/``I`` cards: ``[DC] value [AC mag [phase]]``."""
    dc, ac, i = None, 0.0, 0
    while i < len(toks):
        t = toks[i].lower()
        if t == "dc":
            if i + 1 >= len(toks):
                raise NetlistError(f"{where}: {name}: expected a value after DC")
            dc = parse_value(toks[i + 1], f"{where}: {name} DC value")
            i += 2
        elif t == "ac":
            ac = parse_value(toks[i + 1], f"{where}: {name} AC magnitude") if i + 1 < len(toks) else 1.0
            i += 2 if i + 1 < len(toks) else 1
            if i < len(toks) and _NUMBER.match(toks[i].lower()):
                i += 1  # AC phase: irrelevant to a noise magnitude
        elif dc is None:
            dc = parse_value(toks[i], f"{where}: {name} value")
            i += 1
        else:
            raise NetlistError(f"{where}: {name}: expected '[DC] value [AC mag]', got extra {toks[i]!r}")
    return (0.0 if dc is None else dc), ac


def parse_netlist(text: str, source: str = "<netlist>") -> Netlist:
    """Parse netlist text; ``source`` names it in error messages.

    Raises:
        NetlistError: with ``source:line N:`` and what was expected.
    """
    lines = text.splitlines()
    if not lines:
        raise NetlistError(f"{source}: empty netlist (expected a title line, elements and .end)")
    title = lines[0].strip().lstrip("*").strip() or "untitled"
    body = "\n" * 1 + "\n".join(lines[1:])  # keep line numbers: body line k is file line k
    try:
        cards = _logical_lines(body)
    except NetlistError as err:
        raise NetlistError(f"{source}:{err}") from None
    elements: list[Element] = []
    models: dict[str, DiodeModel] = {}
    names: set[str] = set()
    temperature_k, gmin = DEFAULT_TEMPERATURE_K, DEFAULT_GMIN
    in_control = False
    ended = False
    for lineno, card in cards:
        where = f"{source}:line {lineno}"
        tokens = card.replace("(", " ( ").replace(")", " ) ").split() if card[0] != "." else card.split()
        head = tokens[0].lower()
        if in_control:
            if head == ".endc":
                in_control = False
            continue
        if ended:
            raise NetlistError(f"{where}: expected nothing after .end, got {card!r}")
        if head.startswith("."):
            if head == ".end":
                ended = True
            elif head == ".control":
                in_control = True
            elif head == ".model":
                mdl = _parse_model(card.split(), where)
                models[mdl.name] = mdl
            elif head == ".temp":
                if len(tokens) != 2:
                    raise NetlistError(f"{where}: expected '.temp CELSIUS'")
                temperature_k = _kelvin(parse_value(tokens[1], f"{where}: .temp"), f"{where}: .temp")
            elif head in (".options", ".option", ".opt"):
                for key, val in re.findall(r"(\w+)\s*=\s*(\S+)", card):
                    key = key.lower()
                    if key == "temp":
                        temperature_k = _kelvin(parse_value(val, f"{where}: .options temp"),
                                                f"{where}: .options temp")
                    elif key == "gmin":
                        gmin = parse_value(val, f"{where}: .options gmin")
                        if gmin < 0:
                            raise NetlistError(f"{where}: .options gmin must be ≥ 0 S, got {val!r}")
            elif head in (".title",):
                title = card.split(None, 1)[1] if len(card.split()) > 1 else title
            elif head in (".op", ".noise", ".print", ".ic", ".nodeset"):
                pass  # analysis requests: the caller decides what to run
            elif head in _UNSUPPORTED_ANALYSES:
                raise NetlistError(f"{where}: unsupported analysis card {tokens[0]!r}: anasim computes the "
                                   f"DC operating point (.op) and its noise (.noise) only")
            else:
                raise NetlistError(f"{where}: unsupported dot card {tokens[0]!r} "
                                   "(expected .model, .temp, .options or .end)")
            continue
        kind = head[0]
        if kind not in _NODE_COUNT:
            raise NetlistError(f"{where}: expected {_KIND_HELP}, got {tokens[0]!r}")
        name = head
        if name in names:
            raise NetlistError(f"{where}: duplicate element name {tokens[0]!r}")
        names.add(name)
        toks = [t for t in tokens[1:] if t not in ("(", ")")]
        nn = _NODE_COUNT[kind]
        if len(toks) < nn + 1:
            what = {"r": "Rname n+ n- ohms", "c": "Cname n+ n- farads", "d": "Dname anode cathode model",
                    "v": "Vname n+ n- [DC] volts", "i": "Iname n+ n- [DC] amps",
                    "g": "Gname n+ n- nc+ nc- siemens"}[kind]
            raise NetlistError(f"{where}: expected '{what}', got {card!r}")
        nodes = tuple(_norm_node(t) for t in toks[:nn])
        rest = toks[nn:]
        model, ac = "", 0.0
        if kind == "d":
            model = rest[0].lower()
            value = parse_value(rest[1], f"{where}: {tokens[0]} area") if len(rest) > 1 else 1.0
            if len(rest) > 2:
                raise NetlistError(f"{where}: expected 'Dname anode cathode model [area]', got {card!r}")
            if not value > 0:
                raise NetlistError(f"{where}: {tokens[0]} area must be > 0")
        elif kind in "vi":
            value, ac = _parse_source(kind, tokens[0], rest, where)
        else:
            if len(rest) != 1:
                raise NetlistError(f"{where}: expected one value after the nodes of {tokens[0]}, got {rest}")
            value = parse_value(rest[0], f"{where}: {tokens[0]} value")
            if kind == "r" and not value > 0:
                raise NetlistError(f"{where}: {tokens[0]}: resistance must be > 0 ohm, got {rest[0]!r}")
            if kind == "c" and value < 0:
                raise NetlistError(f"{where}: {tokens[0]}: capacitance must be ≥ 0 F, got {rest[0]!r}")
        if kind in "rcdvi" and nodes[0] == nodes[1] and kind != "i":
            if kind == "v":
                raise NetlistError(f"{where}: {tokens[0]}: voltage source shorted (both nodes {nodes[0]!r})")
        elements.append(Element(kind=kind.upper(), name=name, nodes=nodes, value=value,
                                model=model, ac=ac, line=lineno))
    if in_control:
        raise NetlistError(f"{source}: .control block without .endc")
    for e in elements:
        if e.kind == "D" and e.model not in models:
            raise NetlistError(f"{source}:line {e.line}: {e.name}: expected a .model named {e.model!r}")
    if not elements:
        raise NetlistError(f"{source}: no elements (expected R, C, D, V, I or G cards)")
    return Netlist(title=title, elements=tuple(elements), models=tuple(models.values()),
                   temperature_k=temperature_k, gmin=gmin, source=source)


class _Sets:
    """Union-find over node names."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> bool:
        """Join the sets of ``a`` and ``b``; False if they were joined already."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[ra] = rb
        return True


def _conducts_at_dc(e: Element) -> bool:
    """R, D (a junction, with gmin across it), V; a G only when it senses its own
    output pair (then it is a conductance). C is open at DC, I and other G outputs
    set a current, not a voltage."""
    if e.kind in "RDV":
        return True
    return e.kind == "G" and set(e.nodes[:2]) == set(e.nodes[2:])


def _v_path(sources: list[Element], a: str, b: str) -> list[str]:
    """Names of voltage sources on a path a → b (sources form a forest)."""
    adj: dict[str, list[tuple[str, str]]] = {}
    for e in sources:
        p, m = e.nodes
        adj.setdefault(p, []).append((m, e.name))
        adj.setdefault(m, []).append((p, e.name))
    prev: dict[str, tuple[str, str]] = {a: ("", "")}
    todo = [a]
    while todo:
        x = todo.pop()
        for y, name in adj.get(x, ()):
            if y not in prev:
                prev[y] = (x, name)
                todo.append(y)
    path, x = [], b
    while x != a and x in prev:
        x, name = prev[x]
        path.append(name)
    return path[::-1]


def _at(source: str, e: Element) -> str:
    return f"{source}:line {e.line}" if e.line else source


def check_topology(netlist: Netlist) -> None:
    """Refuse a netlist whose DC operating point cannot exist, before any solve.

    In this order: no ground at all (no element touches ``0``/``gnd``); a loop of
    voltage sources (their voltages over-determine the loop); a node whose only
    connection is one current source (an open node driven by a current); a node
    with no DC path to ground (connected only through capacitors, current sources
    or transconductor outputs). SPICE reports all four as a singular matrix and
    the Newton solve as non-convergence; here each names the file, line, node and
    element.

    Raises:
        NetlistError: ``source:line N: ...`` naming the element or node.
    """
    src = netlist.source or "netlist"
    els = netlist.elements
    if not any("0" in e.nodes for e in els):
        raise NetlistError(f"{src}: no ground node: no element connects to node 0 (or gnd), "
                           f"so no node voltage is defined; connect the circuit's reference to 0")
    vs = _Sets()
    seen: list[Element] = []
    for e in els:
        if e.kind != "V":
            continue
        if not vs.union(*e.nodes):
            loop = _v_path(seen, *e.nodes) + [e.name]
            raise NetlistError(f"{_at(src, e)}: {e.name}: voltage sources {', '.join(loop)} form a "
                               f"loop (their voltages fix the same node difference twice); "
                               f"remove one or put a resistor in series")
        seen.append(e)
    touching: dict[str, list[Element]] = {}
    for e in els:
        for n in set(e.nodes):
            touching.setdefault(n, []).append(e)
    for node, on in touching.items():
        if node != "0" and len(on) == 1 and on[0].kind == "I":
            e = on[0]
            raise NetlistError(f"{_at(src, e)}: {e.name}: current source into open node {node!r} "
                               f"(its only connection): the current has nowhere to flow; "
                               f"add a path from {node!r} to ground")
    dc = _Sets()
    dc.find("0")
    for e in els:
        if _conducts_at_dc(e):
            dc.union(e.nodes[0], e.nodes[1])
    ground = dc.find("0")
    for node in netlist.node_names:
        root = dc.find(node)
        if root != ground:
            group = [n for n in netlist.node_names if dc.find(n) == root]
            others = [n for n in group if n != node]
            also = f" (with {', '.join(map(repr, others[:3]))}{' ...' if len(others) > 3 else ''})" if others else ""
            edge = [e for e in els if not _conducts_at_dc(e) and any(n in group for n in e.nodes)]
            via = (f"it connects to the rest only through {', '.join(e.name for e in edge)}"
                   if edge else "it connects to nothing outside itself")
            first = touching[node][0]
            raise NetlistError(f"{_at(src, first)}: node {node!r}{also} has no DC path to ground: {via} "
                               f"(capacitors are open at DC; current sources and transconductor outputs "
                               f"fix no voltage); add a resistor from {node!r} to ground")


def read_netlist(path: str | Path) -> Netlist:
    """Read a netlist file (see module docstring for the subset).

    Raises:
        NetlistError: missing/unreadable file or a parse error (file, line, expectation).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NetlistError(f"{path}: no such netlist file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NetlistError(f"{path}: cannot read netlist ({err})") from None
    return parse_netlist(text, source=str(path))


# --- writing ------------------------------------------------------------------------

def _card(e: Element) -> str:
    nodes = " ".join(e.nodes)
    name = e.name if e.name[:1].upper() == e.kind else e.kind + e.name
    if e.kind == "D":
        return f"{name} {nodes} {e.model}" + ("" if e.value == 1.0 else f" {format_value(e.value)}")
    if e.kind in "VI":
        return f"{name} {nodes} DC {format_value(e.value)}" + (f" AC {format_value(e.ac)}" if e.ac else "")
    return f"{name} {nodes} {format_value(e.value)}"


def format_netlist(netlist: Netlist, *, control: str | None = None, tight: bool = True) -> str:
    """Netlist text ngspice runs (and :func:`parse_netlist` reads back exactly).

    Args:
        control: optional lines for a ``.control … .endc`` block (e.g.
            ``"set numdgt=15\\nop\\nprint all"``).
        tight: add ``.options`` with tolerances tight enough to compare at 1e-9.
    """
    out = [netlist.title]
    out += [_card(e) for e in netlist.elements]
    for m in netlist.models:
        out.append(f".model {m.name} D(IS={format_value(m.i_s)} N={format_value(m.n)})")
    celsius = netlist.temperature_k - 273.15
    opts = f"temp={format_value(celsius)} tnom={format_value(celsius)} gmin={format_value(netlist.gmin)}"
    if tight:
        opts += " reltol=1e-9 vntol=1e-12 abstol=1e-18"
    out.append(f".options {opts}")
    if control:
        out += [".control", *control.strip().splitlines(), ".endc"]
    out.append(".end")
    return "\n".join(out) + "\n"


def write_netlist(netlist: Netlist, path: str | Path, **kwargs) -> Path:
    """Write :func:`format_netlist` output to ``path``."""
    path = Path(path)
    path.write_text(format_netlist(netlist, **kwargs))
    return path


def with_elements(netlist: Netlist, elements) -> Netlist:
    """A copy of ``netlist`` with other elements (same models and options)."""
    return replace(netlist, elements=tuple(elements))
