"""Voice benchmark: STT real-time factor and latency, TTS time to first chunk and RTF.

    python bench/bench_voice.py [--threads 2] [--out bench/results/voice.json]

STT: Whisper base (the default), a ~3 s espeak-ng utterance, median of N runs after a warm-up.
TTS: the backend TTS() picks here (Piper offline; pocket-tts when its weights are pulled);
time to the first chunk and RTF, and Piper's first-chunk time for a first segment of ~40
characters (today's first clause) against ~90 (the old first-segment cap).
Prints a table and the machine; writes JSON. Timings, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe_machine
from engine.audio import decode_pcm16

UTTERANCE = "Could you turn the kitchen lights off, please?"
TTS_TEXT = "Sure. I have turned off the kitchen lights. Is there anything else you need?"


def _machine() -> dict[str, object]:
    return describe_machine()


def _utterance_pcm() -> bytes:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is needed (apt-get install -y espeak-ng)")
    wav = subprocess.run(
        [exe, "-s", "130", "--stdout", UTTERANCE], check=True, capture_output=True
    ).stdout
    return decode_pcm16(wav).tobytes()


async def bench_stt(threads: int, runs: int, pcm: bytes) -> dict[str, object]:
    from engine.stt import STT

    audio_s = len(pcm) / 32000
    stt = STT(num_threads=threads)
    t0 = time.perf_counter()
    await stt.start()
    load_s = time.perf_counter() - t0
    latencies = []
    async with stt.open_session() as session:
        text = await session.transcribe(pcm, language="en")  # warm-up
        for _ in range(runs):
            t0 = time.perf_counter()
            await session.transcribe(pcm, language="en")
            latencies.append(time.perf_counter() - t0)
    await stt.stop()
    lat = statistics.median(latencies)
    return {
        "audio_s": audio_s,
        "load_s": load_s,
        "latency_s": lat,
        "rtf": lat / audio_s,
        "text": text,
    }


async def bench_tts(threads: int, runs: int) -> dict[str, object]:
    from engine.tts import TTS

    os.environ["BITVOICE_TTS_THREADS"] = str(threads)
    tts = TTS()
    await tts.start()
    ttfa, rtf = [], []
    async with tts.open_session() as session:
        await session.collect("Warm up.")
        for _ in range(runs):
            t0 = time.perf_counter()
            first = None
            total = 0
            async for chunk in session.synthesize(TTS_TEXT):
                if first is None:
                    first = time.perf_counter() - t0
                total += len(chunk)
            elapsed = time.perf_counter() - t0
            ttfa.append(first or elapsed)
            rtf.append(elapsed / (total / 2 / 24_000))
    backend = tts.backend_name
    await tts.stop()
    return {"backend": backend, "ttfa_s": statistics.median(ttfa), "rtf": statistics.median(rtf)}


#: First segments of the two sizes compared (issue 15, lever 5): what the segmenter cuts now,
#: and what the old 90-character cap let through.
FIRST_SEGMENTS = {
    40: "I have turned off the kitchen lights now",
    90: "Sure, I have turned off the kitchen lights and the lamp beside the sofa in the living room",
}


def bench_piper_first_segment(threads: int, runs: int) -> dict[str, object]:
    """Piper's time to its first chunk for each first-segment size (median ms), backend level."""
    import threading

    from engine.tts.backends import PiperBackend

    backend = PiperBackend(threads)
    state = backend.builtin_state(backend.default_voice())
    stop = threading.Event()
    next(iter(backend.stream(state, "Warm up.", stop)))
    out: dict[str, object] = {}
    for size, text in FIRST_SEGMENTS.items():
        times, audio_s = [], 0.0
        for _ in range(runs):
            t0 = time.perf_counter()
            first = next(iter(backend.stream(state, text, stop)))
            times.append(time.perf_counter() - t0)
            audio_s = first.size / 24_000
        out[f"chars_{size}"] = {
            "chars": len(text),
            "first_chunk_ms": 1000 * statistics.median(times),
            "audio_s": audio_s,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/voice.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("BITVOICE_HOME", tempfile.mkdtemp(prefix="bitvoice-bench-"))
    stt: dict[str, Any] = asyncio.run(bench_stt(args.threads, args.runs, _utterance_pcm()))
    tts: dict[str, Any]
    tts = asyncio.run(bench_tts(args.threads, args.runs))
    tts["piper_first_segment"] = bench_piper_first_segment(args.threads, max(args.runs, 5))
    machine = _machine()
    print(
        f"machine: {machine['cpu']} ({machine['logical_cpus']} CPUs, load {machine['load_average']}), threads={args.threads}"
    )
    print(f"{'metric':<36}{'value':>10}")
    print(f"{'STT Whisper base: audio (s)':<36}{stt['audio_s']:>10.2f}")
    print(f"{'STT latency (s)':<36}{stt['latency_s']:>10.3f}")
    print(f"{'STT real-time factor':<36}{stt['rtf']:>10.3f}")
    print(f"{'TTS (' + str(tts['backend']) + ') first chunk (s)':<36}{tts['ttfa_s']:>10.3f}")
    print(f"{'TTS real-time factor':<36}{tts['rtf']:>10.3f}")
    for row in tts["piper_first_segment"].values():
        label = f"Piper first chunk, {row['chars']}-char seg (ms)"
        print(f"{label:<36}{row['first_chunk_ms']:>10.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": machine, "threads": args.threads, "stt": stt, "tts": tts}, indent=2)
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
