"""The per-connection pipeline: the protocol core driven by real engines.

`Conversation` owns one connection's `RealtimeProtocol`, its engine sessions (one
`ChatSession`, one `TTSSession`, one `STTSession` and one partial transcriber; the engines
themselves are shared by every connection) and its tasks. The glue (`realtime.server`) calls
`on_text` / `on_binary` for each frame and `aclose()` at the end; everything the core decides
goes out through one ordered outgoing queue that a single writer task drains, so a frame that
the core approved before a flush is never reordered after it.

A turn runs as one `asyncio.TaskGroup` of four stages linked by bounded queues:

    LLM tokens --TOKEN_QUEUE--> sentence chunker --SENTENCE_QUEUE--> TTS --AUDIO_QUEUE--> pacer

(STT runs first when the turn has audio). The pacer time-stretches each chunk at the live
speed (pitch kept), cuts it into AUDIO_FRAME_MS frames and sends each only when the modelled
client has less than PLAYBACK_LEAD_MS queued, and not while paused. Barge-in or cancel cancels
the group; the history then keeps only the words the user heard.

Partial transcripts run beside the VAD, one at a time, only when `realtime.partials.PartialGate`
says the decode will end before the VAD can end the turn (the final transcript would otherwise
queue behind it on the one Whisper engine). `Conversation(trace=True)` keeps a bounded log of
what was queued and sent (`TraceEvent`), which the tests and the benchmark read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from engine.audio import float_to_pcm16_bytes, pcm16_bytes_to_float
from engine.errors import BitvoiceError, SessionExhaustedError
from engine.llm.events import ChatDoneEvent, ChatTokenEvent
from engine.tts import StreamingStretcher
from realtime import limits
from realtime import messages as m
from realtime.partials import DecodeTimer, PartialGate, SpeechDeadlines
from realtime.protocol import (
    ApplyPause,
    ApplySession,
    ApplySpeed,
    CancelResponse,
    CloseConnection,
    EndStream,
    Output,
    RealtimeProtocol,
    Send,
    SendAudio,
    StartResponse,
    StreamAudio,
)

if TYPE_CHECKING:
    from engine.llm import LLM
    from engine.llm.events import Usage
    from engine.llm.session import ChatSession
    from engine.stt import STT
    from engine.stt.session import STTSession
    from engine.stt.streaming import StreamingTranscriber
    from engine.tts import TTS, TTSSession

__all__ = ["Conversation", "Engines", "SentenceChunker", "TraceEvent", "Transport"]

log = logging.getLogger("bitvoice.realtime")

_SENTENCE_END = re.compile(r"([.!?;:]+[\"')\]]*)(\s+)|(\n+)")


class SentenceChunker:
    """Cuts streamed LLM text into sentence-sized pieces for TTS (pure, sync).

    `feed(delta)` returns the pieces completed by `delta`; `flush()` returns the rest.
    A piece ends at sentence punctuation followed by whitespace, or a newline; pieces shorter
    than MIN_SEGMENT_CHARS are joined with the next; a run-on piece is cut at the last comma
    or space before MAX_SEGMENT_CHARS (FIRST_SEGMENT_MAX_CHARS for the first piece, so the
    first audio does not wait for a long first sentence).
    """

    def __init__(self) -> None:
        self._buf = ""
        self._first = True

    def feed(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        start = 0
        for match in _SENTENCE_END.finditer(self._buf):
            end = match.end()
            piece = self._buf[start:end].strip()
            if len(piece) >= limits.MIN_SEGMENT_CHARS:
                out += self._cut_run_on(piece) if self._first else [piece]
                self._first = False
                start = end
        self._buf = self._buf[start:]
        while len(self._buf) > (limit := self._limit()):
            head = self._buf[:limit]
            cut = max(head.rfind(", ") + 1, head.rfind(" "))
            cut = cut + 1 if cut > limits.MIN_SEGMENT_CHARS else limit
            out.append(self._buf[:cut].strip())
            self._buf = self._buf[cut:]
            self._first = False
        return [p for p in out if p]

    def _limit(self) -> int:
        return limits.FIRST_SEGMENT_MAX_CHARS if self._first else limits.MAX_SEGMENT_CHARS

    def _cut_run_on(self, piece: str) -> list[str]:
        """A complete first sentence longer than the first-segment limit: cut its head off."""
        if len(piece) <= limits.FIRST_SEGMENT_MAX_CHARS:
            return [piece]
        head = piece[: limits.FIRST_SEGMENT_MAX_CHARS]
        cut = max(head.rfind(", ") + 1, head.rfind(" "))
        rest = piece[cut:].strip()
        if cut <= limits.MIN_SEGMENT_CHARS or len(rest) < limits.MIN_SEGMENT_CHARS:
            return [piece]
        return [piece[:cut].strip(), rest]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []


class Transport(Protocol):
    """What the pipeline needs from a WebSocket."""

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


@dataclass
class Engines:
    """The heavy engines, one each per process, shared by every conversation."""

    llm: LLM
    stt: STT
    tts: TTS
    model_id: str
    notice: str | None = None
    default_voice: str | None = None
    # Whisper decode time, measured once at start and then by every unqueued decode; it
    # schedules partial transcripts (realtime.partials). Shared: one STT engine for all.
    decode_timer: DecodeTimer = field(default_factory=DecodeTimer)
    speech_deadlines: SpeechDeadlines = field(default_factory=SpeechDeadlines)


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One entry of a conversation's trace (`Conversation(trace=True)`).

    `what` is `queued:<tag>` when the core emitted a JSON message, `sent:<tag>` when the writer
    handed it to the socket, and `sent:audio` for a reply audio frame (`turn`, `offset` and
    `samples` from its header). `at` is the conversation clock (monotonic seconds).
    """

    at: float
    what: str
    turn: int | None = None
    offset: int | None = None
    samples: int | None = None


class Conversation:
    """One connection's protocol core, engine sessions and tasks (see the module docstring).

    Create, then `await start()`; feed frames with `on_text` / `on_binary`; `await aclose()`
    always (it cancels the turn and every task and closes the engine sessions: nothing is left
    running after it returns). Must be used from the engines' event loop.
    """

    def __init__(
        self,
        engines: Engines,
        transport: Transport,
        session_id: str,
        *,
        idle_timeout_s: float = limits.DEFAULT_IDLE_TIMEOUT_S,
        max_session_s: float = limits.DEFAULT_MAX_SESSION_S,
        clock: Callable[[], float] = time.monotonic,
        trace: bool = False,
        on_turn_done: Callable[[m.TurnMetrics], None] | None = None,
    ) -> None:
        self.engines = engines
        self._on_turn_done = on_turn_done  # gets each finished response's metrics
        self._transport = transport
        self._clock = clock
        defaults = m.SessionState(
            id=session_id,
            voice=engines.default_voice,
            model=engines.model_id,
            notice=engines.notice,
        )
        self.core = RealtimeProtocol(
            defaults, now=clock(), idle_timeout_s=idle_timeout_s, max_session_s=max_session_s
        )
        # (payload, label): label is the message tag, "audio", or None for the close sentinel
        self._out: asyncio.Queue[tuple[Any, str | None]] = asyncio.Queue()
        self.trace: collections.deque[TraceEvent] | None = (
            collections.deque(maxlen=limits.TRACE_MAX_EVENTS) if trace else None
        )
        self._gate = PartialGate(engines.decode_timer)
        self._llm_committed: int | None = None  # the last turn whose LLM stage ran
        # finals that found Whisper busy and queued behind it (another conversation's final,
        # or a partial that outran its estimate: the gate keeps every partial out otherwise)
        self.stt_final_waits = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turn_task: asyncio.Task[None] | None = None
        self._turn_started: int | None = None  # the turn whose task has begun running
        self._partial_task: asyncio.Task[None] | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._speed = 1.0
        self._session = defaults
        self._applied_instructions = ""
        self._chat: ChatSession | None = None
        self._tts: TTSSession | None = None
        self._stt: STTSession | None = None
        # The language Whisper detected, confidently, on an earlier turn of this
        # conversation: later turns pass it, which skips detection (an extra
        # encoder pass: ~0.45 s of a ~1.1 s decode here). The session's
        # `language`, when set, always wins.
        self._heard_language: str | None = None
        self._stream: StreamingTranscriber | None = None
        self._stream_item: str | None = None
        self.closed = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the engine sessions, start the writer and ticker, send `session.created`."""
        e = self.engines
        self._chat = e.llm.open_session()
        self._tts = e.tts.open_session(voice=e.default_voice)
        self._stt = e.stt.open_session()
        self._stream = e.stt.open_stream()
        self._spawn(self._writer())
        self._spawn(self._ticker())
        self._emit(self.core.connected())

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel everything and close the engine sessions. Idempotent."""
        self.closed.set()
        self.engines.speech_deadlines.clear(self)
        tasks = [t for t in (self._turn_task, self._partial_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=limits.TURN_CANCEL_TIMEOUT_S)
        for closer in (self._chat, self._tts, self._stt):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.close()

    @property
    def turn_task(self) -> asyncio.Task[None] | None:
        """The running (or last) turn's task; the server's drain waits for it."""
        return self._turn_task

    @property
    def session_id(self) -> str:
        return self.core.session.id

    @property
    def history(self) -> list[tuple[str, str]]:
        """The conversation's committed LLM history, (role, content) pairs (a copy)."""
        return self._chat.messages if self._chat is not None else []

    @property
    def heard_language(self) -> str | None:
        """The language Whisper detected on an earlier turn and later turns pass
        (None until one was detected confidently, or when the session sets one)."""
        return self._heard_language

    @property
    def busy(self) -> bool:
        """True while a turn runs (the server's drain waits for it)."""
        return self._turn_task is not None and not self._turn_task.done()

    # ---- inputs ------------------------------------------------------------------------

    def on_text(self, data: str) -> None:
        self._emit(self.core.receive_text(data, self._clock()))

    def on_binary(self, data: bytes) -> None:
        self._emit(self.core.receive_audio(data, self._clock()))

    # ---- outputs -----------------------------------------------------------------------

    def _emit(self, outputs: list[Output]) -> None:
        """Carry out the core's outputs, in order, without waiting (see module docstring)."""
        for o in outputs:
            if isinstance(o, Send):
                tag = o.message.__struct_config__.tag
                assert isinstance(tag, str)
                self._out.put_nowait((m.encode(o.message).decode(), tag))
                if self.trace is not None:
                    self.trace.append(TraceEvent(self._clock(), f"queued:{tag}"))
            elif isinstance(o, SendAudio):
                self._out.put_nowait((o.frame, "audio"))
            elif isinstance(o, StartResponse):
                prev = self._turn_task
                self._turn_task = asyncio.ensure_future(self._run_turn(o, prev))
            elif isinstance(o, CancelResponse):
                # A task cancelled before its first step never runs its body (nor the finally
                # that reports response.done); a turn that has not started yet sees the cancel
                # through `core.is_current` instead and finishes at once.
                if self._turn_task is not None and self._turn_started == o.turn:
                    self._turn_task.cancel()
            elif isinstance(o, ApplySpeed):
                self._speed = o.speed
            elif isinstance(o, ApplyPause):
                if o.paused:
                    self._resumed.clear()
                else:
                    self._resumed.set()
            elif isinstance(o, ApplySession):
                self._session = o.session
            elif isinstance(o, StreamAudio):
                self._feed_stream(o)
            elif isinstance(o, EndStream):
                self._stream_item = None
                self._gate.reset()
                self.engines.speech_deadlines.clear(self)
                if self._stream is not None:
                    self._stream.reset()
            elif isinstance(o, CloseConnection):
                self._out.put_nowait(((o.code, o.reason), None))
        if self._out.qsize() > limits.MAX_CONTROL_BACKLOG + limits.AUDIO_QUEUE_CHUNKS:
            # a client that does not read: cut it rather than buffer without bound
            self._out.put_nowait(((1008, "client is not reading"), None))

    async def _writer(self) -> None:
        while True:
            payload, label = await self._out.get()
            if label is None:  # close: payload is (code, reason)
                code, reason = payload
                self.closed.set()
                await self._transport.close(code, reason)
                return
            await self._transport.send(payload)
            if self.trace is not None:
                self.trace.append(self._sent_event(payload, label))

    def _sent_event(self, payload: str | bytes, label: str) -> TraceEvent:
        now = self._clock()
        if label != "audio":
            return TraceEvent(now, f"sent:{label}")
        assert isinstance(payload, bytes)
        frame = m.unpack_audio_frame(payload)
        return TraceEvent(now, "sent:audio", frame.turn, frame.offset, len(frame.pcm) // 2)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._emit(self.core.tick(self._clock()))

    # ---- partial transcripts ---------------------------------------------------------------

    def _feed_stream(self, o: StreamAudio) -> None:
        stream = self._stream
        if stream is None:
            return
        if self._stream_item != o.item_id:
            stream.reset()
            self._stream_item = o.item_id
        try:
            stream.feed(o.audio)
        except BitvoiceError:
            return  # a turn over the streaming cap: partials stop, the final still runs
        now = self._clock()
        deadlines = self.engines.speech_deadlines
        deadlines.update(self, now, o.until_stop_ms / 1000.0)
        if (
            (self._partial_task is None or self._partial_task.done())
            and stream.partial_due()
            and self._gate.allow(now, deadlines.until_first(now))
        ):
            self._gate.started(self._clock())
            self._partial_task = asyncio.ensure_future(self._partial(o.item_id))

    async def _partial(self, item_id: str) -> None:
        """One partial decode (the gate let it start: it should end before the turn can)."""
        assert self._stream is not None
        decode_s: float | None = None
        try:
            update = await self._stream.maybe_partial()
            if update is not None:
                decode_s = update.decode_seconds
                self._emit(self.core.transcript_partial(item_id, update.text.strip()))
        except BitvoiceError:
            return
        finally:
            self._gate.finished(self._clock(), decode_s)

    # ---- a turn ------------------------------------------------------------------------------

    async def _run_turn(self, start: StartResponse, prev: asyncio.Task[None] | None) -> None:
        """One response: STT (if audio), then LLM -> chunker -> TTS -> pacer in a TaskGroup."""
        turn = start.turn
        self._turn_started = turn
        error: tuple[str, str] | None = None
        empty = False
        self._usage: Usage | None = None
        try:
            if prev is not None and not prev.done():
                # a cancelled turn must finish unwinding (its ChatSession commit) first;
                # asyncio.wait never raises prev's outcome, only our own cancellation
                await asyncio.wait({prev}, timeout=limits.TURN_CANCEL_TIMEOUT_S)
            try:
                if self.core.is_current(turn):
                    empty = await self._turn_body(start)
            except* BitvoiceError as group:
                exc = group.exceptions[0]
                assert isinstance(exc, BitvoiceError)
                error = (exc.code, exc.message)
                await self._recover(exc)
            except* Exception as group:
                log.error("turn %s failed", turn, exc_info=group.exceptions[0])
                error = ("internal_error", f"the turn failed: {group.exceptions[0]!r}")
        except asyncio.CancelledError:
            pass  # barge-in / cancel / disconnect: the core already knows why
        finally:
            self._truncate_history(turn)
            usage = self._usage
            u = None
            if usage is not None:
                u = (usage.prompt_tokens, usage.completion_tokens, usage.tokens_per_second or 0.0)
            done = self.core.response_finished(
                turn, self._clock(), error=error, empty_transcript=empty, usage=u
            )
            self._emit(done)
            for o in done:
                if self._on_turn_done and isinstance(o, Send) and isinstance(o.message, m.Metrics):
                    self._on_turn_done(o.message.metrics)

    async def _turn_body(self, start: StartResponse) -> bool:
        """The turn's work; returns True when the transcript was empty (nothing to answer)."""
        turn = start.turn
        text = start.text
        if start.audio is not None:
            assert self._stt is not None
            language = start.session.language or self._heard_language
            idle = not self.engines.stt.busy
            t_stt = time.perf_counter()
            text = (await self._stt.transcribe(start.audio, language=language)).strip()
            if (
                language is None
                and text
                and self._stt.last_language_probability >= limits.STICKY_LANGUAGE_PROBABILITY
            ):
                self._heard_language = self._stt.last_language
            if idle:  # nothing queued ahead of it: its wall time is the decode time
                self.engines.decode_timer.observe(time.perf_counter() - t_stt)
            else:
                self.stt_final_waits += 1
            secs = len(start.audio) / limits.INPUT_BYTES_PER_SECOND
            self._emit(self.core.transcript_final(turn, text, secs, self._clock()))
        if not text:
            return True
        await self._prepare(start.session)
        tokens: asyncio.Queue[str | None] = asyncio.Queue(limits.TOKEN_QUEUE)
        sentences: asyncio.Queue[str | None] = asyncio.Queue(limits.SENTENCE_QUEUE)
        audio: asyncio.Queue[str | bytes | None] = asyncio.Queue(limits.AUDIO_QUEUE_CHUNKS)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._llm_stage(turn, text, start.session.sampling, tokens))
            tg.create_task(self._chunk_stage(tokens, sentences))
            tg.create_task(self._tts_stage(turn, sentences, audio))
            tg.create_task(self._pace_stage(turn, audio))
        return False

    async def _prepare(self, session: m.SessionState) -> None:
        """Apply instructions and voice before a turn (both need idle sessions)."""
        chat, tts = self._chat, self._tts
        assert chat is not None and tts is not None
        if session.instructions != self._applied_instructions:
            history = [(r, c) for r, c in chat.messages if r != "system"]
            chat.new_chat()
            if session.instructions:
                chat.append_message("system", session.instructions)
            for role, content in history:
                chat.append_message(role, content)
            self._applied_instructions = session.instructions
        if session.voice and session.voice != tts.voice:
            await tts.set_voice(session.voice)

    async def _recover(self, exc: BitvoiceError) -> None:
        """After context overflow / exhaustion the conversation restarts with a fresh history."""
        if exc.code in ("context_overflow", "session_exhausted"):
            chat = self._chat
            with contextlib.suppress(BitvoiceError):
                if isinstance(exc, SessionExhaustedError) and chat is not None:
                    await chat.close()
                    self._chat = chat = self.engines.llm.open_session()
                if chat is not None:
                    chat.new_chat()
                self._applied_instructions = ""

    def _truncate_history(self, turn: int) -> None:
        """Keep only what the user heard of an interrupted reply as the assistant message."""
        r = self.core.response
        chat = self._chat
        if r is None or r.turn != turn or r.cancel_reason is None or chat is None:
            return
        if self._llm_committed != turn:
            return  # cancelled before its LLM ran: the last assistant message is not this turn's
        heard = self.core.heard_text(turn, self._clock()) or ""
        try:
            if chat.state != "idle":
                return
            msgs = chat.messages
            if not msgs or msgs[-1][0] != "assistant" or msgs[-1][1] == heard:
                return
            chat.new_chat()
            for role, content in msgs[:-1]:
                chat.append_message(role, content)
            if heard:
                chat.append_message("assistant", heard)
        except BitvoiceError:
            log.warning("could not truncate the history of turn %s", turn, exc_info=True)

    async def _llm_stage(
        self, turn: int, text: str, sampling: m.Sampling, out: asyncio.Queue[str | None]
    ) -> None:
        chat = self._chat
        assert chat is not None
        stream = chat.generate(
            text,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_output_tokens,
        )
        self._llm_committed = turn  # the stream commits (even when cancelled) once it closes
        try:
            async for event in stream:
                if isinstance(event, ChatTokenEvent):
                    self._emit(self.core.text_delta(turn, event.text, self._clock()))
                    await out.put(event.text)
                elif isinstance(event, ChatDoneEvent):
                    self._usage = event.usage
        finally:
            await stream.aclose()
        await out.put(None)

    async def _chunk_stage(
        self, inp: asyncio.Queue[str | None], out: asyncio.Queue[str | None]
    ) -> None:
        chunker = SentenceChunker()
        while (delta := await inp.get()) is not None:
            for piece in chunker.feed(delta):
                await out.put(piece)
        for piece in chunker.flush():
            await out.put(piece)
        await out.put(None)

    async def _tts_stage(
        self, turn: int, inp: asyncio.Queue[str | None], out: asyncio.Queue[str | bytes | None]
    ) -> None:
        tts = self._tts
        assert tts is not None
        while (sentence := await inp.get()) is not None:
            if not any(ch.isalnum() for ch in sentence):
                continue  # punctuation only: nothing to say
            self.core.stage_mark(turn, "sentence", self._clock())
            await out.put(sentence)  # marks where the segment's audio starts
            async for chunk in tts.synthesize(sentence):
                self.core.stage_mark(turn, "tts_chunk", self._clock())
                await out.put(chunk)
        await out.put(None)

    async def _pace_stage(self, turn: int, inp: asyncio.Queue[str | bytes | None]) -> None:
        stretcher = StreamingStretcher(limits.OUTPUT_RATE, self._speed)
        pending = np.zeros(0, dtype=np.float32)
        segment: str | None = None
        frame_n = limits.AUDIO_FRAME_SAMPLES
        while True:
            item = await inp.get()
            if isinstance(item, str):
                segment = item if segment is None else f"{segment} {item}"
                continue
            if item is None:
                pending = np.concatenate([pending, stretcher.flush()])
            else:
                stretcher.speed = self._speed  # live: applies to audio not yet stretched
                pending = np.concatenate([pending, stretcher.process(pcm16_bytes_to_float(item))])
            while pending.size >= frame_n or (item is None and pending.size):
                frame, pending = pending[:frame_n], pending[frame_n:]
                await self._send_paced(turn, float_to_pcm16_bytes(frame), segment)
                segment = None
            if item is None:
                return

    async def _send_paced(self, turn: int, pcm: bytes, segment: str | None) -> None:
        lead = limits.PLAYBACK_LEAD_MS / 1000.0
        while True:
            await self._resumed.wait()
            ahead = self.core.lead(self._clock())
            if ahead <= lead:
                break
            await asyncio.sleep(ahead - lead)
        if segment is not None:
            self._emit(self.core.segment_started(turn, segment))
        self._emit(self.core.audio_frame(turn, pcm, self._clock()))
