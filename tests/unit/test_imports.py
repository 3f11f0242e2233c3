"""The house rules on imports, checked on the sources (every import statement, lazy ones included).

* ``vidgen_core`` is the library: it knows nothing of ``workflows`` (the CLI, the
  DAG and its executor), so it can be used without them;
* no two modules import each other, directly or through others: a cycle makes
  import order matter and hides which module owns what.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vidgen_core", "workflows")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (``from a import b`` counts ``a`` and, if a module, ``a.b``)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in mods and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_lazy_imports_and_finds_a_cycle() -> None:
    assert "workflows.dag" in _import_graph()["workflows.executor"]  # a module-level import
    assert "vidgen_core.data.ingest" in _import_graph()["workflows.cli"]  # one inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_imports_nothing_from_workflows() -> None:
    graph = _import_graph()
    bad = sorted((m, d) for m, deps in graph.items() if m.startswith("vidgen_core") for d in deps
                 if d.split(".")[0] == "workflows")
    assert not bad, bad


def test_there_is_no_import_cycle() -> None:
    assert _cycles(_import_graph()) == []


def test_only_ray_runtime_starts_ray() -> None:
    """One place starts or connects Ray (vidgen_core.ray_runtime.ensure_ray); everything else goes through it."""
    callers = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "init"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "ray"):
                callers.append(name)
    assert sorted(set(callers)) == ["vidgen_core.ray_runtime"]
