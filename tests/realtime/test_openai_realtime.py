"""The official `openai` client's Realtime connection against the real server on loopback,
with only `websocket_base_url` changed: a text turn, an audio turn (base64 24 kHz PCM with
server VAD) and a truncate after a cancelled response."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import openai
import pytest
from rt_helpers import GA_SESSION, on_server, silence_pcm16k, speech_pcm16k, trimmed

from realtime.playout import heard_text
from realtime.server import RealtimeServer

pytestmark = pytest.mark.slow

OUTPUT_RATE = 24_000


def event_type(event: Any) -> str:
    return str(getattr(event, "type", None) or event["type"])


def field(event: Any, name: str) -> Any:
    return event[name] if isinstance(event, dict) else getattr(event, name)


async def until(
    conn: Any, kind: str, pred: Callable[[Any], bool] | None = None, limit_s: float = 60
) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(limit_s):
        while True:
            event = await conn.recv()
            got.append(event)
            if event_type(event) == kind and (pred is None or pred(event)):
                return got


def pcm24k(pcm16k: bytes) -> bytes:
    x = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32)
    n = len(x) * 3 // 2
    return np.interp(np.arange(n) / 1.5, np.arange(len(x)), x).astype("<i2").tobytes()


def audio_of(events: list[Any]) -> bytes:
    deltas = [e for e in events if event_type(e) == "response.output_audio.delta"]
    return b"".join(base64.b64decode(field(e, "delta")) for e in deltas)


async def cap_replies(conn: Any, tokens: int) -> None:
    """Our own `sampling` field (not in OpenAI's schema): the longest reply, in tokens."""
    update = {"type": "session.update", "session": {"sampling": {"max_output_tokens": tokens}}}
    await conn.send(update)
    await until(conn, "session.updated")


async def add_user_text(conn: Any, text: str) -> None:
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )


async def test_realtime_connect_text_turn_audio_turn_and_truncate(
    rt_server: RealtimeServer,
) -> None:
    port = rt_server.port
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1",
        websocket_base_url=f"ws://127.0.0.1:{port}/v1",
        api_key="unused",
    )
    async with client, client.realtime.connect(model=rt_server.engines.llm.model_id) as conn:
        created = (await until(conn, "session.created"))[-1]
        session_id = field(field(created, "session"), "id")
        await conn.session.update(session=GA_SESSION)  # type: ignore[arg-type]
        await until(conn, "session.updated")
        await cap_replies(conn, 24)

        # ---- a text turn
        await add_user_text(conn, "Hello there.")
        await conn.response.create()
        events = await until(conn, "response.done")
        kinds = [event_type(e) for e in events]
        for kind in (
            "conversation.item.added",
            "response.output_item.added",
            "response.output_item.done",
        ):
            assert kind in kinds, kinds
        assert kinds.index("response.output_item.done") < kinds.index("response.done")
        assert len(audio_of(events)) > OUTPUT_RATE // 10  # some real reply audio, as base64

        # ---- an audio turn: 24 kHz PCM as base64, the server's VAD ends it
        said = trimmed(speech_pcm16k("What time is it?")) + silence_pcm16k(1.2)
        audio = pcm24k(said)
        chunk = OUTPUT_RATE * 2 // 10  # 100 ms
        for i in range(0, len(audio), chunk):
            await conn.input_audio_buffer.append(
                audio=base64.b64encode(audio[i : i + chunk]).decode()
            )
            await asyncio.sleep(0.07)  # a little faster than real time, within the rate limit
        events = await until(conn, "response.done")
        kinds = [event_type(e) for e in events]
        assert (
            "input_audio_buffer.speech_started" in kinds and "input_audio_buffer.committed" in kinds
        )
        done = next(
            e
            for e in events
            if event_type(e) == "conversation.item.input_audio_transcription.completed"
        )
        assert "time" in field(done, "transcript").lower(), field(done, "transcript")

        # ---- a long reply, cancelled after a second of audio, then truncated at 0.5 s
        await cap_replies(conn, 200)
        await add_user_text(conn, "Tell me a long story.")
        await conn.response.create()
        events = await until(
            conn, "response.output_audio.delta", pred=lambda e: len(audio_of([e])) > 0, limit_s=60
        )
        while len(audio_of(events)) < OUTPUT_RATE * 2:  # one second of 16-bit audio
            events += await until(conn, "response.output_audio.delta")
        await conn.response.cancel()
        events += await until(conn, "response.done")
        done_info = field(events[-1], "response")
        assert field(done_info, "status") == "cancelled"
        item_id = next(
            field(field(e, "item"), "id")
            for e in events
            if event_type(e) == "response.output_item.added"
        )
        segments = [
            (field(e, "offset"), field(e, "delta"))
            for e in events
            if event_type(e) == "response.output_audio_transcript.delta"
        ]
        sent = field(done_info, "audio_samples")
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=500)
        truncated = (await until(conn, "conversation.item.truncated"))[-1]
        assert field(truncated, "item_id") == item_id

        def history() -> list[tuple[str, str]]:
            conv = rt_server.find_conversation(session_id)
            assert conv is not None
            return conv.history

        kept = await on_server(rt_server, history)
        heard = heard_text(segments, sent, OUTPUT_RATE // 2)
        if heard:
            assert kept[-1] == ("assistant", heard)
        else:  # nothing heard: the reply leaves the history, the user's message stays
            assert kept[-1] == ("user", "Tell me a long story.")
        assert len(heard) < len(field(done_info, "output_text"))
