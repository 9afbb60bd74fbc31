"""Every limit of the realtime server in one place: sizes, rates, queue sizes, timeouts.

Values are named constants; the server's command line overrides the few marked "default".
"""

from __future__ import annotations

from typing import Final

# --- audio formats ---------------------------------------------------------------------------
INPUT_RATE: Final = 16_000  # microphone PCM16 LE mono
OUTPUT_RATE: Final = 24_000  # reply PCM16 LE mono
INPUT_BYTES_PER_SECOND: Final = INPUT_RATE * 2
OUTPUT_BYTES_PER_SECOND: Final = OUTPUT_RATE * 2

# --- message sizes ---------------------------------------------------------------------------
# A frame above MAX_MESSAGE_BYTES gets a `message_too_large` error and is dropped; the
# connection stays. websockets itself closes (1009) above HARD_MAX_FRAME_BYTES, so a client
# cannot make the server buffer unbounded data.
MAX_MESSAGE_BYTES: Final = 256 * 1024
HARD_MAX_FRAME_BYTES: Final = 1024 * 1024

# --- microphone rate ---------------------------------------------------------------------------
# Token bucket in seconds of audio: a client may burst AUDIO_BURST_S ahead, then at most
# AUDIO_RATE_FACTOR x real time. Excess audio is dropped with `audio_rate_exceeded` (at most one
# error per AUDIO_RATE_ERROR_INTERVAL_S so the error itself cannot flood).
AUDIO_BURST_S: Final = 2.0
AUDIO_RATE_FACTOR: Final = 1.5
AUDIO_RATE_ERROR_INTERVAL_S: Final = 1.0
# A user turn longer than this is cut and answered (Whisper's streaming cap is 120 s).
MAX_TURN_AUDIO_S: Final = 60.0

# --- VAD -------------------------------------------------------------------------------------
# Speech starts (and barge-in happens) after realtime.vad.limits.START_SPEECH_MS of voiced
# frames in a row, so a click or a short noise neither starts a turn nor interrupts.

# --- reply audio -------------------------------------------------------------------------------
AUDIO_FRAME_MS: Final = 40  # reply audio is sent in frames of this length
AUDIO_FRAME_SAMPLES: Final = OUTPUT_RATE * AUDIO_FRAME_MS // 1000
PLAYBACK_LEAD_MS: Final = 250  # how far ahead of real time the pacer may send
# TTS chunks (at most engine.tts.limits.MAX_CHUNK_SAMPLES = 200 ms each) buffered between TTS
# and the pacer: while paused, TTS (and then the LLM) stop once this is full ("pause stops
# generation once a small buffer is full").
AUDIO_QUEUE_CHUNKS: Final = 10  # <= 2 s
SENTENCE_QUEUE: Final = 4  # sentences waiting for TTS
TOKEN_QUEUE: Final = 64  # LLM text deltas waiting for the chunker
MIN_SEGMENT_CHARS: Final = 12  # a sentence shorter than this is joined with the next
MAX_SEGMENT_CHARS: Final = 220  # a run-on sentence is cut at a comma/space near this length
# The first segment of a reply is cut sooner: TTS time grows with the text, and the first audio
# waits for the whole first segment.
FIRST_SEGMENT_MAX_CHARS: Final = 60
SPEED_MIN: Final = 0.5
SPEED_MAX: Final = 2.0

# --- connections ---------------------------------------------------------------------------------
DEFAULT_MAX_CONVERSATIONS: Final = 8  # default for --max-conversations (the hard cap)
DEFAULT_IDLE_TIMEOUT_S: Final = 300.0  # default for --idle-timeout
DEFAULT_MAX_SESSION_S: Final = 3600.0  # default for --max-session
DRAIN_TIMEOUT_S: Final = 10.0  # SIGTERM: how long running turns may finish
TURN_CANCEL_TIMEOUT_S: Final = 5.0  # how long a cancelled turn may take to unwind
CLOSE_TIMEOUT_S: Final = 2.0  # websockets close handshake
PING_INTERVAL_S: Final = 20.0  # websockets keepalive
MAX_CONTROL_BACKLOG: Final = 256  # queued outgoing control messages before a slow client is cut
# Opening handshakes (TCP accepted, HTTP upgrade request not yet read) in progress at once: past
# this the oldest is dropped, so half-open connections cannot take every file descriptor and
# /healthz keeps answering. A handshake that takes longer than OPEN_TIMEOUT_S is dropped too.
DEFAULT_MAX_HANDSHAKES: Final = 128  # default for --max-handshakes
OPEN_TIMEOUT_S: Final = 5.0
STATIC_MAX_BYTES: Final = 8 * 1024 * 1024  # largest static file served
TRACE_MAX_EVENTS: Final = 4096  # per-conversation trace (ServerConfig.trace) keeps the newest

# --- admission (realtime.admission) -------------------------------------------------------------
# A new conversation is refused (`admission_rejected`, close 1013) when the measured load says the
# conversations already open would then miss this first-audio latency (end of speech -> first
# reply audio, at the ADMISSION_QUANTILE). The hard cap DEFAULT_MAX_CONVERSATIONS still applies.
DEFAULT_FIRST_AUDIO_BUDGET_S: Final = 1.5  # default for --first-audio-budget (0 = hard cap only)
ADMISSION_QUANTILE: Final = 0.9
ADMISSION_WINDOW_S: Final = 60.0  # observations older than this are forgotten
ADMISSION_MIN_TURNS: Final = 3  # fewer turns in the window: only the hard cap applies
ADMISSION_MAX_UTILIZATION: Final = 0.85  # never plan the engines busier than this
ADMISSION_TURN_LOAD_S: Final = 10.0  # a turn's latency is set against the load of these seconds
ADMISSION_MAX_SAMPLES: Final = 512  # observations kept (turns, load samples), newest first
LOAD_SAMPLE_INTERVAL_S: Final = 1.0  # how often the server measures how busy its engines are

# --- partial transcripts -----------------------------------------------------------------------
# A partial decode holds Whisper (one decode at a time, not interruptible), so a final transcript
# that arrives meanwhile waits behind it. A partial therefore starts only when the estimated
# decode time, times PARTIAL_SAFETY, fits in the silence the VAD still needs before it can end
# the turn; and partials take at most PARTIAL_MAX_DUTY of the STT engine's time.
PARTIAL_SAFETY: Final = 1.5
PARTIAL_MAX_DUTY: Final = 0.5
DECODE_EMA_ALPHA: Final = 0.3  # weight of the newest decode time in the running estimate
STT_WARMUP_S: Final = 1.0  # silence decoded once at start: warms Whisper, seeds the estimate

#: Whisper's language detection must be at least this sure before a
#: conversation keeps the detected language for its later turns.
STICKY_LANGUAGE_PROBABILITY: Final = 0.8
