"""The realtime protocol core: a pure state machine, no I/O and no asyncio.

Three parts, each its own object: the wire dispatch and the response lifecycle (here), the
user's input (`realtime.input.UserInput`: rate limit, VAD, the item being spoken, turn-end
policy) and one playout model per response (`realtime.playout.Playout`: played samples,
heard text, pacing lead, stage times).

Inputs are client frames (`receive_text`, `receive_audio`) and reports from the pipeline that
runs a turn (`transcript_partial`, `transcript_ready`, `transcript_final`, `turn_started`,
`text_delta`, `stage_mark`, `segment_started`, `audio_frame`, `response_finished`), each with
the current monotonic time `now` in seconds. Every input returns a list of outputs for the
glue to carry out, in order:

- `Send(message)`: send a JSON server message; `SendAudio(frame)`: send a binary reply frame.
- `StartResponse(...)`: start a turn (STT if it has audio, then LLM, TTS, pacing).
- `CancelResponse(turn, reason)`: cancel that turn's task group now.
- `ApplySpeed`, `ApplyPause`: forward a control to the running pipeline's TTS session.
- `StreamAudio(item_id, audio, until_stop_ms)`: audio of the item being spoken, for its
  streaming transcriber (partials, and the final); `until_stop_ms` is the least audio before
  the VAD can end the turn. `DropItem(item_id)`: that item will never be answered.
- `Speculate(item_id)`: the speaker paused; the turn may be ending, so the pipeline may
  start its work now, sending nothing until a `StartResponse` for the same item adopts it.
  `DropSpeculation(item_id)`: the speaker went on; throw that work away silently.
- `CloseConnection(code, reason)`: close the WebSocket.
- `TruncateReply(text)`: the user heard only `text` of the last (finished) reply; the history
  keeps that instead (OpenAI's `conversation.item.truncate`).

A session in OpenAI's GA shape (`realtime.compat`) also gets 24 kHz input resampled, reply
audio as base64 `delta`, and the conversation item events.

Guarantees the core enforces (so the glue cannot get them wrong):

- After `CancelResponse` (barge-in, `response.cancel`) the core refuses every later
  `audio_frame` of that turn: no stale audio is ever sent after a flush.
- Control messages are answered from the core's own state at once; nothing here waits.
- Nothing of a speculative turn reaches the wire before its `StartResponse`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from realtime import compat, limits
from realtime import messages as m
from realtime.bargein import BargeIn, Verdict
from realtime.input import (
    InputEvent,
    ItemAudio,
    ItemEnded,
    ItemPaused,
    ItemResumed,
    ItemStarted,
    UserInput,
)
from realtime.playout import Playout, TurnUsage, heard_text

__all__ = [
    "ApplyPause",
    "ApplySpeed",
    "CancelResponse",
    "CloseConnection",
    "DropItem",
    "DropSpeculation",
    "KeepBackchannel",
    "Output",
    "RealtimeProtocol",
    "Send",
    "SendAudio",
    "SessionCheck",
    "Speculate",
    "StartResponse",
    "StreamAudio",
    "TranscribeBargeIn",
    "TruncateReply",
    "heard_text",
]

MAX_PENDING_TURNS = 2  # user turns waiting behind a running response (no barge-in)


@dataclass(frozen=True, slots=True)
class Send:
    message: m.ServerMessage


@dataclass(frozen=True, slots=True)
class SendAudio:
    frame: bytes


@dataclass(frozen=True, slots=True)
class StartResponse:
    """Run one turn. Exactly one of `audio` (PCM16 16 kHz, needs STT) and `text` is set."""

    turn: int
    response_id: str
    item_id: str
    audio: bytes | None
    text: str | None
    session: m.SessionState


@dataclass(frozen=True, slots=True)
class CancelResponse:
    turn: int
    reason: str


@dataclass(frozen=True, slots=True)
class ApplySpeed:
    speed: float


@dataclass(frozen=True, slots=True)
class ApplyPause:
    paused: bool


@dataclass(frozen=True, slots=True)
class StreamAudio:
    item_id: str
    audio: bytes
    until_stop_ms: int = 0  # 0: the turn may end now (no partial should start)


@dataclass(frozen=True, slots=True)
class DropItem:
    item_id: str


@dataclass(frozen=True, slots=True)
class Speculate:
    item_id: str


@dataclass(frozen=True, slots=True)
class DropSpeculation:
    item_id: str


@dataclass(frozen=True, slots=True)
class TranscribeBargeIn:
    """Speech over the reply paused: transcribe item `item_id` as it stands and report it with
    `barge_in_transcript(item_id, asked, text, now)`."""

    item_id: str
    asked: int


@dataclass(frozen=True, slots=True)
class KeepBackchannel:
    """Item `item_id` was a backchannel: keep `text` in the history, unanswered."""

    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class CloseConnection:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class TruncateReply:
    text: str


Output = (
    Send
    | SendAudio
    | StartResponse
    | CancelResponse
    | ApplySpeed
    | ApplyPause
    | StreamAudio
    | DropItem
    | Speculate
    | DropSpeculation
    | TranscribeBargeIn
    | KeepBackchannel
    | CloseConnection
    | TruncateReply
)

#: Checks a session before `session.update` applies it: None, or (error code, message).
SessionCheck = Callable[[m.SessionState], tuple[str, str] | None]


@dataclass(frozen=True, slots=True)
class _TurnInput:
    item_id: str
    audio: bytes | None
    text: str | None
    t0: float


class RealtimeProtocol:
    """One conversation's protocol state. Single-threaded: call from one place only.

    `session_defaults` is the session before any `session.update` (its `id` included);
    `idle_timeout_s` / `max_session_s` are enforced by `tick(now)`; `check_session` vets a
    `session.update` (unknown voice, unsupported language) before it applies.
    """

    def __init__(
        self,
        session_defaults: m.SessionState,
        *,
        now: float,
        idle_timeout_s: float = limits.DEFAULT_IDLE_TIMEOUT_S,
        max_session_s: float = limits.DEFAULT_MAX_SESSION_S,
        check_session: SessionCheck | None = None,
    ) -> None:
        self.session = session_defaults
        self._evt = itertools.count(1)
        self._turns = itertools.count(1)
        self._created = now
        self._last_activity = now
        self._idle_timeout = idle_timeout_s
        self._max_session = max_session_s
        self._check_session = check_session
        self.input = UserInput(
            self.session.turn_detection,
            now=now,
            echo_cancellation=self.session.echo_cancellation,
        )
        self._barge: BargeIn | None = None  # speech over the reply, which is held meanwhile
        self._user_paused = False
        self._committed: _TurnInput | None = None
        self._pending: deque[_TurnInput] = deque()
        self.response: Playout | None = None
        self._last_response: Playout | None = None  # the latest finished one (truncate)
        self._resampler: compat.InputResampler | None = None  # 24 kHz input only
        self.closed = False

    # ---- helpers -----------------------------------------------------------------------

    def _send(self, msg: Any) -> Send:
        # every server message gets the next event id (they are frozen structs)
        return Send(msgspec.structs.replace(msg, event_id=f"evt_{next(self._evt)}"))

    def _error(self, code: str, message: str, event_id: str | None = None) -> Send:
        kind = "server_error" if code == "internal_error" else "invalid_request_error"
        info = m.ErrorInfo(code=code, message=message, type=kind, event_id=event_id)
        return self._send(m.Error(error=info))

    @property
    def started(self) -> bool:
        return self.session.started

    def lead(self, now: float) -> float:
        """Seconds of sent audio the modelled client has not played yet (0 with no response)."""
        return self.response.lead(now) if self.response is not None else 0.0

    def is_current(self, turn: int) -> bool:
        """True while `turn` is the running, not cancelled response (its audio may be sent)."""
        r = self.response
        return r is not None and r.turn == turn and r.cancel_reason is None

    def _current(self, turn: int) -> Playout | None:
        r = self.response
        return r if r is not None and r.turn == turn else None

    # ---- connection ----------------------------------------------------------------------

    def connected(self) -> list[Output]:
        """The first message of a connection."""
        return [self._send(m.SessionCreated(session=self.session))]

    def tick(self, now: float) -> list[Output]:
        """Enforce idle and session-length limits; call about once a second."""
        if self.closed:
            return []
        if now - self._last_activity > self._idle_timeout:
            self.closed = True
            msg = f"no client message for {self._idle_timeout:.0f} s"
            return [self._error("idle_timeout", msg), CloseConnection(1000, "idle timeout")]
        if now - self._created > self._max_session:
            self.closed = True
            msg = f"sessions are limited to {self._max_session:.0f} s"
            return [self._error("session_expired", msg), CloseConnection(1000, "session expired")]
        return []

    # ---- client frames -----------------------------------------------------------------------

    def receive_text(self, data: bytes | str, now: float) -> list[Output]:
        """Handle one client text frame (its size is counted in bytes, as sent)."""
        self._last_activity = now
        size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
        if size > limits.MAX_MESSAGE_BYTES:
            return [self._too_large(size)]
        try:
            msg = m.decode_client(data)
        except m.WireError as exc:
            return [self._error(exc.code, exc.message, exc.event_id)]
        return self._dispatch(msg, now)

    def _too_large(self, size: int) -> Send:
        return self._error(
            "message_too_large",
            f"frame of {size} bytes exceeds the {limits.MAX_MESSAGE_BYTES}-byte limit",
        )

    def receive_audio(self, pcm: bytes, now: float, event_id: str | None = None) -> list[Output]:
        """Handle microphone audio (a binary frame, or decoded `input_audio_buffer.append`)."""
        self._last_activity = now
        if len(pcm) > limits.MAX_MESSAGE_BYTES:
            return [self._too_large(len(pcm))]
        if not self.started:
            return [
                self._error("session_not_started", "send session.update before audio", event_id)
            ]
        if len(pcm) % 2:
            return [self._error("invalid_audio", "audio must be whole PCM16 samples", event_id)]
        if self._resampler is not None:
            pcm = self._resampler.feed(pcm)
        if not pcm:
            return []
        admitted, refusal = self.input.admit(pcm, now)
        if refusal is not None:
            return [self._error(refusal.code, refusal.message, event_id)]
        if not admitted:
            return []
        pcm = self.input.clean(pcm, now)
        r = self.response
        self.input.set_replying(r is not None and r.cancel_reason is None and self._barge is None)
        if self.input.vad_enabled:
            events = self.input.feed_vad(pcm)
        else:
            events = self.input.append_manual(pcm)
        return self._on_input(events, now, event_id)

    def _on_input(
        self, events: list[InputEvent], now: float, event_id: str | None = None
    ) -> list[Output]:
        """Wire messages and pipeline outputs for what the user's input did."""
        out: list[Output] = []
        td = self.session.turn_detection
        for ev in events:
            barge = self._barge
            if barge is not None and getattr(ev, "item_id", None) != barge.item_id:
                barge = None
            if isinstance(ev, ItemStarted):
                msg = m.InputAudioBufferSpeechStarted(
                    item_id=ev.item_id, audio_start_ms=ev.start_ms
                )
                out.append(self._send(msg))
                r = self.response
                if td is not None and td.interrupt_response and r is not None:
                    out += self._hold(ev.item_id, now)
            elif isinstance(ev, ItemAudio):
                out.append(StreamAudio(ev.item_id, ev.audio, ev.until_stop_ms))
                if barge is not None:
                    out += self._barge_verdict(barge.audio(len(ev.audio) / 32.0), now)
                    if barge.quiet(self.input.silent_ms) is Verdict.TRANSCRIBE:
                        out.append(TranscribeBargeIn(ev.item_id, barge.asked))
            elif isinstance(ev, ItemPaused):
                if barge is not None:
                    barge.pause()
                elif td is not None and td.create_response and self.response is None:
                    out.append(Speculate(ev.item_id))
            elif isinstance(ev, ItemResumed):
                if barge is not None:
                    barge.resume()
                out.append(DropSpeculation(ev.item_id))
            elif isinstance(ev, ItemEnded):
                if barge is not None:
                    out += self._barge_verdict(Verdict.INTERRUPT, now)
                out += self._item_ended(ev, now)
            else:
                out.append(self._error(ev.code, ev.message, event_id))
        return out

    def _item_ended(self, ev: ItemEnded, now: float) -> list[Output]:
        td = self.session.turn_detection
        out: list[Output] = []
        if td is not None:
            stopped = m.InputAudioBufferSpeechStopped(item_id=ev.item_id, audio_end_ms=ev.end_ms)
            out.append(self._send(stopped))
        self._committed = _TurnInput(ev.item_id, ev.audio, None, now)
        out.append(self._send(m.InputAudioBufferCommitted(item_id=ev.item_id)))
        if self._ga:
            out.append(self._send(m.ConversationItemAdded(item=compat.user_item(ev.item_id))))
        if td is not None and td.create_response:
            pending, self._committed = self._committed, None
            out += self._start_or_queue(pending, now)
        return out

    # ---- dispatch -----------------------------------------------------------------------

    def _dispatch(self, msg: m.ClientMessage, now: float) -> list[Output]:
        eid = msg.event_id
        if isinstance(msg, m.SessionUpdate):
            return self._session_update(msg)
        if isinstance(msg, m.Ping):
            return [self._send(m.Pong(client_event_id=eid, server_time_ms=now * 1000.0))]
        if isinstance(msg, m.SetSpeed):
            self.session = msgspec.structs.replace(self.session, speed=msg.speed)
            return [
                ApplySpeed(msg.speed),
                self._send(m.SpeedSet(speed=msg.speed, client_event_id=eid)),
            ]
        if isinstance(msg, m.Pause | m.Resume):
            return self._pause(isinstance(msg, m.Pause), eid)
        if isinstance(msg, m.Playback):
            r = self.response
            if r is not None and r.id == msg.response_id:
                r.report_played(msg.played_samples)
            return []
        if isinstance(msg, m.ConversationItemTruncate):
            return self._truncate(msg)
        if isinstance(msg, m.ConversationItemCreate) and not self.started:
            # an OpenAI-only message: the client speaks the GA shape, and it starts the session
            self._session_update(m.SessionUpdate(session=m.SessionUpdateConfig(type="realtime")))
        if isinstance(msg, m.ResponseCancel | m.SessionClose):
            if self.response is None or self.response.cancel_reason is not None:
                return [self._error("no_active_response", "no response is running", eid)]
            return self._cancel("client_cancelled", now)
        if not self.started:
            return [self._error("session_not_started", "send session.update first", eid)]
        if isinstance(msg, m.InputAudioBufferAppend):
            try:
                pcm = base64.b64decode(msg.audio, validate=True)
            except (binascii.Error, ValueError):
                return [self._error("invalid_audio", "audio is not valid base64", eid)]
            return self.receive_audio(pcm, now, eid)
        if isinstance(msg, m.InputAudioBufferCommit):
            ended = self.input.end_item() if self.input.audio else None
            if ended is None:
                return [self._error("empty_input", "no buffered audio to commit", eid)]
            return self._item_ended(ended, now)
        if isinstance(msg, m.InputAudioBufferClear):
            out: list[Output] = [DropItem(self.input.item_id)] if self.input.item_id else []
            self.input.clear()
            return [*out, self._send(m.InputAudioBufferCleared())]
        if isinstance(msg, m.ResponseCreate):
            return self._response_create(msg, now)
        if isinstance(msg, m.ConversationItemCreate):
            return self._item_create(msg, now)
        raise AssertionError(f"unhandled message {msg!r}")  # pragma: no cover

    def _pause(self, paused: bool, eid: str | None) -> list[Output]:
        self._user_paused = paused
        r = self.response
        rid, offset = (r.id, r.sent) if r is not None else (None, 0)
        ack: m.ServerMessage
        if paused:
            ack = m.Paused(response_id=rid, offset=offset, client_event_id=eid)
        else:
            ack = m.Resumed(response_id=rid, offset=offset, client_event_id=eid)
        return [ApplyPause(paused), self._send(ack)]

    def _session_update(self, msg: m.SessionUpdate) -> list[Output]:
        cfg = msg.session
        ga, problem = compat.session_changes(cfg)
        if problem is not None:
            return [self._error(problem[0], problem[1], msg.event_id)]
        changes: dict[str, Any] = {"started": True, **ga}
        if ga.get("type") == "realtime" and self.session.type != "realtime":
            # a client written for OpenAI's Realtime API cancels its own echo (OpenAI's server
            # does none), and AEC3 learning a room with no echo path swallows the first word
            # of speech that starts while the modelled reply plays: off unless asked for
            changes["echo_cancellation"] = False
        for name in cfg.__struct_fields__:
            value = getattr(cfg, name)
            if value is not msgspec.UNSET and name not in compat.GA_FIELDS:
                changes[name] = value
        old = self.session
        new = msgspec.structs.replace(old, **changes)
        problem = self._check_session(new) if self._check_session is not None else None
        if problem is not None:
            return [self._error(problem[0], problem[1], msg.event_id)]
        self.session = new
        if new.input_audio_format != old.input_audio_format:
            self._resampler = (
                compat.InputResampler() if new.input_audio_format == compat.INPUT_24K else None
            )
        out: list[Output] = []
        if "turn_detection" in changes and changes["turn_detection"] != old.turn_detection:
            item = self.input.item_id
            if self.input.configure(new.turn_detection) and item is not None:
                out.append(DropItem(item))  # a half-heard VAD turn cannot go on under new VAD
        if "speed" in changes:
            out.append(ApplySpeed(self.session.speed))
        self.input.echo_cancellation = new.echo_cancellation
        return [*out, self._send(m.SessionUpdated(session=self.session))]

    def _response_create(self, msg: m.ResponseCreate, now: float) -> list[Output]:
        eid = msg.event_id
        if self.response is not None and self.response.cancel_reason is None:
            return [self._error("conversation_busy", "a response is already running", eid)]
        if msg.input_text is not None:
            item = self.input.new_item_id()
            return self._start_or_queue(_TurnInput(item, None, msg.input_text, now), now)
        if self._committed is not None:
            c, self._committed = self._committed, None
            turn_input = _TurnInput(c.item_id, c.audio, c.text, now)
            return self._start_or_queue(turn_input, now)
        if self.input.audio and not self.input.vad_enabled:
            ended = self.input.end_item()
            assert ended is not None
            out = self._item_ended(ended, now)
            assert self._committed is not None
            turn_input, self._committed = self._committed, None
            return out + self._start_or_queue(turn_input, now)
        return [
            self._error("empty_input", "nothing to answer: commit audio or send input_text", eid)
        ]

    @property
    def _ga(self) -> bool:
        """The client speaks OpenAI's GA shape (see `realtime.compat`)."""
        return self.session.type == "realtime"

    def _item_create(self, msg: m.ConversationItemCreate, now: float) -> list[Output]:
        """A user message to answer at the next `response.create`: text, or base64 audio at
        the session's input rate (transcribed when the response starts)."""
        eid, item = msg.event_id, msg.item
        if item.role != "user":
            return [self._error("invalid_field", "only user items can be created", eid)]
        texts = [p.text for p in item.content if p.type == "input_text" and p.text]
        audios = [p.audio for p in item.content if p.type == "input_audio" and p.audio]
        item_id = item.id or self.input.new_item_id()
        if texts:
            self._committed = _TurnInput(item_id, None, "\n".join(texts), now)
            info = compat.user_item(item_id, text=self._committed.text)
        elif audios:
            try:
                pcm = b"".join(base64.b64decode(a, validate=True) for a in audios)
            except (binascii.Error, ValueError):
                return [self._error("invalid_audio", "audio is not valid base64", eid)]
            if len(pcm) % 2 or not pcm:
                return [self._error("invalid_audio", "audio must be whole PCM16 samples", eid)]
            if self.session.input_audio_format == compat.INPUT_24K:
                pcm = compat.InputResampler().feed(pcm, last=True)
            self._committed = _TurnInput(item_id, pcm, None, now)
            info = compat.user_item(item_id)
        else:
            return [self._error("empty_input", "the item has no input_text or input_audio", eid)]
        added = m.ConversationItemAdded(item=info, previous_item_id=msg.previous_item_id)
        return [self._send(added), self._send(m.ConversationItemDone(item=info))]

    def _truncate(self, msg: m.ConversationItemTruncate) -> list[Output]:
        """Keep only the words heard in the first `audio_end_ms` of an assistant item: the
        running response's (its history is trimmed when it ends, as at a barge-in) or the
        last finished one's (trimmed now)."""
        samples = msg.audio_end_ms * limits.OUTPUT_RATE // 1000
        done = m.ConversationItemTruncated(
            item_id=msg.item_id, audio_end_ms=msg.audio_end_ms, content_index=msg.content_index
        )
        r = self.response
        if r is not None and m.assistant_item_id(r.id) == msg.item_id:
            if r.played_at_cancel is not None:
                r.played_at_cancel = min(samples, r.played_at_cancel)
            else:
                r.report_played(samples)
            return [self._send(done)]
        last = self._last_response
        if last is None or m.assistant_item_id(last.id) != msg.item_id:
            message = f"no assistant item {msg.item_id!r} to truncate (only the latest reply)"
            return [self._error("invalid_field", message, msg.event_id)]
        text = heard_text(last.segments, last.sent, min(samples, last.sent))
        return [TruncateReply(text), self._send(done)]

    # ---- responses -------------------------------------------------------------------------

    def _start_or_queue(self, turn_input: _TurnInput, now: float) -> list[Output]:
        if self.response is not None:
            if len(self._pending) >= MAX_PENDING_TURNS:
                out: list[Output] = [DropItem(turn_input.item_id)]
                return [*out, self._error("conversation_busy", "too many turns waiting; dropped")]
            self._pending.append(turn_input)
            return []
        turn = next(self._turns)
        rid = m.response_id_for(turn)
        self.response = Playout(turn=turn, id=rid, item_id=turn_input.item_id, t0=turn_input.t0)
        ga: list[Output] = []
        if self._ga:
            item = compat.assistant_item(rid, "in_progress", None)
            ga = [
                self._send(m.ResponseOutputItemAdded(response_id=rid, item=item)),
                self._send(m.ConversationItemAdded(item=item)),
            ]
        return [
            self._send(m.ResponseCreated(response=m.ResponseInfo(id=rid))),
            *ga,
            StartResponse(
                turn, rid, turn_input.item_id, turn_input.audio, turn_input.text, self.session
            ),
        ]

    def _cancel(self, reason: str, now: float) -> list[Output]:
        r = self.response
        if r is None or r.cancel_reason is not None:
            return []
        r.cancel(reason, now)
        self.input.reply_stopped(now)
        out: list[Output] = []
        if r.sent:
            assert r.played_at_cancel is not None
            flush = m.ResponseOutputAudioFlush(
                response_id=r.id, offset=r.played_at_cancel, reason=reason
            )
            out.append(self._send(flush))
        out.append(CancelResponse(r.turn, reason))
        return out

    # ---- barge-in (see realtime.bargein) ------------------------------------------------------

    def _hold(self, item_id: str, now: float) -> list[Output]:
        """Speech started over the running reply: stop its playout at once and decide later."""
        r = self.response
        if r is None or r.cancel_reason is not None:
            return []
        if self._barge is not None:  # a second start while held: the first one decided nothing
            return []
        offset = r.hold(now)
        self.input.reply_stopped(now)
        self._barge = BargeIn(item_id, r.turn, r.id, offset)
        hold = m.ResponseOutputAudioHold(response_id=r.id, offset=offset)
        out: list[Output] = [self._send(hold)]
        if not self._user_paused:
            out.insert(0, ApplyPause(True))
        return out

    def barge_in_transcript(
        self, item_id: str, asked: int, text: str | None, now: float
    ) -> list[Output]:
        """The transcript asked for by `TranscribeBargeIn(item_id, asked)`; None when it could
        not be made (then the speech counts as a barge-in)."""
        barge = self._barge
        if barge is None or barge.item_id != item_id:
            return []
        if text is None:
            return self._barge_verdict(Verdict.INTERRUPT, now)
        return self._barge_verdict(barge.transcript(asked, text), now, text)

    def _barge_verdict(self, verdict: Verdict, now: float, text: str = "") -> list[Output]:
        barge = self._barge
        if barge is None or verdict in (Verdict.WAIT, Verdict.TRANSCRIBE):
            return []
        self._barge = None
        resume: list[Output] = [] if self._user_paused else [ApplyPause(False)]
        r = self._current(barge.turn)
        if verdict is Verdict.INTERRUPT:
            if r is not None:
                return [*self._cancel("turn_detected", now), *resume]
            flush = m.ResponseOutputAudioFlush(  # the reply had finished sending meanwhile
                response_id=barge.response_id, offset=barge.offset, reason="turn_detected"
            )
            return [self._send(flush), *resume]
        if r is not None:
            r.release(now)
            for offset, pcm in r.unplayed():
                self.input.reply_played(pcm, now + (offset - barge.offset) / limits.OUTPUT_RATE)
        self.input.clear()
        release = m.ResponseOutputAudioRelease(response_id=barge.response_id, offset=barge.offset)
        return [
            self._send(release),
            *resume,
            DropItem(barge.item_id),
            self._send(m.Backchannel(item_id=barge.item_id, transcript=text)),
            KeepBackchannel(barge.item_id, text),
        ]

    def cancel_current(self, reason: str, now: float) -> list[Output]:
        """Cancel the running response for a server reason (disconnect, drain)."""
        return self._cancel(reason, now)

    def heard_text(self, turn: int, now: float) -> str | None:
        """What the user heard of `turn` so far (None if it is not the current response)."""
        r = self._current(turn)
        return None if r is None else r.heard(now)

    # ---- pipeline reports -------------------------------------------------------------------

    def transcript_partial(self, item_id: str, text: str) -> list[Output]:
        """A partial transcript of the item being spoken (ignored once the item has ended)."""
        if item_id != self.input.item_id or not text:
            return []
        return [
            self._send(m.ConversationItemInputAudioTranscriptionDelta(item_id=item_id, delta=text))
        ]

    def transcript_ready(self, item_id: str, text: str, now: float) -> list[Output]:
        """The speculative transcript of a paused item: a complete-looking one may end the
        turn sooner (see `realtime.input`)."""
        return self._on_input(self.input.transcript_ready(item_id, text), now)

    def turn_started(self, turn: int, at: float) -> None:
        """When `turn`'s work began (before `t0` for a speculative start), for its metrics."""
        r = self._current(turn)
        if r is not None:
            r.turn_start = at

    def transcript_final(self, turn: int, text: str, audio_s: float, now: float) -> list[Output]:
        r = self._current(turn)
        if r is None:
            return []
        r.t_stt = now
        r.stt_audio_s = audio_s
        msg = m.ConversationItemInputAudioTranscriptionCompleted(item_id=r.item_id, transcript=text)
        out: list[Output] = [self._send(msg)]
        if self._ga:
            item = compat.user_item(r.item_id, transcript=text)
            out.append(self._send(m.ConversationItemDone(item=item)))
        return out

    def text_delta(self, turn: int, delta: str, now: float) -> list[Output]:
        r = self._current(turn)
        if r is None or r.cancel_reason is not None or not delta:
            return []
        if r.t_first_token is None:
            r.t_first_token = now
        r.text.append(delta)
        return [self._send(m.ResponseOutputTextDelta(response_id=r.id, delta=delta))]

    def stage_mark(self, turn: int, stage: str, now: float) -> None:
        """Record the first time `stage` ("sentence" or "tts_chunk") happened in `turn`, for
        the turn's metrics. Ignored for a turn that is not current."""
        r = self._current(turn)
        if r is not None:
            r.mark(stage, now)

    def segment_started(self, turn: int, text: str) -> list[Output]:
        """The pacer is about to send the first frame of a TTS segment with this text."""
        if not self.is_current(turn):
            return []
        r = self.response
        assert r is not None
        offset = r.add_segment(text)
        delta = m.ResponseOutputAudioTranscriptDelta(response_id=r.id, delta=text, offset=offset)
        return [self._send(delta)]

    def audio_frame(self, turn: int, pcm: bytes, now: float) -> list[Output]:
        """Reply audio for `turn` ready to send now. Returns nothing if the turn is stale."""
        if not self.is_current(turn) or not pcm:
            return []
        r = self.response
        assert r is not None
        self.input.reply_played(pcm, max(r.playout_end, now))
        offset = r.add_audio(len(pcm) // 2, now)
        r.recent.append((offset, pcm))
        if self.session.output_audio_transport == "json":
            b64 = base64.b64encode(pcm).decode("ascii")
            if self._ga:
                item_id = m.assistant_item_id(r.id)
                delta = m.ResponseOutputAudioDelta(
                    response_id=r.id, offset=offset, delta=b64, item_id=item_id
                )
            else:
                delta = m.ResponseOutputAudioDelta(response_id=r.id, offset=offset, audio=b64)
            return [self._send(delta)]
        return [SendAudio(m.pack_audio_frame(turn, offset, pcm))]

    def response_finished(
        self,
        turn: int,
        now: float,
        *,
        error: tuple[str, str] | None = None,
        empty_transcript: bool = False,
        usage: TurnUsage | None = None,
    ) -> list[Output]:
        """The turn's task ended (completed, cancelled or failed). Emits `response.done`.

        `error` is (code, message) of a failure; `usage` the LLM's token counts. Starts the
        next pending turn, if any.
        """
        r = self._current(turn)
        if r is None:
            return []
        self.response = None
        out: list[Output] = []
        if error is not None:
            status, reason = "failed", "error"
            out.append(self._error(error[0], error[1]))
        elif r.cancel_reason is not None:
            status, reason = "cancelled", r.cancel_reason
        elif empty_transcript:
            status, reason = "cancelled", "empty_transcript"
        else:
            status, reason = "completed", None
        played = r.played_at_cancel if r.played_at_cancel is not None else r.sent
        if status != "cancelled" and r.sent:
            out.append(self._send(m.ResponseOutputAudioDone(response_id=r.id, samples=r.sent)))
        metrics = r.metrics(now, usage)
        heard = heard_text(r.segments, r.sent, played)
        self._last_response = r
        if self._ga:
            done = "completed" if status == "completed" else "incomplete"
            item = compat.assistant_item(r.id, done, heard)
            out.append(self._send(m.ResponseOutputItemDone(response_id=r.id, item=item)))
            out.append(self._send(m.ConversationItemDone(item=item)))
        info = m.ResponseInfo(
            id=r.id,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            output_text="".join(r.text),
            heard_text=heard,
            audio_samples=r.sent,
            played_samples=played,
        )
        out.append(self._send(m.Metrics(response_id=r.id, metrics=metrics)))
        out.append(self._send(m.ResponseDone(response=info, metrics=metrics)))
        if self._pending:
            out += self._start_or_queue(self._pending.popleft(), now)
        return out
