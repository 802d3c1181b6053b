"""The layout's rules, read from the source: no import cycles anywhere in src/hasten (views
never import the studies back), and the core imports neither study."""

from __future__ import annotations

import ast
from pathlib import Path

import hasten

SRC = Path(hasten.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, at the top or inside a
    function alike (a parent package's own import is left out: every module has it)."""
    files = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files
                           else node.module for a in node.names]
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_imports_neither_study_nor_the_views():
    core = ("hasten.engine", "hasten.config", "hasten.store", "hasten.executors",
            "hasten.measure", "hasten.machine", "hasten.models", "hasten.data",
            "hasten.errors", "hasten.images", "hasten.fidelity", "hasten.rounds")
    graph = _graph()
    for name in core:
        assert not {m for m in graph[name] if m.startswith(
            ("hasten.infer", "hasten.train", "hasten.generate", "hasten.report"))}, name


STUDIES = ("hasten.infer", "hasten.train", "hasten.generate")


def test_studies_do_not_import_views():
    graph = _graph()
    for name, imports in graph.items():
        if name.startswith(STUDIES):
            assert not {m for m in imports if m.startswith("hasten.report")}, name


def test_the_studies_are_peers():
    graph = _graph()
    for name, imports in graph.items():
        for study in STUDIES:
            if name.startswith(study):
                others = [s for s in STUDIES if s != study]
                assert not {m for m in imports if m.startswith(tuple(others))}, name
