"""The package's layout: import direction, no import cycles, module size, no global side effects.

The import graph is read from the source with :mod:`ast`, counting imports
inside functions too (a function-level import hides a cycle from the
interpreter, not from a reader).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "anasim"

#: Layers from the bottom up: a module may import its own layer and those below.
#: circuits and nodal are peers over devices, but nodal builds on circuits'
#: Equilibrium and engine protocol, never the other way round.
LAYERS = {
    "anasim.errors": 0, "anasim.tables": 0, "anasim.data": 0, "anasim.outputs": 0,
    "anasim.devices": 1,
    "anasim.circuits": 2,
    "anasim.nodal": 3,
    "anasim.testing": 3,
    "anasim.analysis": 4,
    "anasim.learning": 5,
    "anasim.study": 6,
    "anasim.cli": 7,
}
MAX_LINES = 700


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The anasim modules that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t.startswith("anasim") and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _layer(module: str) -> int | None:
    for prefix, rank in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    # the check itself must be able to fail
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_finder_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from anasim.learning import rules\n    import anasim.study\n")
    known = {"anasim.learning", "anasim.learning.rules", "anasim.study", "anasim.nodal.hopfield"}
    assert _imports("anasim.nodal.hopfield", src, known) == {"anasim.learning.rules", "anasim.study"}


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_imports_run_one_way():
    """devices → circuits / nodal → analysis → learning → study → cli."""
    wrong = []
    for mod, targets in _graph().items():
        for t in targets:
            if mod == "anasim" or t == "anasim":
                continue
            lm, lt = _layer(mod), _layer(t)
            assert lm is not None and lt is not None, f"{mod} or {t} has no layer in LAYERS"
            if lt > lm:
                wrong.append(f"{mod} imports {t}")
    assert wrong == []


def test_no_module_past_the_size_limit():
    long = {name: n for name, p in _modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _run_fresh(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must exit 0 after printing 'ok'."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=PACKAGE.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


@pytest.mark.slow
def test_import_anasim_leaves_jax_config_alone():
    """In a fresh process, importing anasim (and its heavy packages) keeps float32 the default."""
    code = (
        "import jax, jax.numpy as jnp\n"
        "before = jax.config.jax_enable_x64\n"
        "import anasim, anasim.circuits, anasim.nodal, anasim.analysis, anasim.learning, anasim.study\n"
        "assert jax.config.jax_enable_x64 == before == False, jax.config.jax_enable_x64\n"
        "assert jnp.zeros(1).dtype == jnp.float32, jnp.zeros(1).dtype\n"
        "print('ok')\n"
    )
    _run_fresh(code)


@pytest.mark.slow
def test_float64_relaxation_does_not_leak_the_flag():
    """A float64 relaxation scopes x64 to itself: float64 states, the flag untouched afterwards."""
    code = (
        "import jax, jax.numpy as jnp, numpy as np\n"
        "from anasim.circuits import load_circuit, init_params, build, relax\n"
        "from anasim.devices import ideal_profile\n"
        "spec = load_circuit({'network': {'sizes': [6, 5, 3], 'lam': 1.0}, "
        "'relaxation': {'dtype': 'float64'}})\n"
        "p = init_params(spec, jax.random.PRNGKey(0))\n"
        "hw = build(spec, ideal_profile(), p, jax.random.PRNGKey(1))\n"
        "eq = relax(spec, hw, np.full((2, 6), 0.5), jax.random.PRNGKey(2))\n"
        "assert eq.s_plus[0].dtype == np.float64, eq.s_plus[0].dtype\n"
        "assert jax.config.jax_enable_x64 is False\n"
        "assert jnp.zeros(1).dtype == jnp.float32\n"
        "print('ok')\n"
    )
    _run_fresh(code)
