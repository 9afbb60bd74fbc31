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
MEL_FRAMES_PER_SECOND: Final = 100
#: Whisper's decoder positions (prompt + transcript).
WHISPER_MAX_LENGTH: Final = 448
#: Padding (zero mel frames) after the audio in a short-window encode, and the least window
#: encoded. Measured on 10 short English utterances (0.5-2 s, espeak-ng and audioeval), the
#: decodes that looped or failed a guard, tiny.en / base: floor 0 s 8/7, 5 s 6/5, 10 s 2/0,
#: 30 s (the full window, same guards) 1/2. Padding with silent audio instead of zero frames:
#: 5 s 3/5, 10 s 1/2, and a worse WER on the joined clips (tiny.en 0.13-0.16 against 0.095).
SHORT_PAD_S: Final = 0.5
SHORT_MIN_WINDOW_S: Final = 10.0
#: Audio longer than this takes the full window (one short window must hold audio + pad).
SHORT_MAX_SAMPLES: Final = int(
    (WHISPER_WINDOW_FRAMES / MEL_FRAMES_PER_SECOND - SHORT_PAD_S) * SAMPLE_RATE
)
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

#: Coverage guard: with at least `SHORT_COVERAGE_MIN_VOICED_S` of voiced audio, a short-window
#: transcript of fewer than `SHORT_MIN_TOKENS_PER_VOICED_S` tokens per voiced second dropped
#: speech. Measured on the pytest-audioeval clips and pairs: complete transcripts take
#: 6.5-11.5 tokens per voiced second, the dropped ones 2.2 and 4.5 (the full window also
#: drops one clip at 4.5). Slow, careful speech may trip it: that costs a full decode only.
SHORT_COVERAGE_MIN_VOICED_S: Final = 1.5
SHORT_MIN_TOKENS_PER_VOICED_S: Final = 4.0
#: `voiced_seconds`: 20 ms frames within 20 dB of the loud (95th percentile) frames.
VOICED_FRAME_S: Final = 0.02
VOICED_RELATIVE_DB: Final = -20.0

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
