"""POST /v1/chat/completions on the server's LLM: one fresh `ChatSession` per request.

The messages before the last become the session's history (`append_message`); the last must
be the user's, and it is the turn generated. `developer` messages count as `system` ones.
Streamed as server-sent events (`data: {chunk}` ... `data: [DONE]`) when `stream` is set;
`usage` in the answer, and in a last chunk of the stream when
`stream_options.include_usage` is set. `stop` strings end the reply where they begin (not
included); the text that could still become one is held back until it cannot.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from engine.errors import BitvoiceError
from engine.llm import ChatDoneEvent, ChatTokenEvent
from engine.llm.session import ChatSession, ChatStream
from realtime.openai import limits
from realtime.openai.body import read_body
from realtime.openai.context import Context
from realtime.openai.errors import APIError, from_bitvoice
from realtime.openai.schema import ChatCompletionRequest, decode

__all__ = ["StopScanner", "chat_completions"]

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_STRINGS = 4  # as OpenAI's API


class StopScanner:
    """Cuts a streamed text at the first of `stops`. `feed(delta)` returns the text that is
    safe to emit now; `stopped` turns true once a stop string was seen (nothing after it is
    emitted). The longest tail that is a prefix of a stop string is held back until the next
    delta decides; `flush()` releases it at the end."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._held = ""

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        text = self._held + delta
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            self._held = ""
            return text[: min(cuts)]
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held


def _options(req: ChatCompletionRequest) -> dict[str, Any]:
    if req.n != 1:
        raise APIError(400, "only n=1 is supported", code="unsupported_value", param="n")
    if req.tools:
        raise APIError(400, "tools are not supported", code="unsupported_value", param="tools")
    opts: dict[str, Any] = {}
    max_tokens = req.max_completion_tokens or req.max_tokens
    for name, value in (
        ("max_tokens", max_tokens),
        ("temperature", req.temperature),
        ("top_p", req.top_p),
        ("seed", req.seed),
    ):
        if value is not None:
            opts[name] = value
    return opts


def _stops(req: ChatCompletionRequest) -> list[str]:
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stops) > MAX_STOP_STRINGS:
        raise APIError(
            400, f"at most {MAX_STOP_STRINGS} stop strings", code="invalid_value", param="stop"
        )
    return stops


def _prepare(session: ChatSession, req: ChatCompletionRequest) -> str:
    """Load the history into `session`; returns the last (user) message."""
    if not req.messages:
        raise APIError(400, "messages must not be empty", code="invalid_value", param="messages")
    for i, msg in enumerate(req.messages):
        if msg.role not in _ROLES:
            raise APIError(
                400,
                f"role {msg.role!r} is not supported (system, developer, user, assistant)",
                code="invalid_value",
                param=f"messages.[{i}].role",
            )
    *history, last = req.messages
    if last.role != "user":
        raise APIError(
            400, "the last message must be the user's", code="invalid_value", param="messages"
        )
    for msg in history:
        session.append_message(_ROLES[msg.role], msg.text())
    return last.text()


def _usage(done: ChatDoneEvent | None, prompt: int, increments: int) -> dict[str, int]:
    """OpenAI's usage; without the engine's own count (the reply was cut at a stop string)
    from the prompt counted before and the text increments received (one token each, but
    for a character split over tokens)."""
    if done is not None:
        u = done.usage
        p, c = u.prompt_tokens, u.completion_tokens
    else:
        p, c = prompt, increments
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finish_reason(done: ChatDoneEvent | None) -> str:
    if done is None:
        return "stop"  # a stop string
    return "length" if done.usage.finish_reason == "length" else "stop"


class _Turn:
    """One generation, as the two answer shapes read it."""

    def __init__(self, ctx: Context, req: ChatCompletionRequest) -> None:
        self.ctx = ctx
        self.req = req
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = ctx.llm.model_id
        self.done: ChatDoneEvent | None = None
        self.prompt_tokens = 0
        self.increments = 0

    async def deltas(self) -> AsyncIterator[str]:
        """The reply's text increments (cut at a stop string); sets `done` at the end."""
        scanner = StopScanner(_stops(self.req))
        opts = _options(self.req)
        with self.ctx.generating():  # until this generator ends or is closed
            async for text in self._deltas(scanner, opts):
                yield text

    async def _deltas(self, scanner: StopScanner, opts: dict[str, Any]) -> AsyncIterator[str]:
        async with self.ctx.llm.open_session() as session:
            user = _prepare(session, self.req)
            tok = self.ctx.llm.engine().tokenizer
            self.prompt_tokens = (
                max(len(session.history_tokens), 1)
                + len(tok.message("user", user))
                + len(tok.generation_prompt())
            )
            stream: ChatStream = session.generate(user, **opts)
            try:
                async for event in stream:
                    if isinstance(event, ChatTokenEvent):
                        self.increments += 1
                        text = scanner.feed(event.text)
                        if text:
                            yield text
                        if scanner.stopped:
                            return
                    elif isinstance(event, ChatDoneEvent):
                        self.done = event
                tail = scanner.flush()
                if tail:
                    yield tail
            finally:
                await stream.aclose()

    def usage(self) -> dict[str, int]:
        return _usage(self.done, self.prompt_tokens, self.increments)

    def chunk(self, delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"


async def _whole(turn: _Turn) -> Response:
    text = "".join([d async for d in turn.deltas()])
    return JSONResponse(
        {
            "id": turn.id,
            "object": "chat.completion",
            "created": turn.created,
            "model": turn.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": _finish_reason(turn.done),
                    "logprobs": None,
                }
            ],
            "usage": turn.usage(),
        }
    )


async def _events(turn: _Turn, first: str | None, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    opts = turn.req.stream_options
    include_usage = opts is not None and opts.include_usage
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    yield turn.chunk({"role": "assistant", "content": ""}, None, **extra)
    try:
        if first is not None:
            yield turn.chunk({"content": first}, None, **extra)
        async for text in rest:
            yield turn.chunk({"content": text}, None, **extra)
    except BitvoiceError as exc:  # the status is sent: the error goes in the stream
        err = from_bitvoice(exc)
        error = {"error": {"message": err.message, "type": "server_error", "code": err.code}}
        yield f"data: {json.dumps(error)}\n\n"
        return
    yield turn.chunk({}, _finish_reason(turn.done), **extra)
    if include_usage:
        body: dict[str, Any] = {
            "id": turn.id,
            "object": "chat.completion.chunk",
            "created": turn.created,
            "model": turn.model,
            "choices": [],
            "usage": turn.usage(),
        }
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


async def _streamed(turn: _Turn) -> Response:
    # the first increment is awaited here, so that a request the engine refuses (a prompt
    # too long, a bad option) still gets its error status instead of a stream
    deltas = turn.deltas()
    try:
        first: str | None = await anext(deltas)
    except StopAsyncIteration:
        first = None
    return StreamingResponse(
        _events(turn, first, deltas),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def chat_completions(ctx: Context, request: Request) -> Response:
    req = decode(await read_body(request, limits.MAX_JSON_BODY_BYTES), ChatCompletionRequest)
    if req.model != ctx.llm.model_id:
        raise APIError(
            404,
            f"the model {req.model!r} does not exist here; GET /v1/models lists {ctx.llm.model_id!r}",
            code="model_not_found",
            param="model",
        )
    ctx.admit()
    turn = _Turn(ctx, req)
    return await (_streamed(turn) if req.stream else _whole(turn))
