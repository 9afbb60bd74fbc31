"""Realtime server benchmark: one command, a table on stdout, JSON on disk.

    python bench/bench_realtime.py [--turns 5] [--barge-ins 5] [--pings 50]
                                   [--stt-model ID] [--model ID] [--out FILE]

Starts `bitvoice serve` in-process on loopback with the default engines (Whisper from the
registry packages unless --stt-model, the offline Piper voice, the best LLM bundle in the store
else the demo bundle) and drives it with the real websockets client. Median and p95 of:

- end of user speech -> first reply audio byte: server side from the VAD's end-of-turn
  decision (`bitvoice.metrics`), and client side from the last voiced audio sent to the first
  reply frame received (this one includes the VAD's end-of-turn silence); with the time split
  by stage (STT final, LLM first token, first sentence, TTS first chunk, pacing). Speech turns
  run with partial transcripts on (the default) and off, so the cost of partials to the final
  transcript shows;
- barge-in: the server detecting speech -> the last audio frame of the old reply handed to the
  socket (from the server's send trace; negative when the last frame went out before), and the
  client's first speech sent -> `bitvoice.audio.flush` received;
- control round trip (`bitvoice.ping` -> `bitvoice.pong`) on a connection that is receiving a
  reply, while 4 other connections stream microphone audio.

The machine is shared: the load average at the start and the end is part of the result.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "realtime"))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from bench.machine import describe_machine  # noqa: E402
from realtime import limits  # noqa: E402
from realtime import messages as m  # noqa: E402
from realtime.server import RealtimeServer, ServerConfig, serve  # noqa: E402

FRAME = 640  # 20 ms of 16 kHz PCM16
STAGES = (
    "stt_final_ms",
    "first_token_ms",
    "first_sentence_ms",
    "tts_first_chunk_ms",
    "first_audio_ms",
)


def stats(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0, "median": None, "p95": None}
    s = sorted(xs)
    return {
        "n": len(s),
        "median": round(statistics.median(s), 1),
        "p95": round(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))], 1),
    }


def machine() -> dict[str, Any]:
    """describe_machine() plus what a server benchmark also wants: usable CPUs, OS."""
    return {
        **describe_machine(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
    }


async def session(ws: ClientConnection, **cfg: Any) -> None:
    await ws.recv()  # session.created
    await ws.send(json.dumps({"type": "session.update", "session": cfg}))
    while True:
        raw = await ws.recv()
        if isinstance(raw, str) and '"session.updated"' in raw:
            return


async def speech_turns(port: int, turns: int, partials: bool) -> dict[str, list[float]]:
    """Speech turns; each reply is cancelled once its first audio frame arrived."""
    from rt_helpers import silence_pcm16k, speech_pcm16k

    lead, speech = silence_pcm16k(0.3), speech_pcm16k("please tell me what the weather is like")
    audio = lead + speech + silence_pcm16k(1.0)
    speech_end = len(lead) + len(speech)
    out: dict[str, list[float]] = {k: [] for k in (*STAGES, "client_first_audio_ms")}
    out["partials_per_turn"] = []
    async with connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
        await session(ws, partial_transcripts=partials, sampling={"max_output_tokens": 48})
        for _ in range(turns):
            t_end: float | None = None
            partial_count = 0

            async def send() -> None:
                nonlocal t_end
                for i in range(0, len(audio), FRAME):
                    await ws.send(audio[i : i + FRAME])
                    if t_end is None and i + FRAME >= speech_end:
                        t_end = time.perf_counter()
                    await asyncio.sleep(0.02)

            sender = asyncio.create_task(send())
            cancelled = False
            while True:
                raw = await ws.recv()
                if isinstance(raw, bytes):
                    if not cancelled:
                        assert t_end is not None
                        out["client_first_audio_ms"].append((time.perf_counter() - t_end) * 1e3)
                        await ws.send('{"type":"response.cancel"}')
                        cancelled = True
                    continue
                msg = m.decode_server(raw)
                if isinstance(msg, m.ConversationItemInputAudioTranscriptionDelta):
                    partial_count += 1
                if isinstance(msg, m.ResponseDone):
                    for k in STAGES:
                        v = getattr(msg.metrics, k)
                        if v is not None:
                            out[k].append(v)
                    out["partials_per_turn"].append(partial_count)
                    break
            await sender
            await asyncio.sleep(0.3)
    return out


async def barge_ins(server: RealtimeServer, n: int) -> dict[str, list[float]]:
    from rt_helpers import on_server, speech_pcm16k

    speech = speech_pcm16k("stop, wait a moment please")
    out: dict[str, list[float]] = {
        "detect_to_last_frame_sent_ms": [],
        "client_speech_to_flush_ms": [],
    }
    for _ in range(n):
        async with connect(f"ws://127.0.0.1:{server.port}/v1/realtime") as ws:
            created = m.decode_server(await ws.recv())
            assert isinstance(created, m.SessionCreated)
            sid = created.session.id
            upd = {"partial_transcripts": False, "sampling": {"max_output_tokens": 64}}
            await ws.send(json.dumps({"type": "session.update", "session": upd}))
            await ws.send('{"type":"response.create","input_text":"Tell me a long story."}')
            while True:  # about a second of the reply first
                raw = await ws.recv()
                if isinstance(raw, bytes) and m.unpack_audio_frame(raw).offset >= 24_000:
                    break
            t_speech = time.perf_counter()

            async def talk() -> None:
                for i in range(0, len(speech), FRAME):
                    await ws.send(speech[i : i + FRAME])
                    await asyncio.sleep(0.02)

            talker = asyncio.create_task(talk())
            while True:
                raw = await ws.recv()
                if isinstance(raw, str) and '"bitvoice.audio.flush"' in raw:
                    out["client_speech_to_flush_ms"].append((time.perf_counter() - t_speech) * 1e3)
                    break
            await talker

            def snapshot(sid: str = sid) -> list[Any]:
                conv = server.find_conversation(sid)
                assert conv is not None and conv.trace is not None
                return list(conv.trace)

            trace = await on_server(server, snapshot)  # read on the server's own loop
            detect = next(
                e.at for e in trace if e.what == "queued:input_audio_buffer.speech_started"
            )
            last = max(e.at for e in trace if e.what == "sent:audio" and e.turn == 1)
            out["detect_to_last_frame_sent_ms"].append((last - detect) * 1e3)
    return out


async def control_rtt(port: int, n: int) -> list[float]:
    async def streamer(stop: asyncio.Event) -> None:
        from rt_helpers import noise_pcm16k

        noise = noise_pcm16k(1.0)
        async with connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
            await session(ws)
            i = 0
            while not stop.is_set():
                await ws.send(noise[i : i + FRAME])
                i = (i + FRAME) % len(noise)
                await asyncio.sleep(0.02)

    stop = asyncio.Event()
    tasks = [asyncio.create_task(streamer(stop)) for _ in range(4)]
    rtts: list[float] = []
    async with connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
        await session(ws, sampling={"max_output_tokens": 256})
        await ws.send('{"type":"response.create","input_text":"Tell me a long story."}')
        for i in range(n):
            t = time.perf_counter()
            await ws.send(json.dumps({"type": "bitvoice.ping", "event_id": str(i)}))
            while True:
                raw = await ws.recv()
                if isinstance(raw, str) and '"bitvoice.pong"' in raw:
                    break
            rtts.append((time.perf_counter() - t) * 1e3)
            await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return rtts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=5, help="speech turns, each with partials on/off")
    ap.add_argument("--barge-ins", type=int, default=5)
    ap.add_argument("--pings", type=int, default=50)
    ap.add_argument("--stt-model", default=None, help="Whisper store ID (default: Whisper base)")
    ap.add_argument("--model", default=None, help="LLM store ID (default: best, else demo)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realtime.json")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    holder: list[RealtimeServer] = []
    ready = threading.Event()

    def on_ready(server: RealtimeServer) -> None:
        holder.append(server)
        ready.set()

    def run() -> None:
        import uvloop

        cfg = ServerConfig(port=0, stt_model=args.stt_model, model=args.model, trace=True)
        uvloop.run(serve(cfg, ready=on_ready))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    ready.wait(600)
    server = holder[0]
    tts_backend = server.engines.tts.backend_name  # None once stopped: read it now
    t0 = time.perf_counter()
    on = asyncio.run(speech_turns(server.port, args.turns, partials=True))
    off = asyncio.run(speech_turns(server.port, args.turns, partials=False))
    barge = asyncio.run(barge_ins(server, args.barge_ins))
    rtt = asyncio.run(control_rtt(server.port, args.pings))
    elapsed = time.perf_counter() - t0
    load_end = os.getloadavg()
    server.request_shutdown()
    th.join(30)

    def split(turns: dict[str, list[float]]) -> dict[str, Any]:
        """Per-turn stage durations (each stage minus the previous one)."""
        rows = list(zip(*(turns[k] for k in STAGES), strict=False))
        names = ["stt", "llm_first_token", "first_sentence", "tts_first_chunk", "pacing_send"]
        per = {n: [r[i] - (r[i - 1] if i else 0.0) for r in rows] for i, n in enumerate(names)}
        return {n: stats(v) for n, v in per.items()}

    result: dict[str, Any] = {
        "machine": machine(),
        "load_average_1_5_15": {"start": load_start, "end": load_end},
        "note": "2 CPU cores shared with 5 other engineers' jobs; see the load average",
        "elapsed_s": round(elapsed, 1),
        "model": server.engines.model_id,
        "notice": server.engines.notice,
        "stt_model": server.engines.stt.model_id,
        "tts_backend": tts_backend,
        "stt_decode_estimate_s": server.engines.decode_timer.estimate_s,
        "vad_silence_duration_ms": m.TurnDetection().silence_duration_ms,
        "playback_lead_ms": limits.PLAYBACK_LEAD_MS,
        "partials_on": {k: stats(v) for k, v in on.items()},
        "partials_on_stage_split": split(on),
        "partials_off": {k: stats(v) for k, v in off.items()},
        "barge_in": {k: stats(v) for k, v in barge.items()},
        "control_rtt_ms_under_load": stats(rtt),
        "raw": {"partials_on": on, "partials_off": off, "barge_in": barge, "control_rtt": rtt},
    }
    print(f"machine: {result['machine']}")
    print(f"load average (1/5/15 min): start {load_start}  end {load_end}  (shared machine)")
    print(
        f"llm {result['model']}  stt {result['stt_model']}  tts {result['tts_backend']}  "
        f"stt decode estimate {result['stt_decode_estimate_s']:.3f} s"
    )
    print(f"{'metric':52} {'n':>4} {'median ms':>10} {'p95 ms':>10}")
    rows: list[tuple[str, dict[str, Any]]] = []
    for label, data in (("partials on", on), ("partials off", off)):
        rows.append((f"[{label}] speech end (VAD) -> first audio", stats(data["first_audio_ms"])))
        rows.append(
            (
                f"[{label}] last voiced audio sent -> first frame recv",
                stats(data["client_first_audio_ms"]),
            )
        )
        rows.append((f"[{label}] speech end (VAD) -> STT final", stats(data["stt_final_ms"])))
    for name, s in split(on).items():
        rows.append((f"  where it goes (partials on): {name}", s))
    rows.append(
        (
            "barge-in: detect -> last old frame sent",
            result["barge_in"]["detect_to_last_frame_sent_ms"],
        )
    )
    rows.append(
        (
            "barge-in: client speech sent -> flush recv",
            result["barge_in"]["client_speech_to_flush_ms"],
        )
    )
    rows.append(("control round trip (reply playing, 4 mics)", result["control_rtt_ms_under_load"]))
    for name, s in rows:
        med = "-" if s["median"] is None else f"{s['median']:.1f}"
        p95 = "-" if s["p95"] is None else f"{s['p95']:.1f}"
        print(f"{name:52} {s['n']:>4} {med:>10} {p95:>10}")
    print(f"partial transcripts per turn: {on['partials_per_turn']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
