"""Realtime server benchmark: one command, a table on stdout, JSON on disk.

    python bench/bench_realtime.py [--turns 5] [--stt-model ID] [--model ID] [--out FILE]

Starts `bitvoice serve` in-process on loopback and measures, median and p95:
- end of user speech (VAD) -> STT final, first LLM token, first reply audio byte
  (the server's own `bitvoice.metrics`), for espeak-ng speech turns;
- barge-in: client speech start sent -> last reply audio frame received before the flush
  (only when replies carry audio);
- control round trip (`bitvoice.ping` -> `bitvoice.pong`) while 4 other connections stream audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "realtime"))

from websockets.asyncio.client import connect

from realtime import messages as m
from realtime.server import RealtimeServer, ServerConfig, serve


def stats(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"n": 0, "median": None, "p95": None}
    s = sorted(xs)
    return {
        "n": len(s),
        "median": statistics.median(s),
        "p95": s[min(len(s) - 1, int(0.95 * len(s)))],
    }


async def speech_turns(port: int, turns: int) -> dict[str, list[float]]:
    from conftest import silence_pcm16k, speech_pcm16k

    audio = (
        silence_pcm16k(0.3) + speech_pcm16k("what is the capital of france") + silence_pcm16k(0.8)
    )
    out: dict[str, list[float]] = {"stt_final_ms": [], "first_token_ms": [], "first_audio_ms": []}
    async with connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
        await ws.recv()
        upd = {"type": "session.update", "session": {"partial_transcripts": False}}
        await ws.send(json.dumps(upd))
        for _ in range(turns):
            for i in range(0, len(audio), 640):
                await ws.send(audio[i : i + 640])
                await asyncio.sleep(0.02)
            while True:
                raw = await ws.recv()
                if isinstance(raw, bytes):
                    continue
                msg = m.decode_server(raw)
                if isinstance(msg, m.ResponseDone):
                    for k in out:
                        v = getattr(msg.metrics, k)
                        if v is not None:
                            out[k].append(v)
                    break
    return out


async def control_rtt(port: int, n: int = 50) -> list[float]:
    async def streamer(stop: asyncio.Event) -> None:
        async with connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
            await ws.send('{"type":"session.update"}')
            while not stop.is_set():
                await ws.send(bytes(640))
                await asyncio.sleep(0.02)

    stop = asyncio.Event()
    tasks = [asyncio.create_task(streamer(stop)) for _ in range(4)]
    rtts: list[float] = []
    async with connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
        await ws.recv()
        for i in range(n):
            t = time.perf_counter()
            await ws.send(json.dumps({"type": "bitvoice.ping", "event_id": str(i)}))
            while True:
                raw = await ws.recv()
                if (
                    isinstance(raw, str)
                    and m.decode_server(raw).__struct_config__.tag == "bitvoice.pong"
                ):
                    break
            rtts.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return rtts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--stt-model", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, default=Path("bench/results_realtime.json"))
    args = ap.parse_args()
    holder: list[RealtimeServer] = []
    ready = threading.Event()

    def run() -> None:
        import uvloop

        cfg = ServerConfig(port=0, stt_model=args.stt_model, model=args.model)
        uvloop.run(serve(cfg, ready=lambda s: (holder.append(s), ready.set())))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    ready.wait(300)
    server = holder[0]
    turns = asyncio.run(speech_turns(server.port, args.turns))
    rtt = asyncio.run(control_rtt(server.port))
    server.request_shutdown()
    th.join(30)
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "model": server.engines.model_id,
        "stt_model": server.engines.stt.model_id,
        "tts_backend": server.engines.tts.backend_name,
        "speech_end_to": {k: stats(v) for k, v in turns.items()},
        "control_rtt_ms_under_load": stats(rtt),
    }
    print(f"machine: {result['machine']}")
    print(f"model {result['model']}  stt {result['stt_model']}  tts {result['tts_backend']}")
    print(f"{'metric':40} {'n':>4} {'median ms':>10} {'p95 ms':>10}")
    rows = [(f"speech end -> {k}", v) for k, v in result["speech_end_to"].items()]
    rows.append(("control round trip under load", result["control_rtt_ms_under_load"]))
    for name, s in rows:
        med = "-" if s["median"] is None else f"{s['median']:.1f}"
        p95 = "-" if s["p95"] is None else f"{s['p95']:.1f}"
        print(f"{name:40} {s['n']:>4} {med:>10} {p95:>10}")
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
