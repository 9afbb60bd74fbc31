"""The search harness end to end: real engine, a Brave-compatible provider served on
loopback. A random tiny model never writes a search tag by itself, so the test
makes its reply start with one (ChatSession._force_reply); those tokens still run
through the engine, and everything after the tag is the model's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_search_server import FakeBraveServer

from engine.errors import InvalidRequestError
from engine.llm import LLM, ChatDoneEvent, ChatFinalTextEvent, ChatTokenEvent
from engine.llm.search import BraveProvider


async def test_search_tag_runs_provider_and_continues(home: Path, brave: FakeBraveServer) -> None:
    llm = LLM(
        "local/tiny",
        harness_name="search",
        search_provider=BraveProvider("test-key", brave.url),
        search_token_budget=10_000,  # clamped to a quarter of the 256-token window
    )
    await llm.start()
    engine = llm.engine()
    assert engine.search_budget == 64
    async with llm.open_session() as s:
        s._force_reply("Let me check. <search>weather in Paris</search>")
        events = [e async for e in s.generate("Weather?", temperature=0.0, max_tokens=80)]
        done = events[-1]
        assert isinstance(done, ChatDoneEvent)
        assert brave.queries == ["weather in Paris"]
        assert done.usage.search_queries == ("weather in Paris",)
        final = events[-2]
        assert isinstance(final, ChatFinalTextEvent)
        shown = "".join(e.text for e in events if isinstance(e, ChatTokenEvent))
        assert shown == final.text
        assert final.text.startswith("Let me check. ")
        assert "<search>" not in final.text and "weather in Paris" not in final.text
        roles = [r for r, _ in s.messages]
        assert roles == ["user", "assistant", "search", "assistant"]
        search_text = s.messages[2][1]
        assert search_text.startswith('Results for "weather in Paris"')
        assert len(engine.tokenizer.encode(search_text)) <= 64
        # The continuation reused the cache: the next turn still only runs new tokens.
        nxt = [e async for e in s.generate("Thanks", temperature=0.0, max_tokens=4)][-1]
        assert isinstance(nxt, ChatDoneEvent)
        assert nxt.usage.cached_tokens > done.usage.prompt_tokens - 5
    await llm.stop()


async def test_provider_failure_is_reported_to_the_model(home: Path) -> None:
    llm = LLM(
        "local/tiny",
        harness_name="search",
        search_provider=BraveProvider("k", "http://127.0.0.1:9/none"),
    )
    await llm.start()
    async with llm.open_session() as s:
        s._force_reply("<search>x</search>")
        await s.collect("Q", temperature=0.0, max_tokens=40)
        assert s.messages[2][0] == "search"
        assert s.messages[2][1].startswith('Search for "x" failed')
    await llm.stop()


async def test_default_harness_shows_tags_verbatim(home: Path) -> None:
    llm = LLM("local/tiny")
    await llm.start()
    async with llm.open_session() as s:
        s._force_reply("<search>x</search>")
        text = await s.collect("Q", temperature=0.0, max_tokens=40)
        assert text.startswith("<search>x</search>")
    await llm.stop()


async def test_brave_without_key_fails_at_start(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEARCH_API_KEY", raising=False)
    assert "SEARCH_API_KEY" not in os.environ
    llm = LLM("local/tiny", harness_name="search", search_provider="brave")
    with pytest.raises(InvalidRequestError, match="SEARCH_API_KEY"):
        await llm.start()
