"""Admission that follows measured load: admit a conversation only while the ones already
running keep their first-audio latency budget. Pure (no I/O, no asyncio): the server feeds it
observations with its own clock and asks it before each new conversation.

Inputs, both timestamped by the caller's monotonic clock:

- `observe_turn(now, first_audio_s, active)`: a completed turn's latency from the end of the
  user's speech to the first reply audio, and how many conversations were open;
- `observe_load(now, busy, active)`: how busy the engines were over the last sampling interval
  (the server's CPU seconds per second divided by its usable CPUs, 0..1) and how many
  conversations were open.

The model (a single-server queue, M/M/1-like, which is how one CPU-bound pipeline shared by
every conversation behaves): each open conversation keeps the engines busy a fraction `u` of
the time (mean busy / mean open conversations over the window), so with `k` conversations the
engines are busy `rho = k * u`, and a turn's first audio takes `base / (1 - rho)`, where `base`
is the latency with the engines otherwise idle. Each observed turn gives an estimate of `base`
(its latency times `1 - rho`, rho measured over the seconds before it ended); the policy keeps the 90th percentile of those. It
admits the k-th conversation while `base / (1 - k * u)` stays within the budget and `k * u`
below `max_utilization`, and never while the turns observed in the window with at least as many
conversations open already miss the budget at their p90 (direct evidence beats the model). Until `min_turns` turns are observed it
trusts only the hard cap; an empty server always admits one conversation. Old observations
leave the window (`window_s`), so the policy follows the load as it changes.

Calling contract: all methods take `now` (seconds, monotonic, never decreasing); `active` is
the number of conversations open at that moment (the new one not counted). Nothing raises.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any

from realtime import limits

__all__ = ["AdmissionConfig", "AdmissionPolicy"]


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """The policy's settings; `first_audio_budget_s=None` turns the measured part off (then
    only the hard cap `max_conversations` applies)."""

    max_conversations: int = limits.DEFAULT_MAX_CONVERSATIONS
    first_audio_budget_s: float | None = limits.DEFAULT_FIRST_AUDIO_BUDGET_S
    window_s: float = limits.ADMISSION_WINDOW_S
    min_turns: int = limits.ADMISSION_MIN_TURNS
    max_utilization: float = limits.ADMISSION_MAX_UTILIZATION
    quantile: float = limits.ADMISSION_QUANTILE


@dataclass(frozen=True, slots=True)
class _Turn:
    at: float
    first_audio_s: float
    active: int  # conversations open when it ended
    base_s: float  # the same turn's latency with the engines idle (see the module docstring)


@dataclass(frozen=True, slots=True)
class _Load:
    at: float
    busy: float
    active: int


def _quantile(xs: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of a non-empty list."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


class AdmissionPolicy:
    """See the module docstring. One per server; not thread-safe (call from one loop)."""

    def __init__(self, config: AdmissionConfig) -> None:
        if config.max_conversations < 1:
            raise ValueError("max_conversations must be at least 1")
        self.config = config
        self._turns: collections.deque[_Turn] = collections.deque(
            maxlen=limits.ADMISSION_MAX_SAMPLES
        )
        self._loads: collections.deque[_Load] = collections.deque(
            maxlen=limits.ADMISSION_MAX_SAMPLES
        )

    # ---- observations -----------------------------------------------------------------------

    def observe_turn(self, now: float, first_audio_s: float, active: int) -> None:
        """A turn ended; `first_audio_s` from the end of speech to its first reply audio."""
        if not math.isfinite(first_audio_s) or first_audio_s < 0:
            return
        self._expire(now)
        rho = min(
            self._utilization(now - limits.ADMISSION_TURN_LOAD_S), self.config.max_utilization
        )
        self._turns.append(_Turn(now, first_audio_s, max(active, 1), first_audio_s * (1.0 - rho)))

    def observe_load(self, now: float, busy: float, active: int) -> None:
        """The engines were busy `busy` (0..1) of the last interval, with `active` open."""
        if not math.isfinite(busy):
            return
        self._expire(now)
        self._loads.append(_Load(now, min(max(busy, 0.0), 1.0), max(active, 0)))

    # ---- estimates ----------------------------------------------------------------------------

    def per_conversation_load(self, now: float) -> float | None:
        """`u`: the mean busy fraction per open conversation over the window (None: no
        sample with a conversation open)."""
        self._expire(now)
        loads = [x for x in self._loads if x.active > 0]
        if not loads:
            return None
        busy = sum(x.busy for x in loads) / len(loads)
        active = sum(x.active for x in loads) / len(loads)
        return busy / active

    def observed_first_audio_s(self, now: float, active: int = 0) -> float | None:
        """The window's first-audio latency at the policy's quantile, over the turns that
        ended with at least `active` conversations open (None: no such turn)."""
        self._expire(now)
        xs = [t.first_audio_s for t in self._turns if t.active >= active]
        return _quantile(xs, self.config.quantile) if xs else None

    def predicted_first_audio_s(self, now: float, conversations: int) -> float | None:
        """The first-audio latency (at the quantile) the model predicts with `conversations`
        open; inf past `max_utilization`; None while too few turns were observed."""
        self._expire(now)
        u = self.per_conversation_load(now)
        if len(self._turns) < self.config.min_turns or u is None:
            return None
        rho = conversations * u
        if rho >= self.config.max_utilization:
            return math.inf
        base = _quantile([t.base_s for t in self._turns], self.config.quantile)
        return base / (1.0 - rho)

    # ---- decisions ----------------------------------------------------------------------------

    def headroom(self, now: float, active: int) -> int:
        """How many more conversations may open now (0 = refuse the next one)."""
        cap = self.config.max_conversations
        room = max(cap - active, 0)
        budget = self.config.first_audio_budget_s
        if budget is None or room == 0:
            return room
        floor = 1 if active == 0 else 0  # an empty server serves one conversation, whatever
        observed = self.observed_first_audio_s(now, active)
        if self.predicted_first_audio_s(now, active + 1) is None:
            return room  # too little evidence yet: only the hard cap
        if observed is not None and observed > budget:
            return floor  # the conversations running now already miss their budget
        extra = 0
        while extra < room:
            predicted = self.predicted_first_audio_s(now, active + extra + 1)
            if predicted is None or predicted > budget:
                break
            extra += 1
        return max(extra, floor)

    def admit(self, now: float, active: int) -> bool:
        """True when one more conversation may open now (see `headroom`)."""
        return self.headroom(now, active) > 0

    def snapshot(self, now: float, active: int) -> dict[str, Any]:
        """What /healthz shows of the policy (numbers rounded for people)."""
        u = self.per_conversation_load(now)
        observed = self.observed_first_audio_s(now)
        headroom = self.headroom(now, active)
        return {
            "headroom": headroom,
            "capacity": active + headroom,
            "max_conversations": self.config.max_conversations,
            "first_audio_budget_s": self.config.first_audio_budget_s,
            "first_audio_observed_s": None if observed is None else round(observed, 3),
            "per_conversation_load": None if u is None else round(u, 4),
            "turns_observed": len(self._turns),
        }

    # ---- internals -------------------------------------------------------------------------

    def _utilization(self, since: float) -> float:
        """The mean busy fraction of the load samples taken after `since` (0 with none)."""
        xs = [x.busy for x in self._loads if x.at >= since]
        return sum(xs) / len(xs) if xs else 0.0

    def _expire(self, now: float) -> None:
        horizon = now - self.config.window_s
        while self._turns and self._turns[0].at < horizon:
            self._turns.popleft()
        while self._loads and self._loads[0].at < horizon:
            self._loads.popleft()
