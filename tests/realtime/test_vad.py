"""The VAD segmenter (sans-I/O): pauses, resumed speech, and ending a turn on request."""

from __future__ import annotations

import pytest
from rt_helpers import silence_pcm16k, speech_pcm16k, trimmed

from engine.errors import InvalidRequestError
from realtime.vad import (
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    VadConfig,
    VadEvent,
    VadSegmenter,
)


def kinds(events: list[VadEvent]) -> list[str]:
    return [type(e).__name__ for e in events if not type(e).__name__ == "SpeechAudio"]


def test_a_pause_comes_before_the_stop_and_only_once() -> None:
    seg = VadSegmenter(VadConfig(pause_ms=150, silence_duration_ms=500))
    ev = seg.feed(
        silence_pcm16k(0.3) + speech_pcm16k("hello there my friend") + silence_pcm16k(0.8)
    )
    assert kinds(ev) == ["SpeechStarted", "SpeechPaused", "SpeechStopped"]
    paused = next(e for e in ev if isinstance(e, SpeechPaused))
    stopped = next(e for e in ev if isinstance(e, SpeechStopped))
    assert paused.end_ms == stopped.end_ms  # both name the end of the last voiced frame


def test_speech_after_a_pause_resumes_the_same_turn() -> None:
    seg = VadSegmenter(VadConfig(pause_ms=150, silence_duration_ms=500))
    audio = (
        trimmed(speech_pcm16k("I would like"))
        + silence_pcm16k(0.3)
        + speech_pcm16k("a table for two")
        + silence_pcm16k(0.8)
    )
    ev = seg.feed(audio)
    assert kinds(ev) == [
        "SpeechStarted",
        "SpeechPaused",
        "SpeechResumed",
        "SpeechPaused",
        "SpeechStopped",
    ]
    assert isinstance(ev[0], SpeechStarted) and not seg.in_speech
    assert len([e for e in ev if isinstance(e, SpeechResumed)]) == 1


def test_without_pause_ms_there_are_no_pause_events() -> None:
    seg = VadSegmenter(VadConfig())
    ev = seg.feed(speech_pcm16k("hello") + silence_pcm16k(0.8))
    assert kinds(ev) == ["SpeechStarted", "SpeechStopped"]


def test_stop_now_ends_the_turn_at_once_and_only_in_speech() -> None:
    seg = VadSegmenter(VadConfig(pause_ms=150, silence_duration_ms=500))
    assert seg.stop_now() == []
    ev = seg.feed(trimmed(speech_pcm16k("what time is it")) + silence_pcm16k(0.2))
    assert kinds(ev) == ["SpeechStarted", "SpeechPaused"] and seg.paused
    assert seg.silent_ms >= 150
    stopped = seg.stop_now()
    assert len(stopped) == 1 and isinstance(stopped[0], SpeechStopped)
    assert not seg.in_speech and not seg.paused and seg.silent_ms == 0
    assert kinds(seg.feed(silence_pcm16k(0.8))) == []  # no second stop for the same turn


def test_a_pause_longer_than_the_silence_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        VadSegmenter(VadConfig(pause_ms=600, silence_duration_ms=500))
