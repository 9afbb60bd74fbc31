"""Malformed frames over a real socket (rt_fuzz): no crash, no close without a typed error
(protocol-level closes 1007 and 1009 excepted), and the server still serves a normal turn."""

from __future__ import annotations

import logging

import pytest
from rt_fuzz import fuzz, malformed_frames
from rt_helpers import extra_server, recv_until, start_session
from websockets.asyncio.client import connect

from realtime import messages as m
from realtime.server import RealtimeServer

FUZZ_FRAMES = 10_000  # the bar; about 20-40 s here


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_ten_thousand_malformed_frames_then_a_normal_turn(
    rt_server: RealtimeServer,
) -> None:
    errors = _Collect()
    loggers = [logging.getLogger(name) for name in ("websockets", "bitvoice")]
    for lg in loggers:
        lg.addHandler(errors)
    try:
        # A connection closed at the protocol level (1007/1009) holds its slot until the
        # server's close handshake ends (up to CLOSE_TIMEOUT_S when its writer is mid-send);
        # the fuzz reconnects at once, so the hard cap is lifted for it.
        async with extra_server(rt_server, max_conversations=64) as server:
            url = f"ws://127.0.0.1:{server.port}/v1/realtime"
            report = await fuzz(url, malformed_frames(FUZZ_FRAMES, seed=12))
            summary = report.summary()
            assert report.frames == FUZZ_FRAMES
            assert report.bad_closes == [], summary
            # every kind was sent, and the frames that must close did (protocol level)
            assert report.kinds["invalid_utf8"] and report.kinds["over_hard_limit"], summary
            assert set(report.protocol_closes) <= {1007, 1009}, summary
            assert report.errors >= FUZZ_FRAMES // 2, summary  # most frames get a typed error
            assert report.error_codes["invalid_json"] and report.error_codes["invalid_field"]
            # and the server still answers a normal turn
            async with connect(url) as ws:
                await start_session(ws, {"sampling": {"max_output_tokens": 24}})
                await ws.send('{"type":"response.create","input_text":"Hello there."}')
                got = await recv_until(ws, "response.done", limit_s=60)
            done = got[-1]
            assert isinstance(done, m.ResponseDone) and done.response.status == "completed"
            assert any(isinstance(x, m.AudioFrame) for x in got)
    finally:
        for lg in loggers:
            lg.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


@pytest.mark.parametrize("seed", [1, 2])
def test_malformed_frames_are_seeded(seed: int) -> None:
    a, b = malformed_frames(200, seed), malformed_frames(200, seed)
    assert a == b and a != malformed_frames(200, seed + 10)
    assert all(f.data for f in a if f.kind != "binary")
