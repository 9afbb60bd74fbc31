"""The kiosk's protocol core: no sockets, no devices, no clock of its own.

`KioskCore` is the client side of `realtime/PROTOCOL.md` as a state machine, in the manner of
the `websockets` library's sans-I/O protocol: the glue feeds it what happened (a server frame,
a microphone chunk, a speaker block wanted, a key, a tick of the clock, the connection lost)
with the time it happened where time matters, and collects what to do: frames to send (`data_to_send`) and
things to tell the person (`events_received`). Tests drive it by plain calls.

What it owns:
- the session: the first `session.update` (server VAD with barge-in, or push-to-talk);
- the turn rules: only the current response plays; a response that was flushed (barge-in,
  stop) or ended other than completed never plays again; a new connection forgets the turn;
- the playback position: the `Player` it feeds, reported with `bitvoice.playback`;
- the latency of each turn from the client's own clock: from when the last word of the
  user's turn was captured (the server's `audio_end_ms` mapped back onto the microphone's
  capture times; in push-to-talk, the key release) to when the first reply sample is heard.

Times are seconds on one monotonic clock that the glue chooses (the device clock, or a file's
timeline). Calling contract: single-threaded; the device glue holds a lock around each call.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections import deque
from dataclasses import dataclass

import msgspec
import numpy as np

from kiosk import limits
from kiosk.player import Int16Array, Player
from realtime import messages as m

__all__ = [
    "Connected",
    "KioskCore",
    "KioskEvent",
    "Notice",
    "ReplyDone",
    "ReplyMetrics",
    "ReplyStarted",
    "ServerError",
    "SessionOptions",
    "UserTranscript",
    "describe",
]


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What the kiosk asks of the session (None: the server's default)."""

    voice: str | None = None
    language: str | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    push_to_talk: bool = False  # manual turns (a key starts and ends them), no server VAD


# --- events for the person (the glue logs them) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    session_id: str
    model: str
    notice: str | None


@dataclass(frozen=True, slots=True)
class UserTranscript:
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """The first sample of a reply was heard; `latency_ms` from the end of the user's speech
    on the client's clock (None: the reply answered no speech, e.g. typed text)."""

    response_id: str
    latency_ms: float | None


@dataclass(frozen=True, slots=True)
class ReplyMetrics:
    response_id: str
    metrics: m.TurnMetrics


@dataclass(frozen=True, slots=True)
class ReplyDone:
    response_id: str
    status: str
    reason: str | None
    heard_text: str  # what the server's history keeps (what was heard, when cut short)
    played_samples: int  # what this client played of it (the server's figure may differ)


@dataclass(frozen=True, slots=True)
class ServerError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the kiosk did on a key (stopped, paused, talking...)."""

    text: str


KioskEvent = (
    Connected | UserTranscript | ReplyStarted | ReplyMetrics | ReplyDone | ServerError | Notice
)


@dataclass(slots=True)
class _Reply:
    turn: int
    speech_end_at: float | None  # capture time of the user's last word (client clock)
    heard_at: float | None = None  # its first sample was heard
    played: int | None = None  # samples played, frozen when it was flushed


class KioskCore:
    """The client protocol state of one kiosk across connections (see the module docstring)."""

    def __init__(self, options: SessionOptions | None = None, player: Player | None = None) -> None:
        self.options = options or SessionOptions()
        self.player = player or Player()
        self._out: list[str | bytes] = []
        self._events: list[KioskEvent] = []
        self._ids = itertools.count(1)
        self.completed_replies = 0  # responses that ended `completed` (across connections)
        self.quit_requested = False
        self.incompatible: str | None = None  # why this server cannot be used (then stop)
        self._new_connection_state()

    def _new_connection_state(self) -> None:
        self.session_sent = False  # our session.update is out: microphone audio may follow
        self.started = False  # the server confirmed the session (`session.updated`)
        self.current_turn: int | None = None
        self.response_running = False
        self.flushed: set[int] = set()
        self.replies: dict[int, _Reply] = {}
        self.in_speech = False
        self.pending_commits = 0  # committed user turns not yet answered by response.created
        self.talking = False  # push-to-talk: the key is "down"
        self.paused = False
        self.held = False  # bitvoice.audio.hold: stopped until released or flushed
        self._mic_samples = 0  # samples sent since the session started (the server's clock)
        self._anchors: deque[tuple[int, float]] = deque(maxlen=limits.MIC_ANCHORS)
        self._speech_end_at: float | None = None
        self._last_report: tuple[int, int] = (-1, 0)  # (turn, played) last reported
        self._last_report_at = float("-inf")
        self._sent_since_tick = False
        self._last_sent_at: float | None = None  # (tick time) something last went out

    # --- what the glue collects ---------------------------------------------------------------

    def data_to_send(self) -> list[str | bytes]:
        """Frames to send, in order: `str` is a JSON text frame, `bytes` microphone PCM."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[KioskEvent]:
        """Things to tell the person since the last call."""
        out, self._events = self._events, []
        return out

    @property
    def idle(self) -> bool:
        """No user turn open or unanswered, no reply running or still playing."""
        return (
            not self.in_speech
            and self.pending_commits == 0
            and not self.response_running
            and self.player.idle
        )

    # --- connection -----------------------------------------------------------------------------

    def connection_made(self) -> None:
        """A new WebSocket is open; the server speaks first (`session.created`)."""
        self._new_connection_state()
        self.player.reset()

    def connection_lost(self) -> None:
        """The WebSocket is gone: stop playing; the next server session starts afresh."""
        self._new_connection_state()
        self.player.reset()

    # --- server frames --------------------------------------------------------------------------

    def receive_text(self, data: str | bytes) -> None:
        """One JSON frame from the server. A frame it cannot decode is ignored, never raised."""
        try:
            msg = m.decode_server(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # a newer server's message we do not know: PROTOCOL.md says ignore it
        self._on_message(msg)

    def receive_binary(self, data: bytes) -> None:
        """One reply audio frame: played only when it belongs to the current response."""
        try:
            frame = m.unpack_audio_frame(data)
        except ValueError:
            return
        self._play(frame.turn, frame.pcm)

    def _on_message(self, msg: m.ServerMessage) -> None:
        match msg:
            case m.SessionCreated(session=s):
                self._events.append(Connected(s.id, s.model, s.notice))
                formats = (s.input_audio_format, s.output_audio_format)
                if formats != (limits.INPUT_FORMAT, limits.OUTPUT_FORMAT):
                    self.incompatible = (
                        f"the server declares audio {formats[0]} in, {formats[1]} out; this "
                        f"kiosk speaks {limits.INPUT_FORMAT} in, {limits.OUTPUT_FORMAT} out"
                    )
                    return
                self._send(self._session_update())
                self.session_sent = True
            case m.SessionUpdated():
                self.started = True
            case m.Error(error=e):
                self._events.append(ServerError(e.code, e.message))
            case m.InputAudioBufferSpeechStarted():
                self.in_speech = True
            case m.InputAudioBufferSpeechStopped(audio_end_ms=end_ms):
                self.in_speech = False
                self._speech_end_at = self._capture_time(end_ms)
            case m.InputAudioBufferCommitted():
                self.pending_commits += 1
            case m.ConversationItemInputAudioTranscriptionCompleted(item_id=item, transcript=t):
                self._events.append(UserTranscript(item, t))
            case m.ResponseCreated(response=r):
                self._response_created(r.id)
            case m.ResponseOutputAudioDelta(response_id=rid, audio=str() as b64):
                self._play_json_audio(rid, b64)
            case m.ResponseOutputAudioDone(response_id=rid):
                turn = m.turn_of_response_id(rid)
                if turn is not None and turn not in self.flushed:
                    self.player.end(turn)
            case m.ResponseOutputAudioFlush(response_id=rid):
                self.held = False
                self.player.paused = self.paused
                self._flush(m.turn_of_response_id(rid))
            case m.ResponseOutputAudioHold():
                # the user may be talking over the reply: stop at once, keep the queue
                self.held = True
                self.player.paused = True
            case m.ResponseOutputAudioRelease():
                # it was a backchannel: play on (unless the user paused it meanwhile)
                self.held = False
                self.player.paused = self.paused
            case m.Metrics(response_id=rid, metrics=metrics):
                self._events.append(ReplyMetrics(rid, metrics))
            case m.ResponseDone(response=r):
                self._response_done(r)
            case m.Paused():
                self.paused = True
            case m.Resumed():
                self.paused = False
            case _:
                pass

    def _response_created(self, response_id: str) -> None:
        turn = m.turn_of_response_id(response_id)
        if turn is None:
            return
        self.pending_commits = max(0, self.pending_commits - 1)
        self.current_turn = turn
        self.response_running = True
        self.replies[turn] = _Reply(turn, self._speech_end_at)
        self._speech_end_at = None

    def _response_done(self, r: m.ResponseInfo) -> None:
        turn = m.turn_of_response_id(r.id)
        if turn is None:
            return
        if r.status != "completed":
            self._flush(turn)
        else:
            self.completed_replies += 1
            self.player.end(turn)
        if turn == self.current_turn:
            self.response_running = False
        self._events.append(ReplyDone(r.id, r.status, r.reason, r.heard_text, self._played(turn)))
        self.replies = {t: rep for t, rep in self.replies.items() if t >= turn}

    def _play(self, turn: int, pcm: bytes) -> None:
        # Only the current response plays; a flushed (stopped, barged-in) one never does.
        if turn != self.current_turn or turn in self.flushed:
            self.player.dropped += len(pcm) // 2
            return
        self.player.push(turn, np.frombuffer(pcm, dtype="<i2").astype(np.int16))

    def _play_json_audio(self, response_id: str, b64: str) -> None:
        # JSON transport (a server that ignored our "binary"): the same path as a frame
        turn = m.turn_of_response_id(response_id)
        try:
            pcm = base64.b64decode(b64, validate=True)
        except binascii.Error:
            return
        if turn is not None and len(pcm) % 2 == 0:
            self._play(turn, pcm)

    def _played(self, turn: int) -> int:
        """Samples of response `turn` played so far (frozen at its flush)."""
        reply = self.replies.get(turn)
        if reply is not None and reply.played is not None:
            return reply.played
        return self.player.turn_played if self.player.turn == turn else 0

    def _flush(self, turn: int | None) -> None:
        if turn is None or turn in self.flushed:
            return
        if (reply := self.replies.get(turn)) is not None:
            reply.played = self._played(turn)
        self.flushed.add(turn)
        if turn >= self.player.turn:
            self.player.advance_to(turn + 1)

    # --- microphone and speaker -----------------------------------------------------------------

    def mic_audio(self, pcm: bytes, captured_at: float) -> None:
        """PCM16 16 kHz mono captured at `captured_at` (its first sample). Sent when the
        session is open and (in push-to-talk) the talk key is down; dropped otherwise."""
        if not self.session_sent:
            return
        if self.options.push_to_talk and not self.talking:
            return
        self._anchors.append((self._mic_samples, captured_at))
        self._mic_samples += len(pcm) // 2
        self._out.append(pcm)
        self._sent_since_tick = True

    def _capture_time(self, audio_ms: int) -> float | None:
        """When the microphone captured the sample `audio_ms` into the session (None: the
        client no longer remembers, or never sent it)."""
        sample = audio_ms * limits.INPUT_RATE // 1000
        for index, at in reversed(self._anchors):
            if index <= sample:
                return at + (sample - index) / limits.INPUT_RATE
        return None

    def render(self, n: int, heard_at: float) -> Int16Array:
        """The next `n` speaker samples (24 kHz), whose first will be heard at `heard_at`."""
        pulled = self.player.pull(n)
        if pulled.turn is not None and pulled.started_at is not None:
            reply = self.replies.get(pulled.turn)
            if reply is not None and reply.heard_at is None:
                reply.heard_at = heard_at + pulled.started_at / limits.OUTPUT_RATE
                latency = None
                if reply.speech_end_at is not None:
                    latency = (reply.heard_at - reply.speech_end_at) * 1000.0
                self._events.append(ReplyStarted(m.response_id_for(pulled.turn), latency))
        return pulled.pcm

    def tick(self, now: float) -> None:
        """Housekeeping: report the played position of the running reply now and then, and
        keep a silent session open (`KEEPALIVE_S`)."""
        self._keepalive(now)
        if not self.response_running or self.current_turn != self.player.turn:
            return
        if now - self._last_report_at < limits.PLAYBACK_REPORT_INTERVAL_S:
            return
        position = (self.player.turn, self.player.turn_played)
        if position[1] == 0 or position == self._last_report:
            return
        self._report(*position)
        self._last_report_at = now

    def _keepalive(self, now: float) -> None:
        if not self.session_sent:
            return
        if self._sent_since_tick or self._last_sent_at is None:
            self._sent_since_tick = False
            self._last_sent_at = now
        elif now - self._last_sent_at >= limits.KEEPALIVE_S:
            self._send(m.Ping(event_id=self._event_id()))
            self._sent_since_tick = False
            self._last_sent_at = now

    def _report(self, turn: int, played: int) -> None:
        self._last_report = (turn, played)
        self._send(m.Playback(response_id=m.response_id_for(turn), played_samples=played))

    # --- keys -----------------------------------------------------------------------------------

    def key(self, key: str, now: float) -> None:
        """One key: `s`/Esc stop the reply, `p` pause/resume, space push-to-talk, `q` quit."""
        if key in ("s", "\x1b"):
            self.stop(now)
        elif key == "p":
            self.toggle_pause()
        elif key == " ":
            self.toggle_talk(now)
        elif key == "q":
            self.quit_requested = True
            self._events.append(Notice("quitting"))

    def stop(self, now: float) -> None:
        """Silence the reply now; tell the server what was heard, then cancel it."""
        turn = self.current_turn
        if turn is None or turn in self.flushed:
            return  # nothing playing, or already stopped (by us or by the server)
        if not self.response_running and (self.player.turn != turn or self.player.idle):
            return  # it has played to its end
        played = self._played(turn)
        self._flush(turn)
        if self.response_running:
            if played:  # so the history keeps only what was heard
                self._report(turn, played)
            self._send(m.ResponseCancel(event_id=self._event_id()))
        else:
            # the server has sent all of it (its reply is in the history whole): keep only
            # what was heard, as OpenAI's clients do after a stop
            self._send(
                m.ConversationItemTruncate(
                    item_id=m.assistant_item_id(m.response_id_for(turn)),
                    audio_end_ms=played * 1000 // limits.OUTPUT_RATE,
                    event_id=self._event_id(),
                )
            )
        self._events.append(Notice(f"stopped {m.response_id_for(turn)}"))

    def toggle_pause(self) -> None:
        """Pause: silent at once here, and the server holds the rest; resume continues."""
        if not self.started:
            return
        self.paused = not self.paused
        self.player.paused = self.paused or self.held
        if self.paused:
            self._send(m.Pause(event_id=self._event_id()))
        else:
            self._send(m.Resume(event_id=self._event_id()))
        self._events.append(Notice("paused" if self.paused else "resumed"))

    def toggle_talk(self, now: float) -> None:
        """Push-to-talk (press to talk, press again to send): the first press stops a reply
        that is playing and starts a clean buffer; the second ends the turn and asks for the
        answer. Without `push_to_talk` the server's VAD finds turns and the key does nothing."""
        if not self.options.push_to_talk:
            self._events.append(Notice("push-to-talk is off (start with --push-to-talk)"))
            return
        if not self.started:
            return
        if not self.talking:
            self.stop(now)
            self._send(m.InputAudioBufferClear(event_id=self._event_id()))
            self.talking = True
            self._events.append(Notice("talking"))
            return
        self.talking = False
        self._speech_end_at = now
        self._send(m.InputAudioBufferCommit(event_id=self._event_id()))
        self._send(m.ResponseCreate(event_id=self._event_id()))
        self._events.append(Notice("sent"))

    # --- helpers --------------------------------------------------------------------------------

    def _session_update(self) -> m.SessionUpdate:
        o = self.options
        config = m.SessionUpdateConfig(
            turn_detection=None if o.push_to_talk else m.TurnDetection(),
            output_audio_transport="binary",  # a third of the bytes of base64 JSON
            partial_transcripts=False,  # nobody reads partials on a kiosk
            voice=o.voice or m.UNSET,
            language=o.language or m.UNSET,
            instructions=m.UNSET if o.instructions is None else o.instructions,
            sampling=(
                m.Sampling(max_output_tokens=o.max_output_tokens)
                if o.max_output_tokens
                else m.UNSET
            ),
        )
        return m.SessionUpdate(session=config, event_id=self._event_id())

    def _send(self, msg: m.ClientMessage) -> None:
        self._out.append(m.encode(msg).decode())
        self._sent_since_tick = True

    def _event_id(self) -> str:
        return f"k_{next(self._ids)}"


def describe(event: KioskEvent) -> str:
    """One log line for a person."""
    match event:
        case Connected(session_id=sid, model=model, notice=notice):
            extra = f" ({notice})" if notice else ""
            return f"connected: session {sid}, model {model}{extra}"
        case UserTranscript(item_id=item, text=text):
            return f"heard {item}: {text!r}"
        case ReplyStarted(response_id=rid, latency_ms=lat):
            if lat is None:
                return f"{rid}: playing"
            return f"{rid}: latency {lat:.0f} ms (end of speech -> first reply audio, client clock)"
        case ReplyMetrics(response_id=rid, metrics=mt):
            parts = [
                f"{name} {value:.0f} ms"
                for name, value in (
                    ("transcript", mt.stt_final_ms),
                    ("first token", mt.first_token_ms),
                    ("first audio", mt.first_audio_ms),
                    ("total", mt.total_ms),
                )
                if value is not None
            ]
            return f"{rid}: server metrics from end of turn: {', '.join(parts) or 'none'}"
        case ReplyDone(
            response_id=rid, status=status, reason=reason, heard_text=heard, played_samples=played
        ):
            why = f" ({reason})" if reason else ""
            secs = played / limits.OUTPUT_RATE
            return f"{rid}: {status}{why}, {secs:.2f} s played: {heard!r}"
        case ServerError(code=code, message=message):
            return f"server error {code}: {message}"
        case Notice(text=text):
            return text
