"""The kiosk's protocol core by plain calls: server frames in (encoded by the server's own
schema), frames to send and events out. Times are seconds on a made-up clock."""

from __future__ import annotations

import numpy as np
import pytest

from kiosk import KioskCore, ReplyDone, ReplyStarted, SessionOptions
from kiosk import limits as kl
from realtime import messages as m

SR = kl.OUTPUT_RATE


def feed(core: KioskCore, msg: m.ServerMessage) -> None:
    core.receive_text(m.encode(msg))


def sent(core: KioskCore) -> list[m.ClientMessage]:
    """What the core queued, decoded by the server's decoder (so it must be valid)."""
    return [m.decode_client(f) for f in core.data_to_send() if isinstance(f, str)]


def audio(turn: int, offset: int, n: int, value: int = 1000) -> bytes:
    return m.pack_audio_frame(turn, offset, np.full(n, value, dtype="<i2").tobytes())


def started(options: SessionOptions | None = None) -> KioskCore:
    core = KioskCore(options)
    core.connection_made()
    feed(core, m.SessionCreated(session=m.SessionState(id="sess_1", model="demo")))
    feed(core, m.SessionUpdated(session=m.SessionState(id="sess_1", started=True)))
    core.data_to_send()
    core.events_received()
    return core


def respond(core: KioskCore, turn: int) -> None:
    feed(core, m.ResponseCreated(response=m.ResponseInfo(id=m.response_id_for(turn))))


def done(core: KioskCore, turn: int, status: str = "completed", reason: str | None = None) -> None:
    info = m.ResponseInfo(id=m.response_id_for(turn), status=status, reason=reason)  # type: ignore[arg-type]
    feed(core, m.ResponseDone(response=info))


def test_session_update_asks_for_server_vad_with_barge_in_and_binary_audio() -> None:
    core = KioskCore(SessionOptions(voice="joe", max_output_tokens=12))
    core.connection_made()
    assert core.data_to_send() == []  # the server speaks first
    feed(core, m.SessionCreated(session=m.SessionState(id="s", model="x")))
    [update] = sent(core)
    assert isinstance(update, m.SessionUpdate)
    s = update.session
    assert isinstance(s.turn_detection, m.TurnDetection) and s.turn_detection.interrupt_response
    assert s.output_audio_transport == "binary" and s.voice == "joe"
    assert isinstance(s.sampling, m.Sampling) and s.sampling.max_output_tokens == 12
    assert s.language is m.UNSET  # not given: the server's default stays


def test_push_to_talk_asks_for_manual_turns() -> None:
    core = KioskCore(SessionOptions(push_to_talk=True))
    core.connection_made()
    feed(core, m.SessionCreated(session=m.SessionState(id="s")))
    [update] = sent(core)
    assert isinstance(update, m.SessionUpdate) and update.session.turn_detection is None


def test_microphone_audio_waits_for_the_session_then_goes_out_in_order() -> None:
    core = KioskCore()
    core.connection_made()
    core.mic_audio(b"\x01\x00" * 320, 0.0)
    assert core.data_to_send() == []  # before session.update: the server would refuse it
    feed(core, m.SessionCreated(session=m.SessionState(id="s")))
    core.mic_audio(b"\x02\x00" * 320, 0.02)
    frames = core.data_to_send()
    assert isinstance(frames[0], str) and frames[1] == b"\x02\x00" * 320


def test_only_the_current_response_plays() -> None:
    core = started()
    core.receive_binary(audio(1, 0, 2400))  # before response.created: not current
    respond(core, 2)
    core.receive_binary(audio(1, 0, 2400))  # an older response: stale
    core.receive_binary(audio(2, 0, 2400, value=7))
    out = core.render(2400, 1.0)
    assert (out == 7).all()


def test_barge_in_flush_silences_the_reply_and_drops_its_late_frames() -> None:
    core = started()
    respond(core, 1)
    core.receive_binary(audio(1, 0, 4800))
    assert core.render(2400, 0.0).any()
    feed(
        core, m.ResponseOutputAudioFlush(response_id="resp_1", offset=4800, reason="turn_detected")
    )
    assert not core.render(2400, 0.1).any()  # the queued half never plays
    core.receive_binary(audio(1, 4800, 2400))  # a frame the server had in flight
    assert not core.render(2400, 0.2).any()
    done(core, 1, "cancelled", "turn_detected")
    [event] = [e for e in core.events_received() if isinstance(e, ReplyDone)]
    assert event.status == "cancelled" and event.reason == "turn_detected"
    assert event.played_samples == 2400  # what was heard before the flush, not 0
    respond(core, 2)  # the next reply plays
    core.receive_binary(audio(2, 0, 2400, value=9))
    feed(core, m.ResponseOutputAudioDone(response_id="resp_2", samples=2400))
    assert (core.render(2400, 0.3) == 9).all()


def test_hold_stops_the_reply_at_once_and_release_plays_on_from_there() -> None:
    core = started()
    respond(core, 1)
    core.receive_binary(audio(1, 0, 4800, value=5))
    assert (core.render(1200, 0.0) == 5).all()
    feed(core, m.ResponseOutputAudioHold(response_id="resp_1", offset=1200))
    assert not core.render(1200, 0.05).any()  # held: silent, the queue kept
    feed(core, m.ResponseOutputAudioRelease(response_id="resp_1", offset=1200))
    assert (core.render(3600, 0.1) == 5).all()  # the rest of the reply, nothing lost
    assert not core.render(1200, 0.3).any()


def test_a_reply_that_ended_other_than_completed_never_plays_again() -> None:
    core = started()
    respond(core, 1)
    core.receive_binary(audio(1, 0, 4800))
    done(core, 1, "failed", "error")
    assert not core.render(4800, 0.0).any()


def test_a_new_connection_forgets_the_old_turn_numbers() -> None:
    core = started()
    respond(core, 3)
    core.receive_binary(audio(3, 0, 4800))
    core.connection_lost()
    assert not core.render(4800, 0.0).any() and core.player.idle
    assert core.data_to_send() == []
    core.connection_made()
    feed(core, m.SessionCreated(session=m.SessionState(id="s2")))
    respond(core, 1)  # numbering restarts on the new server session
    core.receive_binary(audio(1, 0, 2400, value=5))
    feed(core, m.ResponseOutputAudioDone(response_id="resp_1", samples=2400))
    assert (core.render(2400, 0.0) == 5).all()


def test_latency_runs_from_the_capture_of_the_last_word_to_the_first_sample_heard() -> None:
    core = started()
    chunk = b"\x00\x00" * kl.MIC_CHUNK_SAMPLES
    for i in range(100):  # 2 s of microphone, captured from t=10.0 on
        core.mic_audio(chunk, 10.0 + i * 0.02)
    feed(core, m.InputAudioBufferSpeechStarted(item_id="item_1", audio_start_ms=200))
    assert not core.idle
    # the last word ended 1.23 s into the session: captured at t = 11.23
    feed(core, m.InputAudioBufferSpeechStopped(item_id="item_1", audio_end_ms=1230))
    feed(core, m.InputAudioBufferCommitted(item_id="item_1"))
    respond(core, 1)
    core.receive_binary(audio(1, 0, 4800))
    core.render(1200, 12.0)  # prebuffer met: the block heard at 12.0 starts the reply
    [event] = [e for e in core.events_received() if isinstance(e, ReplyStarted)]
    assert event.response_id == "resp_1"
    assert event.latency_ms == pytest.approx(770.0)


def test_playback_is_reported_while_the_reply_runs_and_not_more_often_than_the_interval() -> None:
    core = started()
    respond(core, 1)
    core.receive_binary(audio(1, 0, 24000))
    core.render(4800, 0.0)
    core.tick(0.0)
    core.render(2400, 0.1)
    core.tick(0.1)  # within the interval: nothing
    [report] = sent(core)
    assert isinstance(report, m.Playback)
    assert report.response_id == "resp_1" and report.played_samples == 4800
    core.tick(0.0 + kl.PLAYBACK_REPORT_INTERVAL_S)
    [report] = sent(core)
    assert isinstance(report, m.Playback) and report.played_samples == 7200
    done(core, 1)
    core.render(2400, 0.5)
    core.tick(1.0)  # the response is over: the server would ignore a report
    assert sent(core) == []


def test_stop_key_silences_reports_what_was_heard_and_cancels() -> None:
    core = started()
    respond(core, 1)
    core.receive_binary(audio(1, 0, 24000))
    core.render(3600, 0.0)
    core.key("s", 0.2)
    assert not core.render(2400, 0.2).any()
    report, cancel = sent(core)
    assert isinstance(report, m.Playback) and report.played_samples == 3600
    assert isinstance(cancel, m.ResponseCancel)
    core.key("s", 0.3)  # already stopped: nothing more is sent
    assert sent(core) == []


def test_stop_after_the_server_sent_the_whole_reply_truncates_it_to_what_was_heard() -> None:
    core = started()
    respond(core, 1)
    core.receive_binary(audio(1, 0, 24000))
    done(core, 1)  # all of it sent: nothing to cancel, but 0.85 s of it is still to play
    core.render(4800, 0.0)
    core.key("s", 0.2)
    assert not core.render(2400, 0.2).any()
    [truncate] = sent(core)
    assert isinstance(truncate, m.ConversationItemTruncate)
    assert truncate.item_id == m.assistant_item_id("resp_1") and truncate.audio_end_ms == 200
    core.render(24000, 0.3)
    core.key("s", 1.5)  # nothing plays any more: nothing is sent
    assert sent(core) == []


def test_stop_after_a_reply_played_to_its_end_sends_nothing() -> None:
    core = started()
    respond(core, 1)
    core.receive_binary(audio(1, 0, 2400))
    done(core, 1)
    core.render(4800, 0.0)
    core.key("s", 0.3)
    assert sent(core) == []


def test_pause_key_silences_here_and_asks_the_server_to_hold_then_resumes() -> None:
    core = started()
    respond(core, 1)
    core.receive_binary(audio(1, 0, 9600, value=3))
    core.render(2400, 0.0)
    core.key("p", 0.1)
    assert not core.render(2400, 0.1).any()
    core.key("p", 0.2)
    assert (core.render(2400, 0.2) == 3).all()
    pause, resume = sent(core)
    assert isinstance(pause, m.Pause) and isinstance(resume, m.Resume)


def test_push_to_talk_sends_audio_only_while_talking_and_ends_the_turn() -> None:
    core = started(SessionOptions(push_to_talk=True))
    core.mic_audio(b"\x01\x00" * 320, 0.0)
    assert core.data_to_send() == []  # key not pressed: the microphone stays private
    core.key(" ", 0.1)
    assert [type(x) for x in sent(core)] == [m.InputAudioBufferClear]
    core.mic_audio(b"\x01\x00" * 320, 0.12)
    assert core.data_to_send() == [b"\x01\x00" * 320]
    core.key(" ", 0.5)
    assert [type(x) for x in sent(core)] == [m.InputAudioBufferCommit, m.ResponseCreate]
    core.mic_audio(b"\x01\x00" * 320, 0.52)
    assert core.data_to_send() == []
    feed(core, m.InputAudioBufferCommitted(item_id="item_1"))
    respond(core, 1)  # latency counts from the key release
    core.receive_binary(audio(1, 0, 2400))
    feed(core, m.ResponseOutputAudioDone(response_id="resp_1", samples=2400))
    core.render(480, 0.9)
    [event] = [e for e in core.events_received() if isinstance(e, ReplyStarted)]
    assert event.latency_ms == pytest.approx(400.0)


def test_idle_only_when_every_turn_is_answered_and_played_out() -> None:
    core = started()
    assert core.idle
    feed(core, m.InputAudioBufferSpeechStarted(item_id="item_1", audio_start_ms=0))
    feed(core, m.InputAudioBufferSpeechStopped(item_id="item_1", audio_end_ms=900))
    feed(core, m.InputAudioBufferCommitted(item_id="item_1"))
    assert not core.idle  # committed, not answered yet
    respond(core, 1)
    core.receive_binary(audio(1, 0, 2400))
    done(core, 1)
    assert not core.idle  # still playing
    core.render(2400, 0.0)
    core.render(480, 0.1)
    assert core.idle and core.completed_replies == 1


def test_a_server_message_it_does_not_know_is_ignored() -> None:
    core = started()
    core.receive_text('{"type":"bitvoice.something_new","x":1}')
    core.receive_binary(b"not a frame")
    assert core.data_to_send() == [] and core.events_received() == []


def test_a_server_that_declares_other_audio_formats_is_not_used() -> None:
    core = KioskCore()
    core.connection_made()
    state = m.SessionState(id="s", input_audio_format="pcm16le/8000/mono")
    feed(core, m.SessionCreated(session=state))
    assert core.incompatible is not None and "pcm16le/8000/mono" in core.incompatible
    core.mic_audio(b"\x00\x00" * 320, 0.0)
    assert core.data_to_send() == []  # no session.update, no audio in a format it cannot take


def test_a_silent_push_to_talk_session_is_kept_open_with_pings() -> None:
    core = started(SessionOptions(push_to_talk=True))
    core.tick(0.0)
    core.tick(kl.KEEPALIVE_S - 1)
    assert sent(core) == []
    core.tick(kl.KEEPALIVE_S + 0.1)
    assert [type(x) for x in sent(core)] == [m.Ping]
    core.key(" ", kl.KEEPALIVE_S + 5)  # talking sends frames: no ping needed for a while
    core.data_to_send()
    core.tick(kl.KEEPALIVE_S + 5)
    core.tick(2 * kl.KEEPALIVE_S + 4)
    assert sent(core) == []
