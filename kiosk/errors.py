"""Typed errors of the kiosk client; each carries the process exit code it ends with.

They derive from `engine.errors.BitvoiceError`, so `bitvoice kiosk` prints them as one line
like every other subcommand. Exit codes: 1 a failure, 2 a bad command line, 3 the server
refused this client (token or Origin: retrying cannot help, so a service manager should not
restart it in a loop; systemd's `RestartPreventExitStatus=3`), 130 interrupted.
"""

from __future__ import annotations

from engine.errors import BitvoiceError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_REFUSED",
    "AudioDeviceError",
    "ConversationTimeoutError",
    "KioskError",
    "ServerRefusedError",
    "ServerUnreachableError",
]

EXIT_FAILURE = 1
EXIT_REFUSED = 3


class KioskError(BitvoiceError):
    """Base of the kiosk's errors; `exit_code` is what the process exits with."""

    code = "kiosk_error"
    exit_code = EXIT_FAILURE


class ServerRefusedError(KioskError):
    """The server answered the upgrade with 401 (token) or 403 (Origin): do not retry."""

    code = "unauthorized"
    exit_code = EXIT_REFUSED


class ServerUnreachableError(KioskError):
    """No connection could be made within the retry time (`--retry-for`)."""

    code = "unreachable"


class AudioDeviceError(KioskError):
    """PortAudio is missing, or a device could not be found or opened."""

    code = "audio_device"


class ConversationTimeoutError(KioskError):
    """File mode: the conversation did not finish within `--max-wait` after the input."""

    code = "conversation_timeout"
