"""TTSSession rules on the real pocket-tts path (tiny random-weight model), 24 kHz s16le."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import ComponentLifecycleError, InvalidRequestError, SessionBusyError
from engine.tts import TTS

pytestmark = pytest.mark.slow

TEXT = "Hello world. How are you today? The weather is fine."


async def test_collect_returns_24k_mono_s16le(tts: TTS) -> None:
    async with tts.open_session() as session:
        pcm = await session.collect("Hello world.")
        assert len(pcm) % 2 == 0 and len(pcm) > 0.2 * 24_000 * 2
        assert session.state == "done"


async def test_synthesize_streams_chunks_before_the_end(tts: TTS) -> None:
    session = tts.open_session()
    chunks = []
    async for chunk in session.synthesize(TEXT):
        chunks.append(chunk)
        if len(chunks) == 1:
            # The first chunk arrives while the session is still working on the text.
            assert session.state == "running"
    assert len(chunks) > 3
    assert session.state == "done"


async def test_one_synthesis_at_a_time(tts: TTS) -> None:
    session = tts.open_session()
    stream = session.synthesize(TEXT)
    with pytest.raises(SessionBusyError):
        session.synthesize("again")
    with pytest.raises(SessionBusyError):
        await session.collect("again")
    with pytest.raises(SessionBusyError, match="idle or done"):
        await session.set_voice("alba")
    await session.close()
    assert session.state == "idle"
    await session.set_voice("alba")
    assert len(await session.collect("Hi there.")) > 0
    del stream


async def test_set_speed_between_and_during_syntheses(tts: TTS) -> None:
    # Random weights never emit EOS, so each segment's length is fixed by its text: compare.
    session = tts.open_session()
    slow = await session.collect("One. Two. Three.")
    await session.set_speed(2.0)
    fast = await session.collect("One. Two. Three.")
    assert abs(len(fast) / len(slow) - 0.5) < 0.05
    await session.set_speed(1.0)
    stream = session.synthesize("First part of it. Second part here. Third part now.")
    first = await anext(stream)
    await session.set_speed(2.0)  # while running: applies to what is not yet yielded
    rest = [c async for c in stream]
    assert first and rest
    with pytest.raises(InvalidRequestError, match="speed"):
        await session.set_speed(5.0)
    with pytest.raises(InvalidRequestError, match="speed"):
        tts.open_session(speed=0.1)


async def test_pause_holds_chunks_until_resume(tts: TTS) -> None:
    session = tts.open_session()
    stream = session.synthesize(TEXT)
    await anext(stream)
    await session.pause()
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.3)
    assert not pending.done()
    await session.resume()
    assert await asyncio.wait_for(pending, 10)
    await session.close()


async def test_close_cancels_and_drops_buffered_audio(tts: TTS) -> None:
    session = tts.open_session()
    stream = session.synthesize(TEXT * 3)
    await anext(stream)
    await session.close()
    assert session.state == "idle"
    assert [c async for c in stream] == []  # nothing buffered survives close()
    assert len(await session.collect("Again.")) > 0


@pytest.mark.parametrize(
    ("text", "words"), [("", "empty"), ("   ", "empty"), ("x" * 5001, "limit")]
)
async def test_bad_text(tts: TTS, text: str, words: str) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        await tts.open_session().collect(text)


async def test_after_stop_synthesis_raises_lifecycle_error(tts: TTS) -> None:
    session = tts.open_session()
    stream = session.synthesize(TEXT * 3)
    await anext(stream)
    await tts.stop()
    with pytest.raises(ComponentLifecycleError):
        async for _ in stream:
            pass
    with pytest.raises(ComponentLifecycleError):
        await session.collect("Hello.")
    with pytest.raises(ComponentLifecycleError):
        session.synthesize("Hello.")


async def test_health(tts: TTS) -> None:
    health = tts.health()
    assert health["state"] == "running" and health["backend"] == "pocket-tts"


@pytest.mark.parametrize("how", ["synthesize", "collect"])
async def test_close_from_another_task_ends_the_reader(tts: TTS, how: str) -> None:
    # Issue 11: close() from a control task must wake a reader waiting for the next chunk.
    # The hang needs the close to land while the model computes: try many moments.
    session = tts.open_session()
    for delay in [0.02 * k for k in range(1, 16)]:
        chunks: list[bytes] = []

        async def read(chunks: list[bytes] = chunks) -> bytes:
            if how == "collect":
                return await session.collect(TEXT * 20)
            async for chunk in session.synthesize(TEXT * 20):
                chunks.append(chunk)
            return b"".join(chunks)

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(delay)
        await session.close()
        assert session.state == "idle"
        pcm = await asyncio.wait_for(reader, 2)  # the iterator ends; collect returns what it had
        assert len(pcm) % 2 == 0
    assert len(await session.collect("Again.")) > 0
