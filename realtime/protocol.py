"""The realtime protocol core: a pure state machine, no I/O and no asyncio.

Inputs are client frames (`receive_text`, `receive_audio`) and reports from the pipeline that
runs a turn (`transcript_partial`, `transcript_final`, `text_delta`, `stage_mark`,
`segment_started`, `audio_frame`, `response_finished`), each with the current monotonic time
`now` in seconds.
Every input returns a list of outputs for the glue to carry out, in order:

- `Send(message)`: send a JSON server message; `SendAudio(frame)`: send a binary reply frame.
- `StartResponse(...)`: start a turn (STT if it has audio, then LLM, TTS, pacing).
- `CancelResponse(turn, reason)`: cancel that turn's task group now.
- `ApplySpeed`, `ApplyPause`, `ApplySession`: forward a control to the running pipeline.
- `StreamAudio(item_id, audio, until_stop_ms)` / `EndStream()`: feed / reset the partial
  transcriber; `until_stop_ms` is the least audio before the VAD can end the turn, so the glue
  never starts a partial decode that the final transcript would have to wait behind.
- `CloseConnection(code, reason)`: close the WebSocket.

Guarantees the core enforces (so the glue cannot get them wrong):

- After `CancelResponse` (barge-in, `response.cancel`) the core refuses every later
  `audio_frame` of that turn: no stale audio is ever sent after a flush.
- Control messages are answered from the core's own state at once; nothing here waits.
- The played position of a response is modelled as a client that starts playing at the first
  frame and plays at real time (`played_samples`), optionally lowered by the client's own
  `bitvoice.playback` report; `heard_text` is the text of exactly that audio.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from realtime import limits
from realtime import messages as m
from realtime.vad import SpeechAudio, SpeechStarted, SpeechStopped, VadConfig, VadSegmenter

__all__ = [
    "ApplyPause",
    "ApplySession",
    "ApplySpeed",
    "CancelResponse",
    "CloseConnection",
    "EndStream",
    "Output",
    "RealtimeProtocol",
    "Send",
    "SendAudio",
    "StartResponse",
    "StreamAudio",
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
class ApplySession:
    session: m.SessionState


@dataclass(frozen=True, slots=True)
class StreamAudio:
    item_id: str
    audio: bytes
    until_stop_ms: int = 0  # 0: the turn may end now (no partial should start)


@dataclass(frozen=True, slots=True)
class EndStream:
    pass


@dataclass(frozen=True, slots=True)
class CloseConnection:
    code: int
    reason: str


Output = (
    Send
    | SendAudio
    | StartResponse
    | CancelResponse
    | ApplySpeed
    | ApplyPause
    | ApplySession
    | StreamAudio
    | EndStream
    | CloseConnection
)


def heard_text(segments: list[tuple[int, str]], total: int, played: int) -> str:
    """The text of the first `played` samples of audio made of `segments`.

    `segments` are (start sample, text) in order; a segment ends where the next starts (the
    last at `total`). Whole segments that were played count fully; a partly played one
    contributes its words in proportion to the samples played (rounded down).
    """
    out: list[str] = []
    for i, (start, text) in enumerate(segments):
        end = segments[i + 1][0] if i + 1 < len(segments) else total
        if played >= end:
            out.append(text.strip())
            continue
        if played > start and end > start:
            words = text.split()
            k = math.floor(len(words) * (played - start) / (end - start))
            if k:
                out.append(" ".join(words[:k]))
        break
    return " ".join(t for t in out if t)


@dataclass(slots=True)
class _Response:
    turn: int
    id: str
    item_id: str
    t0: float  # end of user speech (or the request), the metrics' zero
    t_stt: float | None = None
    t_first_token: float | None = None
    t_first_sentence: float | None = None
    t_tts_first_chunk: float | None = None
    t_first_audio: float | None = None
    stt_audio_s: float | None = None
    text: list[str] = field(default_factory=list)
    segments: list[tuple[int, str]] = field(default_factory=list)
    sent: int = 0  # samples sent
    playout_end: float = 0.0  # when the modelled client finishes playing what was sent
    client_played: int | None = None
    cancel_reason: str | None = None
    played_at_cancel: int | None = None

    def played(self, now: float) -> int:
        if self.played_at_cancel is not None:
            return self.played_at_cancel
        queued = max(0.0, self.playout_end - now) * limits.OUTPUT_RATE
        est = max(0, min(self.sent, self.sent - math.ceil(queued)))
        if self.client_played is not None:
            est = min(est, self.client_played)
        return est


@dataclass(frozen=True, slots=True)
class _TurnInput:
    item_id: str
    audio: bytes | None
    text: str | None
    t0: float


class RealtimeProtocol:
    """One conversation's protocol state. Single-threaded: call from one place only.

    `session_defaults` is the session before any `session.update` (its `id` included);
    `idle_timeout_s` / `max_session_s` are enforced by `tick(now)`.
    """

    def __init__(
        self,
        session_defaults: m.SessionState,
        *,
        now: float,
        idle_timeout_s: float = limits.DEFAULT_IDLE_TIMEOUT_S,
        max_session_s: float = limits.DEFAULT_MAX_SESSION_S,
    ) -> None:
        self.session = session_defaults
        self._evt = itertools.count(1)
        self._turns = itertools.count(1)
        self._items = itertools.count(1)
        self._created = now
        self._last_activity = now
        self._idle_timeout = idle_timeout_s
        self._max_session = max_session_s
        self._vad: VadSegmenter | None = None
        self._configure_vad()
        self._input = bytearray()  # the current user item's audio
        self._item_id: str | None = None
        self._committed: _TurnInput | None = None
        self._pending: deque[_TurnInput] = deque()
        self._bucket = limits.AUDIO_BURST_S
        self._bucket_at = now
        self._last_rate_error = -math.inf
        self.response: _Response | None = None
        self.paused = False
        self.closed = False

    # ---- helpers -----------------------------------------------------------------------

    def _eid(self) -> str:
        return f"evt_{next(self._evt)}"

    def _send(self, msg: Any) -> Send:
        # every server message gets the next event id (they are frozen structs)
        return Send(msgspec.structs.replace(msg, event_id=self._eid()))

    def _error(self, code: str, message: str, event_id: str | None = None) -> Send:
        kind = "server_error" if code == "internal_error" else "invalid_request_error"
        info = m.ErrorInfo(code=code, message=message, type=kind, event_id=event_id)
        return self._send(m.Error(error=info))

    def _configure_vad(self) -> None:
        td = self.session.turn_detection
        if td is None:
            self._vad = None
            return
        self._vad = VadSegmenter(
            VadConfig(
                aggressiveness=td.aggressiveness,
                frame_ms=td.frame_ms,
                prefix_padding_ms=td.prefix_padding_ms,
                silence_duration_ms=td.silence_duration_ms,
            )
        )

    @property
    def started(self) -> bool:
        return self.session.started

    def lead(self, now: float) -> float:
        """Seconds of sent audio the modelled client has not played yet (0 with no response)."""
        r = self.response
        return max(0.0, r.playout_end - now) if r is not None else 0.0

    def is_current(self, turn: int) -> bool:
        """True while `turn` is the running, not cancelled response (its audio may be sent)."""
        r = self.response
        return r is not None and r.turn == turn and r.cancel_reason is None

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
        """Handle one client text frame."""
        self._last_activity = now
        if len(data) > limits.MAX_MESSAGE_BYTES:
            return [self._too_large(len(data))]
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
                self._error(
                    "session_not_started",
                    "send session.update before audio",
                    event_id,
                )
            ]
        if len(pcm) % 2:
            return [self._error("invalid_audio", "audio must be whole PCM16 samples", event_id)]
        if not pcm:
            return []
        # token bucket in seconds of audio
        self._bucket = min(
            limits.AUDIO_BURST_S,
            self._bucket + (now - self._bucket_at) * limits.AUDIO_RATE_FACTOR,
        )
        self._bucket_at = now
        seconds = len(pcm) / limits.INPUT_BYTES_PER_SECOND
        if seconds > self._bucket:
            if now - self._last_rate_error >= limits.AUDIO_RATE_ERROR_INTERVAL_S:
                self._last_rate_error = now
                return [
                    self._error(
                        "audio_rate_exceeded",
                        "audio arrives faster than real time; the excess was dropped",
                        event_id,
                    )
                ]
            return []
        self._bucket -= seconds
        if self._vad is None:
            return self._append_manual(pcm, event_id)
        return self._run_vad(pcm, now)

    def _append_manual(self, pcm: bytes, event_id: str | None) -> list[Output]:
        if len(self._input) + len(pcm) > limits.MAX_TURN_AUDIO_S * limits.INPUT_BYTES_PER_SECOND:
            return [
                self._error(
                    "invalid_audio",
                    f"a turn is limited to {limits.MAX_TURN_AUDIO_S:.0f} s; commit first",
                    event_id,
                )
            ]
        if self._item_id is None:
            self._item_id = f"item_{next(self._items)}"
        self._input += pcm
        return []

    def _run_vad(self, pcm: bytes, now: float) -> list[Output]:
        assert self._vad is not None
        td = self.session.turn_detection
        assert td is not None
        out: list[Output] = []
        for ev in self._vad.feed(pcm):
            if isinstance(ev, SpeechStarted):
                if td.interrupt_response and self.response is not None:
                    out += self._cancel("turn_detected", now)
                self._item_id = f"item_{next(self._items)}"
                self._input = bytearray(ev.audio)
                out.append(
                    self._send(
                        m.InputAudioBufferSpeechStarted(
                            item_id=self._item_id, audio_start_ms=ev.start_ms
                        )
                    )
                )
                if self.session.partial_transcripts:
                    out.append(StreamAudio(self._item_id, ev.audio, self._until_stop_ms()))
            elif isinstance(ev, SpeechAudio):
                if self._item_id is None:
                    continue
                self._input += ev.audio
                if self.session.partial_transcripts:
                    out.append(StreamAudio(self._item_id, ev.audio, self._until_stop_ms()))
                if len(self._input) >= limits.MAX_TURN_AUDIO_S * limits.INPUT_BYTES_PER_SECOND:
                    # a turn that never pauses is cut here and answered
                    self._vad.reset()
                    out += self._speech_stopped(self._vad.position_ms, now)
            elif isinstance(ev, SpeechStopped):
                out += self._speech_stopped(ev.end_ms, now)
        return out

    def _until_stop_ms(self) -> int:
        until = self._vad.until_stop_ms if self._vad is not None else None
        return 0 if until is None else until

    def _speech_stopped(self, end_ms: int, now: float) -> list[Output]:
        if self._item_id is None:
            return []
        td = self.session.turn_detection
        item = self._item_id
        out: list[Output] = [
            self._send(m.InputAudioBufferSpeechStopped(item_id=item, audio_end_ms=end_ms)),
            EndStream(),
        ]
        out += self._commit(now)
        if td is not None and td.create_response and self._committed is not None:
            pending, self._committed = self._committed, None
            out += self._start_or_queue(pending, now)
        return out

    def _commit(self, now: float) -> list[Output]:
        """Turn the buffered audio into a committed item."""
        assert self._item_id is not None
        item = self._item_id
        self._committed = _TurnInput(item, bytes(self._input), None, now)
        self._input = bytearray()
        self._item_id = None
        return [self._send(m.InputAudioBufferCommitted(item_id=item))]

    # ---- dispatch -----------------------------------------------------------------------

    def _dispatch(self, msg: m.ClientMessage, now: float) -> list[Output]:
        eid = msg.event_id
        if isinstance(msg, m.SessionUpdate):
            return self._session_update(msg)
        if isinstance(msg, m.Ping):
            return [self._send(m.Pong(client_event_id=eid, server_time_ms=now * 1000.0))]
        if isinstance(msg, m.SetSpeed):
            self.session = replace_session(self.session, speed=msg.speed)
            return [
                ApplySpeed(msg.speed),
                self._send(m.SpeedSet(speed=msg.speed, client_event_id=eid)),
            ]
        if isinstance(msg, m.Pause):
            self.paused = True
            r = self.response
            ack = m.Paused(
                response_id=r.id if r else None, offset=r.sent if r else 0, client_event_id=eid
            )
            return [ApplyPause(True), self._send(ack)]
        if isinstance(msg, m.Resume):
            self.paused = False
            r = self.response
            resumed = m.Resumed(
                response_id=r.id if r else None, offset=r.sent if r else 0, client_event_id=eid
            )
            return [ApplyPause(False), self._send(resumed)]
        if isinstance(msg, m.Playback):
            r = self.response
            if r is not None and r.id == msg.response_id:
                r.client_played = min(msg.played_samples, r.sent)
            return []
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
            if not self._input or self._item_id is None:
                return [self._error("empty_input", "no buffered audio to commit", eid)]
            if self._vad is not None:
                self._vad.reset()
                return self._speech_stopped(self._vad.position_ms, now)
            return [EndStream(), *self._commit(now)]
        if isinstance(msg, m.InputAudioBufferClear):
            self._input = bytearray()
            self._item_id = None
            if self._vad is not None:
                self._vad.reset()
            return [EndStream(), self._send(m.InputAudioBufferCleared())]
        if isinstance(msg, m.ResponseCreate):
            return self._response_create(msg, now)
        raise AssertionError(f"unhandled message {msg!r}")  # pragma: no cover

    def _session_update(self, msg: m.SessionUpdate) -> list[Output]:
        cfg = msg.session
        changes: dict[str, Any] = {"started": True}
        for name in cfg.__struct_fields__:
            value = getattr(cfg, name)
            if value is not msgspec.UNSET:
                changes[name] = value
        old = self.session
        self.session = replace_session(old, **changes)
        out: list[Output] = []
        if "turn_detection" in changes and changes["turn_detection"] != old.turn_detection:
            self._configure_vad()
            if self._vad is not None and self._item_id is not None:
                # a half-heard VAD turn cannot continue under new VAD settings
                self._input = bytearray()
                self._item_id = None
                out.append(EndStream())
        if "speed" in changes:
            out.append(ApplySpeed(self.session.speed))
        out += [ApplySession(self.session), self._send(m.SessionUpdated(session=self.session))]
        return out

    def _response_create(self, msg: m.ResponseCreate, now: float) -> list[Output]:
        eid = msg.event_id
        if self.response is not None and self.response.cancel_reason is None:
            return [self._error("conversation_busy", "a response is already running", eid)]
        if msg.input_text is not None:
            turn_input = _TurnInput(f"item_{next(self._items)}", None, msg.input_text, now)
        elif self._committed is not None:
            turn_input = replace(self._committed, t0=now)
            self._committed = None
        elif self._input and self._item_id is not None and self._vad is None:
            out: list[Output] = [EndStream(), *self._commit(now)]
            assert self._committed is not None
            turn_input, self._committed = self._committed, None
            return out + self._start_or_queue(turn_input, now)
        else:
            return [
                self._error(
                    "empty_input", "nothing to answer: commit audio or send input_text", eid
                )
            ]
        return self._start_or_queue(turn_input, now)

    # ---- responses -------------------------------------------------------------------------

    def _start_or_queue(self, turn_input: _TurnInput, now: float) -> list[Output]:
        if self.response is not None:
            if len(self._pending) >= MAX_PENDING_TURNS:
                return [self._error("conversation_busy", "too many turns waiting; dropped")]
            self._pending.append(turn_input)
            return []
        turn = next(self._turns)
        rid = m.response_id_for(turn)
        self.response = _Response(turn=turn, id=rid, item_id=turn_input.item_id, t0=turn_input.t0)
        return [
            self._send(m.ResponseCreated(response=m.ResponseInfo(id=rid))),
            StartResponse(
                turn, rid, turn_input.item_id, turn_input.audio, turn_input.text, self.session
            ),
        ]

    def _cancel(self, reason: str, now: float) -> list[Output]:
        r = self.response
        if r is None or r.cancel_reason is not None:
            return []
        r.played_at_cancel = r.played(now)
        r.cancel_reason = reason
        out: list[Output] = []
        if r.sent:
            flush = m.ResponseOutputAudioFlush(
                response_id=r.id, offset=r.played_at_cancel, reason=reason
            )
            out.append(self._send(flush))
        out.append(CancelResponse(r.turn, reason))
        return out

    def cancel_current(self, reason: str, now: float) -> list[Output]:
        """Cancel the running response for a server reason (disconnect, drain)."""
        return self._cancel(reason, now)

    def heard_text(self, turn: int, now: float) -> str | None:
        """What the user heard of `turn` so far (None if it is not the current response)."""
        r = self.response
        if r is None or r.turn != turn:
            return None
        return heard_text(r.segments, r.sent, r.played(now))

    # ---- pipeline reports -------------------------------------------------------------------

    def transcript_partial(self, item_id: str, text: str) -> list[Output]:
        """A partial transcript of the item being spoken (ignored once the item has ended)."""
        if item_id != self._item_id or not text:
            return []
        return [
            self._send(m.ConversationItemInputAudioTranscriptionDelta(item_id=item_id, delta=text))
        ]

    def transcript_final(self, turn: int, text: str, audio_s: float, now: float) -> list[Output]:
        r = self.response
        if r is None or r.turn != turn:
            return []
        r.t_stt = now
        r.stt_audio_s = audio_s
        return [
            self._send(
                m.ConversationItemInputAudioTranscriptionCompleted(
                    item_id=r.item_id, transcript=text
                )
            )
        ]

    def text_delta(self, turn: int, delta: str, now: float) -> list[Output]:
        r = self.response
        if r is None or r.turn != turn or r.cancel_reason is not None or not delta:
            return []
        if r.t_first_token is None:
            r.t_first_token = now
        r.text.append(delta)
        return [self._send(m.ResponseOutputTextDelta(response_id=r.id, delta=delta))]

    def stage_mark(self, turn: int, stage: str, now: float) -> None:
        """Record the first time `stage` ("sentence" or "tts_chunk") happened in `turn`, for
        the turn's metrics. Ignored for a turn that is not current."""
        r = self.response
        if r is None or r.turn != turn:
            return
        if stage == "sentence" and r.t_first_sentence is None:
            r.t_first_sentence = now
        elif stage == "tts_chunk" and r.t_tts_first_chunk is None:
            r.t_tts_first_chunk = now

    def segment_started(self, turn: int, text: str) -> list[Output]:
        """The pacer is about to send the first frame of a TTS segment with this text."""
        if not self.is_current(turn):
            return []
        r = self.response
        assert r is not None
        r.segments.append((r.sent, text))
        return [
            self._send(
                m.ResponseOutputAudioTranscriptDelta(response_id=r.id, delta=text, offset=r.sent)
            )
        ]

    def audio_frame(self, turn: int, pcm: bytes, now: float) -> list[Output]:
        """Reply audio for `turn` ready to send now. Returns nothing if the turn is stale."""
        if not self.is_current(turn) or not pcm:
            return []
        r = self.response
        assert r is not None
        offset = r.sent
        n = len(pcm) // 2
        r.sent += n
        r.playout_end = max(r.playout_end, now) + n / limits.OUTPUT_RATE
        if r.t_first_audio is None:
            r.t_first_audio = now
        if self.session.output_audio_transport == "json":
            b64 = base64.b64encode(pcm).decode("ascii")
            return [
                self._send(m.ResponseOutputAudioDelta(response_id=r.id, offset=offset, audio=b64))
            ]
        return [SendAudio(m.pack_audio_frame(turn, offset, pcm))]

    def response_finished(
        self,
        turn: int,
        now: float,
        *,
        error: tuple[str, str] | None = None,
        empty_transcript: bool = False,
        usage: tuple[int, int, float] | None = None,
    ) -> list[Output]:
        """The turn's task ended (completed, cancelled or failed). Emits `response.done`.

        `error` is (code, message) of a failure; `usage` is (prompt_tokens,
        completion_tokens, tokens_per_second). Starts the next pending turn, if any.
        """
        r = self.response
        if r is None or r.turn != turn:
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

        def ms(t: float | None) -> float | None:
            return None if t is None else round((t - r.t0) * 1000.0, 1)

        metrics = m.TurnMetrics(
            stt_final_ms=ms(r.t_stt),
            first_token_ms=ms(r.t_first_token),
            first_sentence_ms=ms(r.t_first_sentence),
            tts_first_chunk_ms=ms(r.t_tts_first_chunk),
            first_audio_ms=ms(r.t_first_audio),
            total_ms=ms(now),
            stt_audio_ms=None if r.stt_audio_s is None else round(r.stt_audio_s * 1000.0, 1),
            prompt_tokens=usage[0] if usage else None,
            completion_tokens=usage[1] if usage else None,
            tokens_per_second=round(usage[2], 2) if usage else None,
        )
        info = m.ResponseInfo(
            id=r.id,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            output_text="".join(r.text),
            heard_text=heard_text(r.segments, r.sent, played),
            audio_samples=r.sent,
            played_samples=played,
        )
        out.append(self._send(m.Metrics(response_id=r.id, metrics=metrics)))
        out.append(self._send(m.ResponseDone(response=info, metrics=metrics)))
        if self._pending:
            out += self._start_or_queue(self._pending.popleft(), now)
        return out


def replace_session(session: m.SessionState, **changes: Any) -> m.SessionState:
    """A copy of `session` with `changes` (frozen structs cannot be assigned)."""
    return msgspec.structs.replace(session, **changes)
