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

# --- VAD and turn-taking ---------------------------------------------------------------------
# Speech starts (and barge-in happens) after realtime.vad.limits.START_SPEECH_MS of voiced
# frames in a row. A turn ends after the session's silence_duration_ms of silence; after
# SPECULATIVE_PAUSE_MS of silence the server already starts the turn's work (STT, LLM, TTS),
# sending nothing until the end is confirmed and throwing it away if speech resumes.
# 90 ms (three VAD frames): measured against 150 on the 2B-shaped loop, first audio p50
# 1110 -> 913 ms together with a shorter first TTS segment; a speculation thrown away when
# speech resumes costs one Whisper decode, never a message.
SPECULATIVE_PAUSE_MS: Final = 90
# When set, a paused item whose transcript reads as a complete sentence or question ends
# after this much silence instead (realtime.input.looks_complete). Off (None) by default:
# Whisper punctuates fragments too, and on the pytest-audioeval clips joined or split at word
# gaps with a 600 ms pause, 540 ms would end 12 of 12 such turns against 6 of 12 at the
# default silence (8 of 12 before the VAD's energy check); a semantic end-of-turn check
# (the LLM's own) is what can make it safe.
COMPLETE_TURN_SILENCE_MS: Final[int | None] = None
# Speech over a playing reply holds it at once (realtime.bargein); it is a real barge-in when
# it goes on this long after its start (backchannels such as "mm-hmm", "yeah", "okay" are
# 250-700 ms; espeak-ng says "yeah" in 660), or when its transcript is more than
# BACKCHANNEL_MAX_WORDS acknowledging words. The reply is already silent from the hold on, so a
# longer limit costs the user nothing; it only decides when the held reply is dropped.
BACKCHANNEL_MAX_MS: Final = 1000
# The speech over a reply is transcribed once its speaker has been silent this long: shorter
# gaps fall inside words ("ye-ah" held twice at the 90 ms pause).
BARGE_IN_QUIET_MS: Final = 180
BACKCHANNEL_MAX_WORDS: Final = 3

# --- reply audio -------------------------------------------------------------------------------
AUDIO_FRAME_MS: Final = 40  # reply audio is sent in frames of this length
AUDIO_FRAME_SAMPLES: Final = OUTPUT_RATE * AUDIO_FRAME_MS // 1000
PLAYBACK_LEAD_MS: Final = 250  # how far ahead of real time the pacer may send
# reply frames a response remembers (1.2 s), to replay their echo reference after a hold
REPLAY_KEEP_FRAMES: Final = 30
PAUSE_POLL_S: Final = 0.02  # how often a paused pacer looks at the TTS session again
# LLM text deltas waiting for the TTS session. Speed, pause, the text segmenter and the
# session's own audio buffer belong to the TTS session (engine.tts); while it is paused it stops
# pulling text, and the LLM stops once this queue is full.
TOKEN_QUEUE: Final = 64

# --- connections ---------------------------------------------------------------------------------
DEFAULT_MAX_CONVERSATIONS: Final = 8  # default for --max-conversations (the hard cap)
DEFAULT_IDLE_TIMEOUT_S: Final = 300.0  # default for --idle-timeout
DEFAULT_MAX_SESSION_S: Final = 3600.0  # default for --max-session
DRAIN_TIMEOUT_S: Final = 10.0  # SIGTERM: how long running turns may finish
TURN_CANCEL_TIMEOUT_S: Final = 5.0  # how long a cancelled turn may take to unwind
CLOSE_TIMEOUT_S: Final = 2.0  # websockets close handshake
PING_INTERVAL_S: Final = 20.0  # websockets keepalive
# A client that does not read: its outgoing queue is bounded in bytes (replies to its own
# pings count too), and one send may wait at most SEND_TIMEOUT_S for the socket to drain; past
# either, the connection is closed (1008) and its slot freed.
MAX_OUTGOING_BYTES: Final = 2 * 1024 * 1024
SEND_TIMEOUT_S: Final = 10.0
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
PARTIAL_MIN_AUDIO_S: Final = 0.6  # no partial of less audio than this
PARTIAL_MIN_NEW_AUDIO_S: Final = 0.3  # nor before this much audio came since the last one
# transcribers kept for items that ended but were not answered yet (queued turns)
MAX_ITEM_STREAMS: Final = 4
PARTIAL_MAX_DUTY: Final = 0.5
DECODE_EMA_ALPHA: Final = 0.3  # weight of the newest decode time in the running estimate
STT_WARMUP_S: Final = 1.0  # silence decoded once at start: warms Whisper, seeds the estimate

#: Whisper's language detection must be at least this sure before a
#: conversation keeps the detected language for its later turns.
STICKY_LANGUAGE_PROBABILITY: Final = 0.8
