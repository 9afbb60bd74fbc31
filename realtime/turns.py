"""One assistant turn: STT (when the user spoke), then LLM -> TTS -> frames -> pacer.

A `TurnRunner` runs the stages of `realtime.stages` for one user item. It may start
speculatively, at a pause in the user's speech (`Speculate`), before the protocol core has
confirmed the end of the turn and given it a turn number: its reports then wait in its
`Outbox`, and its pacer waits too, so nothing reaches the wire. When the core starts the
response for the same item, the conversation adopts the runner (`Outbox.open(turn)`): the
held reports go out with their original times, and the audio follows. When the user goes on
speaking, the runner is cancelled and its chat turn discarded: no trace in the history.

The runner reports through `TurnHost`, the small interface the conversation gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from engine.errors import BitvoiceError
from realtime import limits
from realtime import messages as m
from realtime.protocol import Output, RealtimeProtocol
from realtime.stages import (
    AudioFrame,
    FirstAudioHold,
    SegmentStart,
    buffered,
    frame_pcm16,
    frames,
    llm_text,
    report_text,
)

if TYPE_CHECKING:
    from engine.llm.events import Usage
    from engine.llm.session import ChatSession
    from engine.tts import TTSSession

__all__ = ["Outbox", "TurnHost", "TurnOutcome", "TurnRunner", "said"]

log = logging.getLogger("bitvoice.realtime")


def said(transcript: str) -> str:
    """The words of a transcript, stripped; "" when it has none. Whisper writes "." (or
    "...") for silence: a turn of push-to-talk held in silence said nothing, so it gets no
    reply (`empty_transcript`), not a reply to a full stop."""
    text = transcript.strip()
    return text if any(c.isalnum() for c in text) else ""


class TurnHost(Protocol):
    """What a turn needs from its conversation."""

    core: RealtimeProtocol
    clock: Callable[[], float]

    @property
    def chat(self) -> ChatSession: ...

    @property
    def tts(self) -> TTSSession: ...

    def emit(self, outputs: list[Output]) -> None: ...

    async def transcribe(
        self, item_id: str, audio: bytes | None, language: str | None, *, final: bool
    ) -> tuple[str, float]:
        """(text, audio seconds) of the item's audio (its streaming transcriber's buffer)."""
        ...

    async def prepare(self, session: m.SessionState) -> None:
        """Apply instructions and voice to the idle chat and TTS sessions."""
        ...


class Outbox:
    """Where a turn's stages report (`realtime.stages.TurnReport`), held until `open`."""

    def __init__(self, host: TurnHost) -> None:
        self._host = host
        self.turn: int | None = None
        self._held: list[Callable[[int], None]] = []
        self.opened = asyncio.Event()

    def _do(self, report: Callable[[int], None]) -> None:
        if self.turn is None:
            self._held.append(report)
        else:
            report(self.turn)

    def open(self, turn: int) -> None:
        """The core confirmed the turn: deliver what was held, then report at once."""
        self.turn = turn
        held, self._held = self._held, []
        for report in held:
            report(turn)
        self.opened.set()

    def text(self, delta: str, at: float) -> None:
        core = self._host.core
        self._do(lambda turn: self._host.emit(core.text_delta(turn, delta, at)))

    def mark(self, stage: str, at: float) -> None:
        core = self._host.core
        self._do(lambda turn: core.stage_mark(turn, stage, at))

    def transcript(self, text: str, audio_s: float, at: float) -> None:
        core = self._host.core
        self._do(lambda turn: self._host.emit(core.transcript_final(turn, text, audio_s, at)))

    def started(self, at: float) -> None:
        core = self._host.core
        self._do(lambda turn: core.turn_started(turn, at))


@dataclass(slots=True)
class TurnOutcome:
    """How a turn's work ended (the conversation turns it into `response.done`)."""

    empty: bool = False
    usage: Usage | None = None
    error: tuple[str, str] | None = None
    llm_ran: bool = False  # the chat history holds this turn (its reply may need trimming)


class TurnRunner:
    """One turn's work (see the module docstring). `run()` once, as a task."""

    def __init__(
        self,
        host: TurnHost,
        *,
        item_id: str,
        audio: bytes | None,
        text: str | None,
        session: m.SessionState,
        speculative: bool,
        after: asyncio.Task[None] | None,
    ) -> None:
        self._host = host
        self.item_id = item_id
        self._audio = audio
        self._text = text
        self._session = session
        self.speculative = speculative
        self._after = after  # the previous turn's work, which must unwind first
        self.outbox = Outbox(host)
        self.outcome = TurnOutcome()
        self.clock = host.clock
        # The user's words outlive a cancelled reply (see `unreported_transcript`), so the
        # decode runs in a task of its own that cancelling the runner does not stop.
        self._transcription: asyncio.Task[tuple[str, float]] | None = None
        self._transcript_reported = False

    async def run(self) -> None:
        """The turn's work. Errors end up in `outcome.error`; cancellation propagates."""
        try:
            if self._after is not None and not self._after.done():
                await asyncio.wait({self._after}, timeout=limits.TURN_CANCEL_TIMEOUT_S)
            await self._body()
        except* BitvoiceError as group:
            known = group.exceptions[0]
            assert isinstance(known, BitvoiceError)
            self.outcome.error = (known.code, known.message)
        except* Exception as group:
            fault = group.exceptions[0]
            log.error("turn for %s failed", self.item_id, exc_info=fault)
            self.outcome.error = ("internal_error", f"the turn failed: {fault!r}")
        finally:
            if self.outbox.turn is None and self.outcome.llm_ran:
                self._discard()  # a speculation thrown away leaves nothing in the history

    def _discard(self) -> None:
        chat = self._host.chat
        try:
            if chat.state == "idle":
                chat.discard_last_turn()
        except BitvoiceError:
            pass  # the session was closed or replaced meanwhile: nothing left to discard

    async def _body(self) -> None:
        t_start = self.clock()
        text = self._text
        if text is None:
            text = await self._transcribe()
        if not text:
            self.outcome.empty = True
            return
        await self._host.prepare(self._session)
        sampling = self._session.sampling
        stream = self._host.chat.generate(
            text,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_output_tokens,
        )
        self.outcome.llm_ran = True  # the stream commits (even when cancelled) once it closes
        self.outbox.started(t_start)
        # Every stage is closed explicitly, last first, whatever ended the turn: a stage
        # that never started would otherwise keep its claim on its session (the chat stream,
        # the TTS session) until the garbage collector finalizes it.
        async with contextlib.AsyncExitStack() as stages:
            stages.push_async_callback(stream.aclose)
            hold = FirstAudioHold()
            text_out = report_text(llm_text(stream, self._on_usage, self.clock), self.outbox, hold)
            deltas = buffered(text_out, limits.TOKEN_QUEUE)
            stages.push_async_callback(deltas.aclose)
            stages.push_async_callback(self._release_tts)
            speech = self._host.tts.speak(deltas)
            items = frames(speech, self.outbox, self.clock, hold)
            stages.push_async_callback(items.aclose)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pace(items))

    async def _release_tts(self) -> None:
        """Return the TTS session to idle if the turn left it synthesizing (cancelled or
        failed before its reader ran to the end); drops what it still buffers."""
        if self._host.tts.state == "running":
            await self._host.tts.close()

    def _on_usage(self, usage: Usage) -> None:
        self.outcome.usage = usage

    def _start_transcription(self, *, final: bool) -> asyncio.Task[tuple[str, float]]:
        if self._transcription is None:
            coro = self._host.transcribe(
                self.item_id, self._audio, self._session.language, final=final
            )
            self._transcription = asyncio.ensure_future(coro)
        return self._transcription

    async def _transcribe(self) -> str:
        task = self._start_transcription(final=not self.speculative)
        try:
            text, audio_s = await asyncio.shield(task)
        except asyncio.CancelledError:
            if self.outbox.turn is None:  # a dropped speculation: nobody wants these words
                task.cancel()
            raise
        text = said(text)
        self.outbox.transcript(text, audio_s, self.clock())
        self._transcript_reported = True
        if self.speculative:
            # may end the user's turn at once, and so adopt this very runner
            self._host.emit(self._host.core.transcript_ready(self.item_id, text, self.clock()))
        return text

    async def unreported_transcript(self) -> tuple[str, float] | None:
        """(text, audio seconds) of the user's words when the turn was cancelled before it
        reported them: the decode it had started (cancelling the runner does not stop it) or,
        if it never got that far, a new one. None for a typed turn or one that reported its
        transcript. Call once `run()` has ended; raises what the transcriber raises."""
        if self._text is not None or self._transcript_reported:
            return None
        text, audio_s = await self._start_transcription(final=True)
        return said(text), audio_s

    async def _pace(self, items: AsyncIterator[SegmentStart | AudioFrame]) -> None:
        """Send each frame when the modelled client has less than PLAYBACK_LEAD_MS queued,
        not while the TTS session is paused, and nothing before the turn is confirmed."""
        segment: str | None = None
        host = self._host
        turn: int | None = None
        async for item in items:
            if isinstance(item, SegmentStart):
                segment = item.text if segment is None else f"{segment} {item.text}"
                continue
            if turn is None:
                # a speculative turn holds its first frame here while the LLM and the TTS
                # session run ahead (each up to its bounded buffer) until it is adopted
                await self.outbox.opened.wait()
                turn = self.outbox.turn
                assert turn is not None
            await self._wait_for_room()
            if segment is not None:
                host.emit(host.core.segment_started(turn, segment))
                segment = None
            host.emit(host.core.audio_frame(turn, frame_pcm16(item), self.clock()))

    async def _wait_for_room(self) -> None:
        lead = limits.PLAYBACK_LEAD_MS / 1000.0
        host = self._host
        while True:
            if host.tts.paused:  # the session owns pause: hold what it already yielded too
                await asyncio.sleep(limits.PAUSE_POLL_S)
                continue
            ahead = host.core.lead(self.clock())
            if ahead <= lead:
                return
            await asyncio.sleep(ahead - lead)
