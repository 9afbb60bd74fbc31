"""realtime.admission: the measured-load admission policy, as plain function calls."""

from __future__ import annotations

import math

import pytest

from realtime.admission import AdmissionConfig, AdmissionPolicy


def policy(cap: int = 16, budget: float | None = 1.5, window_s: float = 60.0) -> AdmissionPolicy:
    return AdmissionPolicy(
        AdmissionConfig(max_conversations=cap, first_audio_budget_s=budget, window_s=window_s)
    )


def feed(
    p: AdmissionPolicy,
    *,
    start: float,
    seconds: int,
    busy: float,
    active: int,
    first_audio_s: float,
    turn_every: int = 3,
) -> float:
    """One load sample a second and a turn every `turn_every` seconds; returns the end time."""
    t = start
    for i in range(seconds):
        t = start + i
        p.observe_load(t, busy, active)
        if i % turn_every == turn_every - 1:
            p.observe_turn(t, first_audio_s, active)
    return t


def test_without_evidence_only_the_hard_cap_applies() -> None:
    p = policy(cap=3)
    assert [p.headroom(0.0, a) for a in range(5)] == [3, 2, 1, 0, 0]
    assert p.admit(0.0, 2) and not p.admit(0.0, 3)
    # two turns are not evidence enough (min_turns is 3)
    p.observe_load(0.0, 0.99, 1)
    p.observe_turn(0.5, 9.0, 1)
    p.observe_turn(1.0, 9.0, 1)
    assert p.headroom(1.0, 1) == 2
    assert p.predicted_first_audio_s(1.0, 2) is None


def test_light_load_admits_until_the_model_predicts_the_budget_is_missed() -> None:
    p = policy(cap=16)
    # 2 conversations keep the engines 20% busy (u = 0.1), turns at 0.6 s
    t = feed(p, start=0.0, seconds=30, busy=0.2, active=2, first_audio_s=0.6)
    assert p.per_conversation_load(t) == pytest.approx(0.1)
    base = 0.6 * (1 - 0.2)
    # k conversations: base / (1 - 0.1 k) <= 1.5  <=>  k <= 6.8, so 6 in all: 4 more
    assert p.predicted_first_audio_s(t, 6) == pytest.approx(base / (1 - 0.6))
    assert p.predicted_first_audio_s(t, 7) == pytest.approx(base / (1 - 0.7))
    assert p.predicted_first_audio_s(t, 7) > 1.5 >= p.predicted_first_audio_s(t, 6)  # type: ignore[operator]
    assert p.headroom(t, 2) == 4
    assert p.admit(t, 5) and not p.admit(t, 6)
    assert p.snapshot(t, 2)["capacity"] == 6
    # past max_utilization the prediction is infinite, whatever the base latency
    assert p.predicted_first_audio_s(t, 9) == math.inf


def test_the_hard_cap_still_applies_under_light_load() -> None:
    p = policy(cap=3)
    t = feed(p, start=0.0, seconds=30, busy=0.01, active=1, first_audio_s=0.3)
    assert p.headroom(t, 1) == 2
    assert not p.admit(t, 3)


def test_running_conversations_that_miss_the_budget_stop_admission() -> None:
    p = policy(cap=24)
    # the model alone would admit more (little CPU measured), but the turns are slow:
    # the machine is busy with something the load sample does not see
    t = feed(p, start=0.0, seconds=30, busy=0.05, active=4, first_audio_s=3.0)
    assert p.observed_first_audio_s(t) == 3.0
    assert p.headroom(t, 4) == 0 and not p.admit(t, 4)
    # with fewer open, the model decides: the base latency alone (2.85 s) misses the budget
    assert p.predicted_first_audio_s(t, 3) == pytest.approx(3.0 * 0.95 / (1 - 3 * 0.05 / 4))
    assert not p.admit(t, 2)
    # an empty server always takes one conversation
    assert p.headroom(t, 0) >= 1


def test_old_observations_leave_the_window() -> None:
    p = policy(cap=8, window_s=60.0)
    t = feed(p, start=0.0, seconds=30, busy=0.9, active=8, first_audio_s=12.0)
    assert not p.admit(t, 3)
    later = t + 61.0
    assert p.observed_first_audio_s(later) is None
    assert p.headroom(later, 3) == 5  # no evidence left: the hard cap again


def test_overload_at_twenty_conversations_is_refused_long_before() -> None:
    """The issue's case: 20 conversations, median first audio 14.9 s. The policy, fed what a
    few conversations measured, stops far below 20."""
    p = policy(cap=24)
    t = feed(p, start=0.0, seconds=40, busy=0.45, active=3, first_audio_s=1.1)
    room = p.headroom(t, 3)
    assert 0 <= room <= 2  # u = 0.15: 5 conversations predict 1.1*0.55/0.25 = 2.4 s > 1.5 s
    assert not p.admit(t, 3 + room)


def test_budget_none_means_hard_cap_only() -> None:
    p = policy(cap=5, budget=None)
    t = feed(p, start=0.0, seconds=30, busy=0.99, active=4, first_audio_s=30.0)
    assert p.headroom(t, 4) == 1 and p.admit(t, 4) and not p.admit(t, 5)


def test_bad_observations_are_ignored() -> None:
    p = policy(cap=4)
    for x in (math.nan, math.inf, -1.0):
        p.observe_turn(1.0, x, 1)
        p.observe_load(1.0, x if x != -1.0 else math.nan, 1)
    assert p.snapshot(1.0, 1)["turns_observed"] == 0
    assert p.per_conversation_load(1.0) is None
    with pytest.raises(ValueError):
        AdmissionPolicy(AdmissionConfig(max_conversations=0))
