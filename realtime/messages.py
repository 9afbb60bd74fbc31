"""The realtime wire schema: every client and server message, one encoder, two decoders.

Every JSON message is a `msgspec.Struct(frozen=True, tag_field="type")` and belongs to one of
two tagged unions: `ClientMessage` (browser -> server) and `ServerMessage` (server -> browser).
Names follow the OpenAI Realtime API (GA) where the meaning is the same; our extensions live
under the `bitvoice.` namespace. `realtime/PROTOCOL.md` documents each one with an example.

Audio travels outside JSON:

- Microphone audio: a binary WebSocket frame is raw PCM16 LE mono 16 kHz, no header
  (`input_audio_buffer.append` with base64 carries the same bytes for clients that cannot send
  binary frames).
- Reply audio: a binary WebSocket frame is `AUDIO_HEADER` (12 bytes, little-endian) followed by
  PCM16 LE mono 24 kHz. See `pack_audio_frame` / `unpack_audio_frame`.

Calling contract: `decode_client(data)` returns a `ClientMessage` or raises `WireError` with a
stable `code` (`invalid_json`, `unknown_type`, `invalid_field`) and the client's `event_id`
when one could be read, so the error event can echo it.
"""

from __future__ import annotations

import logging
import re
import struct
from typing import Annotated, Final, Literal, NoReturn

import msgspec
from msgspec import UNSET, UnsetType

from engine.tts import limits as tts_limits  # the speed range has one owner: the TTS session

log = logging.getLogger("bitvoice.realtime")

__all__ = [
    "AUDIO_FRAME_KIND",
    "AUDIO_HEADER",
    "AUDIO_HEADER_SIZE",
    "AUDIO_MAGIC",
    "AUDIO_VERSION",
    "ERROR_CODES",
    "OPENAI_VOICES",
    "UNSET",
    "AudioConfig",
    "AudioFormat",
    "AudioFrame",
    "AudioInputConfig",
    "AudioOutputConfig",
    "Backchannel",
    "ClientMessage",
    "ConversationItem",
    "ConversationItemAdded",
    "ConversationItemCreate",
    "ConversationItemDone",
    "ConversationItemInputAudioTranscriptionCompleted",
    "ConversationItemInputAudioTranscriptionDelta",
    "ConversationItemTruncate",
    "ConversationItemTruncated",
    "Error",
    "ErrorInfo",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCleared",
    "InputAudioBufferCommit",
    "InputAudioBufferCommitted",
    "InputAudioBufferSpeechStarted",
    "InputAudioBufferSpeechStopped",
    "ItemContent",
    "ItemInfo",
    "Metrics",
    "Pause",
    "Paused",
    "Ping",
    "Playback",
    "Pong",
    "ResponseCancel",
    "ResponseCreate",
    "ResponseCreated",
    "ResponseDone",
    "ResponseInfo",
    "ResponseOutputAudioDelta",
    "ResponseOutputAudioDone",
    "ResponseOutputAudioFlush",
    "ResponseOutputAudioHold",
    "ResponseOutputAudioRelease",
    "ResponseOutputAudioTranscriptDelta",
    "ResponseOutputItemAdded",
    "ResponseOutputItemDone",
    "ResponseOutputTextDelta",
    "Resume",
    "Resumed",
    "Sampling",
    "ServerMessage",
    "SessionClose",
    "SessionCreated",
    "SessionState",
    "SessionUpdate",
    "SessionUpdateConfig",
    "SessionUpdated",
    "SetSpeed",
    "SpeedSet",
    "TurnDetection",
    "TurnMetrics",
    "UnsetType",
    "WireError",
    "assistant_item_id",
    "decode_client",
    "decode_server",
    "encode",
    "pack_audio_frame",
    "response_id_for",
    "turn_of_response_id",
    "unpack_audio_frame",
]

# OpenAI's voice names: a session or a speech request naming one gets the server's default
# voice (realtime/PROTOCOL.md, "OpenAI compatibility").
OPENAI_VOICES: Final = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)

# --- field types with their ranges (validated by the decoder, so a bad value is an
# `invalid_field` error before any work starts) --------------------------------------------

EventId = Annotated[str, msgspec.Meta(max_length=64)]
Speed = Annotated[float, msgspec.Meta(ge=tts_limits.MIN_SPEED, le=tts_limits.MAX_SPEED)]
VoiceName = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9]+$", min_length=1, max_length=64)]
Language = Annotated[str, msgspec.Meta(pattern="^[A-Za-z-]+$", min_length=1, max_length=16)]
Instructions = Annotated[str, msgspec.Meta(max_length=8000)]
Aggressiveness = Annotated[int, msgspec.Meta(ge=0, le=3)]
FrameMs = Literal[10, 20, 30]
PaddingMs = Annotated[int, msgspec.Meta(ge=0, le=2000)]
SilenceMs = Annotated[int, msgspec.Meta(ge=100, le=5000)]
Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=4096)]
UserText = Annotated[str, msgspec.Meta(min_length=1, max_length=8000)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]


class _Msg(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=False):
    """Base of every message; each subclass sets its wire `tag`."""


class _Part(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Base of nested (untagged) objects."""


# --- nested objects --------------------------------------------------------------------------


class TurnDetection(_Part, frozen=True):
    """Server-side VAD settings. `null` in a session means manual turns (the client commits)."""

    type: Literal["server_vad"] = "server_vad"
    aggressiveness: Aggressiveness = 2  # webrtcvad mode 0 (least) .. 3 (most aggressive)
    frame_ms: FrameMs = 30  # webrtcvad frame: 10, 20 or 30 ms
    prefix_padding_ms: PaddingMs = 300  # audio kept before the detected speech start
    # trailing silence that ends a turn, counted from the end of the words (the VAD's energy
    # check drops webrtcvad's ~100 ms hangover, so 600 here ends turns where 500 did before)
    silence_duration_ms: SilenceMs = 600
    create_response: bool = True  # answer automatically when a turn ends
    interrupt_response: bool = True  # barge-in: speech while the assistant speaks cancels it


class Sampling(_Part, frozen=True):
    """LLM sampling settings (applied when the LLM session supports them)."""

    temperature: Temperature = 0.7
    top_p: TopP = 0.9
    max_output_tokens: MaxTokens = 256


class AudioFormat(_Part, frozen=True):
    """OpenAI GA `audio.*.format`: PCM16 only; input at 16 or 24 kHz (24 kHz is resampled),
    output at 24 kHz."""

    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[16000, 24000] = 24000


class AudioInputConfig(_Part, frozen=True):
    format: AudioFormat | UnsetType = UNSET
    turn_detection: TurnDetection | UnsetType | None = UNSET


class AudioOutputConfig(_Part, frozen=True):
    format: AudioFormat | UnsetType = UNSET
    voice: VoiceName | UnsetType = UNSET  # ours, or an OpenAI name (OPENAI_VOICES)
    speed: Speed | UnsetType = UNSET


class AudioConfig(_Part, frozen=True):
    """OpenAI GA `session.audio` (realtime.compat maps it onto the flat fields)."""

    input: AudioInputConfig | UnsetType = UNSET
    output: AudioOutputConfig | UnsetType = UNSET


class SessionUpdateConfig(_Part, frozen=True):
    """A partial session: only the fields present change. `type`, `output_modalities` and
    `audio` are OpenAI's GA shape, mapped by `realtime.compat.session_changes`."""

    voice: VoiceName | UnsetType = UNSET
    speed: Speed | UnsetType = UNSET
    language: Language | UnsetType | None = UNSET
    instructions: Instructions | UnsetType = UNSET
    turn_detection: TurnDetection | UnsetType | None = UNSET
    sampling: Sampling | UnsetType = UNSET
    output_audio_transport: Literal["binary", "json"] | UnsetType = UNSET
    partial_transcripts: bool | UnsetType = UNSET
    echo_cancellation: bool | UnsetType = UNSET
    type: Literal["realtime"] | UnsetType = UNSET
    output_modalities: list[Literal["audio", "text"]] | UnsetType = UNSET
    audio: AudioConfig | UnsetType = UNSET


class SessionState(_Part, frozen=True):
    """The whole session as the server holds it (sent in `session.created` / `session.updated`)."""

    id: str
    voice: str | None = None
    speed: float = 1.0
    language: str | None = None
    instructions: str = ""
    turn_detection: TurnDetection | None = TurnDetection()
    sampling: Sampling = Sampling()
    output_audio_transport: Literal["binary", "json"] = "binary"
    partial_transcripts: bool = True
    # the server takes the reply's echo out of the microphone audio (off: the client's own
    # echo cancellation is trusted, e.g. a browser with good AEC or headphones)
    echo_cancellation: bool = True
    input_audio_format: str = "pcm16le/16000/mono"  # or pcm16le/24000/mono (resampled)
    output_audio_format: str = "pcm16le/24000/mono"
    # "realtime": the client speaks OpenAI's GA shape (see realtime.compat): reply audio as
    # base64 `delta`, and the conversation item events
    type: Literal["bitvoice", "realtime"] = "bitvoice"
    model: str = ""
    started: bool = False
    notice: str | None = None  # e.g. the demo model says its replies have no meaning


class ErrorInfo(_Part, frozen=True):
    """`code` is stable (see ERROR_CODES); `event_id` echoes the client event that failed."""

    code: str
    message: str
    type: str = "invalid_request_error"
    event_id: str | None = None


class ResponseInfo(_Part, frozen=True):
    """A response as `response.created` / `response.done` report it.

    `status`: in_progress | completed | cancelled | failed. `reason` (when not completed):
    turn_detected (barge-in), client_cancelled, session_update, disconnected, error.
    `heard_text` is what the user actually heard; it is what the history keeps.
    """

    id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"] = "in_progress"
    reason: str | None = None
    output_text: str = ""
    heard_text: str = ""
    audio_samples: int = 0
    played_samples: int = 0


class TurnMetrics(_Part, frozen=True):
    """Per-stage latency of one turn, in milliseconds from the end of user speech.

    The zero is the end of the user's turn: the VAD's end-of-turn decision (or the commit /
    response.create time in manual mode). A stage that did not happen is null. A stage may be
    negative: the server starts a turn's work speculatively at a short pause, before the end
    of the turn is confirmed (`turn_start_ms` < 0 then), and sends nothing until it is.
    """

    stt_final_ms: float | None = None
    first_token_ms: float | None = None
    first_sentence_ms: float | None = None  # the first sentence went to TTS
    tts_first_chunk_ms: float | None = None  # TTS produced the first chunk of audio
    first_audio_ms: float | None = None  # the first reply audio frame was sent
    total_ms: float | None = None
    stt_audio_ms: float | None = None  # length of the user audio that was transcribed
    prompt_tokens: int | None = None
    # of the prompt, tokens already in the conversation's KV cache (not run again): the
    # history, warmed while the conversation was idle
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None
    turn_start_ms: float | None = None  # the turn's work began (negative: speculatively)


# --- client -> server --------------------------------------------------------------------------


class SessionUpdate(_Msg, frozen=True, tag="session.update"):
    """Change session settings; the first one starts the session (audio is refused before)."""

    session: SessionUpdateConfig = SessionUpdateConfig()
    event_id: EventId | None = None


class InputAudioBufferAppend(_Msg, frozen=True, tag="input_audio_buffer.append"):
    """Base64 PCM16 LE mono 16 kHz microphone audio (same as a binary frame)."""

    audio: str
    event_id: EventId | None = None


class InputAudioBufferCommit(_Msg, frozen=True, tag="input_audio_buffer.commit"):
    """Manual turn end: the buffered audio becomes a user turn."""

    event_id: EventId | None = None


class InputAudioBufferClear(_Msg, frozen=True, tag="input_audio_buffer.clear"):
    """Drop the buffered, uncommitted microphone audio."""

    event_id: EventId | None = None


class ResponseCreate(_Msg, frozen=True, tag="response.create"):
    """Start a response. `input_text` (extension) adds a typed user message first."""

    input_text: UserText | None = None
    event_id: EventId | None = None


class ResponseCancel(_Msg, frozen=True, tag="response.cancel"):
    """Cancel the running response now: LLM, TTS and queued audio."""

    event_id: EventId | None = None


class SessionClose(_Msg, frozen=True, tag="bitvoice.close"):
    """Same effect as `response.cancel` (cancels the turn); the connection stays open."""

    event_id: EventId | None = None


class SetSpeed(_Msg, frozen=True, tag="bitvoice.set_speed"):
    """Speaking rate, applied live to audio not yet sent (pitch kept)."""

    speed: Speed
    event_id: EventId | None = None


class Pause(_Msg, frozen=True, tag="bitvoice.pause"):
    """Stop sending reply audio (kept, not lost); generation stops once a small buffer fills."""

    event_id: EventId | None = None


class Resume(_Msg, frozen=True, tag="bitvoice.resume"):
    """Continue sending reply audio from the exact sample where it paused."""

    event_id: EventId | None = None


class Playback(_Msg, frozen=True, tag="bitvoice.playback"):
    """Optional report of how many samples of `response_id` the client has played."""

    response_id: str
    played_samples: NonNegInt
    event_id: EventId | None = None


class Ping(_Msg, frozen=True, tag="bitvoice.ping"):
    """Round-trip probe; answered by `bitvoice.pong` on the control path."""

    event_id: EventId | None = None


class ItemContent(_Part, frozen=True):
    """One content part of a conversation item (OpenAI's shape)."""

    type: Literal["input_text", "input_audio", "text", "output_text", "output_audio"]
    text: str | None = None
    audio: str | None = None  # input_audio: base64 PCM16 at the session's input rate
    transcript: str | None = None


class ConversationItem(_Part, frozen=True):
    """A conversation item as a client creates it (a user message)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"] = "user"
    content: list[ItemContent] = []
    id: EventId | None = None


class ConversationItemCreate(_Msg, frozen=True, tag="conversation.item.create"):
    """Add a user message (text, or base64 audio); the next `response.create` answers it."""

    item: ConversationItem
    previous_item_id: str | None = None
    event_id: EventId | None = None


class ConversationItemTruncate(_Msg, frozen=True, tag="conversation.item.truncate"):
    """The user heard only `audio_end_ms` of an assistant item: the history keeps the words
    heard up to there (the same heard-text rule as a barge-in)."""

    item_id: str
    audio_end_ms: NonNegInt
    content_index: NonNegInt = 0
    event_id: EventId | None = None


ClientMessage = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ResponseCreate
    | ResponseCancel
    | SessionClose
    | SetSpeed
    | Pause
    | Resume
    | Playback
    | Ping
    | ConversationItemCreate
    | ConversationItemTruncate
)

# --- server -> client --------------------------------------------------------------------------


class SessionCreated(_Msg, frozen=True, tag="session.created"):
    session: SessionState
    event_id: str = ""


class SessionUpdated(_Msg, frozen=True, tag="session.updated"):
    session: SessionState
    event_id: str = ""


class Error(_Msg, frozen=True, tag="error"):
    error: ErrorInfo
    event_id: str = ""


class InputAudioBufferSpeechStarted(_Msg, frozen=True, tag="input_audio_buffer.speech_started"):
    item_id: str
    audio_start_ms: int
    event_id: str = ""


class InputAudioBufferSpeechStopped(_Msg, frozen=True, tag="input_audio_buffer.speech_stopped"):
    item_id: str
    audio_end_ms: int
    event_id: str = ""


class InputAudioBufferCommitted(_Msg, frozen=True, tag="input_audio_buffer.committed"):
    item_id: str
    event_id: str = ""


class InputAudioBufferCleared(_Msg, frozen=True, tag="input_audio_buffer.cleared"):
    event_id: str = ""


class ConversationItemInputAudioTranscriptionDelta(
    _Msg, frozen=True, tag="conversation.item.input_audio_transcription.delta"
):
    """A partial transcript; `delta` replaces the previous partial of the item (not appended)."""

    item_id: str
    delta: str
    event_id: str = ""


class ConversationItemInputAudioTranscriptionCompleted(
    _Msg, frozen=True, tag="conversation.item.input_audio_transcription.completed"
):
    item_id: str
    transcript: str
    event_id: str = ""


class ResponseCreated(_Msg, frozen=True, tag="response.created"):
    response: ResponseInfo
    event_id: str = ""


class ResponseOutputTextDelta(_Msg, frozen=True, tag="response.output_text.delta"):
    """LLM text as it streams (ahead of the audio)."""

    response_id: str
    delta: str
    event_id: str = ""


class ResponseOutputAudioTranscriptDelta(
    _Msg, frozen=True, tag="response.output_audio_transcript.delta"
):
    """The text of the audio segment that starts at sample `offset` (sent before its audio)."""

    response_id: str
    delta: str
    offset: int = 0
    event_id: str = ""


class ResponseOutputAudioDelta(_Msg, frozen=True, tag="response.output_audio.delta"):
    """Reply audio as JSON (only when the session chose `output_audio_transport: "json"`).
    The base64 PCM16 LE mono 24 kHz is in `audio`, or in `delta` (and `item_id` set) for a
    session in OpenAI's shape (`type: "realtime"`)."""

    response_id: str
    offset: int
    audio: str | UnsetType = UNSET
    delta: str | UnsetType = UNSET
    item_id: str | UnsetType = UNSET
    output_index: int = 0
    content_index: int = 0
    event_id: str = ""


class ResponseOutputAudioDone(_Msg, frozen=True, tag="response.output_audio.done"):
    """Every audio sample of the response has been sent; `samples` is the total."""

    response_id: str
    samples: int
    event_id: str = ""


class ResponseOutputAudioFlush(_Msg, frozen=True, tag="bitvoice.audio.flush"):
    """Drop queued audio of `response_id` from sample `offset` on, and stop playing it now.

    Sent on barge-in and cancel. No frame of that response is sent afterwards.
    """

    response_id: str
    offset: int
    reason: str
    event_id: str = ""


class ResponseOutputAudioHold(_Msg, frozen=True, tag="bitvoice.audio.hold"):
    """The user may be speaking over the reply: stop playing `response_id` now and keep its
    queued audio from sample `offset` on. `bitvoice.audio.release` plays it on from there (it
    was a backchannel such as "mm-hmm"); `bitvoice.audio.flush` drops it (a real barge-in)."""

    response_id: str
    offset: int
    reason: str = "speech_started"
    event_id: str = ""


class ResponseOutputAudioRelease(_Msg, frozen=True, tag="bitvoice.audio.release"):
    """Play the held reply on from sample `offset` (the same offset the hold gave)."""

    response_id: str
    offset: int
    event_id: str = ""


class Backchannel(_Msg, frozen=True, tag="bitvoice.backchannel"):
    """The user's item `item_id` was a backchannel ("mm-hmm", "okay") said over the reply: it
    is kept in the history with its `transcript` and not answered; the reply goes on."""

    item_id: str
    transcript: str
    event_id: str = ""


class ResponseDone(_Msg, frozen=True, tag="response.done"):
    response: ResponseInfo
    metrics: TurnMetrics = TurnMetrics()
    event_id: str = ""


class Paused(_Msg, frozen=True, tag="bitvoice.paused"):
    """Ack of `bitvoice.pause`; `offset` is the next sample that will be sent on resume."""

    response_id: str | None
    offset: int
    event_id: str = ""
    client_event_id: str | None = None


class Resumed(_Msg, frozen=True, tag="bitvoice.resumed"):
    response_id: str | None
    offset: int
    event_id: str = ""
    client_event_id: str | None = None


class SpeedSet(_Msg, frozen=True, tag="bitvoice.speed_set"):
    speed: float
    event_id: str = ""
    client_event_id: str | None = None


class Pong(_Msg, frozen=True, tag="bitvoice.pong"):
    client_event_id: str | None = None
    server_time_ms: float = 0.0
    event_id: str = ""


class Metrics(_Msg, frozen=True, tag="bitvoice.metrics"):
    """Per-turn latencies, sent just before `response.done` (which carries the same numbers)."""

    response_id: str
    metrics: TurnMetrics
    event_id: str = ""


class ItemInfo(_Part, frozen=True):
    """A conversation item as the server reports it (OpenAI's shape)."""

    id: str
    role: Literal["user", "assistant"]
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    content: list[ItemContent] = []
    type: Literal["message"] = "message"
    object: Literal["realtime.item"] = "realtime.item"


class ConversationItemAdded(_Msg, frozen=True, tag="conversation.item.added"):
    item: ItemInfo
    previous_item_id: str | None = None
    event_id: str = ""


class ConversationItemDone(_Msg, frozen=True, tag="conversation.item.done"):
    item: ItemInfo
    previous_item_id: str | None = None
    event_id: str = ""


class ConversationItemTruncated(_Msg, frozen=True, tag="conversation.item.truncated"):
    item_id: str
    audio_end_ms: int
    content_index: int = 0
    event_id: str = ""


class ResponseOutputItemAdded(_Msg, frozen=True, tag="response.output_item.added"):
    response_id: str
    item: ItemInfo
    output_index: int = 0
    event_id: str = ""


class ResponseOutputItemDone(_Msg, frozen=True, tag="response.output_item.done"):
    response_id: str
    item: ItemInfo
    output_index: int = 0
    event_id: str = ""


ServerMessage = (
    SessionCreated
    | SessionUpdated
    | Error
    | InputAudioBufferSpeechStarted
    | InputAudioBufferSpeechStopped
    | InputAudioBufferCommitted
    | InputAudioBufferCleared
    | ConversationItemInputAudioTranscriptionDelta
    | ConversationItemInputAudioTranscriptionCompleted
    | ResponseCreated
    | ResponseOutputTextDelta
    | ResponseOutputAudioTranscriptDelta
    | ResponseOutputAudioDelta
    | ResponseOutputAudioDone
    | ResponseOutputAudioFlush
    | ResponseOutputAudioHold
    | ResponseOutputAudioRelease
    | Backchannel
    | ResponseDone
    | Paused
    | Resumed
    | SpeedSet
    | Pong
    | Metrics
    | ConversationItemAdded
    | ConversationItemDone
    | ConversationItemTruncated
    | ResponseOutputItemAdded
    | ResponseOutputItemDone
)

# --- error codes -------------------------------------------------------------------------------

ERROR_CODES: Final[dict[str, str]] = {
    "invalid_json": "the text frame is not valid JSON (or not a JSON object)",
    "unknown_type": "the `type` field is missing or names no client message",
    "invalid_field": "a field has the wrong type or is out of range",
    "message_too_large": "a frame is larger than the server's limit",
    "session_not_started": "audio or a response before the first `session.update`",
    "audio_rate_exceeded": "the client sends audio faster than real time",
    "invalid_audio": "audio is not whole PCM16 samples or not valid base64",
    "unknown_voice": "session.update names a voice the server does not have",
    "unsupported_language": "session.update names a language the STT model cannot transcribe",
    "no_active_response": "cancel/pause target: there is no response running",
    "conversation_busy": "a response is already running",
    "empty_input": "commit or response with no audio/text to answer",
    "unauthorized": "missing or wrong token (HTTP 401 before the upgrade)",
    "origin_forbidden": "browser Origin not allowed (HTTP 403 before the upgrade)",
    "admission_rejected": "too many conversations or the server is draining",
    "idle_timeout": "no client message for too long; the server closes",
    "session_expired": "the session reached its maximum length; the server closes",
    "invalid_request": "engine.errors.InvalidRequestError",
    "context_overflow": "engine.errors.ContextOverflowError (history is reset)",
    "progress_timeout": "engine.errors.ProgressTimeoutError",
    "session_exhausted": "engine.errors.SessionExhaustedError (history is reset)",
    "component_lifecycle": "an engine is not running",
    "internal_error": "an unexpected server fault; the turn ends, the connection stays",
}


class WireError(Exception):
    """A client frame that could not be decoded; `code` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, event_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.event_id = event_id


# --- encoder / decoders, built once ------------------------------------------------------------


class _Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """Lenient view of a bad message, only to echo its `event_id` in the error."""

    event_id: str | None = None


_encoder: Final = msgspec.json.Encoder()
_client_decoder: Final[msgspec.json.Decoder[ClientMessage]] = msgspec.json.Decoder(ClientMessage)
_server_decoder: Final[msgspec.json.Decoder[ServerMessage]] = msgspec.json.Decoder(ServerMessage)
_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)


def encode(message: ServerMessage | ClientMessage) -> bytes:
    """JSON bytes of one message (its `type` tag included)."""
    return _encoder.encode(message)


def _event_id_of(data: bytes | str) -> str | None:
    try:
        env = _envelope_decoder.decode(data)
    except Exception:  # only to echo an id: any failure means "no id"
        return None
    return env.event_id if isinstance(env.event_id, str) else None


# Exception types from the decoder other than msgspec's own that were already logged: an
# unexpected one is a bug (ours or msgspec's), logged once with its traceback, not per frame
# (a client could otherwise fill the log).
_logged_unexpected: set[type[BaseException]] = set()


# No client message nests deeper than a few levels; deeper JSON is refused before decoding, so
# the answer does not depend on the interpreter's recursion limit (which a library may raise:
# then msgspec decoded 20,000 levels without complaint and the message passed as a ping).
MAX_JSON_NESTING: Final = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def _nesting_too_deep(data: bytes | str) -> bool:
    """Whether the JSON text nests arrays/objects deeper than MAX_JSON_NESTING (brackets inside
    strings do not count). Cheap for ordinary frames: only a frame with more brackets than the
    limit is scanned."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_NESTING:
        return False
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", raw)):
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > MAX_JSON_NESTING:
            return True
    return False


def decode_client(data: bytes | str) -> ClientMessage:
    """Decode one client text frame. Raises `WireError` (never anything else) on bad input.

    Every exception from the decoder becomes a `WireError`: nesting deeper than
    MAX_JSON_NESTING (checked first) or than the interpreter's recursion limit
    (`RecursionError`) is `invalid_json`; any other unexpected exception is `invalid_json`
    too and is logged once per exception type (it is a bug).
    """
    try:
        if _nesting_too_deep(data):
            _raise("invalid_json", f"malformed JSON: nested deeper than {MAX_JSON_NESTING}", None)
        return _decode_client(data)
    except WireError:
        raise
    except RecursionError:
        _raise("invalid_json", "malformed JSON: nested too deeply", None)
    except Exception as exc:  # the contract: only WireError leaves
        if type(exc) not in _logged_unexpected:
            _logged_unexpected.add(type(exc))
            log.error("unexpected %s decoding a client frame", type(exc).__name__, exc_info=exc)
        _raise("invalid_json", f"undecodable message ({type(exc).__name__})", None)


def _decode_client(data: bytes | str) -> ClientMessage:
    try:
        return _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        event_id = _event_id_of(data)
        if "`$.type`" in text or "missing required field `type`" in text:
            _raise("unknown_type", f"unknown message type: {text}", event_id)
        if text.startswith("Expected `object`"):
            _raise("invalid_json", f"a message must be a JSON object: {text}", event_id)
        _raise("invalid_field", text, event_id)
    except msgspec.DecodeError as exc:
        _raise("invalid_json", f"malformed JSON: {exc}", None)


def _raise(code: str, message: str, event_id: str | None) -> NoReturn:
    raise WireError(code, message, event_id)


def decode_server(data: bytes | str) -> ServerMessage:
    """Decode one server text frame (for clients and tests). Raises msgspec errors."""
    return _server_decoder.decode(data)


# --- reply audio frames ------------------------------------------------------------------------

AUDIO_MAGIC: Final = b"BV"
AUDIO_VERSION: Final = 1
AUDIO_FRAME_KIND: Final = 1  # 1 = reply audio PCM16 LE mono 24 kHz
# magic(2s) version(u8) kind(u8) turn(u32) offset(u32); 12 bytes keeps the PCM 2-byte aligned
AUDIO_HEADER: Final = struct.Struct("<2sBBII")
AUDIO_HEADER_SIZE: Final = AUDIO_HEADER.size


class AudioFrame(msgspec.Struct, frozen=True):
    """One reply audio frame: `turn` (response id `resp_<turn>`), first sample `offset`, PCM."""

    turn: int
    offset: int
    pcm: bytes


def response_id_for(turn: int) -> str:
    """The response id of a turn number (the binary header carries the number)."""
    return f"resp_{turn}"


def assistant_item_id(response_id: str) -> str:
    """The id of the assistant message item that a response produces (the item that
    `conversation.item.truncate` names)."""
    return f"item_{response_id}"


def turn_of_response_id(response_id: str) -> int | None:
    """Inverse of `response_id_for`; None for an id that is not ours."""
    prefix, _, num = response_id.partition("_")
    if prefix != "resp" or not num.isdigit():
        return None
    return int(num)


def pack_audio_frame(turn: int, offset: int, pcm: bytes) -> bytes:
    """Header + PCM. `offset` counts 24 kHz samples from the start of the response."""
    return AUDIO_HEADER.pack(AUDIO_MAGIC, AUDIO_VERSION, AUDIO_FRAME_KIND, turn, offset) + pcm


def unpack_audio_frame(frame: bytes) -> AudioFrame:
    """Parse a reply audio frame; raises ValueError when it is not one."""
    if len(frame) < AUDIO_HEADER_SIZE:
        raise ValueError("audio frame shorter than its header")
    magic, version, kind, turn, offset = AUDIO_HEADER.unpack_from(frame)
    if magic != AUDIO_MAGIC or version != AUDIO_VERSION or kind != AUDIO_FRAME_KIND:
        raise ValueError("not a bitvoice reply audio frame")
    if (len(frame) - AUDIO_HEADER_SIZE) % 2:
        raise ValueError("audio frame payload is not whole PCM16 samples")
    return AudioFrame(turn=turn, offset=offset, pcm=frame[AUDIO_HEADER_SIZE:])
