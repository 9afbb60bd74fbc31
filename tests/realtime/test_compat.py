"""OpenAI Realtime (GA) compatibility in the protocol core (realtime.compat): plain calls."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from rt_helpers import GA_SESSION, silence_pcm16k, speech_pcm16k, trimmed

from realtime import compat, limits
from realtime import messages as m
from realtime.protocol import RealtimeProtocol, Send, SendAudio, StartResponse, TruncateReply


def sent(outputs: list[Any]) -> list[Any]:
    return [o.message for o in outputs if isinstance(o, Send)]


def types(outputs: list[Any]) -> list[str]:
    return [msg.__struct_config__.tag for msg in sent(outputs)]


GA_UPDATE = {"type": "session.update", "session": {**GA_SESSION, "instructions": "Be brief."}}


def ga_protocol() -> RealtimeProtocol:
    p = RealtimeProtocol(m.SessionState(id="s1", voice="alba"), now=0.0)
    p.connected()
    out = p.receive_text(json.dumps(GA_UPDATE), 0.0)
    assert types(out) == ["session.updated"], sent(out)
    return p


def test_ga_session_update_maps_onto_the_flat_session() -> None:
    p = ga_protocol()
    s = p.session
    assert s.type == "realtime" and s.output_audio_transport == "json"
    assert s.input_audio_format == compat.INPUT_24K
    assert s.voice is None  # an OpenAI voice name: the server's default voice
    assert s.instructions == "Be brief."
    assert s.turn_detection is not None and s.turn_detection.silence_duration_ms == 500
    # text-only replies and other output rates are refused, and nothing of them applies
    for session in (
        {"output_modalities": ["text"]},
        {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}},
    ):
        out = p.receive_text(json.dumps({"type": "session.update", "session": session}), 1.0)
        assert [e.error.code for e in sent(out)] == ["invalid_field"]
    assert p.session == s


def test_24khz_input_is_resampled_for_the_vad_and_whisper() -> None:
    p = ga_protocol()
    speech16 = trimmed(speech_pcm16k("What time is it?")) + silence_pcm16k(1.0)
    x = np.frombuffer(speech16, dtype="<i2").astype(np.float32)
    speech24 = np.interp(np.arange(len(x) * 3 // 2) / 1.5, np.arange(len(x)), x).astype("<i2")
    out: list[Any] = []
    t = 0.0
    raw = speech24.tobytes()
    for i in range(0, len(raw), 960):  # 20 ms of 24 kHz
        t += 0.02
        chunk = base64.b64encode(raw[i : i + 960]).decode()
        out += p.receive_text(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}), t)
    starts = [o for o in out if isinstance(o, StartResponse)]
    assert len(starts) == 1, types(out)
    # the turn's audio is 16 kHz: as long as the speech that was said, give or take the VAD's
    # padding and end-of-turn silence
    audio = starts[0].audio
    assert audio is not None
    seconds = len(audio) / limits.INPUT_BYTES_PER_SECOND
    said = len(trimmed(speech_pcm16k("What time is it?"))) / limits.INPUT_BYTES_PER_SECOND
    assert said - 0.1 < seconds < said + 1.2, (seconds, said)
    tags = types(out)
    assert tags.index("input_audio_buffer.committed") < tags.index("conversation.item.added")


def test_item_create_then_response_create_and_the_item_events() -> None:
    p = RealtimeProtocol(m.SessionState(id="s1"), now=0.0)
    p.connected()
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    out = p.receive_text(json.dumps({"type": "conversation.item.create", "item": item}), 0.1)
    # an OpenAI-only message starts the session in the GA shape
    assert p.started and p.session.type == "realtime"
    assert types(out) == ["conversation.item.added", "conversation.item.done"]
    out = p.receive_text('{"type":"response.create"}', 0.2)
    start = next(o for o in out if isinstance(o, StartResponse))
    assert start.text == "Hi" and start.audio is None
    assert types(out) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
    ]
    p.segment_started(start.turn, "Hello there.")
    frames = p.audio_frame(start.turn, b"\x01\x00" * 960, 0.3)
    assert not any(isinstance(o, SendAudio) for o in frames)  # JSON only for OpenAI clients
    delta = sent(frames)[0]
    assert isinstance(delta, m.ResponseOutputAudioDelta)
    assert delta.delta == base64.b64encode(b"\x01\x00" * 960).decode()
    assert delta.audio is m.UNSET and delta.item_id == f"item_{start.response_id}"
    done = p.response_finished(start.turn, 0.5)
    tags = types(done)
    assert tags.index("response.output_item.done") < tags.index("response.done")
    item_done = sent(done)[tags.index("conversation.item.done")]
    assert item_done.item.status == "completed"
    assert item_done.item.content[0].transcript == "Hello there."


def test_truncate_keeps_the_words_heard_of_the_last_reply() -> None:
    p = ga_protocol()
    item = {"role": "user", "content": [{"type": "input_text", "text": "Tell me"}]}
    p.receive_text(json.dumps({"type": "conversation.item.create", "item": item}), 0.1)
    out = p.receive_text('{"type":"response.create"}', 0.2)
    start = next(o for o in out if isinstance(o, StartResponse))
    second = limits.OUTPUT_RATE
    for k, text in enumerate(["One two.", "Three four.", "Five six."]):
        p.segment_started(start.turn, text)
        p.audio_frame(start.turn, b"\x00\x00" * second, 0.3 + k)
    p.receive_text('{"type":"response.cancel"}', 0.4)
    p.response_finished(start.turn, 0.5)
    item_id = f"item_{start.response_id}"
    msg = {"type": "conversation.item.truncate", "item_id": item_id, "audio_end_ms": 1000}
    out = p.receive_text(json.dumps(msg), 0.6)
    truncs = [o for o in out if isinstance(o, TruncateReply)]
    assert [t.text for t in truncs] == ["One two."]  # the first second: the first segment
    assert types(out) == ["conversation.item.truncated"]
    msg = {"type": "conversation.item.truncate", "item_id": "item_resp_99", "audio_end_ms": 10}
    assert [e.error.code for e in sent(p.receive_text(json.dumps(msg), 0.7))] == ["invalid_field"]


def test_a_bitvoice_session_sees_no_openai_events() -> None:
    p = RealtimeProtocol(m.SessionState(id="s1"), now=0.0)
    p.connected()
    p.receive_text('{"type":"session.update","session":{"output_audio_transport":"json"}}', 0.0)
    out = p.receive_text('{"type":"response.create","input_text":"hi"}', 0.1)
    start = next(o for o in out if isinstance(o, StartResponse))
    assert types(out) == ["response.created"]
    delta = sent(p.audio_frame(start.turn, b"\x00\x00" * 10, 0.2))[0]
    assert delta.audio and delta.delta is m.UNSET
    assert "conversation.item.done" not in types(p.response_finished(start.turn, 0.3))


def test_an_audio_item_at_24khz_becomes_a_16khz_turn() -> None:
    p = ga_protocol()
    pcm24 = (np.sin(np.arange(24_000) * 0.05) * 3000).astype("<i2").tobytes()  # 1 s
    part = {"type": "input_audio", "audio": base64.b64encode(pcm24).decode()}
    item = {"type": "message", "role": "user", "content": [part], "id": "item_mine"}
    out = p.receive_text(json.dumps({"type": "conversation.item.create", "item": item}), 0.1)
    assert types(out) == ["conversation.item.added", "conversation.item.done"]
    out = p.receive_text('{"type":"response.create"}', 0.2)
    start = next(o for o in out if isinstance(o, StartResponse))
    assert start.item_id == "item_mine" and start.text is None and start.audio is not None
    assert abs(len(start.audio) - limits.INPUT_BYTES_PER_SECOND) <= 2 * 64  # 1 s at 16 kHz
    bad = {**item, "content": [{"type": "input_audio", "audio": "not base64!"}]}
    out = p.receive_text(json.dumps({"type": "conversation.item.create", "item": bad}), 0.3)
    assert [e.error.code for e in sent(out)] == ["invalid_audio"]
