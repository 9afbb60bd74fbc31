"""TTSSession.speak(): streamed text in, typed items out (tiny random-weight pocket-tts model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from engine.errors import ComponentLifecycleError, InvalidRequestError, SessionBusyError
from engine.tts import (
    MAX_CHUNK_SAMPLES,
    TTS,
    SpeechAudio,
    SpeechItem,
    SpeechSegment,
    limits,
    segment_text,
)

pytestmark = pytest.mark.slow

REPLY = "Sure, I can help with that. The kitchen lights are off now. Anything else for tonight?"
# One segment (four words): its length is fixed by the text (random weights never stop early).
ONE_SEGMENT = "Wonderful sunny weather today."


async def _deltas(text: str, size: int = 3) -> AsyncIterator[str]:
    """`text` in small deltas, like LLM tokens, yielding to the loop between them."""
    for i in range(0, len(text), size):
        await asyncio.sleep(0)
        yield text[i : i + size]


def _audio(items: list[SpeechItem]) -> np.ndarray:
    chunks = [i.samples for i in items if isinstance(i, SpeechAudio)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


async def test_speak_yields_each_segment_then_its_float_audio(tts: TTS) -> None:
    session = tts.open_session()
    items = [item async for item in session.speak(_deltas(REPLY))]
    assert [i.text for i in items if isinstance(i, SpeechSegment)] == segment_text(REPLY)
    assert isinstance(items[0], SpeechSegment)
    # Every segment is followed by audio before the next segment starts.
    kinds = "".join("S" if isinstance(i, SpeechSegment) else "a" for i in items)
    assert "SS" not in kinds and kinds.endswith("a")
    for item in items:
        if isinstance(item, SpeechAudio):
            assert item.samples.dtype == np.float32 and item.samples.ndim == 1
            assert 0 < item.samples.size <= MAX_CHUNK_SAMPLES
    assert session.state == "done"


async def test_speak_starts_audio_before_the_text_has_ended(tts: TTS) -> None:
    session = tts.open_session()
    heard_audio = asyncio.Event()

    async def llm() -> AsyncIterator[str]:
        yield "One two three, "  # the first clause is complete: whitespace follows it
        yield "fo"
        await heard_audio.wait()  # the rest only comes once audio was yielded: no deadlock
        yield "ur five six today. Bye now."

    items: list[SpeechItem] = []
    async for item in session.speak(llm()):
        items.append(item)
        if isinstance(item, SpeechAudio):
            heard_audio.set()
    segments = [i.text for i in items if isinstance(i, SpeechSegment)]
    assert segments == ["One two three,", "four five six today.", "Bye now."]


async def test_speak_skips_text_without_letters_or_digits(tts: TTS) -> None:
    session = tts.open_session()

    async def text(*parts: str) -> AsyncIterator[str]:
        for part in parts:
            yield part

    assert [i async for i in session.speak(text("...", " -- ", "!?"))] == []
    assert session.state == "done"
    items = [i async for i in session.speak(text("... ", "One two three. ", "!! ?"))]
    assert [i.text for i in items if isinstance(i, SpeechSegment)] == ["... One two three."]


async def test_speak_is_one_at_a_time_and_checks_its_argument(tts: TTS) -> None:
    session = tts.open_session()
    stream = session.speak(_deltas(REPLY))
    with pytest.raises(SessionBusyError):
        session.speak(_deltas(REPLY))
    with pytest.raises(SessionBusyError):
        session.synthesize("Hello there.")
    await session.close()
    with pytest.raises(InvalidRequestError, match="async iterable"):
        session.speak("plain str")  # type: ignore[arg-type]
    del stream


async def test_speak_raises_the_text_sources_error_after_the_audio_before_it(tts: TTS) -> None:
    session = tts.open_session()

    async def failing() -> AsyncIterator[str]:
        yield "One two three, four five. And more "
        raise RuntimeError("the LLM failed")  # not mistaken for a stopped TTS worker

    items: list[SpeechItem] = []
    with pytest.raises(RuntimeError, match="LLM failed"):
        async for item in session.speak(failing()):
            items.append(item)
    assert [i.text for i in items if isinstance(i, SpeechSegment)] == ["One two three,"]
    assert _audio(items).size > 0

    async def not_text() -> AsyncIterator[object]:
        yield 42

    with pytest.raises(InvalidRequestError, match="str"):
        async for _ in session.speak(not_text()):  # type: ignore[arg-type]
            pass
    assert session.state == "done"


async def test_close_from_another_task_ends_speak_while_text_is_still_coming(tts: TTS) -> None:
    session = tts.open_session()
    never = asyncio.Event()

    async def llm() -> AsyncIterator[str]:
        yield "One two three, four five six."
        await never.wait()  # the LLM stalls: the reader waits on the buffer
        yield "never"

    items: list[SpeechItem] = []
    heard_audio = asyncio.Event()

    async def read() -> None:
        async for item in session.speak(llm()):
            items.append(item)
            if isinstance(item, SpeechAudio):
                heard_audio.set()

    reader = asyncio.ensure_future(read())
    await asyncio.wait_for(heard_audio.wait(), 10)
    await asyncio.sleep(0.3)  # all of the first segment is out; the reader waits for more
    await session.close()
    await asyncio.wait_for(reader, 2)
    assert session.state == "idle"
    assert len(await session.collect("Again, please.")) > 0


async def test_tts_stop_makes_speak_raise_a_lifecycle_error(tts: TTS) -> None:
    session = tts.open_session()
    stream = session.speak(_deltas(REPLY * 5))
    await anext(stream)
    await tts.stop()
    with pytest.raises(ComponentLifecycleError):
        async for _ in stream:
            pass
    with pytest.raises(ComponentLifecycleError):
        session.speak(_deltas(REPLY))


async def test_set_speed_applies_inside_the_running_segment(tts: TTS) -> None:
    assert segment_text(ONE_SEGMENT) == [ONE_SEGMENT]
    session = tts.open_session()
    normal = np.frombuffer(await session.collect(ONE_SEGMENT), dtype="<i2").size
    stream = session.synthesize(ONE_SEGMENT)
    first = len(await anext(stream)) // 2
    await session.set_speed(2.0)  # the rest of this one segment plays twice as fast
    rest = sum([len(chunk) // 2 async for chunk in stream])
    assert first < normal / 2  # the change came early in the segment
    assert abs(first + rest - (first + (normal - first) / 2)) < 0.03 * normal
    await session.set_speed(1.0)
    again = np.frombuffer(await session.collect(ONE_SEGMENT), dtype="<i2").size
    assert again == normal


async def test_pause_holds_yielding_and_synthesis_waits_on_a_bounded_buffer(tts: TTS) -> None:
    session = tts.open_session()
    stream = session.speak(_deltas(REPLY * 10, size=40))
    await anext(stream)
    await session.pause()
    pending = asyncio.ensure_future(anext(stream))
    held = -1
    for _ in range(50):  # the tiny model is far faster than real time: the buffer fills
        await asyncio.sleep(0.3)
        if session.buffered_samples == held:
            break  # synthesis waits: the buffer is full
        held = session.buffered_samples
    assert not pending.done()
    # the bound is kept between segments (the worker never waits inside one): at least the
    # bound, and less than one more segment of audio (220 characters: far below 15 s)
    assert limits.SPEECH_BUFFER_SAMPLES <= held < limits.SPEECH_BUFFER_SAMPLES + 15 * 24_000
    await session.resume()
    assert await asyncio.wait_for(pending, 10)
    await session.close()
    assert session.buffered_samples == 0


async def test_a_paused_session_does_not_hold_the_worker_from_another_session(tts: TTS) -> None:
    paused = tts.open_session()
    stream = paused.speak(_deltas(REPLY * 10, size=40))
    await anext(stream)
    await paused.pause()
    for _ in range(50):  # let its buffer fill up
        before = paused.buffered_samples
        await asyncio.sleep(0.2)
        if paused.buffered_samples == before >= limits.SPEECH_BUFFER_SAMPLES:
            break
    other = tts.open_session()
    pcm = await asyncio.wait_for(other.collect("Another conversation speaks now."), 20)
    assert len(pcm) > 24_000  # it was synthesized while the first session stays paused
    await paused.close()
