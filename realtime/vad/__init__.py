"""Voice activity detection (webrtcvad), as a sans-I/O segmenter, with Silero VAD as the
barge-in gate's second opinion.

Public surface: `VadSegmenter`, `VadConfig`, the events `SpeechStarted`, `SpeechAudio`,
`SpeechPaused`, `SpeechResumed`, `SpeechStopped` (union `VadEvent`), `SpeechProbability` with
`load_speech_model`, and `limits`. Bad settings raise `InvalidRequestError`.
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
from realtime.vad.speech_model import SpeechProbability, load_speech_model

__all__ = [
    "SpeechAudio",
    "SpeechPaused",
    "SpeechProbability",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStopped",
    "VadConfig",
    "VadEvent",
    "VadSegmenter",
    "limits",
    "load_speech_model",
]
