"""Echo cancellation and the barge-in gate, in simulated rooms (bench/echo_rooms.py).

The protocol core runs on a simulated clock with the real canceller (WebRTC AEC3), the real
VAD and a real Piper reply; the room adds delay, gain, reverberation and a noise floor. Counts
are the issue's: no false barge-in from echo alone over the room grid, none from clicks, bursts
and coughs, and real speech over the echo still holds the reply and then drops it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import cast

import numpy as np
import pytest

from bench.echo_rooms import Room, click, cough, noise_burst, reply_audio, run_reply
from bench.speech_clips import load_clips
from realtime.bargein import is_backchannel
from realtime.echo.canceller import level_db

ROOMS = [
    Room(delay_ms=d, gain_db=g, rt60_s=rt, seed=int(d))
    for d, g, rt in itertools.product([20, 120, 250], [0, -10, -20], [0.0, 0.4])
]


@pytest.fixture(scope="module")
def reply() -> bytes:
    # espeak-ng: the same reply every run (Piper's synthesis varies a little from call to call,
    # and so would the counts); bench/bench_echo.py measures with the Piper voice
    return reply_audio(voice="espeak")


def test_echo_alone_never_cancels_the_reply(reply: bytes) -> None:
    runs = [run_reply(reply, room) for room in ROOMS]
    assert all(r.finished and not r.cancelled for r in runs)
    # a hold (the reply stops until the item reads as nothing) is rare: in the loudest
    # reverberant rooms, before the canceller has converged
    assert sum(r.holds for r in runs) <= 2, [
        (room, r.hold_times) for room, r in zip(ROOMS, runs, strict=True)
    ]


def test_without_echo_cancellation_the_echo_interrupts(reply: bytes) -> None:
    """The 'before': the same loud rooms with the server's canceller off hold the reply on its
    own echo, and a Whisper that reads the echo's words then drops it."""
    loud = [r for r in ROOMS if r.gain_db == 0]
    runs = [
        run_reply(reply, room, echo_cancellation=False, transcribe=lambda _a: "Sailing ships.")
        for room in loud
    ]
    assert sum(r.holds > 0 for r in runs) >= len(loud) // 2
    assert sum(r.cancelled for r in runs) >= len(loud) // 2


@pytest.mark.parametrize("name", ["click", "double_click", "burst", "cough"])
def test_short_sounds_over_the_reply_do_not_hold_it(reply: bytes, name: str) -> None:
    sound = {
        "click": click(),
        "double_click": np.concatenate([click(), np.zeros(1600), click()]),
        "burst": noise_burst(),
        "cough": cough(),
    }[name]
    quiet_rooms = [r for r in ROOMS if r.gain_db <= -10]
    for room in quiet_rooms[::2]:
        run = run_reply(reply, room, sounds=[(1.5, sound), (4.0, 0.5 * sound), (7.0, sound)])
        assert run.holds == 0 and not run.cancelled, (name, room)


def test_speech_over_the_echo_holds_then_drops_the_reply(reply: bytes) -> None:
    latencies = []
    # the echo at least 6 dB below the reply; the clips are 7-8 dB quieter than the reply, so
    # at 0 dB the echo is louder than the user (bench/bench_echo.py measures those rooms too)
    rooms = [r for r in ROOMS if r.gain_db <= -10] + [Room(120, -6, 0.3)]
    missed = []
    for clip, room in itertools.product(load_clips(), rooms):
        speech = np.frombuffer(clip.pcm, "<i2") / 32768.0
        run = run_reply(
            reply, room, sounds=[(3.0, speech)], transcribe=lambda _a, t=clip.reference: t
        )
        latency = run.hold_latency_ms(3.0 + clip.onset_frame * 0.02)
        if latency is None or not run.cancelled:
            missed.append((clip.name, room))
            continue
        latencies.append(latency)
    # measured (bench_echo): a soft onset ("the quick...") in a reverberant room can stay
    # under the guard, and a rare hold from the echo itself can come before the speech; at
    # most one such miss here
    assert len(missed) <= 1, missed
    assert float(np.median(latencies)) <= 250.0, latencies
    # Silero's second opinion (realtime/vad/speech_model.py) holds soft onsets sooner: in these
    # rooms p90 280 -> 220 ms, the slowest 1420 -> 280 ms, within 200 ms 72% -> 85%
    assert float(np.percentile(latencies, 90)) <= 250.0, latencies
    assert float(np.mean(np.array(latencies) <= 200.0)) >= 0.8, latencies


@pytest.mark.parametrize("noise_dbfs", [-65.0, -200.0], ids=["room-noise", "digital-silence"])
def test_with_no_echo_path_speech_cuts_in_early_and_reaches_the_transcript_whole(
    reply: bytes, noise_dbfs: float
) -> None:
    """Headphones, a client's own AEC or a file: the microphone stays quiet while the reply
    plays. The guard drops its prior after 0.6 s of loud reply (~1 s into this one), not after
    the window's 2 s; and the canceller passes the audio through, because AEC3 with no echo
    path mutes speech that starts over the reply. Measured before: the clips (7-8 dB quieter
    than the reply) cut in 2 s late or never, and at 1.5 s into the reply the counting reached
    the item as nothing at all (AEC3 took it out, and the guard learnt it as echo)."""
    no_path = Room(delay_ms=120, gain_db=-120, rt60_s=0.0, noise_dbfs=noise_dbfs)
    latencies = []
    for clip in load_clips():
        speech = np.frombuffer(clip.pcm, "<i2") / 32768.0
        run = run_reply(
            reply, no_path, sounds=[(1.2, speech)], transcribe=lambda _a, t=clip.reference: t
        )
        latency = run.hold_latency_ms(1.2 + clip.onset_frame * 0.02)
        assert run.cancelled and latency is not None and latency < 1000.0, (clip.name, latency)
        latencies.append(latency)
        heard = np.frombuffer(b"".join(bytes(a) for a in run.user_audio.values()), "<i2")
        said = np.frombuffer(clip.pcm, "<i2")
        assert len(heard) >= len(said), clip.name  # the whole utterance (and its padding)
        assert level_db(heard) >= level_db(said) - 3.0, clip.name  # not suppressed
    assert float(np.median(latencies)) <= 250.0, latencies


def test_a_backchannel_releases_the_reply_and_is_kept(reply: bytes) -> None:
    from rt_helpers import speech_pcm16k, trimmed

    yeah = np.frombuffer(trimmed(speech_pcm16k("yeah")), "<i2") / 32768.0
    run = run_reply(
        reply,
        Room(delay_ms=60, gain_db=-20, rt60_s=0.0),
        sounds=[(3.0, yeah)],
        transcribe=lambda audio: "Yeah." if len(audio) > 3200 else "",
    )
    assert run.holds == 1 and not run.cancelled and run.finished
    assert run.backchannels == ["Yeah."]


@pytest.fixture(scope="module")
def whisper_tiny_en() -> Callable[[bytes], str]:
    from bench.bench_echo import whisper

    return cast("Callable[[bytes], str]", whisper())


@pytest.mark.parametrize(
    ("said", "cuts_in"),
    [
        ("mm-hmm", False),
        ("uh-huh", False),
        ("yeah", False),
        ("okay", False),
        ("stop", True),
        ("no", True),
    ],
)
def test_whisper_tells_a_backchannel_from_words_over_the_reply(
    reply: bytes, whisper_tiny_en: Callable[[bytes], str], said: str, cuts_in: bool
) -> None:
    """The real decider, Whisper tiny.en through the server's decoder on the cleaned item: a
    hummed "mm-hmm" (people's, not espeak-ng's spelled-out "em-em-hum"), "uh-huh" (often read
    as laughter, "Ha ha."), "yeah" and "okay" said over the reply hold it and let it play on;
    "stop" and "no", as short as they are, drop it (only their words can tell).

    Whisper tiny.en on a half-second sound over the echo's residue is a coin with a bias: the
    same "uh-huh" reads "Ha ha." at one place in the reply and "Bye bye." at another, and which
    place gives which differs between CPUs (AVX2 and AVX-512 builds of CTranslate2 round
    differently). So the word is said at five places and the decision must go the right way
    in most of them, as bench_echo counts it over 54 rooms."""
    from bench.bench_echo import espeak

    sound = espeak(said)
    if not len(sound):
        pytest.skip("espeak-ng is not installed")
    outcomes: list[tuple[float, bool, list[str]]] = []
    for at_s in (2.0, 2.5, 3.0, 3.5, 4.0):
        heard: list[str] = []

        def transcribe(audio: bytes, heard: list[str] = heard) -> str:
            heard.append(whisper_tiny_en(audio))
            return heard[-1]

        run = run_reply(
            reply, Room(delay_ms=60, gain_db=-20, rt60_s=0.0), sounds=[(at_s, sound)],
            transcribe=transcribe,
        )  # fmt: skip
        assert run.finished is not run.cancelled, (said, at_s, heard)
        outcomes.append((at_s, run.holds >= 1 and run.cancelled is cuts_in, heard))
    assert sum(right for _at, right, _heard in outcomes) >= 3, (said, outcomes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mm-hmm.", True),
        ("Yeah, okay.", True),
        ("", True),
        ("I see", True),
        ("Uh-huh", True),
        ("Ha ha.", True),
        ("Thank you.", True),
        ("Thank you, stop.", False),
        ("Stop.", False),
        ("Wait, no.", False),
        ("Yeah but what about the price?", False),
        ("Okay okay okay okay", False),
    ],
)
def test_backchannel_words(text: str, expected: bool) -> None:
    assert is_backchannel(text) is expected
