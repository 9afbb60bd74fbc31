"""`TTSSession`: one voice's stream of speech, reusable across turns (`TTS.open_session()`).

    session = tts.open_session(voice="alba", speed=1.0)
    pcm = await session.collect("Hello. How are you?")      # 24 kHz mono s16le bytes
    async for chunk in session.synthesize(text):             # the same, chunk by chunk
        send(chunk)
    async for item in session.speak(llm_text_deltas):        # streamed text in, typed items out
        match item:
            case SpeechSegment(text): ...                    # the audio that follows speaks text
            case SpeechAudio(samples): ...                   # 24 kHz mono float32, live speed

States: "idle" (new, or after `close()`), "running" (a synthesis is in progress), "done" (the
last synthesis ended, or raised). Rules:
- `speak()` / `synthesize()` / `collect()`: one at a time (`SessionBusyError` at call time
  otherwise); `ComponentLifecycleError` when the TTS is not running, and when `TTS.stop()`
  interrupts a running synthesis (never a silent, empty success). `synthesize` / `collect`
  raise `InvalidRequestError` for text that is too long or has nothing to say.
- Text is cut into segments by `TextSegmenter` (`engine.tts.segment`): the first audio comes
  after the first short clause. `speak()` consumes its text deltas as they come, and the next
  segment synthesizes while the previous one is yielded. Audio chunks are at most
  `MAX_CHUNK_SAMPLES` long; synthesis runs at most `SPEECH_BUFFER_SAMPLES` ahead of what was
  yielded, then waits (backpressure; it holds the TTS worker while it waits).
- `await set_speed(x)`: any time; applies to all audio not yet yielded, inside the running
  segment too (time-stretch with the pitch kept, `engine.tts.stretch`).
- `await pause()` / `await resume()`: stop / restart yielding (synthesis fills the buffer, then
  waits). `await set_voice(name)`: only when idle or done (`SessionBusyError` while running).
- `await close()`: cancel the running synthesis, drop buffered audio, back to idle. It may come
  from another task: a reader waiting for the next item is woken at once, its iterator simply
  ends, and `collect()` returns the audio it had. `async with` calls it on exit.
If a consumer abandons an iterator without exhausting it, call `close()` (or `aclose()` the
iterator) to free the session.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engine.audio import float_to_pcm16_bytes
from engine.errors import ComponentLifecycleError, InvalidRequestError, SessionBusyError
from engine.tts import limits
from engine.tts.buffer import (
    CLOSED,
    END,
    SEGMENT_END,
    SpeechBuffer,
    SynthesisCancelled,
)
from engine.tts.segment import TextSegmenter, segment_text
from engine.tts.stretch import StreamingStretcher

__all__ = ["SpeechAudio", "SpeechItem", "SpeechSegment", "SynthesisHost", "TTSSession"]

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """A new segment starts: the `SpeechAudio` items that follow speak `text`."""

    text: str


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """24 kHz mono float32 samples (at most `MAX_CHUNK_SAMPLES`), at the session's live speed."""

    samples: Float32Array


SpeechItem = SpeechSegment | SpeechAudio


class SynthesisHost(Protocol):
    """What a session needs from its TTS (internal): the TTS hands one to each session."""

    @property
    def loop_alive(self) -> bool:
        """Whether the component's event loop still runs (close() on exit needs it)."""
        ...

    def check_loop(self) -> None:
        """`ComponentLifecycleError` unless called from the component's loop."""
        ...

    def check_running(self) -> None:
        """`ComponentLifecycleError` unless the component runs (and on its loop)."""
        ...

    def check_voice(self, name: str) -> str:
        """`name` if it is a known voice, else `InvalidRequestError`."""
        ...

    def synthesis_started(self) -> None:
        """Count one synthesis (health)."""
        ...

    async def voice_state(self, voice: str) -> object:
        """The backend's state for `voice` (loaded on the worker)."""
        ...

    async def stream(
        self,
        state: object,
        text: str,
        sink: Callable[[Float32Array], None],
        stop: threading.Event,
    ) -> None:
        """On the worker: synthesize `text`, calling `sink` (on the worker) with each 24 kHz
        float32 chunk; returns early once `stop` is set. `ComponentLifecycleError` if stopped."""
        ...


class _Run:
    """The moving parts of one synthesis: buffer, stop flag, producer tasks, outcome."""

    def __init__(self) -> None:
        self.buffer = SpeechBuffer(limits.SPEECH_BUFFER_SAMPLES)
        self.stop = threading.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.aborted = False  # TTS.stop() ended it: the reader raises ComponentLifecycleError
        self.finished = False  # the reader saw the end (or an error) of the synthesis

    def cancel(self) -> None:
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        self.buffer.close()

    async def wait(self) -> None:
        # The synthesis is being thrown away: its errors are no longer anyone's.
        await asyncio.gather(*self.tasks, return_exceptions=True)


class TTSSession:
    """Never constructed by users: use `TTS.open_session()`."""

    def __init__(self, host: SynthesisHost, voice: str, speed: float) -> None:
        self._host = host
        self.voice = voice
        self._speed = limits.validate_speed(speed)
        self.state = "idle"
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._run: _Run | None = None

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    @property
    def buffered_samples(self) -> int:
        """Samples synthesized and not yet yielded (before the speed is applied); 0 if idle."""
        return 0 if self._run is None else self._run.buffer.samples

    # -- controls -----------------------------------------------------------------------------
    async def set_voice(self, voice: str) -> None:
        self._host.check_running()
        if self.state == "running":
            raise SessionBusyError("set_voice() needs an idle or done session; a synthesis runs")
        self.voice = self._host.check_voice(voice)

    async def set_speed(self, speed: float) -> None:
        """Speed for every sample not yet yielded; `InvalidRequestError` outside the range."""
        self._host.check_loop()
        self._speed = limits.validate_speed(speed)

    async def pause(self) -> None:
        self._host.check_loop()
        self._resumed.clear()

    async def resume(self) -> None:
        self._host.check_loop()
        self._resumed.set()

    async def close(self) -> None:
        """Cancel the running synthesis, drop its buffered audio, return to idle."""
        self._host.check_loop()
        run, self._run = self._run, None
        if run is not None:
            run.cancel()  # wakes a reader waiting in another task: its iterator ends
            await run.wait()
        self._resumed.set()
        self.state = "idle"

    def _abort_for_stop(self) -> None:
        """Called by `TTS.stop()`: make the running synthesis fail with a lifecycle error."""
        if self._run is not None:
            self._run.aborted = True
            self._run.cancel()
            self._resumed.set()

    # -- synthesis ----------------------------------------------------------------------------
    async def collect(self, text: str) -> bytes:
        """Synthesize `text` fully; 24 kHz mono s16le PCM (what it had, if closed meanwhile)."""
        parts = [chunk async for chunk in self.synthesize(text)]
        return b"".join(parts)

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Stream `text` as 24 kHz mono s16le chunks. Checks (and claims the session) now."""
        self._host.check_running()
        if not isinstance(text, str):
            raise InvalidRequestError(f"text must be a str, not {type(text).__name__}")
        if len(text) > limits.MAX_TEXT_CHARS:
            raise InvalidRequestError(
                f"text is {len(text)} characters; the limit is {limits.MAX_TEXT_CHARS}"
            )
        if not segment_text(text):
            raise InvalidRequestError("text is empty: no letter or digit to say")
        return _PCM16Stream(self._read(self._claim(), _once(text)))

    def speak(self, text: AsyncIterable[str]) -> AsyncIterator[SpeechItem]:
        """Speak streamed text: yields `SpeechSegment`, then its `SpeechAudio` chunks, per segment.

        `text` yields str deltas (e.g. LLM tokens), consumed as they come; a non-str delta, or
        an error raised by `text`, is raised by this iterator after the audio before it.
        Checks (and claims the session) now; see the module docstring for the rules.
        """
        self._host.check_running()
        if not isinstance(text, AsyncIterable):
            raise InvalidRequestError(f"text must be an async iterable of str, not {text!r}")
        return self._read(self._claim(), text)

    def _claim(self) -> _Run:
        if self.state == "running":
            raise SessionBusyError("this TTS session is already synthesizing")
        self.state = "running"
        self._run = _Run()
        self._host.synthesis_started()
        return self._run

    async def _read(self, run: _Run, text: AsyncIterable[str]) -> AsyncGenerator[SpeechItem, None]:
        """The reader: take items from the buffer, apply pause and the live speed, yield."""
        if not run.buffer.closed:
            segments: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
            run.tasks = [
                asyncio.create_task(_cut_text(text, segments)),
                asyncio.create_task(self._synthesize(run, segments)),
            ]
        stretcher = StreamingStretcher(limits.OUTPUT_RATE, self._speed)
        try:
            while True:
                await self._resumed.wait()
                item = await run.buffer.get()
                if item is CLOSED or item is END or isinstance(item, BaseException):
                    self._end(run, item)
                    return
                for out in self._render(item, stretcher):
                    await self._resumed.wait()
                    if run.buffer.closed:
                        self._end(run, CLOSED)
                        return
                    yield out
        finally:
            await self._release(run)

    def _render(self, item: object, stretcher: StreamingStretcher) -> list[SpeechItem]:
        """A buffer item as what the reader yields: segment marker, or audio at the live speed."""
        if isinstance(item, SpeechSegment):
            return [item]
        if item is SEGMENT_END:
            return _audio_items(stretcher.flush())
        assert isinstance(item, np.ndarray)
        stretcher.speed = self._speed  # read per chunk: set_speed() applies to what is left
        return _audio_items(stretcher.process(item))

    def _end(self, run: _Run, item: object) -> None:
        """The reader's last item: END returns, CLOSED returns (or raises if TTS.stop()ped)."""
        if item is CLOSED:
            if run.aborted:
                raise ComponentLifecycleError("TTS stopped during synthesis")
            return
        run.finished = True
        if isinstance(item, BaseException):
            raise item

    async def _release(self, run: _Run) -> None:
        """The reader is done (ended, raised or abandoned): free the session if still ours."""
        if self._run is not run:
            return  # close() took it over
        if not run.finished:
            run.cancel()
            await run.wait()
        self._run = None
        self.state = "done" if run.finished else "idle"

    async def _synthesize(
        self, run: _Run, segments: asyncio.Queue[str | BaseException | None]
    ) -> None:
        """Producer: segment after segment on the worker into the buffer, then END (or error).

        The bound is kept between segments, on the loop (`wait_for_room`), never inside one:
        the TTS worker is shared by every session of the component, and a reader that plays
        at real time (or is paused) must not hold it. Measured before (bench_load, demo model,
        AMD EPYC): with the worker blocked on a full buffer while one reply played, a second
        conversation's first audio waited for it (p90 6.8 s at 2 conversations)."""
        loop = asyncio.get_running_loop()

        def sink(samples: Float32Array) -> None:  # on the worker thread: never blocks
            for i in range(0, samples.size, limits.MAX_CHUNK_SAMPLES):
                piece = samples[i : i + limits.MAX_CHUNK_SAMPLES]
                loop.call_soon_threadsafe(run.buffer.put_nowait, piece, piece.size)

        try:
            state = await self._host.voice_state(self.voice)
            while (segment := await segments.get()) is not None:
                if isinstance(segment, BaseException):  # the text source's own error, as is
                    await run.buffer.put(segment)
                    return
                if not await run.buffer.wait_for_room():
                    return
                run.buffer.put_nowait(SpeechSegment(segment))
                await self._host.stream(state, segment, sink, run.stop)
                # the sink's puts were scheduled before the stream's result: they come first
                if run.stop.is_set() or not run.buffer.put_nowait(SEGMENT_END):
                    return
            await run.buffer.put(END)
        except SynthesisCancelled:
            return
        except Exception as exc:
            if run.aborted or isinstance(exc, RuntimeError):  # RuntimeError: worker shut down
                exc = ComponentLifecycleError(f"TTS stopped during synthesis ({exc})")
            await run.buffer.put(exc)

    # -- context manager ----------------------------------------------------------------------
    async def __aenter__(self) -> TTSSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._host.loop_alive:
            await self.close()


async def _cut_text(
    text: AsyncIterable[str], segments: asyncio.Queue[str | BaseException | None]
) -> None:
    """Consume the text deltas as they come; queue each completed segment, then None."""
    segmenter = TextSegmenter()
    try:
        async for delta in text:
            if not isinstance(delta, str):
                raise InvalidRequestError(f"text deltas must be str, not {type(delta).__name__}")
            for segment in segmenter.feed(delta):
                segments.put_nowait(segment)
        for segment in segmenter.flush():
            segments.put_nowait(segment)
        segments.put_nowait(None)
    except Exception as exc:  # raised by the reader, in order after the audio before it
        segments.put_nowait(exc)


def _audio_items(samples: Float32Array) -> list[SpeechItem]:
    return [
        SpeechAudio(samples[i : i + limits.MAX_CHUNK_SAMPLES])
        for i in range(0, samples.size, limits.MAX_CHUNK_SAMPLES)
    ]


async def _once(text: str) -> AsyncIterator[str]:
    yield text


class _PCM16Stream:
    """`synthesize()`'s iterator: the audio items as 24 kHz mono s16le bytes, markers left out.

    A plain iterator, not an async generator, so that abandoning it leaves one generator (the
    reader) for the loop to finalize, never two racing to close the same one.
    """

    def __init__(self, items: AsyncGenerator[SpeechItem, None]) -> None:
        self._items = items

    def __aiter__(self) -> _PCM16Stream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            item = await anext(self._items)  # StopAsyncIteration at the end
            if isinstance(item, SpeechAudio):
                return float_to_pcm16_bytes(item.samples)

    async def aclose(self) -> None:
        """Stop early and free the session (like closing an async generator)."""
        await self._items.aclose()
