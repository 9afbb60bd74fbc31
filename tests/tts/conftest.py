"""TTS fixtures: the tiny random-weight pocket-tts model (built once) and per-test homes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tiny_pocket import write_tiny_pocket_model

from engine.tts import TTS


@pytest.fixture(scope="session")
def tiny_pocket_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_pocket_model(tmp_path_factory.mktemp("pocket") / "pocket-tts")


@pytest.fixture
def pocket_home(tmp_path: Path, tiny_pocket_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh BITVOICE_HOME whose store holds the tiny pocket-tts model."""
    (tmp_path / "models" / "kyutai").mkdir(parents=True)
    (tmp_path / "models" / "kyutai" / "pocket-tts").symlink_to(tiny_pocket_dir)
    monkeypatch.setenv("BITVOICE_HOME", str(tmp_path))
    monkeypatch.setenv("BITVOICE_TTS_BACKEND", "pocket")
    monkeypatch.setenv("BITVOICE_TTS_THREADS", "1")
    return tmp_path


@pytest_asyncio.fixture
async def tts(pocket_home: Path) -> AsyncIterator[TTS]:
    engine = TTS()
    await engine.start()
    yield engine
    if engine.state.value != "stopped":
        await engine.stop()
