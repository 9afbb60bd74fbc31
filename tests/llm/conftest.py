"""Fixtures of the LLM tests: a tiny seeded BitNet model in the real HF format,
imported once per session through the real importer, and a fresh store per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fake_search_server import FakeBraveServer, serve_fake_brave

from engine.llm import LLM, _native
from engine.llm.importer import import_hf_model
from engine.llm.tiny import write_tiny_hf_model

TINY_ID = "local/tiny"


@pytest.fixture(params=_native.supported_kernels())
def kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each kernel path this CPU can run, selected for the test and restored after it."""
    before = _native.kernel_backend()
    _native.select_kernel(request.param)
    yield request.param
    _native.select_kernel(before)


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HF BitNet folder (seed 0, float32 master weights)."""
    return write_tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model imported into a bundle folder (outside any store)."""
    dest = tmp_path_factory.mktemp("bundle") / "tiny"
    import_hf_model(tiny_hf, dest)
    return dest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path) -> Iterator[Path]:
    """A fresh BITVOICE_HOME whose store holds the tiny bundle as `local/tiny`."""
    root = tmp_path / "bvhome"
    shutil.copytree(tiny_bundle, root / "models" / "local" / "tiny")
    monkeypatch.setenv("BITVOICE_HOME", str(root))
    yield root


@pytest.fixture
async def llm(home: Path) -> AsyncIterator[LLM]:
    """The tiny bundle started as `local/tiny` (stopped after the test)."""
    model = LLM("local/tiny")
    await model.start()
    yield model
    await model.stop()


@pytest.fixture
def brave() -> Iterator[FakeBraveServer]:
    """A Brave-compatible search API on loopback (key: fake_search_server.API_KEY)."""
    with serve_fake_brave() as server:
        yield server
