"""Shared helpers and the `rt_server` fixture of the realtime tests (imported by
name: a module called `conftest` is ambiguous when several test folders have one).

Fixtures of the realtime tests: real speech from espeak-ng as PCM16 16 kHz mono."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection

from engine.audio import decode_pcm16
from realtime import messages as m
from realtime.server import RealtimeServer, ServerConfig, serve

# An OpenAI Realtime GA session as its clients send it (`realtime.compat` maps it).
GA_SESSION: dict[str, Any] = {
    "type": "realtime",
    "output_modalities": ["audio"],
    "instructions": "You are a helpful assistant.",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
    },
}


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


def trimmed(pcm: bytes, threshold: int = 300) -> bytes:
    """PCM16 without its trailing silence (espeak ends its audio with some), so that a test's
    pause after it is exactly the pause it means."""
    x = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    return pcm[: 2 * (int(np.nonzero(x > threshold)[0][-1]) + 1)]


def silence_pcm16k(seconds: float) -> bytes:
    return bytes(int(16_000 * seconds) * 2)


def noise_pcm16k(seconds: float, level: float = 50.0, seed: int = 0) -> bytes:
    """Very quiet white noise (a room's background), never voiced for webrtcvad."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16_000 * seconds)) * level).astype("<i2").tobytes()


# ---- a real server on loopback, shared by the session ----------------------------------------

SERVER_MAX_CONVERSATIONS = 24
RT_HOME: list[Path] = []  # the BITVOICE_HOME of `rt_server` (holds the built demo bundle)


@pytest.fixture(scope="session")
def rt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealtimeServer]:
    """`bitvoice serve` in a background thread on port 0: the seeded demo LLM bundle in a tmp
    BITVOICE_HOME, Whisper tiny.en, the offline TTS voice. Drained at the end of the session."""
    import os

    from engine.stt import TINY_EN_STT_MODEL

    home = tmp_path_factory.mktemp("bvhome")
    RT_HOME[:] = [home]
    old = os.environ.get("BITVOICE_HOME")
    os.environ["BITVOICE_HOME"] = str(home)
    holder: list[RealtimeServer] = []
    failure: list[BaseException] = []
    ready = threading.Event()
    # admission by the hard cap only: the measured-load policy would follow how loaded the
    # test machine happens to be (test_server_admission.py tests it on its own server)
    config = ServerConfig(
        port=0,
        stt_model=TINY_EN_STT_MODEL,
        max_conversations=SERVER_MAX_CONVERSATIONS,
        first_audio_budget_s=None,
        trace=True,
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


# ---- wire helpers ------------------------------------------------------------------------------

T = TypeVar("T")


def ws_url(server: RealtimeServer, path: str = "/v1/realtime") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def tag_of(msg: Any) -> str:
    """The wire `type` of a decoded server message ("audio" for a reply audio frame)."""
    if isinstance(msg, m.AudioFrame):
        return "audio"
    tag = msg.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def decode_frame(raw: bytes) -> m.AudioFrame:
    """A reply audio frame, its 12-byte header checked byte by byte against PROTOCOL.md."""
    assert len(raw) > 12 and (len(raw) - 12) % 2 == 0, len(raw)
    assert raw[0:2] == b"BV" and raw[2] == 1 and raw[3] == 1, raw[:4]
    frame = m.unpack_audio_frame(raw)
    assert frame.turn == int.from_bytes(raw[4:8], "little")
    assert frame.offset == int.from_bytes(raw[8:12], "little")
    return frame


async def recv_until(
    ws: ClientConnection,
    tag: str,
    limit_s: float = 30.0,
    pred: Callable[[Any], bool] | None = None,
) -> list[Any]:
    """Every message (decoded JSON or checked audio frames) up to and including the first one
    of type `tag` (that also satisfies `pred`)."""
    got: list[Any] = []
    async with asyncio.timeout(limit_s):
        while True:
            raw = await ws.recv()
            msg: Any = decode_frame(raw) if isinstance(raw, bytes) else m.decode_server(raw)
            got.append(msg)
            if tag_of(msg) == tag and (pred is None or pred(msg)):
                return got


async def start_session(ws: ClientConnection, session: dict[str, Any] | None = None) -> str:
    """Read `session.created`, send `session.update`, wait for `session.updated`; returns the
    session id."""
    created = (await recv_until(ws, "session.created"))[-1]
    await ws.send(json.dumps({"type": "session.update", "session": session or {}}))
    await recv_until(ws, "session.updated")
    assert isinstance(created, m.SessionCreated)
    return created.session.id


def frames_of(msgs: list[Any], turn: int | None = None) -> list[m.AudioFrame]:
    return [x for x in msgs if isinstance(x, m.AudioFrame) and (turn is None or x.turn == turn)]


def assert_contiguous(frames: list[m.AudioFrame], start: int = 0) -> int:
    """Offsets run from `start` without a gap or an overlap; returns the end offset."""
    at = start
    for f in frames:
        assert f.offset == at, (f.offset, at)
        at += len(f.pcm) // 2
    return at


async def on_server(server: RealtimeServer, fn: Callable[[], T]) -> T:
    """Run `fn()` on the server's event loop (its state is owned by that thread)."""

    async def call() -> T:
        return fn()

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), server.loop))


async def on_server_await(server: RealtimeServer, coro: Any) -> Any:
    """Await `coro` on the server's event loop."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, server.loop))


@contextlib.asynccontextmanager
async def extra_server(rt_server: RealtimeServer, **config: Any) -> AsyncIterator[RealtimeServer]:
    """A second server with `ServerConfig(port=0, **config)` on the shared server's loop and
    engines (no second model load); drained (engines kept) on exit."""
    server = RealtimeServer(ServerConfig(port=0, **config), rt_server.engines)
    await on_server_await(rt_server, server.start())
    try:
        yield server
    finally:
        await on_server_await(rt_server, server.drain(stop_engines=False))


# ---- stages alone --------------------------------------------------------------------------


async def run_stage(stage: Callable[[Any], Any], inputs: list[Any]) -> list[Any]:
    """Run one stage of a turn (`realtime.stages`) over `inputs`; everything it yields."""

    async def source() -> Any:
        for item in inputs:
            yield item

    return [item async for item in stage(source())]
