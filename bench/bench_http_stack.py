"""The server's HTTP/WebSocket stack alone: control round trip and reply-audio pacing.

    python -m bench.bench_http_stack [--pings 300] [--turns 3] [--out FILE]

Starts `bitvoice serve` in-process on loopback with the seeded demo LLM, Whisper tiny.en and
the offline TTS voice (the engines matter little here: what is measured is what the stack
adds), opens one conversation and measures:

- control round trip: `bitvoice.ping` sent -> `bitvoice.pong` received, while idle and while
  a reply streams (the control path must not wait behind audio);
- audio delivery: for each reply-audio frame, from the moment the server's writer handed it
  to the socket (the conversation's send trace) to its arrival at the client, in ms: what the
  stack adds to the pacing, independent of how fast the TTS is on a loaded machine;
- audio pacing: each frame's arrival minus the time its offset is due at real-time playback
  from the first frame (lead, ms: positive = early, the pacer's PLAYBACK_LEAD_MS bounds it; a
  TTS slower than real time on a loaded machine makes it negative), and the gaps between
  frames.

It was written to compare the websockets-only server with the Starlette/uvicorn one (issue
16): run it on both trees. The machine is described in the output; timings on a shared
machine are skewed by whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.machine import describe_machine

OUTPUT_RATE = 24_000


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _stats(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    return {
        "n": len(xs),
        "p50": round(_pct(xs, 0.5), 3),
        "p90": round(_pct(xs, 0.9), 3),
        "p99": round(_pct(xs, 0.99), 3),
        "max": round(max(xs), 3),
        "mean": round(statistics.fmean(xs), 3),
    }


class _Server:
    """`serve()` on its own thread and loop (as `bitvoice serve` runs it)."""

    def __init__(self) -> None:
        self.server: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import uvloop

        from engine.stt import TINY_EN_STT_MODEL
        from realtime.server import ServerConfig, serve

        def ready(server: Any) -> None:
            self.server = server
            self._ready.set()

        config = ServerConfig(
            port=0, stt_model=TINY_EN_STT_MODEL, first_audio_budget_s=None, trace=True
        )
        uvloop.run(serve(config, ready=ready))

    def __enter__(self) -> _Server:
        self._thread.start()
        if not self._ready.wait(180):
            raise RuntimeError("the server did not start")
        return self

    def sent_audio(self, session_id: str) -> dict[tuple[int, int], float]:
        """(turn, offset) -> when the server handed that audio frame to the socket."""

        async def read() -> list[Any]:
            conv = self.server.find_conversation(session_id)
            return list(conv.trace) if conv is not None and conv.trace is not None else []

        future = asyncio.run_coroutine_threadsafe(read(), self.server.loop)
        return {(e.turn, e.offset): e.at for e in future.result(10) if e.what == "sent:audio"}

    def __exit__(self, *exc: object) -> None:
        self.server.request_shutdown()
        self._thread.join(30)


async def _recv_json(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        raw = await ws.recv()
        if isinstance(raw, str):
            msg: dict[str, Any] = json.loads(raw)
            if msg["type"] == kind:
                return msg


async def _pings(ws: ClientConnection, n: int) -> list[float]:
    rtts = []
    for i in range(n):
        t0 = time.perf_counter()
        await ws.send(json.dumps({"type": "bitvoice.ping", "event_id": f"p{i}"}))
        await _recv_json(ws, "bitvoice.pong")
        rtts.append((time.perf_counter() - t0) * 1000)
    return rtts


async def _turn(
    ws: ClientConnection, pings: int
) -> tuple[list[tuple[float, int, int]], list[float]]:
    """One text turn; ((arrival, turn, offset) per audio frame, ping rtts ms meanwhile)."""
    await ws.send(json.dumps({"type": "response.create", "input_text": "Tell me a story."}))
    arrivals: list[tuple[float, int, int]] = []  # (arrival s, turn, offset samples)
    rtts: list[float] = []
    ping_at: float | None = None
    while True:
        raw = await ws.recv()
        now = time.monotonic()  # the clock of the server's trace (same process)
        if isinstance(raw, bytes):
            turn = int.from_bytes(raw[4:8], "little")
            arrivals.append((now, turn, int.from_bytes(raw[8:12], "little")))
            if ping_at is None and len(rtts) < pings and len(arrivals) % 5 == 0:
                ping_at = now
                await ws.send(json.dumps({"type": "bitvoice.ping", "event_id": "x"}))
            continue
        msg = json.loads(raw)
        if msg["type"] == "bitvoice.pong" and ping_at is not None:
            rtts.append((now - ping_at) * 1000)
            ping_at = None
        if msg["type"] == "response.done":
            break
    return arrivals, rtts


def _pacing(arrivals: list[tuple[float, int, int]]) -> tuple[list[float], list[float]]:
    """(leads ms, gaps ms) of one turn's frames."""
    if not arrivals:
        return [], []
    t0, _, o0 = arrivals[0]
    leads = [((off - o0) / OUTPUT_RATE - (t - t0)) * 1000 for t, _, off in arrivals]
    gaps = [(b[0] - a[0]) * 1000 for a, b in itertools.pairwise(arrivals)]
    return leads, gaps


async def _drive(srv: _Server, args: argparse.Namespace) -> dict[str, Any]:
    port = srv.server.port
    async with connect(f"ws://127.0.0.1:{port}/v1/realtime", max_size=None) as ws:
        session_id = (await _recv_json(ws, "session.created"))["session"]["id"]
        session = {"sampling": {"max_output_tokens": args.max_tokens}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await _recv_json(ws, "session.updated")
        await _pings(ws, 20)  # warm-up
        idle = await _pings(ws, args.pings)
        leads: list[float] = []
        gaps: list[float] = []
        busy: list[float] = []
        delivery: list[float] = []
        for _ in range(args.turns):
            arrivals, rtt = await _turn(ws, args.pings)
            lead, gap = _pacing(arrivals)
            leads += lead
            gaps += gap
            busy += rtt
            sent = await asyncio.to_thread(srv.sent_audio, session_id)
            delivery += [(t - sent[(k, o)]) * 1000 for t, k, o in arrivals if (k, o) in sent]
    return {
        "control_rtt_idle_ms": _stats(idle),
        "control_rtt_during_reply_ms": _stats(busy),
        "audio_delivery_ms": _stats(delivery),
        "audio_lead_ms": _stats(leads),
        "audio_gap_ms": _stats(gaps),
    }


def _print(result: dict[str, Any]) -> None:
    print(f"machine: {result['machine']}")
    print(f"{'measure':32} {'n':>5} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for key, s in result["results"].items():
        if s:
            print(
                f"{key:32} {s['n']:>5} {s['p50']:>8.2f} {s['p90']:>8.2f} "
                f"{s['p99']:>8.2f} {s['max']:>8.2f}"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pings", type=int, default=300, help="idle pings (default %(default)s)")
    p.add_argument("--turns", type=int, default=3, help="text turns (default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=48, help="tokens a reply (default 48)")
    p.add_argument("--out", type=Path, default=Path("bench/results/http_stack.json"))
    args = p.parse_args(argv)
    import os

    os.environ.setdefault("BITVOICE_HOME", tempfile.mkdtemp(prefix="bv-bench-"))
    with _Server() as srv:
        results = asyncio.run(_drive(srv, args))
    out = {"machine": describe_machine(), "results": results}
    _print(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        args.out.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
