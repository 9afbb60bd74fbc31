"""Errors of the OpenAI-compatible routes, in OpenAI's JSON shape.

Every failure answers `{"error": {"message", "type", "code", "param"}}` with the status an
OpenAI client expects (its SDK raises `BadRequestError` for 400, `AuthenticationError` for
401, `NotFoundError` for 404, `ConflictError` for 409, `RateLimitError` for 429, ...).
`APIError` is raised inside a route and turned into that answer by the app's handler;
`from_bitvoice` maps the engine's typed errors (`engine.errors`) onto it.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from engine.errors import (
    AdmissionRejectedError,
    BitvoiceError,
    ComponentLifecycleError,
    ContextOverflowError,
    InvalidRequestError,
    SessionBusyError,
    SessionStaleError,
)
from realtime.openai import limits

__all__ = ["APIError", "from_bitvoice", "openai_error"]

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
}


class APIError(Exception):
    """A request refused with `status`; `code` is stable, `message` for people, `param` the
    request field at fault (None when none is)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    def response(self) -> JSONResponse:
        return openai_error(
            self.status,
            self.message,
            code=self.code,
            param=self.param,
            retry_after_s=self.retry_after_s,
        )


def openai_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    retry_after_s: float | None = None,
) -> JSONResponse:
    """The JSON answer for one error (`Retry-After` in whole seconds when given)."""
    body = {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "server_error"),
            "code": code,
            "param": param,
        }
    }
    headers = {"Cache-Control": "no-cache"}
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(retry_after_s)))
    return JSONResponse(body, status, headers=headers)


def from_bitvoice(exc: BitvoiceError) -> APIError:
    """The HTTP answer for an engine error: 400 for a bad request (a prompt past the context
    window too), 409 for a conflict with running work, 429 + Retry-After when busy, 503 when
    the engine is not running."""
    if isinstance(exc, ContextOverflowError):
        return APIError(400, exc.message, code="context_length_exceeded")
    if isinstance(exc, InvalidRequestError):
        return APIError(400, exc.message, code=exc.code)
    if isinstance(exc, AdmissionRejectedError | SessionBusyError):
        return APIError(429, exc.message, code=exc.code, retry_after_s=limits.RETRY_AFTER_S)
    if isinstance(exc, SessionStaleError):
        return APIError(409, exc.message, code=exc.code)
    if isinstance(exc, ComponentLifecycleError):
        return APIError(503, exc.message, code=exc.code)
    return APIError(500, exc.message, code=exc.code)
