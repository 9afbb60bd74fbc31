"""Echo handling: the assistant's own voice taken out of the microphone stream.

Public surface: `EchoCanceller` (WebRTC AEC3 over 10 ms frames), `PlayedReference` (the reply
audio on the microphone's timeline, from the playout model), `level_db`, and `limits`.
"""

from __future__ import annotations

from realtime.echo import limits
from realtime.echo.canceller import EchoCanceller, level_db
from realtime.echo.reference import PlayedReference

__all__ = ["EchoCanceller", "PlayedReference", "level_db", "limits"]
