"""Echo and barge-in over the real WebSocket: a client whose speaker plays the reply into a
simulated room (bench/echo_rooms.RoomClient) against the real server (demo LLM, Piper,
Whisper tiny.en), microphone streamed in real time from the start of the connection."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from rt_helpers import speech_pcm16k, start_session, trimmed, ws_url
from websockets.asyncio.client import connect

from bench.echo_rooms import Room, RoomClient, WireRun, click, cough
from bench.speech_clips import load_clips
from realtime.server import RealtimeServer

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0.0, "top_p": 1.0}


async def reply_in_room(
    server: RealtimeServer,
    room: Room,
    sounds: Sequence[tuple[float, np.ndarray]],
    seconds: float,
    tokens: int = 40,
    until: Callable[[WireRun], bool] = lambda r: bool(r.done),
) -> WireRun:
    """One text turn whose reply plays into `room` while the microphone streams `seconds`."""
    async with connect(ws_url(server)) as ws:
        await start_session(ws, {"sampling": {**GREEDY, "max_output_tokens": tokens}})
        client = RoomClient(ws, room, sounds)
        mic = asyncio.create_task(client.microphone(seconds, until))
        await asyncio.sleep(0.5)  # the microphone was open before the question
        await ws.send(json.dumps({"type": "response.create", "input_text": "Tell me a story."}))
        await asyncio.wait_for(client.receive(until), seconds + 5)
        await mic
        return client.run


async def test_echo_clicks_and_a_cough_leave_the_reply_alone(rt_server: RealtimeServer) -> None:
    sounds = [
        (1.0, click()),
        (2.0, cough()),
        (3.0, np.concatenate([click(), np.zeros(1600), click()])),
    ]
    run = await reply_in_room(rt_server, Room(delay_ms=120, gain_db=-6, rt60_s=0.3), sounds, 30.0)
    assert run.holds == [] and run.flushes == []
    assert run.done[0].status == "completed"
    assert run.transcripts == []  # no turn from the echo, the sounds, or the connection's start


@pytest.mark.xfail(
    reason="over the wire AEC3 often suppresses a short acknowledgement said over the echo "
    "(its double-talk onset), so it never holds the reply: then nothing is kept either "
    "(the simulated-room test shows the hold/release path itself works)",
    strict=False,
)
async def test_a_backchannel_is_kept_and_the_reply_plays_on(rt_server: RealtimeServer) -> None:
    yeah = np.frombuffer(trimmed(speech_pcm16k("yeah")), "<i2") / 32768.0
    run = await reply_in_room(
        rt_server, Room(delay_ms=60, gain_db=-20, rt60_s=0.0), [(1.5, yeah)], 7.0
    )
    assert len(run.holds) == 1 and len(run.releases) == 1 and run.flushes == []
    assert run.backchannels and "yeah" in run.backchannels[0].lower()
    assert run.done[0].status == "completed"
    done = run.done[0]
    assert done.played_samples == done.audio_samples  # nothing of the reply was dropped


@pytest.mark.xfail(
    reason="this test client's echo path jitters with the machine's load, and AEC3 loses it "
    "for stretches of ~0.3 s (traced per 10 ms: the cleaned level rises from the noise floor "
    "to within 7 dB of the raw echo); the residue the guard learns there keeps speech 10 dB "
    "over the echo out in some runs (1 of 3 here)",
    strict=False,
)
async def test_speech_over_the_echo_cuts_in_and_is_heard(rt_server: RealtimeServer) -> None:
    clip = next(c for c in load_clips() if c.name == "hello_world")
    speech = np.frombuffer(clip.pcm, "<i2") / 32768.0
    at = 3.0
    run = await reply_in_room(
        rt_server,
        Room(delay_ms=120, gain_db=-10, rt60_s=0.3),
        [(at, speech)],
        30.0,
        until=lambda r: bool(r.transcripts),
    )
    onset = at + clip.onset_frame * 0.02
    assert run.holds and run.holds[0] >= onset - 0.05
    assert run.holds[0] - onset <= 0.4  # measured over the wire on a loaded machine
    assert run.flushes and run.done[0].reason == "turn_detected"
    # the user's words are heard; the first one may be lost to AEC3's suppression at the onset
    # of double talk (measured: "Hello world." -> "in the world." in some runs)
    assert run.transcripts and "world" in run.transcripts[0].lower()
    # none of the reply's own words (the demo model's, e.g. "little sunny") reached the user's
    heard = set(re.findall(r"[a-z']+", run.transcripts[0].lower()))
    said = set(re.findall(r"[a-z']+", run.done[0].output_text.lower())) - {"hello", "world"}
    assert not heard & said, (heard, said)
