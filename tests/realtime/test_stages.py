"""Each stage of a turn alone (`run_stage`): typed items in, typed items out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from rt_helpers import run_stage

from engine.tts import SpeechAudio, SpeechSegment
from realtime import limits
from realtime.stages import (
    AudioFrame,
    FirstAudioHold,
    SegmentStart,
    TextDelta,
    buffered,
    frame_pcm16,
    frames,
    report_text,
)


class Report:
    def __init__(self) -> None:
        self.texts: list[tuple[str, float]] = []
        self.marks: list[str] = []

    def text(self, delta: str, at: float) -> None:
        self.texts.append((delta, at))

    def mark(self, stage: str, at: float) -> None:
        self.marks.append(stage)


async def test_frames_are_whole_and_keep_segment_boundaries_and_every_sample() -> None:
    n = limits.AUDIO_FRAME_SAMPLES
    rng = np.random.default_rng(1)
    chunks = [rng.standard_normal(k).astype(np.float32) * 0.1 for k in (n // 3, 2 * n + 7, 5)]
    items = [SpeechSegment("One."), SpeechAudio(chunks[0]), SpeechAudio(chunks[1])]
    items += [SpeechSegment("Two."), SpeechAudio(chunks[2])]
    report = Report()
    out = await run_stage(lambda src: frames(src, report), items)
    audio = [o for o in out if isinstance(o, AudioFrame)]
    assert [o.text for o in out if isinstance(o, SegmentStart)] == ["One.", "Two."]
    assert all(f.samples.size == n for f in audio[:-1]) and 0 < audio[-1].samples.size <= n
    assert np.array_equal(np.concatenate([f.samples for f in audio]), np.concatenate(chunks))
    assert report.marks == ["sentence", "tts_chunk", "sentence"]


def test_frame_pcm16_is_the_one_float_to_wire_conversion() -> None:
    frame = AudioFrame(np.array([0.0, 0.5, -1.0, 1.5], dtype=np.float32))
    pcm = np.frombuffer(frame_pcm16(frame), dtype="<i2")
    assert pcm[0] == 0 and abs(pcm[1] - 16384) <= 1 and pcm[2] <= -32767 and pcm[3] == 32767


async def test_report_text_reports_every_delta_with_its_time_and_passes_it_on() -> None:
    report = Report()
    deltas = [TextDelta("Hel", 1.0), TextDelta("lo", 2.0)]
    assert await run_stage(lambda src: report_text(src, report), deltas) == ["Hel", "lo"]
    assert report.texts == [("Hel", 1.0), ("lo", 2.0)]


async def test_buffered_runs_ahead_only_as_far_as_its_queue() -> None:
    produced: list[int] = []

    async def source() -> AsyncIterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    it = buffered(source(), 3)
    assert await anext(it) == 0
    await asyncio.sleep(0.05)  # the producer runs ahead, then waits on the full queue
    assert 3 <= len(produced) <= 6
    await it.aclose()


async def test_buffered_hands_the_source_error_to_the_consumer_and_closes_the_source() -> None:
    closed = asyncio.Event()

    async def failing() -> AsyncIterator[int]:
        try:
            yield 1
            raise ValueError("boom")
        finally:
            closed.set()

    got: list[int] = []
    with pytest.raises(ValueError, match="boom"):
        async for x in buffered(failing(), 2):
            got.append(x)
    assert got == [1] and closed.is_set()


async def test_closing_the_consumer_cancels_and_closes_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = buffered(endless(), 2)
    await anext(it)
    await it.aclose()
    assert closed.is_set()


async def test_the_llm_waits_between_the_first_segment_and_its_first_audio() -> None:
    pulled: list[int] = []

    async def llm() -> AsyncIterator[TextDelta]:
        for i in range(5):
            pulled.append(i)
            yield TextDelta(f"w{i} ", float(i))

    hold = FirstAudioHold()
    text = report_text(llm(), Report(), hold)
    assert await anext(text) == "w0 "
    hold.segment_started()  # the first segment went to TTS: no more tokens for now
    waiting = asyncio.ensure_future(anext(text))
    await asyncio.sleep(0.05)
    assert not waiting.done() and pulled == [0]
    hold.audio_started()  # its first audio exists: the LLM goes on
    assert await waiting == "w1 "
    assert [x async for x in text] == ["w2 ", "w3 ", "w4 "]


async def test_frames_tell_the_hold_when_the_first_segment_and_audio_come() -> None:
    hold = FirstAudioHold()
    items = [SpeechSegment("One."), SpeechAudio(np.zeros(10, dtype=np.float32))]
    gen = frames(_aiter(items), Report(), hold=hold)
    assert isinstance(await anext(gen), SegmentStart)
    blocked = asyncio.ensure_future(hold.wait())
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert isinstance(await anext(gen), AudioFrame)
    await asyncio.wait_for(blocked, 1.0)


async def _aiter(items: list[object]) -> AsyncIterator[object]:
    for item in items:
        yield item
