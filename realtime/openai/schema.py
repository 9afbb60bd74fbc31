"""The request bodies of the OpenAI-compatible routes, as typed msgspec structs.

Field names and types follow OpenAI's API reference; fields we do not act on are accepted and
ignored (an OpenAI client sends some by default, e.g. `n`, `user`), unless they ask for
something we cannot do (then the route refuses them with a 400 naming the field).
`decode(body, Type)` is the one decoder: msgspec's validation error becomes an `APIError`
whose `param` names the field at fault.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from realtime.openai.errors import APIError

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "ModelLoadRequest",
    "SpeechRequest",
    "StreamOptions",
    "decode",
]

T = TypeVar("T")


class ContentPart(msgspec.Struct, frozen=True):
    """One part of a message's content list; only `text` parts carry words we use."""

    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's words: its string, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, frozen=True):
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    tools: list[Any] | None = None
    user: str | None = None


class VoiceRef(msgspec.Struct, frozen=True):
    id: str


class SpeechRequest(msgspec.Struct, frozen=True):
    model: str
    input: str
    voice: str | VoiceRef
    response_format: str = "mp3"
    speed: float | None = None
    instructions: str | None = None
    stream_format: str | None = None


class ModelLoadRequest(msgspec.Struct, frozen=True):
    """POST /v1/bitvoice/model: the LLM store ID to swap in."""

    model: str


_PATH = re.compile(r"at `\$\.?([^`]*)`")


def decode(body: bytes, kind: type[T]) -> T:
    """`body` as a `kind`; `APIError(400)` naming the field for bad JSON, a missing field
    or a wrong type."""
    try:
        value: T = msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        where = _PATH.search(text)
        param = where.group(1) if where else None
        missing = re.search(r"missing required field `([^`]*)`", text)
        if missing:
            param = missing.group(1) if not param else f"{param}.{missing.group(1)}"
        raise APIError(400, text, code="invalid_value", param=param or None) from exc
    except msgspec.DecodeError as exc:
        raise APIError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    return value
