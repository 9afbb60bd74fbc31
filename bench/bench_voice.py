"""Voice benchmark: STT real-time factor and latency, TTS time to first chunk and RTF.

    python bench/bench_voice.py [--threads 2] [--runs 3] [--stt-only] [--out bench/results/voice.json]

STT: Whisper base (the default), a ~3 s espeak-ng utterance, median of N runs after a warm-up.
STT encoder window (issue 15): Whisper base and tiny.en, short window ("auto", the default)
against the full 30 s window ("full"): WER on real recorded speech (the pytest-audioeval
clips: English for both models, es/fr/it/pt/pl for base, with the language given and
detected), fallbacks to the full window, and the time per decode against utterance length
(0.5-10 s cut from the English clips joined end to end).
TTS: the backend TTS() picks here (Piper offline; pocket-tts when its weights are pulled);
time to the first chunk and RTF, and Piper's first-chunk time for a first segment of ~40
characters (today's first clause) against ~90 (the old first-segment cap).
Prints a table and the machine; writes JSON. Timings, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

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


# -- STT encoder window: short vs full (issue 15) -----------------------------------------------
STT_MODELS = {"base": "Systran/faster-whisper-base", "tiny.en": "Systran/faster-whisper-tiny.en"}
WINDOW_LENGTHS_S = (0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0)
OTHER_LANGUAGES = ("es", "fr", "it", "pt", "pl")  # spaced scripts with 1-10 counting clips


def _audioeval_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pytest_audioeval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pytest-audioeval is needed (pip install pytest-audioeval)")
    return Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio"


def _clips(language: str, *, joined: bool = False) -> list[tuple[str, bytes, str]]:
    """(name, audio bytes, reference text) of the pytest-audioeval clips of one language;
    with `joined`, also every ordered pair of them, 0.2 s apart (longer real utterances)."""
    folder = _audioeval_dir() / language
    singles = [
        (f"{language}/{wav.stem}", wav.read_bytes(), wav.with_suffix(".txt").read_text("utf-8"))
        for wav in sorted(folder.glob("*.wav"))
    ]
    if not joined:
        return singles
    gap = np.zeros(int(0.2 * 16_000), dtype=np.int16)
    pairs = []
    for (n1, w1, r1), (n2, w2, r2) in itertools.permutations(singles, 2):
        pcm = np.concatenate([decode_pcm16(w1), gap, decode_pcm16(w2)]).astype("<i2")
        pairs.append((f"{n1}+{n2.split('/')[1]}", pcm.tobytes(), f"{r1} {r2}"))
    return singles + pairs


def _number_words(language: str) -> list[str]:
    """One to ten in `language`, read from its counting clip's own reference text, so that a
    transcript's digits ("1, 2, 3") are scored as the words they stand for."""
    for _, _, ref in _clips(language):
        words = re.sub(r"[^\w\s']", " ", ref.lower()).split()
        if len(words) == 10:
            return words
    return []


def _normalize(text: str, numbers: list[str]) -> str:
    words = []
    for word in re.sub(r"[^\w\s']", " ", text.lower()).split():
        word = word.strip("'")
        if word.isdigit() and 1 <= int(word) <= len(numbers):
            word = numbers[int(word) - 1]
        words.append(word.replace("colour", "color").replace("favourite", "favorite"))
    return " ".join(words)


def _wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return float(jiwer.wer(refs, hyps))


TIMING_TEXT = (
    "Good morning. Could you tell me what the weather will be like this afternoon in the city? "
    "I am planning to walk to the library, return two books, and then meet a friend for coffee "
    "near the river, so I would like to know whether I should take an umbrella with me."
)


def _speech_of_length(seconds: float) -> bytes:
    """The first `seconds` of one long espeak-ng paragraph (distinct words throughout, so the
    repetition guard sees no repeats; cut mid-word like a partial transcript's audio)."""
    pcm = decode_pcm16(_espeak_wav(TIMING_TEXT))
    return pcm[: int(seconds * 16_000)].astype("<i2").tobytes()


def _espeak_wav(text: str) -> bytes:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is needed (apt-get install -y espeak-ng)")
    return subprocess.run(
        [exe, "-s", "150", "--stdout", text], check=True, capture_output=True
    ).stdout


async def _wer_rows(stt: Any, model: str) -> list[dict[str, Any]]:
    """Transcribe every clip of the model's languages; one row per clip and language mode."""
    langs = ("en",) if model.endswith(".en") else ("en", *OTHER_LANGUAGES)
    rows = []
    async with stt.open_session() as session:
        for lang in langs:
            numbers = _number_words(lang)
            for name, wav, ref in _clips(lang, joined=True):
                # detection is measured on the single clips (one utterance each)
                modes = (lang,) if model.endswith(".en") or "+" in name else (lang, None)
                for given in modes:
                    text = await session.transcribe(wav, language=given)
                    rows.append(
                        {
                            "clip": name,
                            "language_given": given,
                            "ref": _normalize(ref, numbers),
                            "hyp": _normalize(text, numbers),
                            "text": text,
                            "detected": session.last_language,
                            "probability": round(session.last_language_probability, 3),
                            "decode_s": session.last_decode_seconds,
                        }
                    )
    return rows


async def _time_rows(stt: Any, runs: int) -> list[dict[str, Any]]:
    rows = []
    async with stt.open_session() as session:
        for seconds in WINDOW_LENGTHS_S:
            pcm = _speech_of_length(seconds)
            times = []
            before = dict(stt.health()["decodes"])
            for _ in range(runs):
                text = await session.transcribe(pcm, language="en")
                times.append(session.last_decode_seconds)
            after = stt.health()["decodes"]
            fallbacks = sum(
                n - before.get(k, 0) for k, n in after.items() if k.startswith("fallback_")
            )
            row = {"audio_s": seconds, "decode_s": statistics.median(times), "text": text}
            rows.append({**row, "fallbacks": fallbacks, "runs": runs})
    return rows


async def bench_stt_windows(threads: int, runs: int) -> dict[str, Any]:
    """WER and time per decode for each STT model and encoder window."""
    from engine.stt import STT

    results: dict[str, Any] = {}
    for model, model_id in STT_MODELS.items():
        for window in ("full", "auto"):
            stt = STT(model_id, num_threads=threads, encoder_window=window)
            await stt.start()
            await _time_rows(stt, 1)  # warm-up
            rows = await _wer_rows(stt, model)
            times = await _time_rows(stt, runs)
            decodes = stt.health()["decodes"]
            await stt.stop()
            given = [r for r in rows if r["language_given"]]
            results[f"{model}/{window}"] = {
                "wer_en": _wer(*_pair(r for r in given if r["clip"].startswith("en/"))),
                "wer_all_given": _wer(*_pair(given)),
                "wer_all_detected": _wer(*_pair(r for r in rows if not r["language_given"]))
                if len(given) < len(rows)
                else None,
                "clips": rows,
                "time_by_length": times,
                "decodes": decodes,
            }
    return results


def _pair(rows: Any) -> tuple[list[str], list[str]]:
    chosen = list(rows)
    return [r["ref"] for r in chosen], [r["hyp"] for r in chosen]


def print_stt_windows(results: dict[str, Any]) -> None:
    """The comparison as two tables: WER and fallbacks, then decode time by length."""
    print(f"{'STT model/window':<16}{'WER en':>8}{'WER all':>9}{'WER det':>9}  decodes")
    for key, r in results.items():
        det = "-" if r["wer_all_detected"] is None else f"{r['wer_all_detected']:.3f}"
        print(f"{key:<16}{r['wer_en']:>8.3f}{r['wer_all_given']:>9.3f}{det:>9}  {r['decodes']}")
    header = "".join(f"{s:>7.1f}s" for s in WINDOW_LENGTHS_S)
    print("(median of --runs decodes of espeak-ng speech cut to each length; * = fell back)")
    print(f"{'decode s, audio':<16}{header}")
    for key, r in results.items():
        cells = "".join(
            f"{row['decode_s']:>7.3f}{'*' if row['fallbacks'] else ' '}"
            for row in r["time_by_length"]
        )
        print(f"{key:<16}{cells}")


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
    parser.add_argument("--stt-only", action="store_true", help="only the STT window comparison")
    args = parser.parse_args(argv)
    os.environ.setdefault("BITVOICE_HOME", tempfile.mkdtemp(prefix="bitvoice-bench-"))
    windows: dict[str, Any] = asyncio.run(bench_stt_windows(args.threads, args.runs))
    machine = _machine()
    print(
        f"machine: {machine['cpu']} ({machine['logical_cpus']} CPUs, load {machine['load_average']}), threads={args.threads}"
    )
    print_stt_windows(windows)
    if args.stt_only:
        out = args.out.with_name(args.out.stem + "_stt.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": machine, "threads": args.threads, "stt_windows": windows}
        out.write_text(json.dumps(payload, indent=2))
        print(f"wrote {out}")
        return 0
    stt: dict[str, Any] = asyncio.run(bench_stt(args.threads, args.runs, _utterance_pcm()))
    tts: dict[str, Any]
    tts = asyncio.run(bench_tts(args.threads, args.runs))
    tts["piper_first_segment"] = bench_piper_first_segment(args.threads, max(args.runs, 5))
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
        json.dumps(
            {
                "machine": machine,
                "threads": args.threads,
                "stt": stt,
                "stt_windows": windows,
                "tts": tts,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
