"""Partial-transcript scheduling (realtime.partials): plain calls, no engines, no clock."""

from __future__ import annotations

import math

from realtime import limits
from realtime.partials import DecodeTimer, PartialGate, SpeechDeadlines


def test_decode_timer_is_unknown_until_measured_then_a_moving_average() -> None:
    timer = DecodeTimer()
    assert timer.estimate_s is None
    timer.observe(0.4)
    assert timer.estimate_s == 0.4
    timer.observe(1.4)
    a = limits.DECODE_EMA_ALPHA
    assert timer.estimate_s == a * 1.4 + (1 - a) * 0.4
    for bad in (-1.0, math.nan):
        timer.observe(bad)
    assert timer.estimate_s == a * 1.4 + (1 - a) * 0.4 and timer.observed == 2


def test_no_partial_before_the_decode_time_is_known() -> None:
    assert not PartialGate(DecodeTimer()).allow(0.0, until_stop_s=10.0)


def test_a_partial_starts_only_if_it_can_end_before_the_turn_can() -> None:
    gate = PartialGate(DecodeTimer(0.2))
    # the VAD needs 0.5 s more silence before it may end the turn: 0.2 x safety fits
    assert gate.allow(0.0, until_stop_s=0.5)
    # 0.25 s left: a 0.2 s decode (x PARTIAL_SAFETY) could still hold Whisper at the end
    assert 0.2 * limits.PARTIAL_SAFETY > 0.25
    assert not gate.allow(0.0, until_stop_s=0.25)
    assert not gate.allow(0.0, until_stop_s=0.0)
    assert gate.skipped_near_end == 2
    # a slow engine (1 s per decode) never runs partials under a 0.5 s end-of-turn silence
    assert not PartialGate(DecodeTimer(1.0)).allow(0.0, until_stop_s=0.5)


def test_one_partial_at_a_time_and_the_rate_follows_the_decode_time() -> None:
    timer = DecodeTimer(0.2)
    gate = PartialGate(timer)
    gate.started(0.0)
    assert not gate.allow(0.1, until_stop_s=1.0)  # one running
    gate.finished(0.4, decode_s=0.4)
    assert timer.estimate_s is not None and timer.estimate_s > 0.2  # it learned
    gap = 0.4 * (1 - limits.PARTIAL_MAX_DUTY) / limits.PARTIAL_MAX_DUTY
    assert not gate.allow(0.4 + gap - 0.01, until_stop_s=5.0)
    assert gate.allow(0.4 + gap + 0.01, until_stop_s=5.0)
    # a new user turn is not held back by the previous turn's rate
    gate.started(1.0)
    gate.finished(1.5, decode_s=0.5)
    gate.reset()
    assert gate.allow(1.5, until_stop_s=5.0)


def test_a_partial_that_did_not_decode_teaches_nothing() -> None:
    timer = DecodeTimer(0.3)
    gate = PartialGate(timer)
    gate.started(0.0)
    gate.finished(0.1, decode_s=None)
    assert timer.estimate_s == 0.3 and timer.observed == 0
    assert gate.allow(0.1, until_stop_s=1.0)


def test_the_earliest_end_of_any_conversation_bounds_every_partial() -> None:
    deadlines = SpeechDeadlines()
    assert deadlines.until_first(0.0) == math.inf  # nobody speaks: no constraint
    a, b = object(), object()
    deadlines.update(a, 0.0, 0.5)
    deadlines.update(b, 0.0, 0.2)  # b is already in its end-of-turn silence
    assert deadlines.until_first(0.1) == 0.1
    # so a's partial (0.2 s decode) must not start, though a itself has 0.4 s left
    assert not PartialGate(DecodeTimer(0.2)).allow(0.1, deadlines.until_first(0.1))
    deadlines.clear(b)  # b's turn ended
    assert deadlines.until_first(0.1) == 0.4
    assert PartialGate(DecodeTimer(0.2)).allow(0.1, deadlines.until_first(0.1))
    # a stream that stopped mid-speech (deadline past) does not block everyone forever
    deadlines.update(b, 0.0, 0.0)
    assert deadlines.until_first(1.0) == math.inf
    deadlines.clear(a)
    deadlines.clear(a)  # idempotent
