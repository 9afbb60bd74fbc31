"""Admission by measured load over real sockets: real turns feed the policy through
`Conversation(on_turn_done=...)`, and a conversation the running ones cannot afford is refused
with a typed `admission_rejected` error and close code 1013. The policy itself is unit-tested
in test_admission.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from rt_helpers import extra_server, on_server, recv_until, start_session
from test_server_hardening import raw_request
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime import messages as m
from realtime.server import RealtimeServer


async def healthz(port: int) -> dict[str, object]:
    status, body = await raw_request(port, [("Host", f"127.0.0.1:{port}")], path="/healthz")
    assert status == 200 and body is not None
    return body


async def until_true(rt_server: RealtimeServer, pred: Callable[[], bool]) -> None:
    """Poll `pred()` on the server's loop (its state lives there) until it holds (10 s)."""
    async with asyncio.timeout(10):
        while not await on_server(rt_server, pred):  # noqa: ASYNC110  (another thread's state)
            await asyncio.sleep(0.1)


async def test_measured_load_refuses_what_the_running_conversations_cannot_afford(
    rt_server: RealtimeServer,
) -> None:
    # a budget no real turn meets: once the turns are measured, nothing more is admitted
    async with extra_server(rt_server, first_audio_budget_s=0.001, max_conversations=4) as server:
        url = f"ws://127.0.0.1:{server.port}/v1/realtime"
        async with connect(url) as ws:
            await start_session(ws, {"sampling": {"max_output_tokens": 12}})
            # too little evidence yet: only the hard cap applies, a second one gets in
            assert (await healthz(server.port))["headroom"] == 3
            async with connect(url) as second:
                await recv_until(second, "session.created")
            # three measured turns (the demo model's reply can be punctuation only, without
            # audio: such a turn has no first-audio time and is not observed)
            measured = 0
            for _ in range(8):
                await ws.send('{"type":"response.create","input_text":"Hello there."}')
                done = (await recv_until(ws, "response.done", limit_s=60))[-1]
                assert isinstance(done, m.ResponseDone)
                measured += done.metrics.first_audio_ms is not None
                if measured == 3:
                    break
            assert measured == 3
            await until_true(  # a load sample taken with the conversation open
                rt_server,
                lambda: server.admission.per_conversation_load(time.monotonic()) is not None,
            )
            await until_true(rt_server, lambda: len(server.conversations) == 1)  # `second` gone
            health = await healthz(server.port)
            assert health["headroom"] == 0 and health["capacity"] == 1, health
            admission = health["admission"]
            assert isinstance(admission, dict) and admission["turns_observed"] == 3
            # the next conversation: a typed error, then close 1013
            async with asyncio.timeout(10):
                extra = await connect(url)
                err = m.decode_server(await extra.recv())
                assert isinstance(err, m.Error) and err.error.code == "admission_rejected"
                assert "first audio" in err.error.message
                with pytest.raises(ConnectionClosed):
                    await extra.recv()
                assert extra.close_code == 1013
            assert (await healthz(server.port))["rejected"] == 1
        # an empty server always takes one conversation, whatever it measured
        await until_true(rt_server, lambda: not server.conversations)
        async with connect(url) as again:
            created = (await recv_until(again, "session.created"))[-1]
            assert isinstance(created, m.SessionCreated)
        assert json.dumps(await healthz(server.port))
