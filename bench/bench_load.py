"""Load benchmark: how many conversations this machine serves within the first-audio budget.

    python -m bench.bench_load [--levels 1,2,3,4,6,8] [--seconds 45] [--period 10]
                               [--max-tokens 48] [--stt-model ID] [--model ID] [--out FILE]
    python -m bench.bench_load --quick      # a smoke test: levels 1,2, 15 s each

Starts `bitvoice serve` in-process on loopback (the default engines unless --stt-model /
--model), with admission lifted (the hard cap at the largest level, no latency budget), and
for each level N opens N conversations at once. Each conversation is a user who speaks a turn
every ~`period` seconds: a real recorded English clip from the `pytest-audioeval` package,
streamed at real-time pace in 20 ms frames, then silence (the microphone keeps streaming), the
first turn at a random phase so the users are independent. The server's VAD ends each turn.

Per level: p50/p90 of
- server: the VAD's end of turn -> the first reply audio frame sent (`bitvoice.metrics`
  `first_audio_ms`, what the admission policy observes);
- client: the end of speech in the audio (the last voiced frame sent) -> the first reply
  audio frame received; it includes the VAD's end-of-turn silence (500 ms by default).
It prints the curve and the largest N whose p90 stays within `--budget` (1.5 s), for both.
Turns whose reply never started audio (cut by the next turn's speech) count as missed.

The machine is described (bench/machine.py) and its load average recorded: timings on a shared
machine are skewed by whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from bench.machine import describe_machine  # noqa: E402
from realtime import limits  # noqa: E402
from realtime import messages as m  # noqa: E402
from realtime.server import RealtimeServer, ServerConfig, serve  # noqa: E402

FRAME_S = 0.02
FRAME_BYTES = int(limits.INPUT_RATE * FRAME_S) * 2  # 20 ms of 16 kHz PCM16
LEAD_SILENCE_S = 0.3
LAST_REPLY_WAIT_S = 30.0  # at the end of a level, how long a user waits for its last reply
CLIP_SILENCE_RMS = 0.05  # a 20 ms frame below this share of the clip's loudest is not speech
DEFAULT_LEVELS = (1, 2, 3, 4, 6, 8)
QUICK_LEVELS = (1, 2)


def english_clips() -> list[bytes]:
    """The pytest-audioeval English clips as PCM16 LE mono 16 kHz, trimmed to the speech
    (0.7-2.6 s each)."""
    import importlib.util

    import soundfile as sf

    spec = importlib.util.find_spec("pytest_audioeval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bench_load needs the pytest-audioeval package (its speech clips)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio" / "en"
    clips: list[bytes] = []
    for wav in sorted(folder.glob("*.wav")):
        data, rate = sf.read(wav, dtype="float32")
        if rate != limits.INPUT_RATE:
            raise SystemExit(f"{wav.name}: {rate} Hz, expected {limits.INPUT_RATE}")
        clips.append(_trim(np.clip(data, -1.0, 1.0)))
    if not clips:
        raise SystemExit(f"no clips in {folder}")
    return clips


def _trim(samples: np.ndarray) -> bytes:
    """The clip without the quiet head and tail of the recording, as whole 20 ms PCM16 frames:
    the end of speech is then the end of the clip (the bench times latency from it)."""
    n = len(samples) // (FRAME_BYTES // 2)
    frames = samples[: n * (FRAME_BYTES // 2)].reshape(n, -1)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    voiced = np.flatnonzero(rms > CLIP_SILENCE_RMS * rms.max())
    kept = frames[voiced[0] : voiced[-1] + 1] if voiced.size else frames
    return (kept.reshape(-1) * 32767).astype("<i2").tobytes()


def pct(xs: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of xs, None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(np.ceil(q * len(s))) - 1))]


@dataclass
class UserResult:
    """One simulated user's turns at one level."""

    clips: int = 0
    server_first_audio_s: list[float] = field(default_factory=list)
    client_first_audio_s: list[float] = field(default_factory=list)
    responses: int = 0


@dataclass
class _Pending:
    speech_end: float | None = None  # when the last voiced frame of the current clip was sent
    open_response: str | None = None  # a response created after that end, awaiting its audio
    created: int = 0  # responses created ...
    done: int = 0  # ... and finished (their metrics come with response.done)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # done == created


async def _reader(ws: ClientConnection, state: _Pending, out: UserResult) -> None:
    """Read every server message; time the first reply audio of each measured response."""
    async for raw in ws:
        now = time.perf_counter()
        if isinstance(raw, bytes):
            rid = m.response_id_for(m.unpack_audio_frame(raw).turn)
            if state.open_response == rid and state.speech_end is not None:
                out.client_first_audio_s.append(now - state.speech_end)
                state.open_response, state.speech_end = None, None
            continue
        msg = m.decode_server(raw)
        if isinstance(msg, m.ResponseCreated):
            state.created += 1
            state.settled.clear()
            if state.speech_end is not None:
                state.open_response = msg.response.id
        elif isinstance(msg, m.ResponseDone):
            state.done += 1
            if state.done >= state.created:
                state.settled.set()
            out.responses += 1
            if msg.metrics.first_audio_ms is not None:
                out.server_first_audio_s.append(msg.metrics.first_audio_ms / 1000.0)


async def _user(
    url: str, clips: list[bytes], seconds: float, period: float, max_tokens: int, seed: int
) -> UserResult:
    """One user for `seconds`: a clip every `period` s at real-time pace, silence between."""
    rng = random.Random(seed)
    out, state = UserResult(), _Pending()
    silence = bytes(FRAME_BYTES)
    async with connect(url, max_size=None) as ws:
        await ws.recv()  # session.created
        cfg = {"sampling": {"max_output_tokens": max_tokens}, "partial_transcripts": True}
        await ws.send(json.dumps({"type": "session.update", "session": cfg}))
        reader = asyncio.create_task(_reader(ws, state, out))
        start = time.perf_counter()
        next_turn = start + rng.uniform(0.0, period)
        k = 0
        speech: list[bytes] = []
        while (now := time.perf_counter()) - start < seconds or speech:
            if not speech and now >= next_turn and now - start < seconds:
                clip = clips[rng.randrange(len(clips))]
                lead = [silence] * int(LEAD_SILENCE_S / FRAME_S)
                speech = lead + [
                    clip[i : i + FRAME_BYTES] for i in range(0, len(clip), FRAME_BYTES)
                ]
                next_turn += period
                out.clips += 1
            frame = speech.pop(0) if speech else silence
            await ws.send(frame)
            if speech == [] and frame is not silence:
                state.speech_end, state.open_response = time.perf_counter(), None
            k += 1
            await asyncio.sleep(max(0.0, start + k * FRAME_S - time.perf_counter()))
        await _finish(ws, state)
        reader.cancel()
    return out


async def _finish(ws: ClientConnection, state: _Pending) -> None:
    """Let the last reply start (or give up after LAST_REPLY_WAIT_S: counted as missed), then
    cancel it and wait for every response.done (the server's metrics come with it)."""
    silence = bytes(FRAME_BYTES)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LAST_REPLY_WAIT_S):
            while state.speech_end is not None:
                await ws.send(silence)
                await asyncio.sleep(FRAME_S)
    await ws.send('{"type":"response.cancel"}')
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LAST_REPLY_WAIT_S):
            if state.done < state.created:
                await state.settled.wait()


async def run_level(
    port: int, n: int, clips: list[bytes], seconds: float, period: float, max_tokens: int
) -> dict[str, Any]:
    """N users at once for `seconds`; their latencies pooled."""
    url = f"ws://127.0.0.1:{port}/v1/realtime"
    results = await asyncio.gather(
        *(_user(url, clips, seconds, period, max_tokens, seed=1000 * n + i) for i in range(n)),
        return_exceptions=True,
    )
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if isinstance(r, UserResult)]
    server = [x for r in ok for x in r.server_first_audio_s]
    client = [x for r in ok for x in r.client_first_audio_s]
    clips_sent = sum(r.clips for r in ok)

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000.0, 1)

    return {
        "conversations": n,
        "clips": clips_sent,
        "responses": sum(r.responses for r in ok),
        "missed": max(0, clips_sent - len(client)),
        "server_p50_ms": ms(pct(server, 0.5)),
        "server_p90_ms": ms(pct(server, 0.9)),
        "client_p50_ms": ms(pct(client, 0.5)),
        "client_p90_ms": ms(pct(client, 0.9)),
        "server_first_audio_s": [round(x, 4) for x in server],
        "client_first_audio_s": [round(x, 4) for x in client],
        "failures": failures,
    }


def capacity(rows: list[dict[str, Any]], key: str, budget_ms: float) -> int:
    """The largest level whose p90 (`key`) is within the budget (0: none is)."""
    good = [r["conversations"] for r in rows if r[key] is not None and r[key] <= budget_ms]
    return max(good, default=0)


def _start_server(
    args: argparse.Namespace, levels: tuple[int, ...]
) -> tuple[RealtimeServer, threading.Thread]:
    holder: list[RealtimeServer] = []
    failure: list[BaseException] = []
    ready = threading.Event()

    def run() -> None:
        import uvloop

        def on_ready(server: RealtimeServer) -> None:
            holder.append(server)
            ready.set()

        cfg = ServerConfig(
            port=0,
            stt_model=args.stt_model,
            model=args.model,
            max_conversations=max(levels),
            first_audio_budget_s=None,  # admission lifted: we measure what it should allow
        )
        try:
            uvloop.run(serve(cfg, ready=on_ready))
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="bench-load-server", daemon=True)
    thread.start()
    ready.wait(600)
    if failure or not holder:
        raise SystemExit(f"the server did not start: {failure!r}")
    return holder[0], thread


def _wait_idle(server: RealtimeServer, limit_s: float = 30.0) -> None:
    """Wait until the previous level's conversations have closed (the hard cap counts them)."""
    deadline = time.monotonic() + limit_s
    while server.conversations and time.monotonic() < deadline:
        time.sleep(0.1)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default=None, help="conversation counts (default 1,2,3,4,6,8)")
    ap.add_argument("--seconds", type=float, default=None, help="per level (default 45)")
    ap.add_argument("--period", type=float, default=10.0, help="seconds between a user's turns")
    ap.add_argument("--max-tokens", type=int, default=48, help="reply length cap (tokens)")
    ap.add_argument("--budget", type=float, default=limits.DEFAULT_FIRST_AUDIO_BUDGET_S)
    ap.add_argument("--stt-model", default=None, help="Whisper store ID (default: Whisper base)")
    ap.add_argument("--model", default=None, help="LLM store ID (default: best, else demo)")
    ap.add_argument("--quick", action="store_true", help="smoke test: levels 1,2, 15 s each")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = ap.parse_args(argv)
    if args.levels is None:
        args.levels = ",".join(map(str, QUICK_LEVELS if args.quick else DEFAULT_LEVELS))
    if args.seconds is None:
        args.seconds = 15.0 if args.quick else 45.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    levels = tuple(int(x) for x in args.levels.split(","))
    clips = english_clips()
    load_start = os.getloadavg()
    server, thread = _start_server(args, levels)
    engines = {
        "model": server.engines.model_id,
        "stt_model": server.engines.stt.model_id,
        "tts_backend": server.engines.tts.backend_name,
    }
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    _print_header()
    try:
        for n in levels:
            _wait_idle(server)
            rows.append(
                asyncio.run(
                    run_level(server.port, n, clips, args.seconds, args.period, args.max_tokens)
                )
            )
            _print_row(rows[-1])
    finally:
        server.request_shutdown()
        thread.join(60)  # engines stopped before the interpreter exits
    budget_ms = args.budget * 1000.0
    result: dict[str, Any] = {
        "machine": {**describe_machine(), "platform": sys.platform},
        "load_average_1_5_15": {"start": load_start, "end": os.getloadavg()},
        "engines": engines,
        "settings": {
            "levels": levels,
            "seconds_per_level": args.seconds,
            "turn_period_s": args.period,
            "max_output_tokens": args.max_tokens,
            "vad_silence_duration_ms": m.TurnDetection().silence_duration_ms,
            "budget_s": args.budget,
            "clips": "pytest-audioeval en/*.wav at real-time pace, 20 ms frames",
        },
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "levels": rows,
        "capacity_server_p90": capacity(rows, "server_p90_ms", budget_ms),
        "capacity_client_p90": capacity(rows, "client_p90_ms", budget_ms),
    }
    print(
        f"largest N with p90 first audio <= {args.budget} s: "
        f"{result['capacity_server_p90']} (server: VAD end of turn -> first audio sent), "
        f"{result['capacity_client_p90']} (client: end of speech -> first audio received)"
    )
    print(f"machine: {result['machine']}")
    print(f"load average: start {load_start}, end {result['load_average_1_5_15']['end']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(not r["failures"] for r in rows) else 1


def _print_header() -> None:
    print(
        f"{'N':>3} {'clips':>5} {'missed':>6} {'server p50':>10} {'p90 ms':>8} "
        f"{'client p50':>10} {'p90 ms':>8}",
        flush=True,
    )


def _print_row(row: dict[str, Any]) -> None:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f}"

    print(
        f"{row['conversations']:>3} {row['clips']:>5} {row['missed']:>6} "
        f"{f(row['server_p50_ms']):>10} {f(row['server_p90_ms']):>8} "
        f"{f(row['client_p50_ms']):>10} {f(row['client_p90_ms']):>8}",
        flush=True,
    )
    if row["failures"]:
        print(f"    failures: {row['failures']}")


if __name__ == "__main__":
    raise SystemExit(main())
