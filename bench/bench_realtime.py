"""The voice loop as a person feels it: end of speech in the audio -> first reply audio.

    python -m bench.bench_realtime [--model ID ...] [--unembed-quant int8|int4|none]
                                   [--turns 8] [--pauses 300,450,600] [--pause-trials 2]
                                   [--barge-ins 4] [--quick] [--out FILE]

For each model (default: the random-weight model with the exact BitNet-b1.58-2B-4T shapes and
the real Llama-3 tokenizer, `bench/bitnet-2b-shapes`, then the demo model `local/tiny-demo`)
it starts the realtime server in-process on loopback (Whisper base, the offline Piper voice,
`ServerConfig(trace=True)`) and drives it with the real websockets client like a microphone:
real recorded speech (the English clips of pytest-audioeval, see bench/speech_clips.py) at
real-time pace, 20 ms binary frames on an absolute schedule, and silence frames whenever the
person is not speaking. Each session carries a realistic system prompt
(bench.voice_models.SYSTEM_PROMPT) and caps replies at --max-output-tokens (random weights
never end a reply); each reply is cancelled once its first audio arrived.

Measured per model (p50/p90 by nearest rank, and n):
- latency: t_eos (the moment the clip's last speech frame, found by energy, was sent) -> the
  first reply audio frame received; all turns, and a connection's first turn separately;
- the breakdown per turn: end-of-turn wait (t_eos -> `input_audio_buffer.committed`
  received), then the server's stage times (`response.done` metrics, ms from the turn's t0,
  the VAD's end-of-turn decision): STT final, LLM first token, LLM to first segment, TTS first
  chunk, pacing to the first frame sent, and delivery (what is left: socket and client);
  `turn_start_ms` and `llm_prefill_ms` are shown when the server sends them;
- WER of the final transcripts against the clips' reference texts;
- false turn-ends: two clips joined with a 300/450/600 ms pause; a committed item, a
  `response.created` or reply audio received before the utterance's end of speech was sent;
- barge-in: while a reply plays, the client starts real speech; first speech frame sent ->
  the reply silenced (`bitvoice.audio.hold`, or a `bitvoice.audio.flush`, whichever first).

A table on stdout, JSON in bench/results/realtime.json (with every turn's raw record). The
2B bundle and Whisper live in a benchmark-only store (--home, default
~/.cache/bitvoice-bench/home): the server's default model is the largest bundle in its store,
and a random-weight bundle must never become that in ~/.bitvoice. The machine is shared: the
load average at the start and the end is part of the result.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_llm import CACHE  # noqa: E402
from bench.machine import describe_machine  # noqa: E402
from bench.speech_clips import FRAME_BYTES, FRAME_MS, Clip, join, load_clips  # noqa: E402
from bench.voice_models import SHAPES_STORE_ID, SYSTEM_PROMPT  # noqa: E402

DEMO_STORE_ID = "local/tiny-demo"
OUTPUT_RATE = 24_000  # reply audio: PCM16 mono 24 kHz (realtime/PROTOCOL.md)
FRAME_S = FRAME_MS / 1000
SETTLE_S = 0.6  # silence between turns, so the VAD starts each turn from silence
TURN_TIMEOUT_S = 60.0
BARGE_AFTER_S = 0.5  # barge in once this much reply audio has been received
BARGE_MAX_TOKENS = 120  # a longer reply for barge-in trials, so it is still playing
CONNECTIONS = 2  # latency turns are spread over this many connections (first turns)
PAIRS = (("hello_world", "quick_brown_fox"), ("quick_brown_fox", "counting"))
STAGES = (
    "turn_start_ms",
    "stt_final_ms",
    "llm_prefill_ms",
    "first_token_ms",
    "first_sentence_ms",
    "tts_first_chunk_ms",
    "first_audio_ms",
)
BREAKDOWN = (
    ("end-of-turn wait (t_eos -> committed recv)", "eot_wait_ms"),
    ("STT final (t0 -> final transcript)", "stt_ms"),
    ("LLM first token (after STT; incl. prefill)", "llm_first_token_ms"),
    ("  LLM prefill (as the server reports it)", "llm_prefill_ms"),
    ("LLM to first segment", "llm_first_segment_ms"),
    ("TTS first chunk", "tts_first_chunk_ms"),
    ("pacing to first frame sent", "pacing_ms"),
    ("delivery (socket, client)", "delivery_ms"),
    ("turn start vs t0 (server; <0 = speculative)", "turn_start_ms"),
    ("VAD end placed after t_eos (audio time)", "vad_end_late_ms"),
)


# --- statistics ------------------------------------------------------------------------------


def stats(xs: Sequence[float | None]) -> dict[str, Any]:
    """n, p50, p90 (nearest rank: the smallest value with at least q of the data at or below
    it), min, max; values that are None are left out."""
    v = sorted(x for x in xs if x is not None)
    if not v:
        return {"n": 0, "p50": None, "p90": None, "min": None, "max": None}

    def rank(q: float) -> float:
        return round(v[max(0, math.ceil(q * len(v)) - 1)], 1)

    return {
        "n": len(v),
        "p50": rank(0.5),
        "p90": rank(0.9),
        "min": round(v[0], 1),
        "max": round(v[-1], 1),
    }


@functools.cache
def _stt_normalizer() -> Callable[[str], str]:
    """tests/stt/stt_helpers.normalize: the WER here must score as the STT tests do."""
    sys.path.insert(0, str(ROOT / "tests" / "stt"))
    try:
        from stt_helpers import normalize as norm
    finally:
        sys.path.remove(str(ROOT / "tests" / "stt"))
    return norm  # type: ignore[no-any-return]


def normalize(text: str) -> str:
    """Lower case, no punctuation, digits spelled out ("10" == "ten")."""
    return str(_stt_normalizer()(text))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) after normalizing both."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


# --- the client: a microphone and an inbox ----------------------------------------------------


@dataclass
class Utterance:
    """A clip queued on the microphone; `sent_at[k]` is when its frame k went out."""

    clip: Clip
    first_global_frame: int = -1  # index of its first frame in the connection's stream
    sent_at: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def frame_time(self, k: int) -> float | None:
        return self.sent_at[k] if k < len(self.sent_at) else None

    @property
    def t_eos(self) -> float | None:
        return self.frame_time(self.clip.end_frame)


class Mic:
    """Streams 20 ms frames like a live microphone: frame k of the connection is sent at
    t_start + (k+1)*20 ms (when a microphone would have it), speech when an utterance is
    queued, digital silence otherwise. A late loop sends the frames it owes at once."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._queue: list[Utterance] = []
        self.frames_sent = 0
        self.max_late_ms = 0.0
        self._stop = asyncio.Event()

    def say(self, clip: Clip) -> Utterance:
        utt = Utterance(clip)
        self._queue.append(utt)
        return utt

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        silence = bytes(FRAME_BYTES)
        t_start = time.perf_counter()
        while not self._stop.is_set():
            target = t_start + (self.frames_sent + 1) * FRAME_S
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.max_late_ms = max(self.max_late_ms, -delay * 1e3)
            frame = silence
            utt = self._queue[0] if self._queue else None
            if utt is not None:
                if utt.first_global_frame < 0:
                    utt.first_global_frame = self.frames_sent
                k = len(utt.sent_at)
                frame = utt.clip.pcm[k * FRAME_BYTES : (k + 1) * FRAME_BYTES]
            await self._ws.send(frame)
            self.frames_sent += 1
            if utt is not None:
                utt.sent_at.append(time.perf_counter())
                if len(utt.sent_at) == utt.clip.n_frames:
                    self._queue.pop(0)
                    utt.done.set()


@dataclass(frozen=True)
class Event:
    """One server message as the client received it: receive time, type, the JSON object (or
    the audio frame's turn and offset for a binary frame)."""

    t: float
    type: str
    msg: dict[str, Any]


class Conn:
    """One WebSocket conversation: session set-up, the microphone task and an inbox."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.mic = Mic(ws)
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def _read(self) -> None:
        from realtime import messages as m

        async for raw in self.ws:
            t = time.perf_counter()
            if isinstance(raw, bytes):
                frame = m.unpack_audio_frame(raw)
                msg = {"turn": frame.turn, "offset": frame.offset, "samples": len(frame.pcm) // 2}
                self.inbox.put_nowait(Event(t, "audio", msg))
            else:
                obj = json.loads(raw)
                self.inbox.put_nowait(Event(t, str(obj.get("type")), obj))

    async def start(self, session: dict[str, Any]) -> None:
        """session.created -> session.update(session) -> session.updated, then the mic runs."""
        self._tasks.append(asyncio.create_task(self._read()))
        await self.expect("session.created")
        await self.ws.send(json.dumps({"type": "session.update", "session": session}))
        await self.expect("session.updated")
        self._tasks.append(asyncio.create_task(self.mic.run()))

    async def expect(self, kind: str, wait_s: float = TURN_TIMEOUT_S) -> Event:
        """The next message of type `kind` (others are dropped); TimeoutError after wait_s."""
        while True:
            ev = await asyncio.wait_for(self.inbox.get(), wait_s)
            if ev.type == "error":
                raise RuntimeError(f"server error: {ev.msg}")
            if ev.type == kind:
                return ev

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def settle(self, seconds: float) -> list[Event]:
        """Let the mic send silence for `seconds`; returns what arrived meanwhile."""
        out: list[Event] = []
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            try:
                out.append(await asyncio.wait_for(self.inbox.get(), left))
            except TimeoutError:
                break
        return out

    async def close(self) -> None:
        self.mic.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()


# --- one spoken turn ---------------------------------------------------------------------------


def _rel(t: float | None, t_ref: float | None) -> float | None:
    return None if t is None or t_ref is None else round((t - t_ref) * 1e3, 1)


class TurnTimeout(TimeoutError):
    """No reply in time, or a response that ended without audio; carries what did arrive
    (type, ms after the end of speech; a response.done's status and reason)."""

    def __init__(self, utt: Utterance, events: list[Event]) -> None:
        super().__init__(f"no reply to {utt.clip.name}")
        t_eos = utt.t_eos
        self.log: list[Any] = []
        for ev in events:
            if ev.type == "response.done":
                info = ev.msg.get("response", {})
                self.log.append(
                    (ev.type, _rel(ev.t, t_eos), info.get("status"), info.get("reason"))
                )
            elif ev.type != "audio":
                self.log.append((ev.type, _rel(ev.t, t_eos)))
        self.log.append(("audio frames", sum(ev.type == "audio" for ev in events)))


async def speech_turn(conn: Conn, clip: Clip, *, barge: Clip | None = None) -> dict[str, Any]:
    """Say `clip` and finish its turn (see `finish_turn`)."""
    return await finish_turn(conn, conn.mic.say(clip), barge=barge)


async def finish_turn(conn: Conn, utt: Utterance, *, barge: Clip | None = None) -> dict[str, Any]:
    """Wait for the first reply audio received after `utt`'s end of speech (the turn's
    reply), cancel it (unless `barge` is given), and wait for its `response.done`. With
    `barge`, once BARGE_AFTER_S of the reply arrived the mic says `barge`, the time from its
    first speech frame to `bitvoice.audio.flush` is recorded, and the barge-in's own turn is
    finished too. Returns the turn's raw record (client times in ms relative to t_eos).
    Raises TurnTimeout when no reply comes within TURN_TIMEOUT_S after the speech."""
    events: list[Event] = []
    first_audio: dict[int, float] = {}
    reply: int | None = None
    barge_utt: Utterance | None = None
    t_flush: float | None = None
    done: dict[str, Any] | None = None
    answers: set[Any] = set()  # responses created after the end of speech
    deadline = time.perf_counter() + utt.clip.duration_s + TURN_TIMEOUT_S
    while done is None:
        try:
            ev = await asyncio.wait_for(conn.inbox.get(), max(0.1, deadline - time.perf_counter()))
        except TimeoutError:
            raise TurnTimeout(utt, events) from None
        events.append(ev)
        t_eos = utt.t_eos
        if ev.type == "audio":
            turn, offset = ev.msg["turn"], ev.msg["offset"]
            first_audio.setdefault(turn, ev.t)
            if reply is None and t_eos is not None and first_audio[turn] >= t_eos:
                reply = turn
                if barge is None:
                    await conn.send({"type": "response.cancel"})
            if reply == turn and barge is not None and barge_utt is None:
                if offset + ev.msg["samples"] >= BARGE_AFTER_S * OUTPUT_RATE:
                    barge_utt = conn.mic.say(barge)
        elif (
            ev.type in ("bitvoice.audio.hold", "bitvoice.audio.flush")
            and barge_utt is not None
            and t_flush is None
        ):
            t_flush = ev.t  # the reply went silent: held at once, dropped later
        elif ev.type == "response.done" and reply is not None:
            if ev.msg.get("response", {}).get("id") == f"resp_{reply}":
                done = ev.msg
        elif ev.type == "response.created" and t_eos is not None and ev.t >= t_eos:
            answers.add(ev.msg.get("response", {}).get("id"))
        elif ev.type == "response.done" and ev.msg.get("response", {}).get("id") in answers:
            # this turn's response ended without any audio (an empty transcript, say): no
            # reply will come, so do not wait for one
            if not ev.msg.get("response", {}).get("audio_samples"):
                raise TurnTimeout(utt, events)
        elif ev.type == "error" and ev.msg.get("error", {}).get("code") != "no_active_response":
            # (a cancel that crossed the reply's natural end is answered no_active_response)
            raise RuntimeError(f"server error: {ev.msg}")
    await utt.done.wait()
    rec = turn_record(utt, events, first_audio, reply, done)
    if barge is not None:
        onset = None if barge_utt is None else barge_utt.frame_time(barge.onset_frame)
        rec["barge_in"] = {
            "clip": barge.name,
            "speech_to_flush_ms": _rel(t_flush, onset),
            "missed": barge_utt is None or t_flush is None,
        }
        if barge_utt is not None:  # the barge-in speech is a turn of its own: finish it too
            rec["barge_in"]["follow_up"] = await finish_turn(conn, barge_utt)
    return rec


def turn_record(
    utt: Utterance,
    events: list[Event],
    first_audio: dict[int, float],
    reply: int | None,
    done: dict[str, Any] | None,
) -> dict[str, Any]:
    """The raw record of one turn and its breakdown (see BREAKDOWN)."""
    t_eos = utt.t_eos
    assert t_eos is not None and reply is not None and done is not None
    pause = utt.clip.pause_frames
    t_pause = None if pause is None else utt.frame_time(pause[0])

    def times(kind: str) -> list[float]:
        return [ev.t for ev in events if ev.type == kind]

    committed = [t for t in times("input_audio_buffer.committed") if t >= t_eos]
    stopped = [ev for ev in events if ev.type == "input_audio_buffer.speech_stopped"]
    stopped_after = [ev for ev in stopped if ev.t >= t_eos]
    early = {
        "committed": [_rel(t, t_eos) for t in times("input_audio_buffer.committed") if t < t_eos],
        "response_created": [_rel(t, t_eos) for t in times("response.created") if t < t_eos],
        "audio": [_rel(t, t_eos) for t in first_audio.values() if t < t_eos],
    }
    metrics: dict[str, Any] = dict(done.get("metrics") or {})
    stage = {k: metrics.get(k) for k in STAGES}
    total = _rel(first_audio[reply], t_eos)
    eot = _rel(committed[0], t_eos) if committed else None
    vad_late = None
    if stopped_after and "audio_end_ms" in stopped_after[0].msg:
        eos_audio_ms = (utt.first_global_frame + utt.clip.end_frame + 1) * FRAME_MS
        vad_late = float(stopped_after[0].msg["audio_end_ms"]) - eos_audio_ms

    def diff(a: str, b: str | None) -> float | None:
        va, vb = stage.get(a), (0.0 if b is None else stage.get(b))
        return None if va is None or vb is None else round(float(va) - float(vb), 1)

    fa = stage.get("first_audio_ms")
    transcripts = [
        str(ev.msg.get("transcript", ""))
        for ev in events
        if ev.type == "conversation.item.input_audio_transcription.completed"
    ]
    segments = [
        str(ev.msg.get("delta", ""))
        for ev in events
        if ev.type == "response.output_audio_transcript.delta"
        and ev.msg.get("response_id") == f"resp_{reply}"
    ]
    return {
        "clip": utt.clip.name,
        "reference": utt.clip.reference,
        "transcripts": transcripts,
        "first_segment_text": segments[0] if segments else None,
        "reply_text": str(done.get("response", {}).get("output_text", ""))[:400],
        "eos_to_first_audio_ms": total,
        "eot_wait_ms": eot,
        "speech_stopped_recv_ms": _rel(stopped_after[0].t, t_eos) if stopped_after else None,
        "vad_end_late_ms": vad_late,
        "stt_ms": diff("stt_final_ms", None),
        "llm_first_token_ms": diff("first_token_ms", "stt_final_ms"),
        "llm_prefill_ms": stage.get("llm_prefill_ms"),
        "llm_first_segment_ms": diff("first_sentence_ms", "first_token_ms"),
        "tts_first_chunk_ms": diff("tts_first_chunk_ms", "first_sentence_ms"),
        "pacing_ms": diff("first_audio_ms", "tts_first_chunk_ms"),
        "delivery_ms": None
        if total is None or eot is None or fa is None
        else round(total - eot - float(fa), 1),
        "turn_start_ms": stage.get("turn_start_ms"),
        "server_metrics": metrics,
        "response_status": done.get("response", {}).get("status"),
        "before_eos": early,
        "pause_start_to_eos_ms": _rel(t_eos, t_pause),
        "false_turn_end": any(early.values()),
    }


# --- one model ---------------------------------------------------------------------------------


async def open_conn(port: int, session: dict[str, Any]) -> Conn:
    from websockets.asyncio.client import connect

    ws = await connect(f"ws://127.0.0.1:{port}/v1/realtime", max_size=None)
    conn = Conn(ws)
    await conn.start(session)
    return conn


async def drive(port: int, clips: list[Clip], args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one model against the running server on `port`."""
    by_name = {c.name: c for c in clips}
    session: dict[str, Any] = {
        "instructions": SYSTEM_PROMPT,
        "sampling": {"max_output_tokens": args.max_output_tokens},
        # this client plays nothing back into its microphone: no echo to cancel (the echo
        # path is measured by bench.bench_echo)
        "echo_cancellation": False,
    }
    if args.language:
        session["language"] = args.language
    out: dict[str, Any] = {
        "turns": [],
        "pause_trials": [],
        "barge_ins": [],
        "no_reply": [],
        "mic_late_ms": 0.0,
    }

    async def conversation(sess: dict[str, Any], body: Any) -> None:
        conn = await open_conn(port, sess)
        try:
            await conn.settle(SETTLE_S)
            await body(conn)
        finally:
            out["mic_late_ms"] = max(out["mic_late_ms"], conn.mic.max_late_ms)
            await conn.close()

    async def warm(conn: Conn) -> None:  # first touch of the weights: not a user's first turn
        out["warmup"] = await speech_turn(conn, clips[0])

    async def attempt(conn: Conn, clip: Clip, **kw: Any) -> dict[str, Any] | None:
        """One turn; a turn without a reply is counted and left out (the run goes on)."""
        try:
            return await speech_turn(conn, clip, **kw)
        except TurnTimeout as exc:
            out["no_reply"].append({"clip": clip.name, "received": exc.log})
            print(f"  turn {clip.name}: no reply ({exc.log[-3:]})", flush=True)
            return None

    await conversation(session, warm)
    per_conn = [args.turns // CONNECTIONS + (i < args.turns % CONNECTIONS) for i in range(2)]
    order = iter([clips[i % len(clips)] for i in range(args.turns)])
    for n in per_conn:

        async def turns(conn: Conn, n: int = n) -> None:
            for i in range(n):
                rec = await attempt(conn, next(order))
                if rec is None:
                    continue
                rec["first_of_connection"] = i == 0
                out["turns"].append(rec)
                print(f"  turn {rec['clip']}: {rec['eos_to_first_audio_ms']} ms", flush=True)
                await conn.settle(SETTLE_S)

        await conversation(session, turns)

    async def pauses(conn: Conn) -> None:
        for pause_ms in args.pauses:
            for a, b in PAIRS[: args.pause_trials]:
                rec = await attempt(conn, join(by_name[a], by_name[b], pause_ms))
                if rec is None:
                    continue
                rec["pause_ms"] = pause_ms
                out["pause_trials"].append(rec)
                print(f"  pause {rec['clip']}: false turn-end {rec['false_turn_end']}", flush=True)
                await conn.settle(SETTLE_S)

    if args.pauses and args.pause_trials:
        await conversation(session, pauses)
    barge_session = {**session, "sampling": {"max_output_tokens": BARGE_MAX_TOKENS}}

    async def barge_ins(conn: Conn) -> None:
        for i in range(args.barge_ins):
            first, second = clips[i % len(clips)], clips[(i + 1) % len(clips)]
            rec = await attempt(conn, first, barge=second)
            if rec is not None:
                out["barge_ins"].append(rec)
                ms = rec["barge_in"]["speech_to_flush_ms"]
                print(f"  barge-in {second.name}: speech -> flush {ms} ms", flush=True)
            await conn.settle(SETTLE_S)

    if args.barge_ins:
        await conversation(barge_session, barge_ins)
    return out


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    turns = raw["turns"]
    later = [t for t in turns if not t["first_of_connection"]]
    firsts = [t for t in turns if t["first_of_connection"]]
    errors = words = 0
    for t in turns:
        e, n = word_errors(t["reference"], " ".join(t["transcripts"]))
        errors, words = errors + e, words + n
    false_ends: dict[str, Any] = {}
    for p in sorted({t["pause_ms"] for t in raw["pause_trials"]}):
        trials = [t for t in raw["pause_trials"] if t["pause_ms"] == p]
        n_false = sum(t["false_turn_end"] for t in trials)
        false_ends[str(p)] = {"n": len(trials), "false": n_false, "rate": n_false / len(trials)}
    barge = [b["barge_in"] for b in raw["barge_ins"]]
    return {
        "latency_ms": {
            "all": stats([t["eos_to_first_audio_ms"] for t in turns]),
            "first_turn": stats([t["eos_to_first_audio_ms"] for t in firsts]),
            "later_turns": stats([t["eos_to_first_audio_ms"] for t in later]),
        },
        "breakdown_ms": {key: stats([t[key] for t in turns]) for _, key in BREAKDOWN},
        "stage_times_from_t0_ms": {
            k: stats([t["server_metrics"].get(k) for t in turns]) for k in STAGES
        },
        "wer": {"word_errors": errors, "reference_words": words, "wer": errors / max(1, words)},
        "false_turn_ends": false_ends,
        "barge_in": {
            "speech_to_flush_ms": stats([b["speech_to_flush_ms"] for b in barge]),
            "missed": sum(b["missed"] for b in barge),
        },
        "no_reply": len(raw["no_reply"]),
        "mic_max_late_ms": round(raw["mic_late_ms"], 1),
    }


# --- the server, in-process ---------------------------------------------------------------------


class ServerThread:
    """The realtime server on its own event loop in a daemon thread (loopback, port 0)."""

    def __init__(self, model: str, args: argparse.Namespace) -> None:
        from realtime.server import ServerConfig

        cfg = ServerConfig(
            port=0,
            model=model,
            stt_model=args.stt_model,
            trace=True,
            llm_threads=args.llm_threads,
            first_audio_budget_s=None,  # a latency benchmark: admission must not refuse it
        )
        self.quant = None if args.unembed_quant == "none" else args.unembed_quant
        self.quant_via = "-" if self.quant is None else "none"
        names = {f.name for f in dataclasses.fields(ServerConfig)}
        if self.quant and "unembed_quant" in names:  # the server takes it itself
            cfg = dataclasses.replace(cfg, unembed_quant=self.quant)  # type: ignore[call-arg]
            self.quant_via = "ServerConfig.unembed_quant"
        self.cfg = cfg
        self.server: Any = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _main(self) -> None:
        from realtime.server import load_engines, serve

        engines = await load_engines(self.cfg)
        if self.quant is not None and self.quant_via == "none":
            # ServerConfig has no head option (yet): reload the same model with it
            await engines.llm.swap_model(
                engines.model_id, num_threads=self.cfg.llm_threads, unembed_quant=self.quant
            )
            self.quant_via = "LLM.swap_model(unembed_quant=...) by the bench"

        def ready(server: Any) -> None:
            self.server = server
            self._ready.set()

        await serve(self.cfg, ready=ready, engines=engines)

    def _run(self) -> None:
        import uvloop

        try:
            uvloop.run(self._main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def start(self) -> Any:
        self._thread.start()
        self._ready.wait(900)
        if self.server is None:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.request_shutdown()
        self._thread.join(60)


def run_model(model: str, clips: list[Clip], args: argparse.Namespace) -> dict[str, Any]:
    th = ServerThread(model, args)
    t_load = time.perf_counter()
    server = th.start()
    load_s = time.perf_counter() - t_load
    engines = server.engines
    info: dict[str, Any] = {
        "model": engines.model_id,
        "unembed_quant": th.quant or "none",
        "unembed_quant_via": th.quant_via,
        "notice": engines.notice,
        "stt_model": engines.stt.model_id,
        "tts_backend": engines.tts.backend_name,
        "server_start_s": round(load_s, 1),
        "vad_silence_duration_ms": _default_silence_ms(),
    }
    try:
        raw = asyncio.run(drive(server.port, clips, args))
    finally:
        th.stop()
    return {**info, **summarize(raw), "raw": raw}


def _default_silence_ms() -> int | None:
    from realtime import messages as m

    td = getattr(m, "TurnDetection", None)
    return None if td is None else int(td().silence_duration_ms)


# --- output ------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def print_report(result: dict[str, Any]) -> None:
    runs = result["runs"]
    print(f"\nmachine: {result['machine']['cpu']} ({result['machine']['logical_cpus']} CPUs)")
    la = result["load_average"]
    print(f"load average (1/5/15 min): start {la['start']}  end {la['end']}  (shared machine)")
    for r in runs:
        print(f"- {r['model']}: head {r['unembed_quant']} ({r['unembed_quant_via']}), "
              f"tokenizer {r.get('tokenizer', '-')}, STT {r['stt_model']}, TTS {r['tts_backend']}, "
              f"VAD silence {r['vad_silence_duration_ms']} ms, mic frames at most "
              f"{r['mic_max_late_ms']} ms late, {r['no_reply']} turns without a reply")  # fmt: skip
    print("\nend of speech in the audio -> first reply audio received (ms; p50/p90 nearest rank)")
    head = f"{'model':28} {'n':>3} {'p50':>6} {'p90':>6} | {'1st n':>5} {'p50':>6} {'p90':>6}"
    head += f" | {'WER':>5} | false turn-ends by pause | barge-in n p50/p90"
    print(head)
    print("-" * len(head))
    for r in runs:
        a, f = r["latency_ms"]["all"], r["latency_ms"]["first_turn"]
        fe = " ".join(f"{p}:{v['false']}/{v['n']}" for p, v in r["false_turn_ends"].items()) or "-"
        b = r["barge_in"]["speech_to_flush_ms"]
        print(f"{r['model']:28} {a['n']:>3} {_fmt(a['p50']):>6} {_fmt(a['p90']):>6} | "
              f"{f['n']:>5} {_fmt(f['p50']):>6} {_fmt(f['p90']):>6} | {r['wer']['wer']:>5.2f} | "
              f"{fe:24} | {b['n']} {_fmt(b['p50'])}/{_fmt(b['p90'])}"
              + (f" ({r['barge_in']['missed']} missed)" if r["barge_in"]["missed"] else ""))  # fmt: skip
    keys = [key for _, key in BREAKDOWN]
    print("\nevery turn (ms): total = " + " + ".join(keys[:3] + keys[4:8]))
    for r in runs:
        for t in r["raw"]["turns"]:
            parts = " ".join(_fmt(t[k]) for k in keys[:3] + keys[4:8])
            first = " (first of connection)" if t["first_of_connection"] else ""
            print(f"  {r['model'][:22]:22} {t['clip']:16} {_fmt(t['eos_to_first_audio_ms']):>6} "
                  f"= {parts}{first}")  # fmt: skip
    print("\nwhere the time goes, per turn (ms; p50/p90)")
    cols = "".join(f" | {r['model'][:22]:>22}" for r in runs)
    print(f"{'stage':46}{cols}")
    for label, key in BREAKDOWN:
        cells = ""
        for r in runs:
            s = r["breakdown_ms"][key]
            cells += f" | {_fmt(s['p50']) + '/' + _fmt(s['p90']):>22}"
        print(f"{label:46}{cells}")


def machine() -> dict[str, Any]:
    return {
        **describe_machine(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", action="append", help="LLM store ID (repeatable; default: "
                    f"{SHAPES_STORE_ID} then {DEMO_STORE_ID})")  # fmt: skip
    ap.add_argument(
        "--unembed-quant",
        choices=("int4", "int8", "none"),
        default="int8",
        help="LM head quantization (default int8, the server's own default)",
    )
    ap.add_argument("--llm-threads", type=int, default=0, help="0 = the engine's default")
    ap.add_argument("--stt-model", default=None, help="Whisper store ID (default: Whisper base)")
    ap.add_argument("--language", default=None, help="session language (default: detect, "
                    "as the browser client does)")  # fmt: skip
    ap.add_argument("--turns", type=int, default=8, help="latency turns per model")
    ap.add_argument("--pauses", default="300,450,600", help="mid-utterance pauses, ms")
    ap.add_argument("--pause-trials", type=int, default=2, help="utterances per pause (<= 2)")
    ap.add_argument("--barge-ins", type=int, default=4)
    ap.add_argument("--max-output-tokens", type=int, default=40)
    ap.add_argument("--synthetic-tokenizer", action="store_true", help="skip the Llama-3 one")
    ap.add_argument("--home", type=Path, default=CACHE / "home",
                    help="BITVOICE_HOME for the run (its model store)")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 turns, one pause "
                    "(450 ms), one barge-in per model")  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realtime.json")
    args = ap.parse_args(argv)
    args.pauses = [int(p) for p in str(args.pauses).split(",") if p.strip()]
    if args.quick:
        args.turns, args.pauses, args.pause_trials, args.barge_ins = 2, [450], 1, 1
    args.model = args.model or [SHAPES_STORE_ID, DEMO_STORE_ID]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["BITVOICE_HOME"] = str(args.home.expanduser())
    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    clips = load_clips()
    runs = []
    for model in args.model:
        tokenizer = None
        if model == DEMO_STORE_ID:
            from engine.llm.tiny import ensure_demo_bundle

            ensure_demo_bundle()
        if model == SHAPES_STORE_ID:
            from bench.voice_models import ensure_shapes_bundle

            tokenizer = ensure_shapes_bundle(synthetic=args.synthetic_tokenizer).tokenizer
        print(f"{model}: starting the server ...", flush=True)
        run = run_model(model, clips, args)
        if tokenizer is not None:
            run["tokenizer"] = tokenizer
        runs.append(run)
    result = {
        "bench": "realtime",
        "schema": 2,
        "command": [
            "python",
            "-m",
            "bench.bench_realtime",
            *(sys.argv[1:] if argv is None else argv),
        ],
        "machine": machine(),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "note": "2 CPU cores shared with other jobs: read the load average",
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "eos_rule": (
            "20 ms frames; level = 10*log10(mean(x^2)) dBFS; threshold = max(peak - 35 dB, "
            "10th-percentile level + 12 dB); end of speech = the last frame at or above it; "
            "t_eos = when the client sent that frame"
        ),
        "settings": {
            "turns": args.turns,
            "pauses_ms": args.pauses,
            "pause_trials": args.pause_trials,
            "barge_ins": args.barge_ins,
            "max_output_tokens": args.max_output_tokens,
            "language": args.language,
            "system_prompt": SYSTEM_PROMPT,
            "home": str(args.home),
        },
        "clips": [
            {
                "name": c.name,
                "source": c.source,
                "reference": c.reference,
                "duration_s": c.duration_s,
                "speech_onset_s": c.onset_frame * FRAME_S,
                "speech_end_s": (c.end_frame + 1) * FRAME_S,
            }
            for c in clips
        ],
        "runs": runs,
    }
    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out} ({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
