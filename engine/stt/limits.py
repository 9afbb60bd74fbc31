"""Every STT limit in one place: rates, sizes, queueing and streaming cadence."""

from __future__ import annotations

from typing import Final

#: Whisper's input rate; raw PCM input must already be at this rate.
SAMPLE_RATE: Final = 16_000
#: Longest utterance one `transcribe()` accepts (Whisper windows are 30 s; we allow several).
MAX_AUDIO_SECONDS: Final = 300.0
#: Longest language code accepted ("en", "pt", "zh-Hans"...).
MAX_LANGUAGE_LEN: Final = 16
#: Decoding beam: greedy keeps the CPU latency down; base still meets our WER bound.
BEAM_SIZE: Final = 1
#: CTranslate2 compute type on CPU.
COMPUTE_TYPE: Final = "int8"

# Encoder window (issue 15): see `engine.stt.whisper` for the decode path these steer.
#: `STT(encoder_window=...)`: "auto" = short window with guards and full-window fallback,
#: "full" = always Whisper's 30 s window (faster-whisper's own path).
ENCODER_WINDOWS: Final = ("auto", "full")
DEFAULT_ENCODER_WINDOW: Final = "auto"
#: Whisper's window: 30 s of audio is 3000 mel frames (10 ms hop).
WHISPER_WINDOW_FRAMES: Final = 3000
#: Whisper's decoder positions (prompt + transcript).
WHISPER_MAX_LENGTH: Final = 448
#: Silence appended before a short-window encode, and the least window encoded. Measured on
#: the pytest-audioeval clips and espeak-ng sentences (0.8-10 s): with 0.5 s of padding alone
#: 2 of 7 tiny.en and 3 of 19 base decodes looped; with a 10 s floor none looped.
SHORT_PAD_S: Final = 0.5
SHORT_MIN_WINDOW_S: Final = 10.0
#: Audio longer than this takes the full window (one short window must hold audio + pad).
SHORT_MAX_SAMPLES: Final = int((WHISPER_WINDOW_FRAMES / 100 - SHORT_PAD_S) * SAMPLE_RATE)
#: Token budget of a short-window decode: `TOKENS_PER_SECOND` * seconds + `TOKENS_BASE`.
#: Fast counting ("1, 2, 3, ...") takes ~7 tokens/s, Polish ~10; a transcript that reaches
#: the budget is a loop and falls back to the full window.
SHORT_TOKENS_PER_SECOND: Final = 12.0
SHORT_TOKENS_BASE: Final = 10
#: Below this detected-language probability the short window is refused (the full window
#: detects on 30 s of context). faster-whisper's own threshold is 0.5.
SHORT_LANGUAGE_MIN_PROBABILITY: Final = 0.5
#: faster-whisper's defaults: a decode below this average log-probability is unreliable...
LOG_PROB_THRESHOLD: Final = -1.0
#: ...unless the no-speech probability is above this: then it is silence (empty text).
NO_SPEECH_THRESHOLD: Final = 0.6
#: Repetition check on scripts without spaces: zlib ratio above this (faster-whisper: 2.4),
#: on texts of at least this many bytes.
SHORT_COMPRESSION_RATIO_MAX: Final = 2.4
SHORT_COMPRESSION_MIN_BYTES: Final = 24

# Streaming (realtime) transcription.
#: Minimum seconds between two partial re-decodes of the growing buffer.
PARTIAL_INTERVAL_S: Final = 0.6
#: A partial needs at least this much new audio since the previous one.
PARTIAL_MIN_NEW_AUDIO_S: Final = 0.3
#: A partial re-decodes at most this many trailing seconds (bounds the cost per partial).
PARTIAL_WINDOW_S: Final = 20.0
#: Audio shorter than this is not worth a partial (Whisper hallucinates on tiny clips).
PARTIAL_MIN_AUDIO_S: Final = 0.5
#: A streaming turn holds at most this much audio; older audio beyond it is refused.
STREAM_MAX_SECONDS: Final = 120.0
