"""`TTSSession`: one voice's stream of speech, reusable across turns (`TTS.open_session()`).

    session = tts.open_session(voice="alba", speed=1.0)
    pcm = await session.collect("Hello. How are you?")     # 24 kHz mono s16le bytes
    async for chunk in session.synthesize(text):            # chunks as they are produced
        send(chunk)

States: "idle" (new, or after `close()`), "running" (a synthesis is in progress), "done" (the
last synthesis ended). Rules:
- `synthesize()` / `collect()`: one at a time (`SessionBusyError` at call time otherwise);
  `InvalidRequestError` for empty or too long text; `ComponentLifecycleError` when the TTS is
  not running, including when `TTS.stop()` interrupts a running synthesis (never a silent,
  empty success). Text is cut into sentence-sized segments (`engine.tts.segment`), so the
  first chunk arrives after the first sentence, not the whole text.
- `await set_voice(name)`: only when idle or done (`SessionBusyError` while running).
- `await set_speed(x)`: any time; applies from the next segment of a running synthesis
  (time-stretch with the pitch kept, `engine.tts.stretch`).
- `await pause()` / `await resume()`: stop / restart yielding chunks (synthesis runs ahead
  until `CHUNK_QUEUE_MAXSIZE` chunks are buffered, then waits).
- `await close()`: cancel the running synthesis, drop buffered audio, back to idle (the
  cancelled iterator simply ends). `async with` calls it on exit.
If a consumer abandons `synthesize()` without exhausting it, call `close()` (or `aclose()`
the iterator) to free the session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from engine.audio import float_to_pcm16_bytes
from engine.errors import ComponentLifecycleError, InvalidRequestError, SessionBusyError
from engine.tts import limits
from engine.tts.component import validate_speed
from engine.tts.segment import segment_text
from engine.tts.stretch import StreamingStretcher

if TYPE_CHECKING:
    from engine.tts.component import TTS

__all__ = ["TTSSession"]

_END = object()


class _Cancelled(Exception):
    """Raised inside the worker when the synthesis was cancelled."""


class TTSSession:
    """Never constructed by users: use `TTS.open_session()`."""

    def __init__(self, tts: TTS, voice: str, speed: float) -> None:
        self._tts = tts
        self.voice = voice
        self._speed = speed
        self.state = "idle"
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stop: threading.Event | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._producer: asyncio.Task[None] | None = None
        self._stopped_by_component = False
        self._generation = 0

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    # -- controls -----------------------------------------------------------------------------
    async def set_voice(self, voice: str) -> None:
        self._tts._check_running()
        if self.state == "running":
            raise SessionBusyError("set_voice() needs an idle or done session; a synthesis runs")
        self.voice = self._tts._check_voice(voice)

    async def set_speed(self, speed: float) -> None:
        self._tts._check_loop()
        self._speed = validate_speed(speed)

    async def pause(self) -> None:
        self._tts._check_loop()
        self._resumed.clear()

    async def resume(self) -> None:
        self._tts._check_loop()
        self._resumed.set()

    async def close(self) -> None:
        """Cancel the running synthesis, drop its buffered audio, return to idle."""
        self._tts._check_loop()
        await self._cancel()
        self._resumed.set()
        self.state = "idle"

    async def _cancel(self) -> None:
        self._generation += 1  # an iterator of an older generation ends at its next step
        if self._stop is not None:
            self._stop.set()
        producer, self._producer = self._producer, None
        if producer is not None and not producer.done():
            producer.cancel()
            try:
                await producer
            except (asyncio.CancelledError, Exception):
                pass  # the synthesis is being thrown away; its error is no longer anyone's
        if self._queue is not None:
            # Wake a reader waiting on the queue (issue 11): it sees the new generation and ends.
            _put_nowait_dropping(self._queue, _END)
        self._queue = None
        self._stop = None

    def _abort_for_stop(self) -> None:
        """Called by `TTS.stop()`: make the running synthesis fail with a lifecycle error."""
        if self.state == "running":
            self._stopped_by_component = True
            if self._stop is not None:
                self._stop.set()
            if self._producer is not None:
                self._producer.cancel()
            self._resumed.set()

    # -- synthesis ----------------------------------------------------------------------------
    async def collect(self, text: str) -> bytes:
        """Synthesize `text` fully; returns 24 kHz mono s16le PCM."""
        parts = [chunk async for chunk in self.synthesize(text)]
        return b"".join(parts)

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Stream `text` as 24 kHz mono s16le chunks. Checks (and claims the session) now."""
        self._tts._check_running()
        if not isinstance(text, str):
            raise InvalidRequestError(f"text must be a str, not {type(text).__name__}")
        if len(text) > limits.MAX_TEXT_CHARS:
            raise InvalidRequestError(
                f"text is {len(text)} characters; the limit is {limits.MAX_TEXT_CHARS}"
            )
        segments = segment_text(text)
        if not segments:
            raise InvalidRequestError("text is empty")
        if self.state == "running":
            raise SessionBusyError("this TTS session is already synthesizing")
        self.state = "running"
        self._stopped_by_component = False
        self._generation += 1
        self._tts._syntheses += 1
        return self._iterate(segments, self._generation)

    async def _iterate(self, segments: list[str], generation: int) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=limits.CHUNK_QUEUE_MAXSIZE)
        stop = threading.Event()
        self._queue, self._stop = queue, stop
        self._producer = loop.create_task(self._produce(segments, queue, stop))
        finished = False
        try:
            while True:
                if generation != self._generation:
                    return  # close() cancelled us
                getter = asyncio.ensure_future(queue.get())
                try:
                    item = await getter
                finally:
                    getter.cancel()
                if self._stopped_by_component:
                    raise ComponentLifecycleError("TTS stopped during synthesis")
                if item is _END:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                await self._resumed.wait()
                if generation != self._generation:
                    return
                if self._stopped_by_component:
                    raise ComponentLifecycleError("TTS stopped during synthesis")
                yield item
        finally:
            if generation == self._generation:
                if not finished:
                    await self._cancel()
                    self._generation = generation  # keep ownership for the state below
                self._producer = None
                self._queue = None
                self._stop = None
                self.state = "done" if finished else "idle"

    async def _produce(
        self, segments: list[str], queue: asyncio.Queue[Any], stop: threading.Event
    ) -> None:
        """Run segment after segment on the TTS worker; push chunks, then _END or an error."""
        loop = asyncio.get_running_loop()
        try:
            assert self._tts._voices is not None
            state = await self._tts._run(self._tts._voices.state, self.voice)
            for segment in segments:
                if stop.is_set():
                    break
                self._tts._check_running()
                speed = self._speed  # read per segment: set_speed() applies to later ones
                await self._tts._run(self._run_segment, state, segment, speed, queue, stop, loop)
            if self._stopped_by_component or self._tts._executor is None:
                raise ComponentLifecycleError("TTS stopped during synthesis")
            await queue.put(_END)
        except asyncio.CancelledError:
            if self._stopped_by_component:
                _put_nowait_dropping(queue, ComponentLifecycleError("TTS stopped during synthesis"))
            raise
        except _Cancelled:
            await queue.put(_END)
        except Exception as exc:
            if self._stopped_by_component or isinstance(exc, RuntimeError):
                exc = ComponentLifecycleError(f"TTS stopped during synthesis ({exc})")
            await queue.put(exc)

    def _run_segment(
        self,
        state: Any,
        text: str,
        speed: float,
        queue: asyncio.Queue[Any],
        stop: threading.Event,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Worker thread: stream one segment, time-stretched, into the loop's queue."""
        assert self._tts._backend is not None
        stretcher = StreamingStretcher(limits.OUTPUT_RATE, speed)
        for samples in self._tts._backend.stream(state, text, stop):
            out = stretcher.process(samples)
            for i in range(0, out.size, limits.MAX_CHUNK_SAMPLES):
                piece = out[i : i + limits.MAX_CHUNK_SAMPLES]
                _put_from_thread(loop, queue, float_to_pcm16_bytes(piece), stop)
        tail = stretcher.flush()
        for i in range(0, tail.size, limits.MAX_CHUNK_SAMPLES):
            piece = tail[i : i + limits.MAX_CHUNK_SAMPLES]
            _put_from_thread(loop, queue, float_to_pcm16_bytes(piece), stop)
        if stop.is_set():
            raise _Cancelled

    # -- context manager ----------------------------------------------------------------------
    async def __aenter__(self) -> TTSSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tts._loop is not None and not self._tts._loop.is_closed():
            await self.close()


def _put_from_thread(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], item: Any, stop: threading.Event
) -> None:
    """Blocking put from the worker thread (backpressure), abandoned once `stop` is set."""
    future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
    while True:
        try:
            future.result(timeout=0.05)
            return
        except concurrent.futures.TimeoutError:
            if stop.is_set():
                future.cancel()
                raise _Cancelled from None


def _put_nowait_dropping(queue: asyncio.Queue[Any], item: Any) -> None:
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
