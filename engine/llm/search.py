"""The search harness: providers, result formatting, and the `<search>` tag scanner.

A provider is anything with `name` and `async search(query, max_results)`;
`ddgs` (DuckDuckGo through the `ddgs` package) and `brave` (Brave's web search
API, key in `SEARCH_API_KEY`) ship here. The scanner is pure: it takes decoded
text increments and says what the user may see and when a query is complete.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol, runtime_checkable

import msgspec

from engine.errors import InvalidRequestError
from engine.llm import limits

__all__ = [
    "BraveProvider",
    "DDGSProvider",
    "SearchError",
    "SearchProvider",
    "SearchResult",
    "SearchTagScanner",
    "format_results",
    "make_provider",
]

OPEN_TAG = "<search>"
CLOSE_TAG = "</search>"
BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"


class SearchError(Exception):
    """A provider failed (network, HTTP status, bad payload). The harness turns it
    into a search message saying the search failed, so the turn goes on."""


class SearchResult(msgspec.Struct, frozen=True):
    title: str
    url: str
    snippet: str


@runtime_checkable
class SearchProvider(Protocol):
    """What the harness calls. Must not block the event loop."""

    name: str

    async def search(self, query: str, max_results: int) -> list[SearchResult]: ...


def _fetch_json(url: str, headers: dict[str, str]) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=limits.SEARCH_HTTP_TIMEOUT_S) as resp:
            body = resp.read(limits.SEARCH_MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise SearchError(f"search HTTP {exc.code} from {url.split('?')[0]}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SearchError(f"search request failed: {exc}") from None
    if len(body) > limits.SEARCH_MAX_RESPONSE_BYTES:
        raise SearchError("search response too large")
    try:
        return json.loads(body)
    except ValueError:
        raise SearchError("search response is not JSON") from None


class BraveProvider:
    """Brave Search web results. `base_url` can point at any server speaking the
    same API (tests use one on loopback)."""

    name = "brave"

    def __init__(self, api_key: str, base_url: str = BRAVE_URL) -> None:
        if not api_key:
            raise InvalidRequestError("the brave search provider needs SEARCH_API_KEY to be set")
        self._key = api_key
        self._url = base_url

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        params = urllib.parse.urlencode({"q": query, "count": max_results})
        data = await asyncio.to_thread(
            _fetch_json, f"{self._url}?{params}", {"X-Subscription-Token": self._key}
        )
        try:
            items = data["web"]["results"]
            return [
                SearchResult(
                    str(i.get("title", "")), str(i.get("url", "")), str(i.get("description", ""))
                )
                for i in items[:max_results]
            ]
        except (KeyError, TypeError, AttributeError):
            raise SearchError("unexpected brave response shape") from None


class DDGSProvider:
    """DuckDuckGo results through the `ddgs` package (an optional dependency:
    `pip install ddgs`); checked when the provider is made."""

    name = "ddgs"

    def __init__(self) -> None:
        try:
            # Imported by name: an optional package without type information.
            ddgs = importlib.import_module("ddgs")
        except ImportError:
            raise InvalidRequestError(
                "search provider 'ddgs' needs the ddgs package: pip install ddgs"
            ) from None
        self._cls: Any = ddgs.DDGS

    def _run(self, query: str, max_results: int) -> list[SearchResult]:
        try:
            rows = self._cls().text(query, max_results=max_results)
        except Exception as exc:  # ddgs raises its own exception tree
            raise SearchError(f"ddgs search failed: {exc}") from None
        return [
            SearchResult(str(r.get("title", "")), str(r.get("href", "")), str(r.get("body", "")))
            for r in rows or []
        ]

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        return await asyncio.to_thread(self._run, query, max_results)


def make_provider(spec: str | SearchProvider) -> SearchProvider:
    """ "ddgs", "brave" (needs SEARCH_API_KEY) or a provider object.

    Raises InvalidRequestError for an unknown name or a missing key/package."""
    if isinstance(spec, SearchProvider):
        return spec
    if spec == "brave":
        return BraveProvider(os.environ.get("SEARCH_API_KEY", ""))
    if spec == "ddgs":
        return DDGSProvider()
    raise InvalidRequestError(f"search_provider must be 'ddgs' or 'brave', got {spec!r}")


def format_results(query: str, results: list[SearchResult]) -> str:
    """The text of the `search` message, before it is cut to the token budget."""
    if not results:
        return f'No results for "{query}".'
    lines = [f'Results for "{query}":']
    for n, r in enumerate(results, 1):
        lines.append(f"{n}. {r.title} ({r.url}): {r.snippet}")
    return "\n".join(lines)


class SearchTagScanner:
    """Splits a decoded text stream into what the user sees and search queries.

    feed(text) returns (visible_text, query_or_None). Text that might be the
    start of `<search>` is held back until it is known not to be. Once a query
    is returned the caller stops the generation; `reset()` before the model
    continues. With enabled=False everything is visible.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pending = ""  # held-back text or the inside of an open tag
        self._in_tag = False

    def reset(self) -> None:
        self._pending, self._in_tag = "", False

    def feed(self, text: str) -> tuple[str, str | None]:
        if not self.enabled:
            return text, None
        buf = self._pending + text
        if self._in_tag:
            end = buf.find(CLOSE_TAG)
            if end < 0:
                self._pending = buf
                if len(buf) > limits.MAX_SEARCH_QUERY_CHARS * 4:
                    # A runaway tag: give up on it and show nothing more of it.
                    self.reset()
                return "", None
            self.reset()
            return "", buf[:end].strip()[: limits.MAX_SEARCH_QUERY_CHARS]
        start = buf.find(OPEN_TAG)
        if start >= 0:
            self._in_tag, self._pending = True, ""
            visible, query = buf[:start], None
            rest_visible, query = self.feed(buf[start + len(OPEN_TAG) :])
            return visible + rest_visible, query
        # Hold back the longest suffix that is a prefix of the open tag.
        for k in range(min(len(OPEN_TAG) - 1, len(buf)), 0, -1):
            if OPEN_TAG.startswith(buf[-k:]):
                self._pending = buf[-k:]
                return buf[:-k], None
        self._pending = ""
        return buf, None

    def flush(self) -> str:
        """At the end of the stream: held-back text that never became a tag."""
        out = "" if self._in_tag else self._pending
        self.reset()
        return out
