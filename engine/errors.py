"""Public error types of the bitvoice SDK.

Every error derives from `BitvoiceError` and carries a stable `code` (the same
string that a WebSocket `error` event carries) and a human message.
"""

from __future__ import annotations

__all__ = [
    "AdmissionRejectedError",
    "BitvoiceError",
    "ComponentLifecycleError",
    "ContextOverflowError",
    "InvalidRequestError",
    "ProgressTimeoutError",
    "SessionBusyError",
    "SessionClosedError",
    "SessionExhaustedError",
    "SessionStaleError",
]


class BitvoiceError(Exception):
    """Base class of every public bitvoice error."""

    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(BitvoiceError, ValueError):
    """Validation failed before any work started (bad argument, unknown model, bad audio)."""

    code = "invalid_request"


class AdmissionRejectedError(BitvoiceError):
    """The component or server is busy or draining and did not take the request."""

    code = "admission_rejected"


class ContextOverflowError(BitvoiceError):
    """The rendered prompt does not fit the model's context window."""

    code = "context_overflow"


class ProgressTimeoutError(BitvoiceError, TimeoutError):
    """A generation stopped making progress within its deadline."""

    code = "progress_timeout"


class SessionBusyError(BitvoiceError):
    """A session is single-consumer and already has an operation running."""

    code = "session_busy"


class SessionClosedError(BitvoiceError):
    """The session is closed (done) and cannot be reused."""

    code = "session_closed"


class SessionStaleError(BitvoiceError):
    """The session belongs to a model that has been swapped out."""

    code = "session_stale"


class SessionExhaustedError(BitvoiceError):
    """The session passed its lifetime token cap."""

    code = "session_exhausted"


class ComponentLifecycleError(BitvoiceError):
    """The component is not running (never started, stopped, or unavailable after a failed swap)."""

    code = "component_lifecycle"
