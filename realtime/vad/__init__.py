"""Voice activity detection (webrtcvad), as a sans-I/O segmenter.

Public surface: `VadSegmenter`, `VadConfig`, the events `SpeechStarted`, `SpeechAudio`,
`SpeechPaused`, `SpeechResumed`, `SpeechStopped` (union `VadEvent`), and `limits`. Bad settings raise `InvalidRequestError`.
"""

from __future__ import annotations

from realtime.vad import limits
from realtime.vad.segmenter import (
    SpeechAudio,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    VadConfig,
    VadEvent,
    VadSegmenter,
)

__all__ = [
    "SpeechAudio",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStopped",
    "VadConfig",
    "VadEvent",
    "VadSegmenter",
    "limits",
]
