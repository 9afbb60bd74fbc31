"""engine/stt's shape (issue 11): one-way imports, short functions."""

from __future__ import annotations

import ast
from pathlib import Path

import engine.stt

PACKAGE = Path(engine.stt.__file__).parent
MAX_FUNCTION_LINES = 80


def _imports(path: Path) -> set[str]:
    """Every engine.stt module `path` imports, wherever the import is (TYPE_CHECKING blocks
    and imports inside functions count: they are circles all the same)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("engine.stt.") and (PACKAGE / f"{name[11:]}.py").exists():
                found.add(name[11:])
    return found


def test_no_import_circles_in_engine_stt() -> None:
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert graph["session"] <= {"core", "limits"}, graph["session"]
    assert graph["streaming"] <= {"core", "limits"}, graph["streaming"]
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import circle: {' -> '.join([*path, module])}"
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_no_function_in_engine_stt_is_over_80_lines() -> None:
    long = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long, long
