"""Conversations that must not get stuck or grow: over real sockets on loopback.

- a client that never reads is cut off, and its slot freed (issue 12, bug 1);
- a session.update the server cannot honour is refused with its event id (issue 12, bug 5);
- a cancel at any moment of a turn is always followed by `response.done` (issue 12, bug 8);
- a pause in mid-sentence starts a speculative turn that is thrown away without a trace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from typing import Any

import pytest
from rt_helpers import (
    on_server,
    recv_until,
    silence_pcm16k,
    speech_pcm16k,
    start_session,
    tag_of,
    trimmed,
    ws_url,
)
from websockets.asyncio.client import ClientConnection, connect

from realtime import limits
from realtime import messages as m
from realtime.server import RealtimeServer

GREEDY = {"temperature": 0.0}


def _masked_text_frame(payload: bytes) -> bytes:
    """One client text frame, masked as RFC 6455 requires of clients."""
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def _raw_upgrade(port: int) -> socket.socket:
    """A WebSocket client on a raw socket with a 4 KiB receive buffer that will never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # read the handshake only, byte by byte
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def _count(server: RealtimeServer) -> int:
    return await on_server(server, lambda: len(server.conversations))


@pytest.mark.slow
async def test_a_client_that_never_reads_is_cut_off_and_frees_its_slot(
    rt_server: RealtimeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small bounds so the test runs in seconds; the mechanism is the one the defaults use
    monkeypatch.setattr(limits, "MAX_OUTGOING_BYTES", 256 * 1024)
    monkeypatch.setattr(limits, "SEND_TIMEOUT_S", 2.0)
    before = await _count(rt_server)
    sock = _raw_upgrade(rt_server.port)
    sock.setblocking(False)
    try:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, _masked_text_frame(b'{"type":"session.update"}'))
        ping = _masked_text_frame(b'{"type":"bitvoice.ping","event_id":"p"}')
        deadline = time.monotonic() + 30.0
        sent = 0
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, ping * 200), 1.0)
                sent += 200
            except (TimeoutError, OSError):
                pass  # the server stopped reading us, or closed us
            if sent > 2000 and await _count(rt_server) == before:
                break
            await asyncio.sleep(0.01)
        assert await _count(rt_server) == before, "the conversation still holds its slot"
    finally:
        sock.close()


@pytest.mark.slow
async def test_an_unknown_voice_or_language_is_refused_at_session_update(
    rt_server: RealtimeServer,
) -> None:
    async with connect(ws_url(rt_server)) as ws:
        await start_session(ws, {"sampling": {**GREEDY, "max_output_tokens": 4}})
        for event_id, cfg, code in (
            ("v1", {"voice": "nosuchvoice"}, "unknown_voice"),
            ("l1", {"language": "xx-yy"}, "unsupported_language"),
            ("l2", {"language": "de"}, "unsupported_language"),  # tiny.en: English only
        ):
            await ws.send(
                json.dumps({"type": "session.update", "event_id": event_id, "session": cfg})
            )
            got = await recv_until(ws, "error", limit_s=10)
            err = got[-1]
            assert isinstance(err, m.Error)
            assert (err.error.code, err.error.event_id) == (code, event_id)
        # the session is unchanged and a turn still works, with no error
        await ws.send('{"type":"response.create","input_text":"Hello"}')
        got = await recv_until(ws, "response.done", limit_s=30)
        assert not [x for x in got if isinstance(x, m.Error)]
        done = got[-1]
        assert isinstance(done, m.ResponseDone) and done.response.status == "completed"


async def _cancelled_turn(ws: ClientConnection, delay_s: float, n: int) -> m.ResponseDone:
    await ws.send('{"type":"response.create","input_text":"Tell me about the sea."}')
    await asyncio.sleep(delay_s)
    await ws.send('{"type":"response.cancel"}')
    got = await recv_until(
        ws, "response.done", limit_s=15, pred=lambda d: d.response.id == f"resp_{n}"
    )
    done = got[-1]
    assert isinstance(done, m.ResponseDone)
    return done


@pytest.mark.slow
async def test_a_cancel_at_any_moment_is_always_followed_by_response_done(
    rt_server: RealtimeServer,
) -> None:
    delays = [0.0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.035, 0.05, 0.08, 0.12, 0.2, 0.3, 0.5]
    async with connect(ws_url(rt_server)) as ws:
        await start_session(ws, {"sampling": {**GREEDY, "max_output_tokens": 24}})
        for n, delay in enumerate(delays, start=1):
            done = await _cancelled_turn(ws, delay, n)
            assert done.response.status in ("cancelled", "completed"), (delay, done)
        # and the conversation still answers
        await ws.send('{"type":"response.create","input_text":"Hello"}')
        got = await recv_until(ws, "response.done", limit_s=30)
        assert isinstance(got[-1], m.ResponseDone) and got[-1].response.status == "completed"


@pytest.mark.slow
async def test_cancel_right_after_the_transcript_never_leaves_the_turn_stuck(
    rt_server: RealtimeServer,
) -> None:
    speech = speech_pcm16k("hello there") + silence_pcm16k(0.8)
    async with connect(ws_url(rt_server)) as ws:
        await start_session(
            ws, {"partial_transcripts": False, "sampling": {**GREEDY, "max_output_tokens": 24}}
        )
        for n in range(1, 7):
            await _say(ws, speech)  # real time: faster audio would drain the rate limit
            await recv_until(
                ws, "conversation.item.input_audio_transcription.completed", limit_s=20
            )
            await ws.send('{"type":"response.cancel"}')
            got = await recv_until(
                ws, "response.done", limit_s=15, pred=lambda d, n=n: d.response.id == f"resp_{n}"
            )
            assert isinstance(got[-1], m.ResponseDone)


async def _say(ws: ClientConnection, pcm: bytes) -> None:
    t0 = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), 640)):
        await ws.send(pcm[i : i + 640])
        await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - time.monotonic()))


@pytest.mark.slow
async def test_a_mid_sentence_pause_leaves_one_turn_and_no_trace_of_the_speculation(
    rt_server: RealtimeServer,
) -> None:
    first = trimmed(speech_pcm16k("I would like to book"))
    second = speech_pcm16k("a table for two people")
    audio = silence_pcm16k(0.3) + first + silence_pcm16k(0.35) + second + silence_pcm16k(1.2)
    async with connect(ws_url(rt_server)) as ws:
        sid = await start_session(
            ws, {"partial_transcripts": False, "sampling": {**GREEDY, "max_output_tokens": 8}}
        )
        speaking = asyncio.create_task(_say(ws, audio))
        got: list[Any] = await recv_until(ws, "response.done", limit_s=40)
        await speaking
        await asyncio.sleep(0.5)  # anything a second response would have sent by now
        await ws.send('{"type":"bitvoice.ping"}')
        got += await recv_until(ws, "bitvoice.pong", limit_s=5)

        def history() -> list[tuple[str, str]]:
            conv = rt_server.find_conversation(sid)
            assert conv is not None
            return conv.history

        hist = await on_server(rt_server, history)
    tags = [tag_of(x) for x in got]
    assert tags.count("response.created") == 1 and tags.count("input_audio_buffer.committed") == 1
    final = next(
        x for x in got if isinstance(x, m.ConversationItemInputAudioTranscriptionCompleted)
    )
    words = final.transcript.lower()
    assert "like" in words and "table" in words  # both halves in the one turn
    users = [c for r, c in hist if r == "user"]
    assert len(users) == 1 and users[0].strip() == final.transcript.strip()
