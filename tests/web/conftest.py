"""Shared fixtures for the web client tests: running web/ modules under Node."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

RunNode = Callable[..., Any]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def node() -> str:
    """Path to `node`; skips when Node.js is missing (CI installs it)."""
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed (apt-get install -y nodejs)")
    return path


@pytest.fixture(scope="session")
def run_node(node: str) -> RunNode:
    """`run_node(source, *args)`: run ES module `source` with Node and parse stdout as JSON.

    The module runs with the repository root as its directory, so it imports the client as
    `./web/<file>.js`; `process.argv.slice(1)` holds `args`. Fails the test with Node's stderr
    when Node exits non-zero.
    """

    def run(source: str, *args: str, timeout: float = 30.0) -> Any:
        proc = subprocess.run(
            [node, "--input-type=module", "-e", source, "--", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run
