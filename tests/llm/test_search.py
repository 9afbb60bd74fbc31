from __future__ import annotations

import pytest
from fake_search_server import FakeBraveServer
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidRequestError
from engine.llm.search import (
    BraveProvider,
    SearchError,
    SearchResult,
    SearchTagScanner,
    format_results,
    make_provider,
)


async def test_brave_provider_against_loopback_server(brave: FakeBraveServer) -> None:
    results = await BraveProvider("test-key", brave.url).search("weather in Paris", 3)
    assert brave.queries == ["weather in Paris"]
    assert [r.title for r in results] == [f"Result {i} for weather in Paris" for i in range(3)]


async def test_brave_errors_become_search_errors(brave: FakeBraveServer) -> None:
    with pytest.raises(SearchError, match="HTTP 401"):
        await BraveProvider("wrong", brave.url).search("x", 1)
    with pytest.raises(SearchError, match="failed"):
        await BraveProvider("k", "http://127.0.0.1:9/nothing").search("x", 1)


def test_brave_needs_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEARCH_API_KEY", raising=False)
    with pytest.raises(InvalidRequestError, match="SEARCH_API_KEY"):
        make_provider("brave")
    monkeypatch.setenv("SEARCH_API_KEY", "k")
    assert make_provider("brave").name == "brave"
    with pytest.raises(InvalidRequestError, match="search_provider"):
        make_provider("bing")


def test_format_results() -> None:
    assert format_results("q", []) == 'No results for "q".'
    text = format_results("q", [SearchResult("T", "http://u", "S")])
    assert text.splitlines() == ['Results for "q":', "1. T (http://u): S"]


def scan(chunks: list[str]) -> tuple[str, str | None]:
    sc = SearchTagScanner()
    seen = []
    for c in chunks:
        vis, q = sc.feed(c)
        seen.append(vis)
        if q is not None:
            return "".join(seen), q
    seen.append(sc.flush())
    return "".join(seen), None


@settings(max_examples=100, deadline=None)
@given(
    before=st.text(alphabet="ab <>/sech", max_size=15),
    query=st.text(alphabet="abc xyz", min_size=1, max_size=10),
    cuts=st.lists(st.integers(0, 60), max_size=8),
)
def test_scanner_finds_the_query_however_the_text_is_split(
    before: str, query: str, cuts: list[int]
) -> None:
    if "<search>" in before:
        return
    text = f"{before}<search>{query}</search>tail"
    points = sorted({min(c, len(text)) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    visible, found = scan(chunks)
    assert found == query.strip()
    assert visible == before


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="ab <>/sech", max_size=30), st.integers(1, 5))
def test_scanner_shows_everything_when_there_is_no_tag(text: str, step: int) -> None:
    if "<search>" in text:
        return
    chunks = [text[i : i + step] for i in range(0, len(text), step)]
    assert scan(chunks) == (text, None)
