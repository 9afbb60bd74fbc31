"""VAD limits: the frame sizes and ranges webrtcvad accepts."""

from __future__ import annotations

from typing import Final

SAMPLE_RATE: Final = 16_000
FRAME_MS_CHOICES: Final = (10, 20, 30)
AGGRESSIVENESS_RANGE: Final = (0, 3)
# Consecutive voiced frames (at any frame size, converted from ms) needed to start speech.
START_SPEECH_MS: Final = 90
MAX_PREFIX_PADDING_MS: Final = 2000
# Inside a turn, a frame this far below the turn's loudest frame counts as silence even when
# webrtcvad calls it voiced (its hangover on the fading tail of a word; see the segmenter).
END_DROP_DB: Final = 35.0
