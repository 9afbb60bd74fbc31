"""The server against hostile requests (issue 12), over real sockets on loopback.

Hand-built HTTP requests (a raw TCP socket) where the websockets client would not send the
malformed thing: DNS-rebinding Host/Origin pairs, repeated headers, half-open handshakes. The
servers with a particular config run on the shared server's loop and engines.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from typing import Any

import pytest
from rt_helpers import extra_server, on_server, recv_until, start_session
from websockets.asyncio.client import connect

from engine import cli
from realtime import messages as m
from realtime.server import RealtimeServer

TOKEN = "hardening-token"


def upgrade_headers(port: int, host: str | None = None) -> list[tuple[str, str]]:
    return [
        ("Host", host or f"127.0.0.1:{port}"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
        ("Sec-WebSocket-Version", "13"),
    ]


async def raw_request(
    port: int, headers: list[tuple[str, str]], path: str = "/v1/realtime"
) -> tuple[int, dict[str, Any] | None]:
    """Send one hand-built GET; returns the status and the JSON body (None when not JSON)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
            body = b""
            if "content-length" in fields:
                body = await reader.readexactly(int(fields["content-length"]))
            elif status_line.split()[1] != b"101":  # the server closes after its answer
                body = await reader.read()
        status = int(status_line.split()[1])
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None
    finally:
        writer.close()


# ---- bug 2: DNS rebinding ------------------------------------------------------------------


async def test_dns_rebinding_host_and_origin_pair_is_refused(rt_server: RealtimeServer) -> None:
    port = rt_server.port
    evil = f"evil.example:{port}"
    status, body = await raw_request(
        port, [*upgrade_headers(port, host=evil), ("Origin", f"http://{evil}")]
    )
    assert status == 403 and body is not None and body["code"] == "origin_forbidden"
    # this server's own pages, whatever the Host says
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"):
        status, _ = await raw_request(port, [*upgrade_headers(port, host=evil), ("Origin", origin)])
        assert status == 101, origin
    # a loopback page on another port, another scheme, or a broken origin
    for origin in (
        f"http://localhost:{port + 1}",
        "http://127.0.0.1",
        f"ftp://127.0.0.1:{port}",
        f"http://127.0.0.1:{port}0000",
        "null",
    ):
        status, _ = await raw_request(port, [*upgrade_headers(port), ("Origin", origin)])
        assert status == 403, origin


async def test_allow_origin_lets_a_named_site_in(rt_server: RealtimeServer) -> None:
    site = "https://app.example:8443"
    async with extra_server(rt_server, allow_origins=(site,)) as server:
        port = server.port
        status, _ = await raw_request(port, [*upgrade_headers(port), ("Origin", site)])
        assert status == 101
        status, _ = await raw_request(
            port, [*upgrade_headers(port), ("Origin", "https://app.example:8444")]
        )
        assert status == 403


# ---- bug 3: deep JSON nesting --------------------------------------------------------------


async def test_deeply_nested_json_is_an_invalid_json_error_and_the_connection_stays(
    rt_server: RealtimeServer,
) -> None:
    async with connect(f"ws://127.0.0.1:{rt_server.port}/v1/realtime") as ws:
        await start_session(ws)
        for depth in (1_000, 20_000):
            deep = '{"type":"bitvoice.ping","event_id":"d","x":' + "[" * depth + "]" * depth + "}"
            await ws.send(deep)
            err = (await recv_until(ws, "error", limit_s=10))[-1]
            assert err.error.code == "invalid_json", err
        await ws.send('{"type":"bitvoice.ping","event_id":"after"}')
        pong = (await recv_until(ws, "bitvoice.pong"))[-1]
        assert pong.client_event_id == "after"


def test_deep_nesting_is_refused_whatever_the_recursion_limit() -> None:
    """The answer must not depend on the interpreter's recursion limit: a library that raises it
    (one did, in the full suite) let msgspec decode 20,000 levels, and the frame passed as a
    ping. Brackets inside strings are text, not nesting."""
    import sys

    deep = '{"type":"bitvoice.ping","event_id":"d","x":' + "[" * 20_000 + "]" * 20_000 + "}"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        with pytest.raises(m.WireError) as info:
            m.decode_client(deep)
    finally:
        sys.setrecursionlimit(limit)
    assert info.value.code == "invalid_json"
    at_limit = "[" * (m.MAX_JSON_NESTING - 1) + "]" * (m.MAX_JSON_NESTING - 1)
    ok = m.decode_client('{"type":"bitvoice.ping","event_id":"e","x":' + at_limit + "}")
    assert isinstance(ok, m.Ping)
    with pytest.raises(m.WireError):
        m.decode_client('{"type":"bitvoice.ping","event_id":"e","x":[' + at_limit + "]}")
    # an id of 20 "[{" pairs and an escaped quote, then a string field of 99 "[": all text
    text = '{"type":"bitvoice.ping","event_id":"' + "[{" * 20 + '\\""' + ',"x":"' + "[" * 99 + '"}'
    assert m.decode_client(text) == m.Ping(event_id="[{" * 20 + '"')


def test_decode_client_raises_only_wire_error() -> None:
    for text in (
        '{"type":"bitvoice.ping","x":' + "[" * 5000 + "]" * 5000 + "}",
        "[" * 5000,
        '{"type":"bitvoice.ping","x":' + '{"a":' * 3000 + "1" + "}" * 3000 + "}",
    ):
        with pytest.raises(m.WireError) as info:
            m.decode_client(text)
        assert info.value.code == "invalid_json"


def test_an_unexpected_decoder_fault_is_a_wire_error_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault no client can cause today (a bug in msgspec or in our schema) keeps the contract
    and is logged once with its traceback, not once per frame."""

    class Broken:
        def decode(self, data: str | bytes) -> m.ClientMessage:
            raise TypeError("schema bug")

    monkeypatch.setattr(m, "_client_decoder", Broken())
    monkeypatch.setattr(m, "_logged_unexpected", set())
    with caplog.at_level(logging.ERROR, logger="bitvoice.realtime"):
        for _ in range(3):
            with pytest.raises(m.WireError) as info:
                m.decode_client('{"type":"bitvoice.ping"}')
            assert info.value.code == "invalid_json"
    faults = [r for r in caplog.records if "unexpected TypeError" in r.getMessage()]
    assert len(faults) == 1 and faults[0].exc_info is not None


# ---- bug 4: repeated headers ----------------------------------------------------------------


async def test_repeated_security_headers_are_400_not_500(rt_server: RealtimeServer) -> None:
    port = rt_server.port
    own = f"http://127.0.0.1:{port}"
    for extra in (
        [("Origin", own), ("Origin", "https://evil.example")],
        [("Origin", own), ("Origin", own)],
        [("Host", f"evil.example:{port}")],
        [("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
    ):
        status, body = await raw_request(port, [*upgrade_headers(port), *extra])
        assert status == 400, extra
        assert body is not None and body["code"] == "bad_request"
    # plain HTTP too
    status, _ = await raw_request(
        port, [("Host", f"127.0.0.1:{port}"), ("Host", "x")], path="/healthz"
    )
    assert status == 400


async def test_repeated_authorization_is_400_on_a_server_with_a_token(
    rt_server: RealtimeServer,
) -> None:
    async with extra_server(rt_server, token=TOKEN) as server:
        port = server.port
        status, _ = await raw_request(
            port,
            [
                *upgrade_headers(port),
                ("Authorization", f"Bearer {TOKEN}"),
                ("Authorization", "Bearer wrong"),
            ],
        )
        assert status == 400
        status, _ = await raw_request(
            port, [*upgrade_headers(port), ("Authorization", f"Bearer {TOKEN}")]
        )
        assert status == 101


# ---- bug 7: half-open handshakes ----------------------------------------------------------


async def test_half_open_handshakes_are_capped_and_healthz_keeps_answering(
    rt_server: RealtimeServer,
) -> None:
    cap, flood = 4, 40
    async with extra_server(rt_server, max_handshakes=cap, open_timeout_s=30.0) as server:
        port = server.port
        socks: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(flood):  # connect, never send the request
                socks.append(await asyncio.open_connection("127.0.0.1", port))

            async def dropped(reader: asyncio.StreamReader) -> bool:
                try:
                    async with asyncio.timeout(3):
                        return await reader.read(1) == b""
                except (ConnectionError, TimeoutError):
                    return isinstance(reader.exception(), ConnectionError)

            # the oldest are dropped at once (not after the 30 s open timeout)
            closed = await asyncio.gather(*(dropped(r) for r, _ in socks[: flood - cap]))
            assert all(closed), closed.count(False)
            in_progress = await on_server(rt_server, lambda: len(server.handshakes))
            assert in_progress <= cap
            # /healthz and a real client still get in
            status, body = await raw_request(port, [("Host", f"127.0.0.1:{port}")], path="/healthz")
            assert status == 200 and body is not None
            assert body["handshakes"]["shed"] >= flood - cap
            async with connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
                await recv_until(ws, "session.created")
        finally:
            for _, writer in socks:
                writer.close()


async def test_a_connection_that_never_sends_its_request_is_dropped_at_the_open_timeout(
    rt_server: RealtimeServer,
) -> None:
    async with extra_server(rt_server, open_timeout_s=0.5) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            async with asyncio.timeout(5):
                assert await reader.read(1) == b""  # closed by the server, nothing sent
            assert await on_server(rt_server, lambda: server.handshakes.shed) == 1
        finally:
            writer.close()


# ---- /healthz with a token ------------------------------------------------------------------


async def test_healthz_reveals_details_only_with_the_token(rt_server: RealtimeServer) -> None:
    async with extra_server(rt_server, token=TOKEN) as server:
        port = server.port
        host = [("Host", f"127.0.0.1:{port}")]
        status, body = await raw_request(port, host, path="/healthz")
        assert status == 200 and body == {"status": "ok", "accepting": True}
        text = json.dumps(body)
        assert rt_server.engines.model_id not in text
        status, body = await raw_request(port, host, path="/healthz?token=wrong")
        assert status == 200 and body is not None and set(body) == {"status", "accepting"}
        for path, headers in (
            ("/healthz", [*host, ("Authorization", f"Bearer {TOKEN}")]),
            (f"/healthz?token={TOKEN}", host),
        ):
            status, body = await raw_request(port, headers, path=path)
            assert status == 200 and body is not None
            assert body["model"] == rt_server.engines.model_id
            assert body["conversations"] == 0
            assert body["headroom"] >= 1 and body["capacity"] >= 1
        # the voice list stays public (the page's picker reads it) and names no model
        status, body = await raw_request(port, host, path="/v1/voices")
        assert status == 200 and body is not None and body["voices"]
        assert rt_server.engines.model_id not in json.dumps(body)


# ---- serve --help --------------------------------------------------------------------------


def test_serve_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split()).split("options:", 1)[1]
    for option, default in (
        ("--max-conversations", "default 8"),
        ("--idle-timeout", "default 300.0"),
        ("--max-session", "default 3600.0"),
        ("--first-audio-budget", "default 1.5"),
        ("--max-handshakes", "default 128"),
        ("--host", "default 127.0.0.1"),
        ("--port", "default 8765"),
    ):
        at = text.index(f"{option} ")
        end = text.find(" --", at + len(option) + 1 + len(option))  # the next option
        assert default in text[at:end], (option, default)
