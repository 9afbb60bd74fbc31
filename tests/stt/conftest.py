"""STT fixtures: one Whisper base load per test session.

The STT fixture lives on the session event loop (components are bound to their loop), so the
tests that use it run with `loop_scope="session"`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from engine.stt import STT


@pytest.fixture(scope="session")
def stt_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A BITVOICE_HOME for the whole STT session (the registry weights are joined into it)."""
    home = tmp_path_factory.mktemp("bitvoice-stt-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BITVOICE_HOME", str(home))
    yield home
    mp.undo()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stt_base(stt_home: Path) -> AsyncIterator[STT]:
    """Whisper base (the default model), 2 threads, started once."""
    stt = STT(num_threads=2)
    await stt.start()
    yield stt
    await stt.stop()
