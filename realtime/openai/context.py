"""What the OpenAI-compatible routes share: the server they run in and their own counters."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Protocol

from realtime.openai import limits
from realtime.openai.errors import APIError

if TYPE_CHECKING:
    from engine.llm import LLM
    from realtime.admission import AdmissionPolicy
    from realtime.pipeline import Conversation, Engines

__all__ = ["Context", "ServerView"]


class ConfigView(Protocol):
    @property
    def stt_model(self) -> str | None: ...
    @property
    def unembed_quant(self) -> str | None: ...


class ServerView(Protocol):
    """What the routes use of the server (`realtime.server.RealtimeServer`)."""

    @property
    def engines(self) -> Engines: ...
    @property
    def config(self) -> ConfigView: ...
    @property
    def draining(self) -> bool: ...
    @property
    def admission(self) -> AdmissionPolicy: ...
    @property
    def conversations(self) -> Collection[Conversation]: ...
    def model_swapped(self, model_id: str) -> None:
        """The LLM now runs `model_id`: what the server reports of it follows."""


class Context:
    """One per server. Not thread-safe: the routes run on the server's loop.

    `generations`: chat completions running now (a model swap waits for none, see
    `manage`); `speech_busy`: a /v1/audio/speech request is streaming (one at a time per TTS
    engine over the network, as the SDK's rules say; another gets 429).
    """

    def __init__(self, server: ServerView) -> None:
        self.server = server
        self.generations = 0
        self.speech_busy = False
        self.swapping = False

    @property
    def llm(self) -> LLM:
        return self.server.engines.llm

    def admit(self) -> None:
        """The server's admission rules for one request: 503 while draining, 429 (with
        Retry-After) when the measured load refuses a new conversation, 503 while the LLM
        is being swapped."""
        server = self.server
        if server.draining:
            raise APIError(503, "the server is draining", code="admission_rejected")
        if self.swapping:
            raise APIError(
                503,
                "the LLM is being swapped; try again shortly",
                code="model_loading",
                retry_after_s=limits.RETRY_AFTER_S,
            )
        if not server.admission.admit(time.monotonic(), len(server.conversations)):
            raise APIError(
                429,
                "the server is busy; try later",
                code="admission_rejected",
                retry_after_s=limits.RETRY_AFTER_S,
            )

    @contextlib.contextmanager
    def generating(self) -> Iterator[None]:
        """Count a chat completion as running while inside."""
        self.generations += 1
        try:
            yield
        finally:
            self.generations -= 1

    def generation_running(self) -> bool:
        """A chat completion or a conversation's turn is running now."""
        turns = (c.turn_task for c in self.server.conversations)
        return self.generations > 0 or any(t is not None and not t.done() for t in turns)
