"""Echo cancellation and the barge-in gate, in simulated rooms (bench/echo_rooms.py).

The protocol core runs on a simulated clock with the real canceller (WebRTC AEC3), the real
VAD and a real Piper reply; the room adds delay, gain, reverberation and a noise floor. Counts
are the issue's: no false barge-in from echo alone over the room grid, none from clicks, bursts
and coughs, and real speech over the echo still holds the reply and then drops it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.echo_rooms import Room, click, cough, noise_burst, reply_audio, run_reply
from bench.speech_clips import load_clips
from realtime.bargein import is_backchannel

ROOMS = [
    Room(delay_ms=d, gain_db=g, rt60_s=rt, seed=int(d))
    for d, g, rt in itertools.product([20, 120, 250], [0, -10, -20], [0.0, 0.4])
]


@pytest.fixture(scope="module")
def reply() -> bytes:
    return reply_audio()


def test_echo_alone_never_holds_or_cancels_the_reply(reply: bytes) -> None:
    runs = [run_reply(reply, room) for room in ROOMS]
    assert [r.holds for r in runs] == [0] * len(ROOMS)
    assert all(r.finished and not r.cancelled for r in runs)


def test_without_echo_cancellation_the_echo_interrupts(reply: bytes) -> None:
    """The 'before': the same loud rooms with the server's canceller off cut the reply."""
    loud = [r for r in ROOMS if r.gain_db == 0]
    runs = [run_reply(reply, room, echo_cancellation=False) for room in loud]
    assert sum(r.cancelled for r in runs) >= len(loud) // 2


@pytest.mark.parametrize("name", ["click", "double_click", "burst", "cough"])
def test_short_sounds_over_the_reply_do_not_hold_it(reply: bytes, name: str) -> None:
    sound = {
        "click": click(),
        "double_click": np.concatenate([click(), np.zeros(1600), click()]),
        "burst": noise_burst(),
        "cough": cough(),
    }[name]
    for room in ROOMS[::3]:
        run = run_reply(reply, room, sounds=[(1.5, sound), (4.0, 0.5 * sound), (7.0, sound)])
        assert run.holds == 0 and not run.cancelled, (name, room)


def test_speech_over_the_echo_holds_then_drops_the_reply(reply: bytes) -> None:
    latencies = []
    # the echo at least 6 dB below the reply; the clips are 7-8 dB quieter than the reply, so
    # at 0 dB the echo is louder than the user (bench/bench_echo.py measures those rooms too)
    rooms = [r for r in ROOMS if r.gain_db <= -10] + [Room(120, -6, 0.3)]
    for clip, room in itertools.product(load_clips(), rooms):
        speech = np.frombuffer(clip.pcm, "<i2") / 32768.0
        run = run_reply(
            reply, room, sounds=[(3.0, speech)], transcribe=lambda _a, t=clip.reference: t
        )
        assert run.cancelled, (clip.name, room)
        latency = run.hold_latency_ms(3.0 + clip.onset_frame * 0.02)
        assert latency is not None, (clip.name, room)  # held after the speech began, not before
        latencies.append(latency)
    assert float(np.median(latencies)) <= 200.0, latencies


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mm-hmm.", True),
        ("Yeah, okay.", True),
        ("", True),
        ("I see", True),
        ("Uh-huh", True),
        ("Stop.", False),
        ("Wait, no.", False),
        ("Yeah but what about the price?", False),
        ("Okay okay okay okay", False),
    ],
)
def test_backchannel_words(text: str, expected: bool) -> None:
    assert is_backchannel(text) is expected
