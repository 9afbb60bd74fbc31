"""Events that `ChatSession.generate()` yields, in this order:
zero or more `ChatTokenEvent`, then one `ChatFinalTextEvent`, then one `ChatDoneEvent`."""

from __future__ import annotations

import msgspec

__all__ = ["ChatDoneEvent", "ChatEvent", "ChatFinalTextEvent", "ChatTokenEvent", "Usage"]


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts and timing of one assistant turn.

    prompt_tokens: tokens of the whole rendered prompt of this turn (history included).
    cached_tokens: of those, how many were already in the KV cache and not re-run.
    completion_tokens: tokens the model generated (the stop token excluded).
    time_to_first_token_s: from the call to the first generated token.
    tokens_per_second: completion tokens over the decode time (after the first token).
    finish_reason: "stop" (end-of-turn token), "length" (max_tokens or context full)
    or "cancelled".
    """

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = 0
    prefill_tokens: int = 0
    time_to_first_token_s: float | None = None
    tokens_per_second: float | None = None
    finish_reason: str = "stop"
    search_queries: tuple[str, ...] = ()


class ChatTokenEvent(msgspec.Struct, frozen=True, tag=True):
    """One decoded text increment; never splits a UTF-8 character."""

    text: str


class ChatFinalTextEvent(msgspec.Struct, frozen=True, tag=True):
    """The whole assistant reply of this turn (search markup removed)."""

    text: str


class ChatDoneEvent(msgspec.Struct, frozen=True, tag=True):
    """The turn is over; the session is idle again."""

    usage: Usage


ChatEvent = ChatTokenEvent | ChatFinalTextEvent | ChatDoneEvent
