"""Every TTS limit in one place: output format, text and voice sizes, speed, buffers.

`MIN_SPEED` / `MAX_SPEED` and `validate_speed()` are the one owner of the speed range: other
packages (the realtime server) import them from here.
"""

from __future__ import annotations

from typing import Final

from engine.errors import InvalidRequestError

#: Output format of every session: 24 kHz mono signed 16-bit little-endian.
OUTPUT_RATE: Final = 24_000
#: Longest text one synthesis accepts.
MAX_TEXT_CHARS: Final = 5_000
# Text segmentation (segment.py).
#: Segments are sentence-sized; a longer sentence is split at a comma or a space.
SEGMENT_MAX_CHARS: Final = 220
#: A later sentence shorter than this joins the next one (pocket-tts dislikes 1-word bits).
SEGMENT_MIN_CHARS: Final = 12
#: The first segment is short so the first audio comes early (issue 15): it ends at the first
#: clause end once it holds this many words ...
FIRST_SEGMENT_MIN_WORDS: Final = 3
#: ... else at the first space once it holds this many words or characters (4 words / 28
#: chars instead of 6 / 40: 2B-shaped voice loop on 2 cores, p50 first audio 1110 -> 913 ms
#: together with a 90 ms speculative pause, fewer tokens to decode and less for Piper) ...
FIRST_SEGMENT_SOFT_WORDS: Final = 4
FIRST_SEGMENT_SOFT_CHARS: Final = 28
#: ... and it is never longer than this (only reached by very long words).
FIRST_SEGMENT_MAX_CHARS: Final = 90
#: Speed is a time-stretch factor: 2.0 plays twice as fast, 0.5 half as fast (pitch kept).
MIN_SPEED: Final = 0.5
MAX_SPEED: Final = 2.0
#: Synthesized audio (samples at 24 kHz, before the speed is applied) held between the
#: synthesis thread and the reader: synthesis runs at most this far ahead (backpressure; also
#: while paused). 3 s covers Piper's whole-sentence chunks and the next segment's start.
SPEECH_BUFFER_SAMPLES: Final = 3 * OUTPUT_RATE
#: Longest PCM chunk yielded (samples at 24 kHz): keeps wire frames and barge-in latency small.
MAX_CHUNK_SAMPLES: Final = 4_800
#: Voice names: ASCII letters and digits only, at most this long.
MAX_VOICE_NAME_LEN: Final = 64
#: A voice prompt (registration audio): bounds on its length after decoding.
MIN_VOICE_PROMPT_SECONDS: Final = 1.0
MAX_VOICE_PROMPT_SECONDS: Final = 60.0
#: The first this-many seconds of a prompt are used to build the voice state.
VOICE_PROMPT_USED_SECONDS: Final = 30.0
#: Custom voices kept at most (each state is a few MB in memory).
MAX_CUSTOM_VOICES: Final = 64

# WSOLA time-stretch (stretch.py), in seconds at the working rate.
#: Analysis/synthesis frame length.
STRETCH_FRAME_S: Final = 0.030
#: Search range either side of the nominal analysis position.
STRETCH_TOLERANCE_S: Final = 0.008


def validate_speed(speed: float | None) -> float:
    """None -> 1.0; else a number in [MIN_SPEED, MAX_SPEED], or `InvalidRequestError`."""
    if speed is None:
        return 1.0
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise InvalidRequestError(f"speed must be a number, got {speed!r}")
    if not MIN_SPEED <= float(speed) <= MAX_SPEED:
        raise InvalidRequestError(
            f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed!r}"
        )
    return float(speed)
