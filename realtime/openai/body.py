"""Reading request bodies within a byte limit, and multipart forms from the bytes read.

`read_body` refuses a declared Content-Length over the limit before reading anything, and
counts a chunked body as it arrives: a client can make the server hold at most `limit` bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from realtime.openai.errors import APIError

__all__ = ["read_body", "read_form"]


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is over {limit} bytes", code="request_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; `APIError(413)` past `limit` bytes (declared or received)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError(400, "bad Content-Length", code="invalid_request")
        if int(declared) > limit:
            raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


@contextlib.asynccontextmanager
async def read_form(request: Request, limit: int) -> AsyncIterator[FormData]:
    """A multipart/form-data body (read within `limit`), its uploaded files closed on exit;
    `APIError(400)` when it is not one. Use as `async with read_form(...) as form:`."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise APIError(
            400,
            f"expected multipart/form-data, got {ctype or 'no content type'}",
            code="invalid_request",
        )
    body = await read_body(request, limit)

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        request.headers, chunks(), max_files=4, max_fields=32, max_part_size=limit
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise APIError(400, f"bad multipart body: {exc.message}", code="invalid_request") from exc
    try:
        yield form
    finally:
        await form.close()
