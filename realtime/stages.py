"""The stages of one assistant turn, as typed async generators.

    LLM tokens --buffered(TOKEN_QUEUE)--> TTS session (segments, speed, pause) --> frames --> pacer

Each stage consumes an async iterator and yields typed items; `buffered()` runs a stage ahead
of its consumer in a task with a bounded queue, so backpressure holds everywhere (a paused
TTS session stops pulling text, and the LLM stops once TOKEN_QUEUE deltas wait). The stages
report to the protocol core only through the small `TurnReport` interface, so each can be
tested alone (`tests/realtime/rt_helpers.run_stage`). Audio stays float32 from the TTS
session to `frame_pcm16`, the one place it becomes wire PCM16.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from engine.audio import float_to_pcm16_bytes
from engine.llm.events import ChatDoneEvent, ChatTokenEvent
from engine.tts import SpeechAudio, SpeechSegment
from realtime import limits

if TYPE_CHECKING:
    from engine.llm.events import Usage

__all__ = [
    "AudioFrame",
    "FirstAudioHold",
    "SegmentStart",
    "TextDelta",
    "TurnReport",
    "buffered",
    "frame_pcm16",
    "frames",
    "llm_text",
    "report_text",
]

T = TypeVar("T")
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """One decoded increment of the reply, and when it was decoded (monotonic seconds)."""

    text: str
    at: float


@dataclass(frozen=True, slots=True)
class SegmentStart:
    """The audio frames that follow speak `text` (one TTS segment)."""

    text: str


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """AUDIO_FRAME_SAMPLES of 24 kHz float32 reply audio (the last frame may be shorter)."""

    samples: Float32Array


class TurnReport(Protocol):
    """What a turn's stages tell the protocol core (buffered while the turn is speculative)."""

    def text(self, delta: str, at: float) -> None: ...

    def mark(self, stage: str, at: float) -> None: ...


class _Stream(Protocol):
    def __aiter__(self) -> AsyncIterator[object]: ...

    async def aclose(self) -> None: ...


async def _aclose(source: object) -> None:
    """Close an async generator we iterated (a stage that ends early closes its source, so
    every stage's clean-up runs now, not when the generator is garbage-collected)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


async def llm_text(
    stream: _Stream,
    on_usage: Callable[[Usage], None],
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[TextDelta, None]:
    """The reply's text deltas from a `ChatSession.generate` stream; its usage at the end.
    The stream is always closed (which commits the turn to the chat history)."""
    try:
        async for event in stream:
            if isinstance(event, ChatTokenEvent):
                if event.text:
                    yield TextDelta(event.text, clock())
            elif isinstance(event, ChatDoneEvent):
                on_usage(event.usage)
    finally:
        await stream.aclose()


class FirstAudioHold:
    """Two cores, one critical path: once the first segment has gone to TTS, the LLM waits
    until that segment's first audio exists, instead of decoding ahead on the same cores.

    Measured on the 2B shapes (bench_realtime, AMD EPYC, 2 cores): with the LLM decoding on
    while Piper made the first segment, its first chunk took 676 ms at the median (1849 at
    p90) against ~100 ms alone. The LLM's tokens after the first segment are not needed
    before the first audio anyway: the segment plays for a second or more.
    """

    def __init__(self) -> None:
        self._segment = False
        self._audio = asyncio.Event()

    def segment_started(self) -> None:
        self._segment = True

    def audio_started(self) -> None:
        self._audio.set()

    async def wait(self) -> None:
        """Return at once, except between the first segment and its first audio."""
        if self._segment and not self._audio.is_set():
            await self._audio.wait()


async def report_text(
    deltas: AsyncIterable[TextDelta], report: TurnReport, hold: FirstAudioHold | None = None
) -> AsyncGenerator[str, None]:
    """Pass the text on to TTS, reporting each delta (the wire's `response.output_text.delta`).
    With `hold`, the next delta is not asked for while the first segment is being spoken."""
    source = aiter(deltas)
    try:
        while True:
            if hold is not None:
                await hold.wait()
            try:
                delta = await anext(source)
            except StopAsyncIteration:
                return
            report.text(delta.text, delta.at)
            yield delta.text
    finally:
        await _aclose(source)


async def frames(
    speech: AsyncIterable[SpeechSegment | SpeechAudio],
    report: TurnReport,
    clock: Callable[[], float] = time.monotonic,
    hold: FirstAudioHold | None = None,
) -> AsyncGenerator[SegmentStart | AudioFrame, None]:
    """Cut the TTS session's float32 audio into wire frames, keeping segment boundaries.

    A segment's last partial frame is carried into the next segment's audio (frames stay
    whole); the very last one is sent short."""
    pending = np.zeros(0, dtype=np.float32)
    n = limits.AUDIO_FRAME_SAMPLES
    marked_chunk = False
    try:
        async for item in speech:
            if isinstance(item, SpeechSegment):
                report.mark("sentence", clock())
                if hold is not None:
                    hold.segment_started()
                yield SegmentStart(item.text)
                continue
            if not marked_chunk:
                report.mark("tts_chunk", clock())
                marked_chunk = True
                if hold is not None:
                    hold.audio_started()
            pending = np.concatenate([pending, item.samples])
            while pending.size >= n:
                frame, pending = pending[:n], pending[n:]
                yield AudioFrame(frame)
    finally:
        await _aclose(speech)
    if pending.size:
        yield AudioFrame(pending)


def frame_pcm16(frame: AudioFrame) -> bytes:
    """The wire form of a frame: PCM16 LE."""
    return float_to_pcm16_bytes(frame.samples)


async def buffered(source: AsyncIterable[T], maxsize: int) -> AsyncGenerator[T, None]:
    """Run `source` ahead of the consumer in its own task, through a queue of `maxsize`.

    The source's exception is re-raised to the consumer; closing the consumer cancels the
    source (and waits for it to unwind)."""
    queue: asyncio.Queue[tuple[bool, T | BaseException | None]] = asyncio.Queue(maxsize)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put((True, item))
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put((False, exc))
            return
        finally:
            await _aclose(source)
        await queue.put((False, None))

    task = asyncio.ensure_future(pump())
    try:
        while True:
            ok, value = await queue.get()
            if ok:
                yield value  # type: ignore[misc]
                continue
            if isinstance(value, BaseException):
                raise value
            return
    finally:
        task.cancel()
        await asyncio.wait({task})  # never raises the task's outcome; our own cancel propagates
