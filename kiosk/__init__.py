"""`bitvoice kiosk`: a headless client of the realtime server for a box with a microphone and
a loudspeaker (or WAV files instead of them).

Same shape as the other packages: a sans-I/O core (`KioskCore`, with its `Player`) that
tests drive by plain calls, and thin I/O glue around it: `Kiosk` (the reconnecting
WebSocket), `DeviceAudio` (PortAudio through `sounddevice`, imported only when used),
`FileAudio` (WAV in, WAV out) and the terminal keys. Limits live in `kiosk.limits`, errors
in `kiosk.errors`.
"""

from __future__ import annotations

from kiosk import limits
from kiosk.core import (
    Connected,
    KioskCore,
    KioskEvent,
    Notice,
    ReplyDone,
    ReplyMetrics,
    ReplyStarted,
    ServerError,
    SessionOptions,
    UserTranscript,
    describe,
)
from kiosk.errors import (
    AudioDeviceError,
    ConversationTimeoutError,
    KioskError,
    ServerRefusedError,
    ServerUnreachableError,
)
from kiosk.player import Player, Pulled

__all__ = [
    "AudioDeviceError",
    "Connected",
    "ConversationTimeoutError",
    "KioskCore",
    "KioskError",
    "KioskEvent",
    "Notice",
    "Player",
    "Pulled",
    "ReplyDone",
    "ReplyMetrics",
    "ReplyStarted",
    "ServerError",
    "ServerRefusedError",
    "ServerUnreachableError",
    "SessionOptions",
    "UserTranscript",
    "describe",
    "limits",
]
