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
