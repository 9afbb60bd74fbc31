"""A Brave-compatible web-search server on loopback for the search tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API_KEY = "test-key"


@dataclass
class FakeBraveServer:
    url: str
    queries: list[str] = field(default_factory=list)


@contextmanager
def serve_fake_brave() -> Iterator[FakeBraveServer]:
    """Serve Brave's `/res/v1/web/search` on 127.0.0.1; record every query."""
    state = FakeBraveServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            q = parse_qs(urlparse(self.path).query)
            if self.headers.get("X-Subscription-Token") != API_KEY:
                self.send_response(401)
                self.end_headers()
                return
            query = q["q"][0]
            state.queries.append(query)
            count = int(q.get("count", ["5"])[0])
            results = [
                {
                    "title": f"Result {i} for {query}",
                    "url": f"http://r{i}.test/",
                    "description": f"snippet {i} " * 30,
                }
                for i in range(count)
            ]
            data = json.dumps({"web": {"results": results}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/res/v1/web/search"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
