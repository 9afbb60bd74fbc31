"""Simulated rooms for echo and barge-in checks: the reply's echo, clicks, coughs, backchannels
and real interruptions, fed to the realtime protocol core on a simulated clock.

    reply = reply_audio()                          # a Piper reply, 24 kHz PCM16 (cached)
    room = Room(delay_ms=120, gain_db=-6, rt60_s=0.3)
    run = run_reply(reply, room, sounds=[(2.0, click())], seed=1)
    run.holds, run.cancelled, run.backchannels, run.hold_latency_ms

`run_reply` plays a reply through `RealtimeProtocol.audio_frame` as the server's pacer would
(40 ms frames, 250 ms ahead of real time), models a client that plays what it gets (and stops
on `bitvoice.audio.hold` / `flush`, plays on after `release`), passes the speaker's output
through the room (delay, gain, a synthetic impulse response) into the microphone with a noise
floor and any user sounds on top, and feeds that microphone audio back in 20 ms chunks. A
`TranscribeBargeIn` is answered with `transcribe(audio)` (default: Whisper is not run and the
text is empty, which reads as a backchannel; tests pass a real decoder).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr
from scipy.signal import fftconvolve, resample_poly

from realtime import limits
from realtime import messages as m
from realtime.protocol import (
    CancelResponse,
    RealtimeProtocol,
    Send,
    StartResponse,
    StreamAudio,
    TranscribeBargeIn,
)

__all__ = [
    "REPLY_TEXT",
    "Room",
    "RoomClient",
    "RoomRun",
    "WireRun",
    "click",
    "cough",
    "espeak_audio",
    "noise_burst",
    "reply_audio",
    "run_reply",
]

RATE = 16_000
CHUNK = 320  # 20 ms microphone chunks
REPLY_TEXT = (
    "Sure. Sailing ships crossed the ocean for many months, carrying spices, silk and "
    "stories to distant harbors. Sailors watched the stars at night to find their way home, "
    "and every port had its own songs."
)


@functools.cache
def reply_audio(text: str = REPLY_TEXT, voice: str = "piper") -> bytes:
    """`text` spoken as the reply: PCM16 LE mono at 24 kHz (the reply rate). "piper" is the
    server's offline voice (its synthesis is not deterministic: each call differs a little);
    "espeak" is espeak-ng, the same audio every time (tests that must not vary use it)."""
    if voice == "espeak":
        return _espeak_reply(text)
    import asyncio

    from engine import TTS

    async def speak() -> bytes:
        tts = TTS()
        await tts.start()
        try:
            async with tts.open_session() as s:
                return await s.collect(text)
        finally:
            await tts.stop()

    return asyncio.run(speak())


def _espeak_reply(text: str) -> bytes:
    y = espeak_audio(text, 24_000, words_per_minute=170) * 0.8
    return np.clip(np.round(y * 32767), -32768, 32767).astype("<i2").tobytes()


def espeak_audio(text: str, rate: int, *, words_per_minute: int) -> np.ndarray:
    """`text` spoken by espeak-ng as float32 samples at `rate` (RuntimeError without it)."""
    import io
    import shutil
    import subprocess

    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install -y espeak-ng)")
    cmd = [exe, "-s", str(words_per_minute), "--stdout", text]
    wav = subprocess.run(cmd, check=True, capture_output=True)
    x, source_rate = sf.read(io.BytesIO(wav.stdout), dtype="float32")
    return np.asarray(soxr.resample(x, source_rate, rate))


@dataclass(frozen=True)
class Room:
    delay_ms: float = 120.0  # output latency + the path from speaker to microphone
    gain_db: float = -6.0  # echo level against the reply as sent
    rt60_s: float = 0.3  # reverberation (0: a direct path only)
    noise_dbfs: float = -65.0
    seed: int = 0

    def impulse_response(self) -> np.ndarray:
        if self.rt60_s <= 0:
            return np.array([1.0])
        rng = np.random.default_rng(self.seed)
        n = int(min(0.4, self.rt60_s) * RATE)
        t = np.arange(n) / RATE
        h = rng.standard_normal(n) * np.exp(-6.9 * t / self.rt60_s) * 0.3
        h[0] = 1.0
        return np.asarray(h / np.sqrt(np.sum(h * h)))


def click(ms: float = 3.0, level: float = 0.8) -> np.ndarray:
    """A click: a short full-band burst (float, -1..1, 16 kHz)."""
    n = max(1, int(ms * RATE / 1000))
    return np.random.default_rng(3).standard_normal(n) * level * np.hanning(n + 2)[1:-1]


def noise_burst(ms: float = 60.0, level: float = 0.3, seed: int = 4) -> np.ndarray:
    n = int(ms * RATE / 1000)
    return np.random.default_rng(seed).standard_normal(n) * level * np.hanning(n)


def cough(seed: int = 5) -> np.ndarray:
    """A cough-like sound: a 50 ms attack then 200 ms of decaying low-passed noise."""
    rng = np.random.default_rng(seed)
    n = int(0.25 * RATE)
    x = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    env = np.minimum(1.0, np.arange(n) / (0.02 * RATE)) * np.exp(-np.arange(n) / (0.08 * RATE))
    return np.asarray(0.6 * x * env)


@dataclass
class RoomRun:
    holds: int = 0
    cancelled: bool = False
    backchannels: list[str] = field(default_factory=list)
    hold_times: list[float] = field(default_factory=list)  # seconds into the run
    transcribed: list[bytes] = field(default_factory=list)  # cleaned audio of asked items
    user_audio: dict[str, bytearray] = field(default_factory=dict)  # cleaned, per item
    finished: bool = False

    def hold_latency_ms(self, onset_s: float) -> float | None:
        later = [t for t in self.hold_times if t >= onset_s - 0.05]
        return None if not later else (later[0] - onset_s) * 1000.0


def _start(echo: bool) -> RealtimeProtocol:
    p = RealtimeProtocol(m.SessionState(id="room"), now=0.0)
    p.connected()
    update = {"type": "session.update", "session": {"echo_cancellation": echo}}
    p.receive_text(json.dumps(update), 0.0)
    return p


def run_reply(
    reply: bytes,
    room: Room,
    sounds: Sequence[tuple[float, np.ndarray]] = (),
    *,
    echo_cancellation: bool = True,
    transcribe: Callable[[bytes], str] | None = None,
    lead_in_s: float = 0.6,
    tail_s: float = 1.5,
) -> RoomRun:
    """Play `reply` (24 kHz PCM16) into `room` and feed the microphone back; `sounds` are
    (seconds after the reply's first audio, float audio at 16 kHz) the user makes."""
    p = _start(echo_cancellation)
    run = RoomRun()
    reply16 = resample_poly(np.frombuffer(reply, "<i2").astype(np.float64), 2, 3)
    gain = 10 ** (room.gain_db / 20.0)
    h = room.impulse_response() * gain
    delay = int(room.delay_ms * RATE / 1000)
    noise = np.random.default_rng(room.seed + 100)
    total = int((lead_in_s + len(reply16) / RATE + tail_s) * RATE)
    user = np.zeros(total + RATE)
    for at, sound in sounds:
        s = int((lead_in_s + at) * RATE)
        user[s : s + len(sound)] += sound[: len(user) - s] * 32767.0
    speaker = np.zeros(total + RATE)  # what the speaker emits, on the microphone's clock
    frame = limits.AUDIO_FRAME_SAMPLES
    sent = received = played = 0  # reply samples (24 kHz): sent, at the client, played
    held = False
    turn: int | None = None
    t = 0.0
    for k in range(0, total, CHUNK):
        t = k / RATE
        if turn is None and t >= lead_in_s:
            out = p.receive_text('{"type":"response.create","input_text":"hi"}', t)
            turn = next(o for o in out if isinstance(o, StartResponse)).turn
        if turn is not None and p.is_current(turn):
            while sent < len(reply) // 2 and (sent - played) / 24_000 < 0.25:
                pcm = reply[2 * sent : 2 * (sent + frame)]
                if not p.audio_frame(turn, pcm, t):
                    break
                sent += len(pcm) // 2
            received = sent
        # the client plays 20 ms (24 kHz samples) unless held
        if not held and played < received:
            n = min(480, received - played)
            a, b = int(played * 2 / 3), int((played + n) * 2 / 3)
            speaker[k + delay : k + delay + (b - a)] = reply16[a:b][: len(speaker) - k - delay]
            played += n
        lo = max(0, k - len(h) + 1)
        echo = fftconvolve(speaker[lo : k + CHUNK], h)[k - lo : k - lo + CHUNK]
        mic = (
            echo
            + user[k : k + CHUNK]
            + noise.standard_normal(CHUNK) * 32767 * 10 ** (room.noise_dbfs / 20)
        )
        pcm = np.clip(np.round(mic), -32768, 32767).astype("<i2").tobytes()
        for o in p.receive_audio(pcm, t + CHUNK / RATE):
            held = _apply(o, p, run, t, held, transcribe, lead_in_s)
        if turn is not None and p.is_current(turn) and sent >= len(reply) // 2 and played >= sent:
            p.response_finished(turn, t)
            run.finished = True
    return run


def _apply(
    o: object,
    p: RealtimeProtocol,
    run: RoomRun,
    t: float,
    held: bool,
    transcribe: Callable[[bytes], str] | None,
    lead_in_s: float,
) -> bool:
    """Carry out one protocol output as the simulated client would; returns `held`."""
    if isinstance(o, StreamAudio):
        run.user_audio.setdefault(o.item_id, bytearray()).extend(o.audio)
    elif isinstance(o, Send):
        msg = o.message
        if isinstance(msg, m.ResponseOutputAudioHold):
            run.holds += 1
            run.hold_times.append(t - lead_in_s)
            return True
        if isinstance(msg, m.ResponseOutputAudioRelease):
            return False
        if isinstance(msg, m.Backchannel):
            run.backchannels.append(msg.transcript)
    elif isinstance(o, CancelResponse):
        run.cancelled = True
        return True
    elif isinstance(o, TranscribeBargeIn):
        audio = bytes(run.user_audio.get(o.item_id, b""))
        run.transcribed.append(audio)
        text = transcribe(audio) if transcribe is not None else ""
        for out in p.barge_in_transcript(o.item_id, o.asked, text, t):
            held = _apply(out, p, run, t, held, transcribe, lead_in_s)
    return held


# ---- the same room around a real client on a real WebSocket -----------------------------------


@dataclass
class WireRun:
    """What a `RoomClient` saw, times in seconds from the reply's first audio (client clock)."""

    first_audio: float | None = None
    holds: list[float] = field(default_factory=list)
    releases: list[float] = field(default_factory=list)
    flushes: list[float] = field(default_factory=list)
    backchannels: list[str] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    done: list[m.ResponseInfo] = field(default_factory=list)
    played: int = 0  # reply samples the speaker played


class RoomClient:
    """A client whose speaker plays the reply into `room` and whose microphone hears it.

    It streams the microphone in real time from the start (20 ms chunks: the room's echo of
    what the speaker played, its noise floor, and `sounds` at their times after the reply's
    first audio), plays reply frames as they come (stopping on `bitvoice.audio.hold`, on again
    after `release`, dropping on `flush`), and records what the server said.
    """

    def __init__(self, ws: Any, room: Room, sounds: Sequence[tuple[float, np.ndarray]] = ()):
        self.ws, self.room, self.sounds = ws, room, list(sounds)
        self.run = WireRun()
        self._queue = bytearray()  # reply PCM16 24 kHz received, not yet played
        self._held = False
        self._h = room.impulse_response() * 10 ** (room.gain_db / 20.0)
        self._delay = int(room.delay_ms * RATE / 1000)
        self._speaker = np.zeros(0)
        self._noise = np.random.default_rng(room.seed + 100)
        self._t0 = 0.0
        self._stream: soxr.ResampleStream | None = None
        self._at = 0  # where the speaker's output continues, on the microphone's clock

    def _now(self) -> float:
        import asyncio

        return asyncio.get_running_loop().time() - self._t0

    async def receive(self, until: Callable[[WireRun], bool]) -> None:
        """Read server messages until `until(run)` holds."""
        while not until(self.run):
            raw = await self.ws.recv()
            if isinstance(raw, bytes):
                frame = m.unpack_audio_frame(raw)
                self._queue += frame.pcm  # kept while held: a release plays it
                if self.run.first_audio is None:
                    self.run.first_audio = self._now()
                continue
            self._on_message(m.decode_server(raw))

    def _on_message(self, msg: Any) -> None:
        run, first = self.run, self.run.first_audio or 0.0
        if isinstance(msg, m.ResponseOutputAudioHold):
            self._held = True
            run.holds.append(self._now() - first)
        elif isinstance(msg, m.ResponseOutputAudioRelease):
            self._held = False
            run.releases.append(self._now() - first)
        elif isinstance(msg, m.ResponseOutputAudioFlush):
            self._held = False
            self._queue.clear()
            run.flushes.append(self._now() - first)
        elif isinstance(msg, m.Backchannel):
            run.backchannels.append(msg.transcript)
        elif isinstance(msg, m.ConversationItemInputAudioTranscriptionCompleted):
            run.transcripts.append(msg.transcript)
        elif isinstance(msg, m.ResponseDone):
            run.done.append(msg.response)

    async def microphone(
        self, seconds: float, until: Callable[[WireRun], bool] = lambda r: bool(r.done)
    ) -> None:
        """Stream microphone audio in real time until `until(run)` (at most `seconds`)."""
        import asyncio

        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        chunks = int(seconds * RATE / CHUNK)
        self._speaker = np.zeros(chunks * CHUNK + self._delay + RATE)
        user = np.zeros_like(self._speaker)
        for k in range(chunks):
            if until(self.run):
                break
            at = self._t0 + (k + 1) * CHUNK / RATE
            await asyncio.sleep(max(0.0, at - loop.time()))
            pos = k * CHUNK
            if self.run.first_audio is not None and self.sounds:
                for when, sound in self.sounds:
                    s = int((self.run.first_audio + when) * RATE)
                    user[s : s + len(sound)] += sound[: max(0, len(user) - s)] * 32767.0
                self.sounds = []
            self._play(pos)
            lo = max(0, pos - len(self._h) + 1)
            echo = fftconvolve(self._speaker[lo : pos + CHUNK], self._h)[
                pos - lo : pos - lo + CHUNK
            ]
            noise = self._noise.standard_normal(CHUNK) * 32767 * 10 ** (self.room.noise_dbfs / 20)
            mic = np.clip(np.round(echo + user[pos : pos + CHUNK] + noise), -32768, 32767)
            await self.ws.send(mic.astype("<i2").tobytes())

    def _play(self, pos: int) -> None:
        """The speaker plays the next 20 ms of queued reply unless held (one resampler over
        each stretch it plays without a gap, as a sound card's would be)."""
        if self._held or not self._queue:
            self._stream = None
            return
        n = min(len(self._queue), 2 * 480)
        pcm = np.frombuffer(bytes(self._queue[:n]), "<i2").astype(np.float32)
        del self._queue[:n]
        self.run.played += len(pcm)
        if self._stream is None:
            self._stream = soxr.ResampleStream(24_000, RATE, 1, dtype="float32")
            self._at = pos + self._delay
        out = self._stream.resample_chunk(pcm).astype(np.float64)
        end = min(len(self._speaker), self._at + len(out))
        self._speaker[self._at : end] += out[: end - self._at]
        self._at += len(out)
