"""Echo cancellation and barge-in in simulated rooms: what a person at a kiosk would feel.

    python -m bench.bench_echo [--quick]

On the protocol core with the real canceller (WebRTC AEC3), the real VAD and a real Piper
reply (bench/echo_rooms.py), over a grid of rooms: speaker-to-microphone delay 20/120/250 ms,
echo gain 0/-10/-20 dB against the reply as sent, reverberation RT60 0/0.4 s, noise -65 dBFS.
Speech over the reply is transcribed by Whisper tiny.en through the server's decoder (a
backchannel releases the reply, anything else drops it), as the server does.

- echo alone: holds (the reply stopped until the item read as nothing) and cancelled replies,
  with the server's echo cancellation on and off (the "before");
- clicks, double clicks, noise bursts, coughs and spoken backchannels over the reply:
  cancelled replies (none wanted), and what Whisper read; a spoken "stop" for contrast (a real
  one-word barge-in: it should cancel);
- pytest-audioeval speech over the echo: hold latency from the speech's energy onset;
- canceller candidates on one reply through the rooms: echo removed (ERLE, dB after 2 s) and
  CPU per second of audio (speexdsp and pywebrtc-audio only when installed);
- the input path's CPU per second of audio (canceller + VAD).

Prints a table and writes bench/results/echo.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.echo_rooms import (
    Room,
    click,
    cough,
    espeak_audio,
    noise_burst,
    reply_audio,
    run_reply,
)
from bench.machine import describe_machine
from bench.speech_clips import load_clips

RESULTS = Path(__file__).parent / "results"
RATE = 16_000


def rooms(quick: bool) -> list[Room]:
    """The 18-room grid, each with 3 impulse-response seeds (54 rooms; --quick: 6)."""
    grid = list(itertools.product([20, 120, 250], [0, -10, -20], [0.0, 0.4]))
    seeds = (0,) if quick else (0, 7, 13)
    out = [
        Room(delay_ms=d, gain_db=g, rt60_s=rt, seed=int(d) + s) for s in seeds for d, g, rt in grid
    ]
    return out[::3] if quick else out


def whisper() -> Any:
    """Whisper tiny.en through the server's own decoder (engine.stt.whisper: the short encoder
    window, its guards, the full-window fallback), as a speech item over the reply is
    transcribed to tell a backchannel from a barge-in."""
    from faster_whisper import WhisperModel

    from engine.stt import TINY_EN_STT_MODEL
    from engine.stt.models import resolve_stt_model
    from engine.stt.whisper import WhisperDecoder

    model = WhisperModel(
        str(resolve_stt_model(TINY_EN_STT_MODEL)), device="cpu", compute_type="int8"
    )
    decoder = WhisperDecoder(model, model_id=TINY_EN_STT_MODEL, encoder_window="auto")

    def transcribe(audio: bytes) -> str:
        if len(audio) < 3200:
            return ""
        return str(decoder.decode(np.frombuffer(audio, "<i2"), "en").text).strip()

    return transcribe


# How people say the backchannels that have no spelling espeak-ng can read: from phonemes.
# espeak-ng reads the text "mm-hmm" as three syllables, "em-em-hum" (`espeak-ng -x`:
# ,Em'Emh@m), which is not a backchannel to a listener either (Whisper tiny.en hears "and then
# then"); a person hums two syllabic nasals, m-HM, with the mouth closed.
SPOKEN_AS = {"mm-hmm": "[[m'hm:]]", "uh-huh": "[[Vh'V]]"}


def espeak(text: str) -> np.ndarray:
    """A spoken backchannel at 16 kHz, its leading and trailing silence cut (none without
    espeak-ng); SPOKEN_AS gives the phonemes of those without a readable spelling."""
    try:
        y = espeak_audio(SPOKEN_AS.get(text, text), RATE, words_per_minute=190)
    except RuntimeError:
        return np.zeros(0)
    keep = np.flatnonzero(np.abs(y) > 0.01)
    return y[keep[0] : keep[-1] + 1] if len(keep) else y


def echo_alone(reply: bytes, grid: list[Room], transcribe: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for on in (True, False):
        runs = [run_reply(reply, r, echo_cancellation=on, transcribe=transcribe) for r in grid]
        out["on" if on else "off"] = {
            "replies": len(runs),
            "holds": sum(r.holds for r in runs),
            "cancelled": sum(r.cancelled for r in runs),
            "rooms_with_holds": [
                f"{room.delay_ms:.0f}ms/{room.gain_db:.0f}dB/rt{room.rt60_s}"
                for room, r in zip(grid, runs, strict=True)
                if r.holds
            ],
        }
    return out


def short_sounds(reply: bytes, grid: list[Room], transcribe: Any) -> dict[str, Any]:
    """Each sound said three times over the reply in each room: cancelled replies (0 wanted),
    except "stop", a real one-word barge-in, which should cancel it."""
    sounds = {
        "click": click(),
        "double_click": np.concatenate([click(), np.zeros(1600), click()]),
        "noise_burst": noise_burst(),
        "cough": cough(),
        "mm-hmm": espeak("mm-hmm"),
        "uh-huh": espeak("uh-huh"),
        "yeah": espeak("yeah"),
        "okay": espeak("okay"),
        # the espeak-ng reading of the text "mm-hmm" (see SPOKEN_AS): the earlier row
        "em-em-hum": espeak("[[,Em'Emh@m]]"),
        "stop": espeak("stop"),
    }
    out = {}
    for name, sound in sounds.items():
        tries = holds = cancelled = 0
        heard: set[str] = set()

        def heard_as(audio: bytes, heard: set[str] = heard) -> str:
            text = str(transcribe(audio))
            heard.add(text)
            return text

        for room in grid:
            at = [(1.5, sound), (4.5, 0.5 * sound), (7.5, sound)]
            run = run_reply(reply, room, sounds=at, transcribe=heard_as)
            tries += len(at)
            holds += run.holds
            cancelled += run.cancelled
        out[name] = {
            "tries": tries,
            "holds": holds,
            "cancelled_replies": cancelled,
            "whisper_read": sorted(heard),
        }
    return out


# No echo reaches the microphone (headphones, a client's own echo cancellation, a file): room
# noise, and the digital silence of a file or a browser's noise suppression.
NO_ECHO_PATH = [
    Room(delay_ms=120, gain_db=-120, rt60_s=0.0, noise_dbfs=-65.0),
    Room(delay_ms=120, gain_db=-120, rt60_s=0.0, noise_dbfs=-200.0),
]


def barge_in(reply: bytes, grid: list[Room], transcribe: Any, at: float = 3.0) -> dict[str, Any]:
    """Each clip said `at` seconds into the reply, in each room."""
    import jiwer

    from bench.echo_rooms import REPLY_TEXT

    latencies: list[float] = []
    missed = 0
    per_gain: dict[str, list[float]] = {}
    refs, hyps, leaked = [], [], 0
    reply_words = set(REPLY_TEXT.lower().replace(",", " ").replace(".", " ").split())
    for clip, room in itertools.product(load_clips(), grid):
        speech = np.frombuffer(clip.pcm, "<i2") / 32768.0
        run = run_reply(reply, room, sounds=[(at, speech)], transcribe=transcribe, tail_s=2.5)
        lat = run.hold_latency_ms(at + clip.onset_frame * 0.02)
        # the words: the user's whole item, cleaned, as the server transcribes it
        item = max(run.user_audio.values(), key=len, default=bytearray())
        text = transcribe(bytes(item)).lower()
        words = set(text.replace(",", " ").replace(".", " ").split())
        leaked += len((words & reply_words) - set(clip.reference.lower().split()))
        refs.append(_norm(clip.reference))
        hyps.append(_norm(text))
        if lat is None or not run.cancelled:
            missed += 1
            continue
        latencies.append(lat)
        per_gain.setdefault(f"{room.gain_db:.0f}dB", []).append(lat)
    wer = float(jiwer.wer(refs, hyps))
    # Whisper writes the counting clip's words as digits ("1-2-345-678910"): every one counts
    # as an error above, so the WER of the clips without numbers is given too
    worded = [(r, h) for r, h in zip(refs, hyps, strict=True) if not _has_number_words(r)]
    wer_worded = float(jiwer.wer([r for r, _ in worded], [h for _, h in worded]))
    arr = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "tries": len(latencies) + missed,
        "missed": missed,
        "p50_ms": float(np.percentile(arr, 50)),
        "p90_ms": float(np.percentile(arr, 90)),
        "within_200ms": float(np.mean(arr <= 200.0)),
        "p50_ms_by_echo_gain": {k: float(np.median(v)) for k, v in per_gain.items()},
        "wer_user_words": wer,
        "wer_user_words_clips_without_numbers": wer_worded,
        "reply_words_in_user_transcripts": leaked,
    }


_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten".split())


def _has_number_words(text: str) -> bool:
    return bool(_NUMBER_WORDS & set(text.split()))


def _norm(text: str) -> str:
    import re

    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def cancellers(reply: bytes, grid: list[Room]) -> dict[str, Any]:
    """ERLE and CPU of each installed canceller on the raw reply through the rooms."""
    from scipy.signal import fftconvolve, resample_poly

    from realtime.echo import EchoCanceller

    far = resample_poly(np.frombuffer(reply, "<i2").astype(np.float64), 2, 3)
    out: dict[str, Any] = {}
    for name, make in _candidates(EchoCanceller).items():
        erles, cpu, seconds = [], 0.0, 0.0
        for room in grid:
            h = room.impulse_response() * 10 ** (room.gain_db / 20.0)
            d = int(room.delay_ms * RATE / 1000)
            mic = np.zeros(len(far) + RATE)
            echo = fftconvolve(far, h)[: len(far)]
            mic[d : d + len(echo)] += echo[: len(mic) - d]
            mic += np.random.default_rng(1).standard_normal(len(mic)) * 32767 * 10 ** (-65 / 20)
            ref = np.zeros_like(mic)
            ref[: len(far)] = far
            process = make()
            t = time.process_time()
            cleaned = process(np.clip(mic, -32768, 32767), ref)
            cpu += time.process_time() - t
            seconds += len(mic) / RATE
            s = slice(2 * RATE, len(far))
            erles.append(_db(mic[s]) - _db(cleaned[s]))
        out[name] = {
            "erle_db_min": min(erles),
            "erle_db_median": float(np.median(erles)),
            "cpu_ms_per_s": 1000.0 * cpu / seconds,
        }
    return out


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-9))


def _candidates(ours: Any) -> dict[str, Any]:
    def run_ours() -> Any:
        ec = ours()

        def process(mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
            pcm = mic.astype("<i2").tobytes()
            out = ec.process(pcm, ref.astype(np.float32))
            return np.frombuffer(out, "<i2").astype(np.float64)

        return process

    found: dict[str, Any] = {"livekit AEC3 (used)": run_ours}
    try:
        import pywebrtc_audio

        def run_pw() -> Any:
            ec = pywebrtc_audio.EchoCanceller(RATE, 1, 0)
            return _framewise(160, ec.process)

        found["pywebrtc-audio AEC3"] = run_pw
    except ImportError:
        pass
    try:
        import speexdsp_aec  # type: ignore[import-untyped]

        def run_speex() -> Any:
            ec = speexdsp_aec.SpeexAec(RATE, 20, 300)
            return _framewise(320, lambda m, r: np.frombuffer(ec.process(m, r), np.int16))

        found["speexdsp MDF (tail 300 ms)"] = run_speex
    except (ImportError, OSError):
        pass
    return found


def _framewise(n: int, step: Any) -> Any:
    """A whole-signal process from a canceller that takes `n`-sample int16 frames
    (`step(mic_frame, ref_frame) -> cleaned_frame`)."""

    def process(mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        out = np.zeros_like(mic)
        for i in range(0, len(mic) - n + 1, n):
            m16 = mic[i : i + n].astype(np.int16)
            r16 = np.clip(ref[i : i + n], -32768, 32767).astype(np.int16)
            out[i : i + n] = step(m16, r16)
        return out

    return process


def input_path_cpu(reply: bytes) -> float:
    """CPU ms per second of microphone audio for the whole run (canceller, VAD, protocol)."""
    t = time.process_time()
    run_reply(reply, Room(delay_ms=120, gain_db=-10, rt60_s=0.3))
    seconds = len(reply) / 48_000 + 2.1
    return 1000.0 * (time.process_time() - t) / seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a third of the room grid")
    args = ap.parse_args(argv)
    reply = reply_audio()
    grid = rooms(args.quick)
    transcribe = whisper()
    t0 = time.perf_counter()
    result = {
        "machine": describe_machine(),
        "rooms": len(grid),
        "reply_seconds": len(reply) / 48_000,
        "echo_alone": echo_alone(reply, grid, transcribe),
        "short_sounds": short_sounds(reply, grid[:18], transcribe),
        "barge_in": barge_in(reply, grid[:18], transcribe),
        "barge_in_no_echo_path": {
            f"{at:.1f}s": barge_in(reply, NO_ECHO_PATH, transcribe, at=at) for at in (1.2, 3.0)
        },
        "cancellers": cancellers(reply, grid[:18]),
        "input_path_cpu_ms_per_s": input_path_cpu(reply),
    }
    result["wall_s"] = time.perf_counter() - t0
    _print(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "echo.json").write_text(json.dumps(result, indent=2))
    return 0


def _print(r: dict[str, Any]) -> None:
    print(f"rooms: {r['rooms']}, reply {r['reply_seconds']:.1f} s")
    for k, v in r["echo_alone"].items():
        print(f"echo alone, cancellation {k:3}: {v['replies']} replies, {v['holds']} holds, "
              f"{v['cancelled']} cancelled  {v['rooms_with_holds']}")  # fmt: skip
    print(f"{'sound':14} {'tries':>6} {'holds':>6} {'cancelled':>10}")
    for name, v in r["short_sounds"].items():
        read = ", ".join(repr(t) for t in v["whisper_read"][:6])
        print(f"{name:14} {v['tries']:6} {v['holds']:6} {v['cancelled_replies']:10}  {read}")
    b = r["barge_in"]
    print(f"barge-in over echo: {b['tries']} tries, {b['missed']} missed, hold latency p50 "
          f"{b['p50_ms']:.0f} ms, p90 {b['p90_ms']:.0f} ms, {100 * b['within_200ms']:.0f}% "
          f"within 200 ms; p50 by echo gain {b['p50_ms_by_echo_gain']}; WER of the user's "
          f"words {b['wer_user_words']:.2f} (clips without numbers "
          f"{b['wer_user_words_clips_without_numbers']:.2f}), reply words in them: "
          f"{b['reply_words_in_user_transcripts']}")  # fmt: skip
    for at, b in r["barge_in_no_echo_path"].items():
        print(f"barge-in, no echo path, {at} into the reply: {b['tries']} tries, {b['missed']} "
              f"missed, hold latency p50 {b['p50_ms']:.0f} ms, p90 {b['p90_ms']:.0f} ms; WER of "
              f"the user's words {b['wer_user_words']:.2f} (clips without numbers "
              f"{b['wer_user_words_clips_without_numbers']:.2f})")  # fmt: skip
    print(f"{'canceller':28} {'ERLE min':>9} {'median':>7} {'CPU ms/s':>9}")
    for name, v in r["cancellers"].items():
        print(
            f"{name:28} {v['erle_db_min']:9.1f} {v['erle_db_median']:7.1f} {v['cpu_ms_per_s']:9.1f}"
        )
    print(f"input path (canceller + VAD + protocol): {r['input_path_cpu_ms_per_s']:.1f} ms CPU "
          f"per s of audio; bench wall {r['wall_s']:.0f} s")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
