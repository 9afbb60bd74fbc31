"""engine/llm has no import circles: every import counts (top level,
TYPE_CHECKING blocks and imports inside functions alike), so a component and
its session cannot lean on each other, and nothing reaches back into the
package's __init__."""

from __future__ import annotations

import ast
from pathlib import Path

import engine.llm

PACKAGE = "engine.llm"
ROOT = Path(engine.llm.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def import_graph() -> dict[str, set[str]]:
    """module -> the engine.llm modules it imports, anywhere in its source."""
    # *.pyi: the C extension (_native) is a module of the package too
    modules = {_module_name(p): p for p in [*ROOT.glob("*.py"), *ROOT.glob("*.pyi")]}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                # `from engine.llm import limits` names a submodule; `from
                # engine.llm import LLM` needs the package's __init__.
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [s if s in modules else node.module for s in subs]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_engine_llm_has_no_import_circle() -> None:
    graph = import_graph()
    assert "engine.llm.session" in graph["engine.llm.component"]  # the scan sees imports
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_session_does_not_know_the_component() -> None:
    graph = import_graph()
    assert "engine.llm.component" not in graph["engine.llm.session"]
    assert "engine.llm.component" not in graph["engine.llm.worker"]


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
