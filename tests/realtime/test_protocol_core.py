"""The sans-I/O protocol core: plain calls, messages in, outputs out. No components, no I/O."""

from __future__ import annotations

from typing import Any

from rt_helpers import silence_pcm16k, speech_pcm16k, trimmed

from realtime import limits
from realtime import messages as m
from realtime.playout import TurnUsage
from realtime.protocol import (
    ApplyPause,
    ApplySpeed,
    CancelResponse,
    CloseConnection,
    DropSpeculation,
    RealtimeProtocol,
    Send,
    SendAudio,
    Speculate,
    StartResponse,
    StreamAudio,
    heard_text,
)


def sent(outputs: list[Any]) -> list[m.ServerMessage]:
    return [o.message for o in outputs if isinstance(o, Send)]


def types(outputs: list[Any]) -> list[str]:
    return [msg.__struct_config__.tag for msg in sent(outputs)]  # type: ignore[misc]


def errors(outputs: list[Any]) -> list[str]:
    return [msg.error.code for msg in sent(outputs) if isinstance(msg, m.Error)]


def make(manual: bool = False, t: float = 0.0) -> RealtimeProtocol:
    p = RealtimeProtocol(m.SessionState(id="s1"), now=t)
    assert types(p.connected()) == ["session.created"]
    upd = '{"turn_detection": null}' if manual else "{}"
    out = p.receive_text(f'{{"type":"session.update","session":{upd}}}', t)
    assert "session.updated" in types(out)
    assert p.started
    return p


def feed_audio(p: RealtimeProtocol, pcm: bytes, t0: float) -> tuple[list[Any], float]:
    """Feed `pcm` in real-time 20 ms chunks starting at time t0; returns outputs, end time."""
    out: list[Any] = []
    t = t0
    for i in range(0, len(pcm), 640):
        t += 0.02
        out += p.receive_audio(pcm[i : i + 640], t)
    return out, t


def start_text_turn(p: RealtimeProtocol, t: float, text: str = "hi") -> StartResponse:
    out = p.receive_text(f'{{"type":"response.create","input_text":"{text}"}}', t)
    starts = [o for o in out if isinstance(o, StartResponse)]
    assert types(out) == ["response.created"] and len(starts) == 1
    return starts[0]


def test_audio_and_responses_before_session_start_are_refused() -> None:
    p = RealtimeProtocol(m.SessionState(id="s1"), now=0.0)
    assert errors(p.receive_audio(b"\x00\x00" * 160, 0.1)) == ["session_not_started"]
    out = p.receive_text('{"type":"response.create","input_text":"x","event_id":"e9"}', 0.1)
    err = sent(out)[0]
    assert isinstance(err, m.Error) and err.error.code == "session_not_started"
    assert err.error.event_id == "e9"
    # control messages still work
    assert types(p.receive_text('{"type":"bitvoice.ping","event_id":"p"}', 0.2)) == [
        "bitvoice.pong"
    ]


def test_bad_frames_are_errors_and_the_session_goes_on() -> None:
    p = make()
    assert errors(p.receive_text("{oops", 1.0)) == ["invalid_json"]
    assert errors(p.receive_text('{"type":"what"}', 1.0)) == ["unknown_type"]
    assert errors(p.receive_text('{"type":"bitvoice.set_speed","speed":"x"}', 1.0)) == [
        "invalid_field"
    ]
    big = '{"type":"bitvoice.ping","pad":"' + "x" * limits.MAX_MESSAGE_BYTES + '"}'
    assert errors(p.receive_text(big, 1.0)) == ["message_too_large"]
    assert errors(p.receive_audio(b"\x00" * 3, 1.0)) == ["invalid_audio"]
    bad64 = '{"type":"input_audio_buffer.append","audio":"***"}'
    assert errors(p.receive_text(bad64, 1.0)) == ["invalid_audio"]
    assert types(p.receive_text('{"type":"bitvoice.ping"}', 1.0)) == ["bitvoice.pong"]
    # event ids increase
    ids = [int(msg.event_id.split("_")[1]) for msg in sent(p.receive_text("{", 2.0))]
    assert ids and ids[0] > 5


def test_vad_turn_starts_a_response_with_the_speech_audio() -> None:
    p = make()
    speech = speech_pcm16k("what is the capital of france")
    out, _ = feed_audio(p, silence_pcm16k(0.4) + speech + silence_pcm16k(0.8), 0.0)
    assert types(out)[:1] == ["input_audio_buffer.speech_started"]
    assert "input_audio_buffer.speech_stopped" in types(out)
    assert "input_audio_buffer.committed" in types(out)
    assert "response.created" in types(out)
    starts = [o for o in out if isinstance(o, StartResponse)]
    assert len(starts) == 1 and starts[0].audio is not None and starts[0].text is None
    # the turn audio holds the speech (with padding), not the long leading silence
    assert 0.8 * len(speech) <= len(starts[0].audio) <= len(speech) + 1.5 * 32000


def test_barge_in_flushes_cancels_and_refuses_stale_audio() -> None:
    p = make()
    feed_audio(p, silence_pcm16k(0.5), 0.0)  # the microphone was open before the reply
    start = start_text_turn(p, 0.5)
    p.text_delta(start.turn, "Hello there. ", 0.6)
    p.segment_started(start.turn, "Hello there.")
    t = 0.7
    for _ in range(10):  # 400 ms of audio sent at t = 0.7 (a burst)
        assert isinstance(p.audio_frame(start.turn, b"\x01\x00" * 960, t)[0], SendAudio)
    # speech while the assistant speaks
    out, t2 = feed_audio(p, speech_pcm16k("stop please"), 0.8)
    tags = types(out)
    # held at the start of speech (the client stops playing at once), dropped once the speech
    # goes on past a backchannel's length
    assert tags.index("input_audio_buffer.speech_started") < tags.index("bitvoice.audio.hold")
    assert tags.index("bitvoice.audio.hold") < tags.index("bitvoice.audio.flush")
    hold = next(x for x in sent(out) if isinstance(x, m.ResponseOutputAudioHold))
    assert [o for o in out if isinstance(o, CancelResponse)] == [
        CancelResponse(start.turn, "turn_detected")
    ]
    flush = next(x for x in sent(out) if isinstance(x, m.ResponseOutputAudioFlush))
    assert flush.response_id == start.response_id
    assert 0 < flush.offset < 10 * 960  # the modelled client had not played it all
    assert flush.offset == hold.offset  # nothing played while held
    # no frame of the cancelled turn may go out any more
    assert p.audio_frame(start.turn, b"\x01\x00" * 960, t2) == []
    assert p.text_delta(start.turn, "more", t2) == []
    done_out = p.response_finished(start.turn, t2 + 0.1)
    done = next(x for x in sent(done_out) if isinstance(x, m.ResponseDone))
    assert done.response.status == "cancelled" and done.response.reason == "turn_detected"
    assert done.response.played_samples == flush.offset
    assert "response.output_audio.done" not in types(done_out)


def test_cancel_without_response_is_an_error_and_cancel_works_mid_turn() -> None:
    p = make()
    assert errors(p.receive_text('{"type":"response.cancel","event_id":"c"}', 0.0)) == [
        "no_active_response"
    ]
    start = start_text_turn(p, 0.0)
    assert errors(p.receive_text('{"type":"response.create","input_text":"x"}', 0.1)) == [
        "conversation_busy"
    ]
    out = p.receive_text('{"type":"bitvoice.close"}', 0.2)
    assert [o for o in out if isinstance(o, CancelResponse)] == [
        CancelResponse(start.turn, "client_cancelled")
    ]
    assert types(out) == []  # no audio had been sent, so nothing to flush
    assert errors(p.receive_text('{"type":"response.cancel"}', 0.2)) == ["no_active_response"]


def test_pause_resume_and_speed_are_acked_at_once_with_offsets() -> None:
    p = make()
    start = start_text_turn(p, 0.0)
    p.audio_frame(start.turn, b"\x00\x00" * 960, 0.1)
    out = p.receive_text('{"type":"bitvoice.pause","event_id":"a"}', 0.15)
    assert ApplyPause(True) in out
    ack = sent(out)[0]
    assert isinstance(ack, m.Paused) and ack.offset == 960 and ack.client_event_id == "a"
    out = p.receive_text('{"type":"bitvoice.resume","event_id":"b"}', 0.3)
    assert ApplyPause(False) in out
    out = p.receive_text('{"type":"bitvoice.set_speed","speed":1.5,"event_id":"c"}', 0.3)
    assert ApplySpeed(1.5) in out and p.session.speed == 1.5
    assert types(out) == ["bitvoice.speed_set"]


def test_audio_offsets_are_contiguous_and_the_lead_is_modelled() -> None:
    p = make()
    start = start_text_turn(p, 0.0)
    offsets = []
    for _ in range(5):
        frame = p.audio_frame(start.turn, b"\x00\x00" * 960, 1.0)[0]
        assert isinstance(frame, SendAudio)
        parsed = m.unpack_audio_frame(frame.frame)
        assert parsed.turn == start.turn
        offsets.append(parsed.offset)
    assert offsets == [0, 960, 1920, 2880, 3840]
    assert abs(p.lead(1.0) - 0.2) < 1e-9
    assert abs(p.lead(1.1) - 0.1) < 1e-9


def test_completed_response_reports_metrics_and_audio_done() -> None:
    p = make()
    start = start_text_turn(p, 10.0)
    p.text_delta(start.turn, "One.", 10.2)
    p.segment_started(start.turn, "One.")
    p.audio_frame(start.turn, b"\x00\x00" * 960, 10.5)
    out = p.response_finished(start.turn, 11.0, usage=TurnUsage(12, 3, 20.0, 9))
    assert types(out) == ["response.output_audio.done", "bitvoice.metrics", "response.done"]
    done = sent(out)[-1]
    assert isinstance(done, m.ResponseDone)
    assert done.response.status == "completed"
    assert done.response.heard_text == "One." == done.response.output_text
    assert done.metrics.first_token_ms == 200.0 and done.metrics.first_audio_ms == 500.0
    assert done.metrics.completion_tokens == 3 and done.metrics.cached_tokens == 9


def test_heard_text_keeps_only_what_was_played() -> None:
    segs = [(0, "Paris is the capital."), (1000, "It has four million people.")]
    assert heard_text(segs, 2000, 2000) == "Paris is the capital. It has four million people."
    assert heard_text(segs, 2000, 1000) == "Paris is the capital."
    assert heard_text(segs, 2000, 1500) == "Paris is the capital. It has"
    assert heard_text(segs, 2000, 400) == "Paris"
    assert heard_text(segs, 2000, 0) == ""


def test_manual_mode_commit_then_response_create() -> None:
    p = make(manual=True)
    assert errors(p.receive_text('{"type":"input_audio_buffer.commit"}', 0.0)) == ["empty_input"]
    p.receive_audio(b"\x00\x01" * 1600, 0.1)
    out = p.receive_text('{"type":"input_audio_buffer.commit"}', 0.2)
    assert types(out) == ["input_audio_buffer.committed"]
    out = p.receive_text('{"type":"response.create"}', 0.3)
    start = next(o for o in out if isinstance(o, StartResponse))
    assert start.audio == b"\x00\x01" * 1600


def test_audio_faster_than_real_time_is_dropped_with_one_error() -> None:
    p = make(manual=True)
    chunk = bytes(32000)  # 1 s
    codes: list[str] = []
    for _ in range(6):  # 6 s of audio in no time
        codes += errors(p.receive_audio(chunk, 1.0))
    assert codes == ["audio_rate_exceeded"]
    # real-time audio later is accepted again
    assert errors(p.receive_audio(chunk, 3.0)) == []


def test_idle_and_session_limits_close_the_connection() -> None:
    p = RealtimeProtocol(m.SessionState(id="s"), now=0.0, idle_timeout_s=5, max_session_s=100)
    assert p.tick(4.0) == []
    out = p.tick(6.0)
    assert errors(out) == ["idle_timeout"] and isinstance(out[-1], CloseConnection)
    q = RealtimeProtocol(m.SessionState(id="s"), now=0.0, idle_timeout_s=5, max_session_s=10)
    for t in range(1, 12):
        q.receive_text('{"type":"bitvoice.ping"}', float(t))
    assert errors(q.tick(11.5)) == ["session_expired"]


def test_turn_during_a_response_without_barge_in_waits_its_turn() -> None:
    p = make()
    p.receive_text(
        '{"type":"session.update","session":{"turn_detection":{"interrupt_response":false}}}', 0.0
    )
    start = start_text_turn(p, 0.0)
    out, t = feed_audio(p, speech_pcm16k("hello") + silence_pcm16k(0.8), 0.0)
    assert not [o for o in out if isinstance(o, CancelResponse | StartResponse)]
    out = p.response_finished(start.turn, t)
    nxt = [o for o in out if isinstance(o, StartResponse)]
    assert len(nxt) == 1 and nxt[0].turn == start.turn + 1


def test_streamed_speech_carries_how_soon_the_turn_can_end() -> None:
    p = make()
    speech = speech_pcm16k("one two three four five")
    out, _ = feed_audio(p, silence_pcm16k(0.3) + speech + silence_pcm16k(0.8), 0.0)
    streams = [o for o in out if isinstance(o, StreamAudio)]
    stop_at = next(
        i
        for i, o in enumerate(out)
        if isinstance(o, Send) and tag(o) == "input_audio_buffer.speech_stopped"
    )
    default = m.TurnDetection().silence_duration_ms
    full = -(-default // 30) * 30  # the default silence_duration_ms in whole 30 ms VAD frames
    assert streams and all(0 <= s.until_stop_ms <= full for s in streams)
    assert max(s.until_stop_ms for s in streams) == full  # while voiced: the whole silence
    # in the final silence the time left shrinks to nothing, then the turn ends
    tail = [o.until_stop_ms for o in out[:stop_at] if isinstance(o, StreamAudio)][-8:]
    assert tail == sorted(tail, reverse=True) and tail[-1] < 100


def tag(o: Send) -> str:
    t = o.message.__struct_config__.tag
    assert isinstance(t, str)
    return t


# ---- speculative turn start and the turn-end policy ---------------------------------------------


def _first(out: list[Any], kind: type) -> int:
    return next(i for i, o in enumerate(out) if isinstance(o, kind))


def test_a_pause_speculates_and_the_end_of_turn_adopts_the_same_item() -> None:
    p = make()
    speech = speech_pcm16k("what is the capital of france")
    out, _ = feed_audio(p, silence_pcm16k(0.3) + speech + silence_pcm16k(0.8), 0.0)
    spec = [o for o in out if isinstance(o, Speculate)]
    starts = [o for o in out if isinstance(o, StartResponse)]
    assert len(spec) == 1 and len(starts) == 1 and spec[0].item_id == starts[0].item_id
    assert _first(out, Speculate) < _first(out, StartResponse)
    # the speculation comes well before the full silence: at least 300 ms of audio earlier
    stream_after = [o for o in out[_first(out, Speculate) : _first(out, StartResponse)]]
    assert sum(len(o.audio) for o in stream_after if isinstance(o, StreamAudio)) >= 0.3 * 32000


def test_speech_after_a_pause_drops_the_speculation_and_the_turn_goes_on() -> None:
    p = make()
    first, second = trimmed(speech_pcm16k("I would like to")), speech_pcm16k("book a table")
    out, t = feed_audio(p, silence_pcm16k(0.3) + first + silence_pcm16k(0.3), 0.0)
    spec = [o for o in out if isinstance(o, Speculate)]
    assert len(spec) == 1 and not [o for o in out if isinstance(o, StartResponse)]
    out2, _ = feed_audio(p, second + silence_pcm16k(0.8), t)
    assert DropSpeculation(spec[0].item_id) in out2
    starts = [o for o in out2 if isinstance(o, StartResponse)]
    assert len(starts) == 1 and starts[0].item_id == spec[0].item_id  # one turn, both parts
    assert starts[0].audio is not None
    assert len(starts[0].audio) >= len(first) + len(second)


def test_a_complete_looking_transcript_ends_the_turn_sooner(monkeypatch: Any) -> None:
    monkeypatch.setattr(limits, "COMPLETE_TURN_SILENCE_MS", 300)

    def silence_until_start(text: str | None) -> int:
        p = make()
        _, t = feed_audio(p, silence_pcm16k(0.3) + trimmed(speech_pcm16k("what time is it")), 0.0)
        item = None
        for i in range(60):  # 20 ms frames of silence until the response starts
            t += 0.02
            step = p.receive_audio(silence_pcm16k(0.02), t)
            for o in step:
                if isinstance(o, Speculate):
                    item = o.item_id
                    if text is not None:
                        step += p.transcript_ready(o.item_id, text, t)
            if any(isinstance(o, StartResponse) for o in step):
                return i * 20
        raise AssertionError(f"no turn end (item {item})")

    complete, unsure, none = (
        silence_until_start("What time is it?"),
        silence_until_start("What time is the"),
        silence_until_start(None),
    )
    assert complete < unsure and complete < none
    assert complete <= limits.COMPLETE_TURN_SILENCE_MS + 200
    assert unsure >= 400 and none >= 400
    monkeypatch.setattr(limits, "COMPLETE_TURN_SILENCE_MS", None)  # the default: off
    assert silence_until_start("What time is it?") == none


def test_no_speculation_while_a_response_is_running() -> None:
    p = make()
    p.receive_text(
        '{"type":"session.update","session":{"turn_detection":{"interrupt_response":false}}}', 0.0
    )
    start_text_turn(p, 0.0)
    out, _ = feed_audio(p, speech_pcm16k("hello there") + silence_pcm16k(0.8), 0.0)
    assert not [o for o in out if isinstance(o, Speculate)]


def test_a_session_update_the_server_cannot_honour_is_refused_with_its_event_id() -> None:
    def check(s: m.SessionState) -> tuple[str, str] | None:
        return ("unknown_voice", "no such voice") if s.voice == "nosuchvoice" else None

    p = RealtimeProtocol(m.SessionState(id="s1"), now=0.0, check_session=check)
    out = p.receive_text(
        '{"type":"session.update","event_id":"u1","session":{"voice":"nosuchvoice"}}', 0.0
    )
    err = sent(out)
    assert len(err) == 1 and isinstance(err[0], m.Error)
    assert err[0].error.code == "unknown_voice" and err[0].error.event_id == "u1"
    assert p.session.voice is None and not p.started  # nothing of it applied


def test_the_message_limit_counts_bytes_not_characters() -> None:
    p = make()
    chars = limits.MAX_MESSAGE_BYTES // 4  # 4-byte emoji: far fewer characters than bytes
    frame = '{"type":"bitvoice.ping","pad":"' + "\U0001f600" * chars + '"}'
    assert len(frame) < limits.MAX_MESSAGE_BYTES < len(frame.encode())
    assert errors(p.receive_text(frame, 1.0)) == ["message_too_large"]
