"""The playback buffer by plain calls: what a speaker pulling from it would play."""

from __future__ import annotations

import numpy as np

from kiosk import Player


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int16)


def test_nothing_plays_before_the_prebuffer_then_everything_in_order() -> None:
    p = Player(prebuffer_samples=100)
    p.push(1, ramp(1, 60))
    assert not p.pull(50).pcm.any()  # 60 < 100 queued: still silent
    p.push(1, ramp(61, 60))
    first = p.pull(50)
    assert first.turn == 1 and first.started_at == 0 and first.played == 50
    assert list(first.pcm) == list(range(1, 51))
    rest = p.pull(100)
    assert list(rest.pcm[:70]) == list(range(51, 121)) and not rest.pcm[70:].any()
    assert rest.started_at is None and rest.played == 120


def test_a_short_reply_that_ended_plays_below_the_prebuffer() -> None:
    p = Player(prebuffer_samples=1000)
    p.push(1, ramp(1, 10))
    assert not p.pull(20).pcm.any()
    p.end(1)
    assert list(p.pull(20).pcm[:10]) == list(range(1, 11))
    assert p.idle


def test_an_older_turn_is_dropped_and_a_newer_one_replaces_the_queue() -> None:
    p = Player(prebuffer_samples=0)
    p.push(2, ramp(1, 10))
    assert p.push(1, ramp(100, 10)) is False  # stale: never plays
    p.push(3, ramp(200, 10))  # newer: the rest of turn 2 is dropped
    got = p.pull(30)
    assert got.turn == 3 and list(got.pcm[:10]) == list(range(200, 210))
    assert p.dropped == 20


def test_advance_to_silences_at_once_and_refuses_the_stopped_turn() -> None:
    p = Player(prebuffer_samples=0)
    p.push(4, ramp(1, 100))
    p.pull(10)
    p.advance_to(5)
    assert not p.pull(10).pcm.any() and p.idle
    assert p.push(4, ramp(1, 10)) is False
    assert p.push(5, ramp(1, 10)) is True


def test_pause_holds_the_audio_and_resume_continues_from_the_same_sample() -> None:
    p = Player(prebuffer_samples=0)
    p.push(1, ramp(1, 40))
    p.pull(10)
    p.paused = True
    assert not p.pull(10).pcm.any() and p.turn_played == 10
    p.paused = False
    assert list(p.pull(10).pcm) == list(range(11, 21))


def test_reset_forgets_the_turn_numbers_of_the_old_connection() -> None:
    p = Player(prebuffer_samples=0)
    p.push(7, ramp(1, 10))
    p.reset()
    assert p.push(1, ramp(1, 10)) is True  # the new server starts at resp_1 again


def test_the_queue_is_capped() -> None:
    p = Player(prebuffer_samples=0, max_samples=25)
    for i in range(5):
        p.push(1, ramp(i * 10, 10))
    # the oldest whole chunks go first: the newest 20 samples stay, 30 were dropped
    assert p.queued == 20 and p.dropped == 30
    assert list(p.pull(20).pcm) == list(range(30, 50))
