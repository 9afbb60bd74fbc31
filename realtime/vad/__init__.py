"""Voice activity detection (webrtcvad), as a sans-I/O segmenter.

Public surface: `VadSegmenter`, `VadConfig`, the events `SpeechStarted`, `SpeechAudio`,
`SpeechStopped` (union `VadEvent`), and `limits`. Bad settings raise `InvalidRequestError`.
"""

from __future__ import annotations

from realtime.vad import limits
from realtime.vad.segmenter import (
    SpeechAudio,
    SpeechStarted,
    SpeechStopped,
    VadConfig,
    VadEvent,
    VadSegmenter,
)

__all__ = [
    "SpeechAudio",
    "SpeechStarted",
    "SpeechStopped",
    "VadConfig",
    "VadEvent",
    "VadSegmenter",
    "limits",
]
