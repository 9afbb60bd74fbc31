"""OpenAI-compatible REST routes on the realtime server's port.

`openai_routes(server)` returns the Starlette routes that `realtime.server` mounts beside the
WebSocket; the server's `_Gate` has already checked the token and the Origin. Every route
answers errors in OpenAI's shape (`realtime.openai.errors`). See realtime/PROTOCOL.md
("OpenAI compatibility") for what is supported and how it differs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.errors import BitvoiceError
from realtime.openai import audio, chat, manage
from realtime.openai.context import Context, ServerView
from realtime.openai.errors import APIError, from_bitvoice

__all__ = ["openai_routes"]

log = logging.getLogger("bitvoice.realtime")

Handler = Callable[[Context, Request], Awaitable[Response]]


def _endpoint(ctx: Context, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(ctx, request)
        except APIError as exc:
            return exc.response()
        except BitvoiceError as exc:
            return from_bitvoice(exc).response()
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return APIError(500, "internal error", code="internal_error").response()

    return endpoint


def openai_routes(server: ServerView) -> list[BaseRoute]:
    """The routes, bound to `server` (one `Context` shared by them)."""
    ctx = Context(server)
    table: list[tuple[str, Handler, str]] = [
        ("/v1/models", manage.list_models, "GET"),
        ("/v1/models/{model:path}", manage.get_model, "GET"),
        ("/v1/chat/completions", chat.chat_completions, "POST"),
        ("/v1/audio/transcriptions", audio.transcriptions, "POST"),
        ("/v1/audio/speech", audio.speech, "POST"),
        ("/v1/bitvoice/model", manage.load_model, "POST"),
        ("/v1/voices", manage.register_voice, "POST"),
        ("/v1/voices/{name}", manage.delete_voice, "DELETE"),
    ]
    return [Route(path, _endpoint(ctx, h), methods=[method]) for path, h, method in table]
