"""engine/tts stays one-way: no import circles (late and TYPE_CHECKING imports count), short
functions, and the session never touches its component's private fields."""

from __future__ import annotations

import ast
from pathlib import Path

import engine.tts

PACKAGE = Path(engine.tts.__file__).parent
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, ast.Module]:
    return {
        f"engine.tts.{p.stem}" if p.stem != "__init__" else "engine.tts": ast.parse(
            p.read_text(encoding="utf-8")
        )
        for p in sorted(PACKAGE.glob("*.py"))
    }


def _imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """Every engine.tts module imported anywhere in `tree` (top level, late, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def test_no_import_circles_inside_engine_tts() -> None:
    trees = _modules()
    names = set(trees)
    # The package __init__ re-exports everything; the circles that matter are between modules.
    graph = {m: _imports(t, names) - {"engine.tts"} for m, t in trees.items() if m != "engine.tts"}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(" -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for dep in sorted(graph.get(module, set())):
            visit(dep, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert "engine.tts.component" not in graph["engine.tts.session"]


def test_the_session_never_reads_the_components_private_fields() -> None:
    tree = _modules()["engine.tts.session"]
    reached = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr in ("_host", "_tts")
        and node.attr.startswith("_")
    }
    assert reached == set()


def test_no_function_is_over_80_lines() -> None:
    long = [
        f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for module, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
