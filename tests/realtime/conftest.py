"""Fixtures of the realtime tests: real speech from espeak-ng as PCM16 16 kHz mono."""

from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np
import pytest

from engine.audio import decode_pcm16


@functools.cache
def speech_pcm16k(text: str) -> bytes:
    """`text` spoken by espeak-ng, as PCM16 LE mono 16 kHz bytes (cached per text)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    wav = subprocess.run(
        [exe, "-s", "160", "--stdout", text], check=True, capture_output=True
    ).stdout
    return decode_pcm16(wav, target_rate=16_000).astype("<i2").tobytes()


def silence_pcm16k(seconds: float) -> bytes:
    return bytes(int(16_000 * seconds) * 2)


def noise_pcm16k(seconds: float, level: float = 50.0, seed: int = 0) -> bytes:
    """Very quiet white noise (a room's background), never voiced for webrtcvad."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16_000 * seconds)) * level).astype("<i2").tobytes()


# ---- a real server on loopback, shared by the session ----------------------------------------

import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from realtime.server import RealtimeServer, ServerConfig, serve  # noqa: E402

SERVER_MAX_CONVERSATIONS = 24


@pytest.fixture(scope="session")
def rt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealtimeServer]:
    """`bitvoice serve` in a background thread on port 0: the seeded demo LLM bundle in a tmp
    BITVOICE_HOME, Whisper tiny.en, the offline TTS voice. Drained at the end of the session."""
    import os

    from engine.stt import TINY_EN_STT_MODEL

    home = tmp_path_factory.mktemp("bvhome")
    old = os.environ.get("BITVOICE_HOME")
    os.environ["BITVOICE_HOME"] = str(home)
    holder: list[RealtimeServer] = []
    failure: list[BaseException] = []
    ready = threading.Event()
    config = ServerConfig(
        port=0, stt_model=TINY_EN_STT_MODEL, max_conversations=SERVER_MAX_CONVERSATIONS
    )

    def run() -> None:
        import uvloop

        def on_ready(server: RealtimeServer) -> None:
            holder.append(server)
            ready.set()

        try:
            uvloop.run(serve(config, ready=on_ready))
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="rt-server", daemon=True)
    thread.start()
    ready.wait(120)
    if failure or not holder:
        raise RuntimeError(f"server failed to start: {failure!r}")
    try:
        yield holder[0]
    finally:
        holder[0].request_shutdown()
        thread.join(30)
        if old is None:
            os.environ.pop("BITVOICE_HOME", None)
        else:
            os.environ["BITVOICE_HOME"] = old
        assert not thread.is_alive(), "the server did not drain"
