"""Connection lifecycle over real sockets: the token check, the idle timeout, SIGTERM drain.

The token and idle-timeout tests run a second `RealtimeServer` on the shared server's loop,
sharing its engines (so no second model load); the SIGTERM test runs `bitvoice serve` as a
real subprocess (`python -m engine.cli serve`) and signals it mid-conversation.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import RT_HOME, on_server_await, recv_until, start_session
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from engine.stt import TINY_EN_STT_MODEL
from realtime import messages as m
from realtime.server import RealtimeServer, ServerConfig

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


@pytest.fixture
async def guarded(rt_server: RealtimeServer) -> AsyncIterator[RealtimeServer]:
    """A second server with a token and a 1.5 s idle timeout, on the shared engines."""
    config = ServerConfig(port=0, token=TOKEN, idle_timeout_s=1.5)
    server = RealtimeServer(config, rt_server.engines)
    await on_server_await(rt_server, server.start())
    try:
        yield server
    finally:
        await on_server_await(rt_server, server.drain(stop_engines=False))


async def test_token_is_checked_before_the_upgrade(guarded: RealtimeServer) -> None:
    base = f"ws://127.0.0.1:{guarded.port}/v1/realtime"
    refused: list[tuple[str, dict[str, str]]] = [
        (base, {}),
        (f"{base}?token=wrong", {}),
        (base, {"Authorization": "Bearer wrong"}),
        (base, {"Authorization": f"Basic {TOKEN}"}),
    ]
    for url, headers in refused:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=headers):
                pass
        response = info.value.response
        assert response.status_code == 401, (url, headers)
        assert json.loads(response.body or b"{}")["code"] == "unauthorized"
    for url, headers in [
        (f"{base}?token={TOKEN}", {}),
        (base, {"Authorization": f"Bearer {TOKEN}"}),
    ]:
        async with connect(url, additional_headers=headers) as ws:
            created = (await recv_until(ws, "session.created"))[-1]
            assert isinstance(created, m.SessionCreated)


async def test_idle_connection_is_closed_with_an_error(guarded: RealtimeServer) -> None:
    url = f"ws://127.0.0.1:{guarded.port}/v1/realtime?token={TOKEN}"
    async with connect(url) as ws:
        await start_session(ws)
        await ws.send('{"type":"bitvoice.ping"}')  # activity restarts the clock
        await recv_until(ws, "bitvoice.pong")
        got = await recv_until(ws, "error", limit_s=6)
        assert got[-1].error.code == "idle_timeout"
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                await ws.recv()
        assert ws.close_code == 1000


def health_status(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        status = json.loads(resp.read())["status"]
    assert isinstance(status, str)
    return status


@pytest.mark.slow
async def test_sigterm_drains_the_conversation_and_exits_zero(
    rt_server: RealtimeServer, tmp_path: Path
) -> None:
    env = {**os.environ, "BITVOICE_HOME": str(RT_HOME[0]), "PYTHONPATH": str(REPO)}
    log = (tmp_path / "serve.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.cli",
        "serve",
        "--port",
        "0",
        "--stt-model",
        TINY_EN_STT_MODEL,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(120):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, f"serve exited early: {(tmp_path / 'serve.log').read_text()}"
                if found := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                    port = int(found.group(1))
                    break
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        got: list[Any] = []
        async with connect(url) as ws:
            await start_session(ws, {"sampling": {"max_output_tokens": 12}})
            await ws.send('{"type":"response.create","input_text":"Hello there."}')
            got += await recv_until(ws, "audio", limit_s=60)
            proc.send_signal(signal.SIGTERM)
            # the signal lands asynchronously: wait until /healthz says the drain has begun
            async with asyncio.timeout(10):
                while await asyncio.to_thread(health_status, port) != "draining":  # noqa: ASYNC110  (state in another process)
                    await asyncio.sleep(0.05)
            # while draining, a new conversation is refused with a clear error
            async with connect(url) as late:
                err = m.decode_server(await late.recv())
                assert isinstance(err, m.Error) and err.error.code == "admission_rejected"
            # the running turn finishes, then the server closes cleanly
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(30):
                    while True:
                        raw = await ws.recv()
                        got.append(m.decode_server(raw) if isinstance(raw, str) else raw)
            assert ws.close_code == 1001
        done = [x for x in got if isinstance(x, m.ResponseDone)]
        assert len(done) == 1 and done[0].response.status == "completed"
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
