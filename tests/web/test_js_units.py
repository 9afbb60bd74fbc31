"""Runs the web client's pure-JS unit tests (tests/web/js/*.test.mjs) with `node --test`."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_node_unit_tests_pass(node: str, repo_root: Path) -> None:
    files = sorted(str(p) for p in (repo_root / "tests" / "web" / "js").glob("*.test.mjs"))
    assert files, "no JS unit tests found"
    proc = subprocess.run(
        [node, "--test", *files],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout


def test_every_web_module_parses(node: str, repo_root: Path) -> None:
    """`node --check` on every file the browser loads (web/ is an ES module package)."""
    modules = sorted((repo_root / "web").glob("*.js"))
    assert len(modules) >= 8
    for module in modules:
        proc = subprocess.run(
            [node, "--check", str(module)], capture_output=True, text=True, timeout=30, check=False
        )
        assert proc.returncode == 0, f"{module.name}: {proc.stderr}"
