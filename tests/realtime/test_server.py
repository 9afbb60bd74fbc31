"""The real server on loopback with the real websockets client (no mocks).

The LLM is the seeded demo bundle (its replies are words without meaning), Whisper is tiny.en,
and the TTS is the offline voice from the registry packages. Full turns, barge-in, pause, speed
and cancel are in test_turns.py; token, idle timeout and SIGTERM in test_lifecycle.py.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import SERVER_MAX_CONVERSATIONS, on_server, recv_until, ws_url
from rt_helpers import start_session as start_fast
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtime import limits
from realtime import messages as m
from realtime.server import RealtimeServer, ServerConfig

FAST = {"sampling": {"max_output_tokens": 24}}


def url(server: RealtimeServer, path: str = "/v1/realtime") -> str:
    return ws_url(server, path)


async def start_session(ws: ClientConnection, session: dict[str, Any] | None = None) -> str:
    return await start_fast(ws, session or FAST)


def http_get(server: RealtimeServer, path: str, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_healthz_and_static_client(rt_server: RealtimeServer) -> None:
    status, body = await asyncio.to_thread(http_get, rt_server, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"
    assert set(health["components"]) == {"llm", "stt", "tts"}
    assert health["components"]["stt"]["state"] == "running"
    status, body = await asyncio.to_thread(http_get, rt_server, "/")
    assert status == 200 and b"<html" in body.lower()
    status, _ = await asyncio.to_thread(http_get, rt_server, "/no-such-file.js")
    assert status == 404
    status, body = await asyncio.to_thread(http_get, rt_server, "/../pyproject.toml")
    assert status == 404 and b"bitvoice" not in body
    status, body = await asyncio.to_thread(http_get, rt_server, "/%2e%2e/pyproject.toml")
    assert status == 404 and b"[project]" not in body


async def test_voice_list_route(rt_server: RealtimeServer) -> None:
    """The web client's voice picker reads GET /v1/voices."""
    status, body = await asyncio.to_thread(http_get, rt_server, "/v1/voices")
    assert status == 200
    listing = json.loads(body)
    assert listing["voices"] and all(isinstance(v, str) for v in listing["voices"])
    # as many as the server's TTS holds (its /healthz counts them)
    assert len(listing["voices"]) == rt_server.health()["components"]["tts"]["voices"]


async def test_foreign_origin_is_refused_and_token_is_required_beyond_loopback(
    rt_server: RealtimeServer,
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url(rt_server), origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    async with connect(url(rt_server), origin=f"http://127.0.0.1:{rt_server.port}") as ws:  # type: ignore[arg-type]
        await recv_until(ws, "session.created")
    with pytest.raises(Exception, match="--token"):
        ServerConfig(host="0.0.0.0").check()
    ServerConfig(host="0.0.0.0", token="t").check()


async def test_bad_frames_are_errors_and_every_connection_keeps_working(
    rt_server: RealtimeServer,
) -> None:
    async with connect(url(rt_server)) as ws, connect(url(rt_server)) as other:
        await recv_until(ws, "session.created")
        await start_session(other)
        await ws.send(b"\x00\x00" * 160)  # binary before session start
        await ws.send("{nope")
        await ws.send('{"type":"made.up","event_id":"u1"}')
        await ws.send('{"type":"bitvoice.set_speed","speed":"fast","event_id":"f1"}')
        await ws.send("x" * (limits.MAX_MESSAGE_BYTES + 10))  # oversized (but under the hard cap)
        await ws.send(b"\x01" * 3)
        codes: list[tuple[str, str | None]] = []
        async with asyncio.timeout(10):
            while len(codes) < 6:
                msg = m.decode_server(await ws.recv())
                assert isinstance(msg, m.Error)
                codes.append((msg.error.code, msg.error.event_id))
        assert codes == [
            ("session_not_started", None),
            ("invalid_json", None),
            ("unknown_type", "u1"),
            ("invalid_field", "f1"),
            ("message_too_large", None),
            ("session_not_started", None),  # odd-length audio, still before the session start
        ]
        # still working, both of them
        await ws.send('{"type":"bitvoice.ping","event_id":"p"}')
        pong = (await recv_until(ws, "bitvoice.pong"))[-1]
        assert pong.client_event_id == "p"
        await other.send('{"type":"bitvoice.ping","event_id":"q"}')
        assert (await recv_until(other, "bitvoice.pong"))[-1].client_event_id == "q"


async def test_text_turn_with_every_control_mid_turn(rt_server: RealtimeServer) -> None:
    async with connect(url(rt_server)) as ws:
        await start_session(ws)
        await ws.send('{"type":"response.create","input_text":"Tell me a story."}')
        await recv_until(ws, "response.created")
        for msg, ack in [
            ('{"type":"bitvoice.set_speed","speed":1.5,"event_id":"s"}', "bitvoice.speed_set"),
            ('{"type":"bitvoice.pause","event_id":"p"}', "bitvoice.paused"),
            ('{"type":"bitvoice.resume","event_id":"r"}', "bitvoice.resumed"),
            ('{"type":"bitvoice.ping","event_id":"g"}', "bitvoice.pong"),
            ('{"type":"session.update","session":{"speed":1.0}}', "session.updated"),
        ]:
            await ws.send(msg)
            got = await recv_until(ws, ack, limit_s=5)
            assert got[-1].__struct_config__.tag == ack
        await ws.send('{"type":"response.cancel","event_id":"c"}')
        got = await recv_until(ws, "response.done", limit_s=15)
        done = got[-1]
        assert isinstance(done, m.ResponseDone)
        # the reply is seconds of paced audio: the controls all landed while it ran
        assert (done.response.status, done.response.reason) == ("cancelled", "client_cancelled")
        assert not [x for x in got if isinstance(x, m.Error)]
        # the connection serves the next turn (a short one)
        await ws.send('{"type":"session.update","session":{"sampling":{"max_output_tokens":4}}}')
        await recv_until(ws, "session.updated")
        await ws.send('{"type":"response.create","input_text":"And then?"}')
        assert (await recv_until(ws, "response.done", limit_s=30))[-1].response.id == "resp_2"


async def test_an_idle_conversation_warms_its_kv_cache_so_a_turn_runs_only_new_words(
    rt_server: RealtimeServer,
) -> None:
    """While nobody speaks (after session.update, after each turn) the server prefills the
    conversation's history, so the turn that follows runs only the user's words: the first
    turn of a connection no longer pays for the system prompt (1.6-2.0 s on the 2B shapes,
    AVX2). `bitvoice.metrics` reports the prompt tokens found in the cache."""
    instructions = "You are a kind voice assistant in a quiet kiosk. " * 12
    async with connect(url(rt_server)) as ws:
        await start_fast(ws, {"instructions": instructions, "sampling": {"max_output_tokens": 4}})
        await asyncio.sleep(1.0)  # idle: the warm-up runs (the demo model takes milliseconds)
        for turn, text in enumerate(["Hello there.", "And then?"], start=1):
            await ws.send(json.dumps({"type": "response.create", "input_text": text}))
            got = await recv_until(ws, "response.done", limit_s=30)
            metrics = next(x for x in got if isinstance(x, m.Metrics)).metrics
            assert metrics.prompt_tokens and metrics.cached_tokens is not None, metrics
            # all of the history was in the cache: only the new message (and its headers) ran
            assert metrics.prompt_tokens - metrics.cached_tokens <= 12, (turn, metrics)
            await asyncio.sleep(1.0)


@pytest.mark.parametrize("how", ["vanish", "close"])
async def test_client_gone_mid_turn_leaves_no_task_behind(
    rt_server: RealtimeServer, how: str
) -> None:
    def tasks() -> set[asyncio.Task[Any]]:
        return asyncio.all_tasks(rt_server.loop)

    baseline = await on_server(rt_server, tasks)
    ws = await connect(url(rt_server))
    await start_session(ws, {"sampling": {"max_output_tokens": 64}})
    await ws.send('{"type":"response.create","input_text":"Talk for a long time."}')
    # mid-turn for real: reply audio is flowing, so LLM/TTS/pacer tasks all exist
    await recv_until(ws, "audio", limit_s=20)
    during = await on_server(rt_server, tasks)
    assert len(during - baseline) >= 4  # the handler, writer, ticker and turn at least
    if how == "vanish":
        ws.transport.abort()  # no close handshake
    else:
        await ws.close()
    left: set[asyncio.Task[Any]] = set()
    async with asyncio.timeout(10):
        while True:
            left = {t for t in await on_server(rt_server, tasks) if not t.done()} - baseline
            if not left and not rt_server.conversations:
                break
            await asyncio.sleep(0.05)
    assert not left, left
    _, body = await asyncio.to_thread(http_get, rt_server, "/healthz")
    assert json.loads(body)["conversations"] == 0
    assert json.loads(body)["components"]["tts"]["active_sessions"] == 0


async def test_twenty_concurrent_connections_and_admission_beyond_the_limit(
    rt_server: RealtimeServer,
) -> None:
    conns = [await connect(url(rt_server)) for _ in range(SERVER_MAX_CONVERSATIONS)]
    try:
        await asyncio.gather(*(start_session(ws) for ws in conns[:20]))
        await asyncio.gather(
            *(ws.send(f'{{"type":"bitvoice.ping","event_id":"{i}"}}') for i, ws in enumerate(conns))
        )
        pongs = await asyncio.gather(*(recv_until(ws, "bitvoice.pong") for ws in conns))
        assert [p[-1].client_event_id for p in pongs] == [str(i) for i in range(len(conns))]
        # one more is rejected with a clear error, never a hang
        async with asyncio.timeout(10):
            extra = await connect(url(rt_server))
            err = m.decode_server(await extra.recv())
            assert isinstance(err, m.Error) and err.error.code == "admission_rejected"
            with pytest.raises(ConnectionClosed):
                await extra.recv()
            assert extra.close_code == 1013
    finally:
        await asyncio.gather(*(ws.close() for ws in conns))


async def test_default_engines_on_a_fresh_machine(
    rt_server: RealtimeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from rt_helpers import RT_HOME

    from engine.llm import tiny
    from engine.stt import DEFAULT_STT_MODEL, STT
    from realtime.server import DEMO_NOTICE, resolve_llm_model

    # an empty store: the demo bundle, with a notice that says what it is
    monkeypatch.setenv("BITVOICE_HOME", str(RT_HOME[0]))
    assert resolve_llm_model(None) == (tiny.DEMO_STORE_ID, DEMO_NOTICE)
    # a real bundle in the store wins over the demo, without a notice
    home = tmp_path / "home"
    demo = RT_HOME[0] / "models" / "local" / "tiny-demo"
    shutil.copytree(demo, home / "models" / "acme" / "small")
    shutil.copytree(demo, home / "models" / tiny.DEMO_STORE_ID)
    (home / "models" / "acme" / "small" / "padding.bin").write_bytes(b"\0" * 4096)
    monkeypatch.setenv("BITVOICE_HOME", str(home))
    assert resolve_llm_model(None) == ("acme/small", None)
    assert resolve_llm_model("acme/other") == ("acme/other", None)
    # Whisper from the registry packages and the offline Piper voice by default
    assert ServerConfig().stt_model is None and STT().model_id == DEFAULT_STT_MODEL
    assert rt_server.engines.tts.backend_name == "piper"
    # and a client is told it talks to the demo model
    async with connect(url(rt_server)) as ws:
        created = (await recv_until(ws, "session.created"))[-1]
    assert created.session.model == tiny.DEMO_STORE_ID
    assert created.session.notice == DEMO_NOTICE
