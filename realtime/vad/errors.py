"""VAD errors: bad settings are the public `InvalidRequestError` (code `invalid_request`)."""

from __future__ import annotations

from engine.errors import InvalidRequestError

__all__ = ["InvalidRequestError"]
