"""Malformed-frame fuzzing of the realtime server over a real WebSocket.

`malformed_frames(count, seed)` makes seeded random frames of every kind a hostile or broken
client sends (truncated JSON, wrong field types, huge numbers, deep nesting, invalid UTF-8 in a
text frame, binary garbage, oversized frames, unknown types, bad escapes, NaN, non-objects);
`fuzz(url, frames)` sends them in batches, each followed by a `bitvoice.ping` whose pong proves
the connection still works, and counts what came back. A close is acceptable only right after
a typed `error`, or as the protocol-level close of the frame that asked for it (1007 for
invalid UTF-8, 1009 above the hard frame limit); the client then reconnects and goes on.

By hand, against a running server (the test runs a smaller count on its own server):

    python tests/realtime/rt_fuzz.py --url ws://127.0.0.1:8765/v1/realtime --count 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run by hand from anywhere

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime import limits
from realtime import messages as m

__all__ = ["Frame", "FuzzReport", "fuzz", "malformed_frames"]

BATCH = 32  # frames between two pings: bounds what the server queues for a slow reader

# client message types with a field of a known type to break
_FIELDS: list[tuple[str, str, Any]] = [
    ("bitvoice.set_speed", "speed", 1.0),
    ("bitvoice.playback", "played_samples", 0),
    ("session.update", "session", {}),
    ("input_audio_buffer.append", "audio", ""),
    ("response.create", "input_text", "hi"),
    ("bitvoice.ping", "event_id", "e"),
    ("response.cancel", "event_id", "e"),
]
_WRONG: list[Any] = [None, True, "x", 1, -1, 1.5, [], {}, [1, 2], {"a": 1}, "", "\u0000"]
_HUGE: list[str] = [
    "1e999",
    "-1e999",
    "123456789012345678901234567890123456789",
    "-9223372036854775809",
    "18446744073709551616",
    "1" * 400,
    "0." + "0" * 400 + "1",
    "4.9e-325",
]
_SESSION_BAD: list[dict[str, Any]] = [
    {"speed": 100},
    {"turn_detection": {"aggressiveness": 9}},
    {"turn_detection": {"frame_ms": 25}},
    {"sampling": {"temperature": -1}},
    {"sampling": {"max_output_tokens": 10**12}},
    {"voice": "../../etc/passwd"},
    {"language": "x" * 100},
    {"output_audio_transport": "carrier-pigeon"},
    {"instructions": 5},
]


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame to send: `data` (str = text frame, bytes = binary frame unless `as_text`)."""

    kind: str
    data: str | bytes
    as_text: bool = False  # bytes sent as a text frame (invalid UTF-8)

    @property
    def closes(self) -> int | None:
        """The protocol-level close code this frame asks for, if any."""
        if self.as_text:
            return 1007
        if len(self.data) > limits.HARD_MAX_FRAME_BYTES:
            return 1009
        return None


def _valid_json(rng: random.Random) -> str:
    msg_type, key, value = rng.choice(_FIELDS)
    return json.dumps({"type": msg_type, key: value, "event_id": f"v{rng.randrange(10**6)}"})


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice([*_WRONG, rng.random() * 10 ** rng.randrange(-5, 300)])
    if r < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randrange(4))}


def _frame(rng: random.Random) -> Frame:
    r = rng.random()
    if r < 0.12:
        text = _valid_json(rng)
        return Frame("truncated", text[: rng.randrange(1, len(text))])
    if r < 0.26:
        msg_type, key, _ = rng.choice(_FIELDS)
        bad = rng.choice([*_WRONG, _random_value(rng)])
        return Frame("wrong_type", json.dumps({"type": msg_type, key: bad}))
    if r < 0.32:
        msg_type, key, _ = rng.choice(_FIELDS)
        return Frame("huge_number", f'{{"type":"{msg_type}","{key}":{rng.choice(_HUGE)}}}')
    if r < 0.38:
        depth = rng.randrange(50, 4000)
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        inner = (
            opener * depth + "1" + closer * depth if opener != "[" else "[" * depth + "]" * depth
        )
        return Frame("deep_nesting", f'{{"type":"bitvoice.ping","x":{inner}}}')
    if r < 0.385:
        junk = bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 64)))
        return Frame("invalid_utf8", b'{"type":"bitvoice.ping","x":"' + junk + b'"}', as_text=True)
    if r < 0.52:
        return Frame("binary", rng.randbytes(rng.randrange(0, 4000)))
    if r < 0.525:
        size = rng.randrange(limits.MAX_MESSAGE_BYTES + 1, limits.HARD_MAX_FRAME_BYTES)
        return Frame("oversized", "x" * size)
    if r < 0.526:
        return Frame("over_hard_limit", b"\x00" * (limits.HARD_MAX_FRAME_BYTES + 2))
    if r < 0.62:
        name = rng.choice(["", "x", "session.upd", "bitvoice.", "error", "\u202e", "a" * 500])
        return Frame("unknown_type", json.dumps({"type": name, "event_id": "u"}))
    if r < 0.70:
        return Frame("random_json", json.dumps(_random_value(rng)))
    if r < 0.76:
        esc = rng.choice(["\\ud800", "\\udfff", "\\u0000", "\\x41", "\\", "\\uZZZZ", "\\ud83d"])
        return Frame("bad_escape", f'{{"type":"bitvoice.ping","event_id":"{esc}"}}')
    if r < 0.80:
        lit = rng.choice(["NaN", "Infinity", "-Infinity", "undefined", "0x10", "01", "+1"])
        return Frame("bad_literal", f'{{"type":"bitvoice.set_speed","speed":{lit}}}')
    if r < 0.86:
        cfg = rng.choice(_SESSION_BAD)
        return Frame("bad_session", json.dumps({"type": "session.update", "session": cfg}))
    if r < 0.92:
        eid = "e" * rng.randrange(65, 5000)
        return Frame("long_event_id", json.dumps({"type": "bitvoice.ping", "event_id": eid}))
    if r < 0.96:
        b64 = rng.choice(["!!!", "QQ", "QUJD=", "A" * 3, "\u00e9"])
        return Frame("bad_base64", json.dumps({"type": "input_audio_buffer.append", "audio": b64}))
    text = _valid_json(rng)
    cut = rng.randrange(len(text))
    return Frame("garbled", text[:cut] + rng.choice('{}[]",:\\') + text[cut + 1 :])


def _malformed(frame: Frame) -> bool:
    """False for a text frame that happens to be a valid client message (a random wrong
    value can be a right one: `"x"` as `input_text` starts a real turn)."""
    if not isinstance(frame.data, str) or len(frame.data) > limits.MAX_MESSAGE_BYTES:
        return True
    try:
        m.decode_client(frame.data)
    except m.WireError:
        return True
    return False


def malformed_frames(count: int, seed: int = 0) -> list[Frame]:
    """`count` seeded random malformed frames (no text frame among them decodes)."""
    rng = random.Random(seed)
    out: list[Frame] = []
    while len(out) < count:
        if _malformed(frame := _frame(rng)):
            out.append(frame)
    return out


@dataclass
class FuzzReport:
    """What `fuzz` saw. `bad_closes` lists closes neither after a typed error nor the
    protocol-level close that the frame asked for (must stay empty)."""

    frames: int = 0
    errors: int = 0  # typed `error` messages received
    error_codes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    protocol_closes: Counter[int] = field(default_factory=Counter)
    closes_after_error: int = 0
    bad_closes: list[str] = field(default_factory=list)
    pongs: int = 0
    seconds: float = 0.0
    last_was_error: bool = False  # the last message received was a typed error

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "errors": self.errors,
            "error_codes": dict(self.error_codes),
            "kinds": dict(self.kinds),
            "protocol_closes": {str(k): v for k, v in self.protocol_closes.items()},
            "closes_after_error": self.closes_after_error,
            "bad_closes": self.bad_closes,
            "pongs": self.pongs,
            "seconds": round(self.seconds, 1),
        }


async def _open(url: str) -> ClientConnection:
    """A connection with a started session in manual-turn mode (audio garbage never becomes
    a turn to answer)."""
    ws = await connect(url, max_size=None)
    async with asyncio.timeout(10):
        await ws.recv()  # session.created
        await ws.send('{"type":"session.update","session":{"turn_detection":null}}')
        while not (isinstance(raw := await ws.recv(), str) and '"session.updated"' in raw):
            pass
    return ws


async def _send(ws: ClientConnection, frame: Frame) -> None:
    if frame.as_text:
        await ws.send(frame.data, text=True)
    else:
        await ws.send(frame.data)


async def _batch(ws: ClientConnection, frames: list[Frame], tag: str, report: FuzzReport) -> None:
    """Send `frames` and a ping; read until its pong. Raises ConnectionClosed when the server
    closes (`report.last_was_error` then says whether a typed error came just before)."""
    for frame in frames:
        await _send(ws, frame)
        report.frames += 1
        report.kinds[frame.kind] += 1
    await ws.send(json.dumps({"type": "bitvoice.ping", "event_id": tag}))
    async with asyncio.timeout(30):
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes):
                continue
            msg = m.decode_server(raw)
            if isinstance(msg, m.Error):
                report.errors += 1
                report.error_codes[msg.error.code] += 1
            report.last_was_error = isinstance(msg, m.Error)
            if isinstance(msg, m.Pong) and msg.client_event_id == tag:
                report.pongs += 1
                return


async def fuzz(url: str, frames: list[Frame], batch: int = BATCH) -> FuzzReport:
    """Send `frames` to the server at `url` (see the module docstring); returns the report."""
    report = FuzzReport()
    t0 = time.perf_counter()
    ws = await _open(url)
    try:
        for n, start in enumerate(range(0, len(frames), batch)):
            chunk = frames[start : start + batch]
            report.last_was_error = False
            try:
                await _batch(ws, chunk, f"b{n}", report)
            except ConnectionClosed:
                code = ws.close_code
                asked = {f.closes for f in chunk} - {None}
                if code is not None and code in asked:
                    report.protocol_closes[code] += 1
                elif report.last_was_error:
                    report.closes_after_error += 1
                else:
                    kinds = sorted({f.kind for f in chunk})
                    report.bad_closes.append(f"batch {n}: close {code} {ws.close_reason!r} {kinds}")
                await ws.close()  # finish the closing handshake before the next connection
                ws = await _open(url)
    finally:
        await ws.close()
    report.seconds = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="ws://127.0.0.1:8765/v1/realtime")
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    report = asyncio.run(fuzz(args.url, malformed_frames(args.count, args.seed)))
    print(json.dumps(report.summary(), indent=2))
    return 1 if report.bad_closes else 0


if __name__ == "__main__":
    sys.exit(main())
