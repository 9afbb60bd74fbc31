"""Every TTS limit in one place: output format, text and voice sizes, speed, queues."""

from __future__ import annotations

from typing import Final

#: Output format of every session: 24 kHz mono signed 16-bit little-endian.
OUTPUT_RATE: Final = 24_000
#: Longest text one synthesis accepts.
MAX_TEXT_CHARS: Final = 5_000
#: Segments are sentence-sized; a longer sentence is split at a comma or a space.
SEGMENT_MAX_CHARS: Final = 220
#: The first segment is kept short so the first audio chunk comes early.
FIRST_SEGMENT_MAX_CHARS: Final = 90
#: Fragments shorter than this are merged into their neighbour (pocket-tts dislikes 1-word bits).
SEGMENT_MIN_CHARS: Final = 12
#: Speed is a time-stretch factor: 2.0 plays twice as fast, 0.5 half as fast (pitch kept).
MIN_SPEED: Final = 0.5
MAX_SPEED: Final = 2.0
#: PCM chunks buffered between the synthesis thread and the consumer (backpressure).
CHUNK_QUEUE_MAXSIZE: Final = 32
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
