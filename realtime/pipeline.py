"""One connection's conversation: the protocol core driven by the engine sessions.

`Conversation` owns one connection's `RealtimeProtocol` and its engine sessions (one
`ChatSession`, one `TTSSession`, and one streaming transcriber per user item; the engines
themselves are shared by every connection), and carries out what the core decides: it starts
and cancels turns (`realtime.turns.TurnRunner`, built from the stages in `realtime.stages`),
feeds the user's audio to the item's transcriber, runs partial transcripts (which also warm
the LLM's cache with what the user said so far), and forwards controls to the session that
owns them (speed, pause and resume belong to the TTS session).

Output: everything for the client goes through one ordered outgoing queue that a single
writer drains, so a frame the core approved before a flush is never reordered after it. The
queue is bounded in bytes and each send in time: a client that does not read is cut off
(close 1008) instead of growing the server's memory.

`Conversation(trace=True)` keeps a bounded log of what was queued and sent (`TraceEvent`),
which the tests and the benchmarks read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import BitvoiceError, InvalidRequestError
from engine.stt.component import validate_language
from realtime import limits
from realtime import messages as m
from realtime.partials import DecodeTimer, PartialGate, SpeechDeadlines
from realtime.playout import TurnUsage
from realtime.protocol import (
    ApplyPause,
    ApplySpeed,
    CancelResponse,
    CloseConnection,
    DropItem,
    DropSpeculation,
    KeepBackchannel,
    Output,
    RealtimeProtocol,
    Send,
    SendAudio,
    Speculate,
    StartResponse,
    StreamAudio,
    TranscribeBargeIn,
    TruncateReply,
)
from realtime.turns import TurnRunner

if TYPE_CHECKING:
    from engine.llm import LLM
    from engine.llm.session import ChatSession
    from engine.stt import STT
    from engine.stt.streaming import StreamingTranscriber
    from engine.tts import TTS, TTSSession

__all__ = ["Conversation", "Engines", "TraceEvent", "Transport"]

log = logging.getLogger("bitvoice.realtime")


class Transport(Protocol):
    """What the conversation needs from a WebSocket."""

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


@dataclass(frozen=True, slots=True)
class _Outgoing:
    payload: str | bytes
    label: str  # the message tag, or "audio"


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


@dataclass(slots=True)
class _Work:
    """A turn's runner and the task running it (speculative until adopted)."""

    runner: TurnRunner
    task: asyncio.Task[None]


class Conversation:
    """One connection (see the module docstring).

    Create, then `await start()`; feed frames with `on_text` / `on_binary`; `await aclose()`
    always (it cancels the turn and every task and closes the engine sessions: nothing is left
    running after it returns). Must be used from the engines' event loop. `on_turn_done` is
    called with each finished turn's metrics (the server's admission control reads them).
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
        self._transport = transport
        self.clock = clock
        self._on_turn_done = on_turn_done
        defaults = m.SessionState(
            id=session_id,
            voice=engines.default_voice,
            model=engines.model_id,
            notice=engines.notice,
        )
        self.core = RealtimeProtocol(
            defaults,
            now=clock(),
            idle_timeout_s=idle_timeout_s,
            max_session_s=max_session_s,
            check_session=self._check_session,
        )
        self._out: asyncio.Queue[_Outgoing | _Close] = asyncio.Queue()
        self._out_bytes = 0
        self.trace: collections.deque[TraceEvent] | None = (
            collections.deque(maxlen=limits.TRACE_MAX_EVENTS) if trace else None
        )
        self._gate = PartialGate(engines.decode_timer)
        # finals that found Whisper busy and queued behind another decode
        self.stt_final_waits = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turn_task: asyncio.Task[None] | None = None
        self._turn: _Work | None = None  # the adopted turn's work
        self._spec: _Work | None = None  # a speculative turn, not yet adopted
        self._last_work: asyncio.Task[None] | None = None  # the newest turn work of any kind
        self._partial_task: asyncio.Task[None] | None = None
        self._warm_task: asyncio.Task[None] | None = None
        self._partial_item: str | None = None
        self._partial_audio_s = 0.0  # audio the last partial of `_partial_item` covered
        self._streams: collections.OrderedDict[str, StreamingTranscriber] = (
            collections.OrderedDict()
        )
        self._applied_instructions = ""
        # backchannels said over the running reply: they join the history after it
        self._backchannels: list[str] = []
        self._voices: frozenset[str] = frozenset()
        self._chat: ChatSession | None = None
        self._tts: TTSSession | None = None
        # The language Whisper detected, confidently, on an earlier turn of this
        # conversation: later turns pass it, which skips detection. The session's
        # `language`, when set, always wins.
        self._heard_language: str | None = None
        self._closing = False
        self.closed = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the engine sessions, start the writer and ticker, send `session.created`."""
        e = self.engines
        self._voices = frozenset(await e.tts.list_voices())
        self._chat = e.llm.open_session()
        self._tts = e.tts.open_session(voice=e.default_voice)
        self._spawn(self._writer())
        self._spawn(self._ticker())
        self.emit(self.core.connected())

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel everything and close the engine sessions. Idempotent."""
        self.closed.set()
        self.engines.speech_deadlines.clear(self)
        works = [w.task for w in (self._turn, self._spec) if w is not None]
        tasks = [t for t in (self._turn_task, self._partial_task, *works, *self._tasks) if t]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=limits.TURN_CANCEL_TIMEOUT_S)
        for closer in (self._chat, self._tts):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.close()
        self._streams.clear()

    @property
    def chat(self) -> ChatSession:
        assert self._chat is not None, "start() first"
        return self._chat

    @property
    def tts(self) -> TTSSession:
        assert self._tts is not None, "start() first"
        return self._tts

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

    def _check_session(self, session: m.SessionState) -> tuple[str, str] | None:
        """Vet a session.update before it applies (the protocol core calls this)."""
        if session.voice is not None and session.voice not in self._voices:
            known = ", ".join(sorted(self._voices))
            return "unknown_voice", f"unknown voice {session.voice!r}; available: {known}"
        if session.language is not None:
            problem = _language_problem(self.engines.stt, session.language)
            if problem is not None:
                return "unsupported_language", problem
        return None

    # ---- inputs ------------------------------------------------------------------------

    def on_text(self, data: str) -> None:
        self.emit(self.core.receive_text(data, self.clock()))

    def on_binary(self, data: bytes) -> None:
        self.emit(self.core.receive_audio(data, self.clock()))

    # ---- outputs -----------------------------------------------------------------------

    def emit(self, outputs: list[Output]) -> None:
        """Carry out the core's outputs, in order, without waiting (see module docstring)."""
        for o in outputs:
            if isinstance(o, Send):
                tag = o.message.__struct_config__.tag
                assert isinstance(tag, str)
                self._enqueue(_Outgoing(m.encode(o.message).decode(), tag))
                if self.trace is not None:
                    self.trace.append(TraceEvent(self.clock(), f"queued:{tag}"))
                if isinstance(o.message, m.SessionUpdated):
                    self._schedule_warm()
            elif isinstance(o, SendAudio):
                self._enqueue(_Outgoing(o.frame, "audio"))
            elif isinstance(o, StartResponse):
                self._start_turn(o)
            elif isinstance(o, CancelResponse):
                if self._turn is not None and self._turn.runner.outbox.turn == o.turn:
                    self._turn.task.cancel()
            elif isinstance(o, ApplySpeed):
                self._spawn(self.tts.set_speed(o.speed))
            elif isinstance(o, ApplyPause):
                self._spawn(self.tts.pause() if o.paused else self.tts.resume())
            elif isinstance(o, StreamAudio):
                self._feed_stream(o)
            elif isinstance(o, DropItem):
                self._drop_item(o.item_id)
            elif isinstance(o, Speculate):
                self._speculate(o.item_id)
            elif isinstance(o, DropSpeculation):
                self._drop_speculation(o.item_id)
            elif isinstance(o, TranscribeBargeIn):
                self._spawn(self._transcribe_barge_in(o))
            elif isinstance(o, KeepBackchannel):
                self._keep_backchannel(o.text)
            elif isinstance(o, CloseConnection):
                self._enqueue(_Close(o.code, o.reason))
            elif isinstance(o, TruncateReply):
                self._replace_reply(o.text)

    def _enqueue(self, item: _Outgoing | _Close) -> None:
        if self._closing:
            return
        if isinstance(item, _Outgoing):
            self._out_bytes += len(item.payload)
            if self._out_bytes > limits.MAX_OUTGOING_BYTES:
                self._cut_off(f"client is not reading ({self._out_bytes} bytes waiting)")
                return
        self._out.put_nowait(item)

    def _cut_off(self, reason: str) -> None:
        """Close a client that does not read (1008); the slot is freed at once."""
        if self._closing:
            return
        self._closing = True
        log.warning("conversation %s: closing: %s", self.session_id, reason)
        self.closed.set()
        self._spawn(self._transport.close(1008, "client is not reading"))

    async def _writer(self) -> None:
        while True:
            item = await self._out.get()
            if isinstance(item, _Close):
                self._closing = True
                self.closed.set()
                await self._transport.close(item.code, item.reason)
                return
            self._out_bytes -= len(item.payload)
            try:
                async with asyncio.timeout(limits.SEND_TIMEOUT_S):
                    await self._transport.send(item.payload)
            except TimeoutError:
                self._cut_off(f"a send took over {limits.SEND_TIMEOUT_S:.0f} s")
                return
            if self.trace is not None:
                self.trace.append(self._sent_event(item))

    def _sent_event(self, item: _Outgoing) -> TraceEvent:
        now = self.clock()
        if item.label != "audio":
            return TraceEvent(now, f"sent:{item.label}")
        assert isinstance(item.payload, bytes)
        frame = m.unpack_audio_frame(item.payload)
        return TraceEvent(now, "sent:audio", frame.turn, frame.offset, len(frame.pcm) // 2)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.emit(self.core.tick(self.clock()))

    # ---- the user's items: transcribers and partials ---------------------------------------

    def _stream_for(self, item_id: str) -> StreamingTranscriber:
        stream = self._streams.get(item_id)
        if stream is None:
            stream = self.engines.stt.open_stream()
            self._streams[item_id] = stream
            while len(self._streams) > limits.MAX_ITEM_STREAMS:
                self._streams.popitem(last=False)  # an item that will never be answered
        return stream

    def _drop_item(self, item_id: str) -> None:
        self._streams.pop(item_id, None)
        self._drop_speculation(item_id)
        self._gate.reset()
        self.engines.speech_deadlines.clear(self)

    def _feed_stream(self, o: StreamAudio) -> None:
        stream = self._stream_for(o.item_id)
        try:
            stream.feed(o.audio)
        except BitvoiceError:
            return  # a turn over the streaming cap: partials stop, the final still runs
        now = self.clock()
        deadlines = self.engines.speech_deadlines
        if o.until_stop_ms == 0:
            deadlines.clear(self)
            return
        deadlines.update(self, now, o.until_stop_ms / 1000.0)
        if self._partial_item != o.item_id:
            self._partial_item, self._partial_audio_s = o.item_id, 0.0
        if (
            (self._partial_task is None or self._partial_task.done())
            and self._spec is None
            and not self.engines.stt.busy
            and stream.audio_seconds >= limits.PARTIAL_MIN_AUDIO_S
            and stream.audio_seconds - self._partial_audio_s >= limits.PARTIAL_MIN_NEW_AUDIO_S
            and self._gate.allow(now, deadlines.until_first(now))
        ):
            self._gate.started(now)
            self._partial_audio_s = stream.audio_seconds
            self._partial_task = asyncio.ensure_future(self._partial(o.item_id, stream))

    async def _partial(self, item_id: str, stream: StreamingTranscriber) -> None:
        """One partial decode of what the user said so far; then warm the LLM's cache with
        it, so that little is left to prefill when the turn ends."""
        decode_s: float | None = None
        try:
            update = await stream.transcribe_buffer(self._language(self.core.session))
            decode_s = update.decode_seconds
            text = update.text.strip()
            if self.core.session.partial_transcripts:
                self.emit(self.core.transcript_partial(item_id, text))
        except BitvoiceError:
            return
        finally:
            self._gate.finished(self.clock(), decode_s)
        await self._prefill(text)

    def _schedule_warm(self) -> None:
        """The conversation went idle (a session update, a finished turn): warm its KV cache
        with the history, so that the next turn prefills only the user's words. Measured on
        the 2B shapes (AVX2): the system prompt's prefill made a connection's first turn
        1.6-2.0 s slower than the others."""
        if self._warm_task is not None:
            self._warm_task.cancel()
        self._warm_task = None
        closing = self._closing or self.closed.is_set()
        if self._chat is not None and not closing and self.core.session.started:
            self._warm_task = self._spawn(self._warm())

    def _turn_idle(self) -> bool:
        """No turn runs or is speculated, and the last one's work has unwound."""
        last = self._last_work
        return self._spec is None and self.core.response is None and (last is None or last.done())

    async def _warm(self) -> None:
        if not self._turn_idle():
            return  # a turn is under way: it runs the history itself
        # a turn that starts meanwhile ends the prefill at its next chunk (ChatSession.prefill);
        # busy or closed sessions are simply left cold
        with contextlib.suppress(BitvoiceError):
            await self.prepare(self.core.session)
            await self.chat.prefill("")

    async def _prefill(self, text: str) -> None:
        chat = self._chat
        if not text or chat is None or not self._turn_idle():
            return
        with contextlib.suppress(BitvoiceError):  # busy (a turn began meanwhile): skip it
            await chat.prefill(text)

    async def _transcribe_barge_in(self, o: TranscribeBargeIn) -> None:
        """Transcribe speech said over the reply, so the core can tell a backchannel from a
        barge-in; a failed decode counts as a barge-in (the user is answered, not ignored)."""
        stream = self._streams.get(o.item_id)
        text: str | None = None
        if stream is not None:
            partial = self._partial_task
            if partial is not None and not partial.done():
                await asyncio.wait({partial})
            with contextlib.suppress(BitvoiceError):
                update = await stream.transcribe_buffer(self._language(self.core.session))
                text = update.text.strip()
        log.debug("speech over the reply (%s) reads %r", o.item_id, text)
        self.emit(self.core.barge_in_transcript(o.item_id, o.asked, text, self.clock()))

    def _keep_backchannel(self, text: str) -> None:
        if text:
            self._backchannels.append(text)
        if self.core.response is None:
            self._flush_backchannels()

    def _flush_backchannels(self) -> None:
        """Backchannels join the history as user messages once no reply is being written."""
        chat = self._chat
        if chat is None or chat.state != "idle":
            return
        pending, self._backchannels = self._backchannels, []
        for text in pending:
            try:
                chat.append_message("user", text)
            except BitvoiceError:
                log.warning("could not keep a backchannel in the history", exc_info=True)

    def _language(self, session: m.SessionState) -> str | None:
        return session.language or self._heard_language

    # ---- TurnHost: what a turn asks of its conversation ----------------------------------

    async def transcribe(
        self, item_id: str, audio: bytes | None, language: str | None, *, final: bool
    ) -> tuple[str, float]:
        """(text, seconds) of the item's audio, decoded by its streaming transcriber (one STT
        path per turn); `final` also drops the transcriber."""
        stream = self._streams.pop(item_id, None) if final else self._streams.get(item_id)
        if stream is None:  # a text-less item whose transcriber is gone (or never was)
            stream = self.engines.stt.open_stream()
            if audio:
                stream.feed(audio)
        partial = self._partial_task
        if partial is not None and not partial.done():
            await asyncio.wait({partial})  # never decode twice at once for one conversation
        language = language or self._heard_language
        idle = not self.engines.stt.busy
        t0 = time.perf_counter()
        if final:
            result = await stream.finalize(language)
        else:  # decode the turn as it stands once its closing silence is over
            td = self.core.session.turn_detection
            pad_s = td.silence_duration_ms / 1000.0 if td is not None else 0.0
            result = await stream.transcribe_buffer(language, pad_seconds=pad_s)
        if idle:  # nothing queued ahead of it: its wall time is the decode time
            self.engines.decode_timer.observe(time.perf_counter() - t0)
        else:
            self.stt_final_waits += 1
        text = result.text.strip()
        if (
            language is None
            and text
            and result.language_probability >= limits.STICKY_LANGUAGE_PROBABILITY
        ):
            self._heard_language = result.language
        return text, result.audio_seconds

    async def prepare(self, session: m.SessionState) -> None:
        """Apply instructions and voice before a turn (both need idle sessions)."""
        if session.instructions != self._applied_instructions:
            self.chat.set_system_prompt(session.instructions or None)
            self._applied_instructions = session.instructions
        if session.voice and session.voice != self.tts.voice:
            await self.tts.set_voice(session.voice)

    # ---- turns ------------------------------------------------------------------------------

    def _new_work(self, runner: TurnRunner) -> _Work:
        work = _Work(runner, asyncio.ensure_future(runner.run()))
        self._last_work = work.task
        return work

    def _runner(self, item_id: str, **kw: Any) -> TurnRunner:
        return TurnRunner(self, item_id=item_id, after=self._last_work, **kw)

    def _speculate(self, item_id: str) -> None:
        """The user paused: start the turn's work now; nothing is sent until it is adopted."""
        if self._spec is not None:
            self._drop_speculation(self._spec.runner.item_id)
        if self._chat is None or self.core.response is not None or self._closing:
            return
        runner = self._runner(
            item_id, audio=None, text=None, session=self.core.session, speculative=True
        )
        self._spec = self._new_work(runner)

    def _drop_speculation(self, item_id: str) -> None:
        spec = self._spec
        if spec is not None and spec.runner.item_id == item_id:
            self._spec = None
            spec.task.cancel()  # the runner discards its chat turn as it unwinds

    def _start_turn(self, start: StartResponse) -> None:
        spec, self._spec = self._spec, None
        if spec is not None and spec.runner.item_id == start.item_id and not spec.task.cancelled():
            work = spec  # adopt the speculation: its work is already under way
        else:
            if spec is not None:
                spec.task.cancel()
            runner = self._runner(
                start.item_id,
                audio=start.audio,
                text=start.text,
                session=start.session,
                speculative=False,
            )
            work = self._new_work(runner)
        if work.runner.speculative:
            self._streams.pop(start.item_id, None)  # its transcript is already taken
        self._turn = work
        work.runner.outbox.open(start.turn)
        self._turn_task = asyncio.ensure_future(self._finish_turn(start.turn, work))

    async def _finish_turn(self, turn: int, work: _Work) -> None:
        """Wait for the turn's work, trim an interrupted reply, report `response.done`."""
        try:
            await asyncio.wait({work.task})
        finally:
            if not work.task.done():
                work.task.cancel()
                await asyncio.wait({work.task}, timeout=limits.TURN_CANCEL_TIMEOUT_S)
            if not self.closed.is_set():
                await self._keep_cancelled_words(turn, work.runner)
            outcome = work.runner.outcome
            if outcome.llm_ran:
                self._keep_heard_reply(turn)
            self._flush_backchannels()
            usage = outcome.usage
            u = None
            if usage is not None:
                u = TurnUsage(
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.tokens_per_second or 0.0,
                    usage.cached_tokens,
                )
            out = self.core.response_finished(
                turn, self.clock(), error=outcome.error, empty_transcript=outcome.empty, usage=u
            )
            self.emit(out)
            self._report_metrics(out)
            self._schedule_warm()

    async def _keep_cancelled_words(self, turn: int, runner: TurnRunner) -> None:
        """A reply cancelled while the user's words were still being transcribed (Esc right
        after speaking): only the reply was stopped, so the words are still transcribed,
        sent (`...transcription.completed`) and kept in the history as a user message."""
        r = self.core.response
        if r is None or r.turn != turn or r.cancel_reason is None:
            return
        try:
            words = await runner.unreported_transcript()
        except BitvoiceError:
            return
        if words is None:
            return
        text, audio_s = words
        self.emit(self.core.transcript_final(turn, text, audio_s, self.clock()))
        if text and self._chat is not None:
            with contextlib.suppress(BitvoiceError):  # closed meanwhile: nothing to keep
                self._chat.append_message("user", text)

    def _report_metrics(self, outputs: list[Output]) -> None:
        if self._on_turn_done is None:
            return
        for o in outputs:
            if isinstance(o, Send) and isinstance(o.message, m.ResponseDone):
                with contextlib.suppress(Exception):
                    self._on_turn_done(o.message.metrics)

    def _keep_heard_reply(self, turn: int) -> None:
        """Keep only what the user heard of an interrupted reply as the assistant message."""
        r = self.core.response
        chat = self._chat
        if r is None or r.turn != turn or r.cancel_reason is None or chat is None:
            return
        self._replace_reply(self.core.heard_text(turn, self.clock()) or "")

    def _replace_reply(self, heard: str) -> None:
        """The last assistant message becomes `heard` (when the chat is idle and ends with
        one: a reply still running is trimmed when it ends instead)."""
        chat = self._chat
        try:
            if chat is not None and chat.state == "idle" and chat.messages:
                if chat.messages[-1][0] == "assistant":
                    chat.replace_last_reply(heard)
        except BitvoiceError:
            log.warning("could not trim the last reply", exc_info=True)


def _language_problem(stt: STT, language: str) -> str | None:
    """Why the STT model cannot transcribe `language` (None when it can)."""
    try:
        code = validate_language(language)
    except InvalidRequestError as exc:
        return exc.message
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if code not in _LANGUAGE_CODES:
        return f"Whisper knows no language {language!r}"
    if not stt.multilingual and code != "en":
        return f"the STT model {stt.model_id!r} transcribes English only"
    return None
