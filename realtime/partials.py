"""When to run a partial transcript: pure scheduling, no I/O and no asyncio.

Whisper runs one decode at a time and a decode cannot be interrupted, so a partial that is
still decoding when the user stops speaking delays the final transcript by the rest of its
decode. `PartialGate` lets a partial start only when it is expected to end before the earliest
moment the VAD can end the turn (`until_stop_s`, the silence it still needs), and keeps the
partial rate adaptive: after a partial, the next waits in proportion to the measured decode
time, so partials use at most `limits.PARTIAL_MAX_DUTY` of the engine.

`DecodeTimer` is the running estimate of one decode's wall time; one per STT engine, shared
by every conversation (the server seeds it with a warm-up decode at start, and every decode
whose time is known without queueing updates it). `SpeechDeadlines` is shared the same way:
the earliest moment any conversation's turn may end, so one conversation's partial does not
delay another's final either.

    gate = PartialGate(timer)
    if gate.allow(now, until_stop_s):   # also needs the engine idle and new audio
        gate.started(now)
        ... decode ...
        gate.finished(now, decode_seconds)
"""

from __future__ import annotations

import math

from realtime import limits

__all__ = ["DecodeTimer", "PartialGate", "SpeechDeadlines"]


class DecodeTimer:
    """Exponential moving average of decode wall time in seconds (None until measured)."""

    def __init__(self, initial_s: float | None = None) -> None:
        self.estimate_s = initial_s
        self.observed = 0

    def observe(self, seconds: float) -> None:
        """Add one measured decode (seconds >= 0; negative or NaN values are ignored)."""
        if not seconds >= 0.0:
            return
        self.observed += 1
        if self.estimate_s is None:
            self.estimate_s = seconds
        else:
            a = limits.DECODE_EMA_ALPHA
            self.estimate_s = a * seconds + (1.0 - a) * self.estimate_s


class SpeechDeadlines:
    """For each conversation in speech, the earliest time its VAD may end the turn."""

    def __init__(self) -> None:
        self._at: dict[object, float] = {}

    def update(self, key: object, now: float, until_stop_s: float) -> None:
        self._at[key] = now + max(0.0, until_stop_s)

    def clear(self, key: object) -> None:
        """`key`'s turn ended (or was dropped): it no longer constrains partials."""
        self._at.pop(key, None)

    def until_first(self, now: float) -> float:
        """Seconds until the earliest possible end of any turn (inf when none is in speech).
        A deadline already past belongs to a stream that stopped feeding audio mid-speech;
        it is ignored rather than blocking every partial until that client speaks again."""
        ahead = [t - now for t in self._at.values() if t >= now]
        return min(ahead, default=math.inf)


class PartialGate:
    """Per-conversation partial scheduling (single consumer; see the module docstring)."""

    def __init__(self, timer: DecodeTimer) -> None:
        self.timer = timer
        self.running = False
        self._next_at = -math.inf
        self.skipped_near_end = 0  # partials refused because the turn could end first

    def allow(self, now: float, until_stop_s: float) -> bool:
        """True when a partial may start now. With no estimate yet, none starts."""
        est = self.timer.estimate_s
        if self.running or est is None or now < self._next_at:
            return False
        if est * limits.PARTIAL_SAFETY > until_stop_s:
            self.skipped_near_end += 1
            return False
        return True

    def started(self, now: float) -> None:
        self.running = True

    def finished(self, now: float, decode_s: float | None) -> None:
        """The partial ended; `decode_s` is its measured decode time (None if it did not run)."""
        self.running = False
        if decode_s is None:
            return
        self.timer.observe(decode_s)
        duty = limits.PARTIAL_MAX_DUTY
        self._next_at = now + decode_s * (1.0 - duty) / duty

    def reset(self) -> None:
        """A new user turn: the rate limit starts afresh (an estimate is kept)."""
        self._next_at = -math.inf
