"""The LLM stage: a ternary BitNet model on bitvoice's C engine.

from engine.llm import LLM, ChatTokenEvent, ChatFinalTextEvent, ChatDoneEvent
"""

from __future__ import annotations

from engine.llm.component import LLM, LLMOptions
from engine.llm.events import ChatDoneEvent, ChatEvent, ChatFinalTextEvent, ChatTokenEvent, Usage
from engine.llm.sampling import SamplingOptions
from engine.llm.search import SearchProvider, SearchResult
from engine.llm.session import ChatSession, ChatStream

__all__ = [
    "LLM",
    "ChatDoneEvent",
    "ChatEvent",
    "ChatFinalTextEvent",
    "ChatSession",
    "ChatStream",
    "ChatTokenEvent",
    "LLMOptions",
    "SamplingOptions",
    "SearchProvider",
    "SearchResult",
    "Usage",
]
