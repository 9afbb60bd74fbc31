"""The reply playback buffer: a sans-I/O jitter buffer that a speaker pulls from.

It mirrors the web client's `JitterBuffer` (web/dsp.js), so a kiosk plays exactly what a
browser would: one response number is accepted at a time, audio of an older number is
dropped, a newer number flushes the old one, and nothing plays until `PREBUFFER_SAMPLES`
are queued or the response has ended. `pull(n)` always returns `n` samples (silence where
nothing is queued), so a device callback or a file timeline can call it at its own pace.

Calling contract: single-threaded use (a device glue must hold a lock around every call).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kiosk import limits

__all__ = ["Player", "Pulled"]

Int16Array = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Pulled:
    """One block pulled by the speaker: `pcm` (n samples), and which response it played.

    `turn` is the response number whose audio is in the block (None when only silence),
    `started_at` the index in the block of that response's very first sample when this block
    started it (None otherwise), `played` the response's samples played after this block.
    """

    pcm: Int16Array
    turn: int | None
    started_at: int | None
    played: int


class Player:
    """Queued reply audio of the current response; see the module docstring."""

    def __init__(
        self,
        prebuffer_samples: int = limits.PREBUFFER_SAMPLES,
        max_samples: int = limits.MAX_QUEUED_SAMPLES,
    ) -> None:
        self.prebuffer_samples = prebuffer_samples
        self.max_samples = max_samples
        self._chunks: deque[Int16Array] = deque()
        self._head = 0  # read position in _chunks[0]
        self.queued = 0
        self.turn = -1  # response number accepted now; older pushes are dropped
        self.turn_played = 0  # samples of `turn` played so far (for `bitvoice.playback`)
        self.playing = False
        self.ended = False  # `turn` sends no more audio: play out below the prebuffer
        self.paused = False
        self.dropped = 0  # samples dropped (stale, flushed, over the cap)
        self.underruns = 0  # blocks that ran dry while a response was playing

    def push(self, turn: int, pcm: Int16Array) -> bool:
        """Queue reply audio of response `turn`; False when it was dropped as stale."""
        if turn < self.turn:
            self.dropped += len(pcm)
            return False
        if turn > self.turn:
            self._drop_queue()
            self.turn = turn
            self.turn_played = 0
        if len(pcm):
            self._chunks.append(pcm)
            self.queued += len(pcm)
            self.ended = False
            while self.queued > self.max_samples and len(self._chunks) > 1:
                left = len(self._chunks.popleft()) - self._head
                self._head = 0
                self.queued -= left
                self.dropped += left
        return True

    def end(self, turn: int) -> None:
        """Response `turn` sends no more audio: play out what is left, even below prebuffer."""
        if turn == self.turn:
            self.ended = True

    def advance_to(self, turn: int) -> None:
        """Stop now: drop everything queued and accept only response `turn` and later."""
        self._drop_queue()
        if turn > self.turn:
            self.turn = turn
            self.turn_played = 0

    def reset(self) -> None:
        """A new connection: response numbers start again, forget the turn with the audio."""
        self._drop_queue()
        self.turn = -1
        self.turn_played = 0
        self.paused = False

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing playing."""
        return self.queued == 0 and not self.playing

    def pull(self, n: int) -> Pulled:
        """The next `n` samples for the speaker (silence where there is nothing to play)."""
        out = np.zeros(n, dtype=np.int16)
        if self.paused or self.queued == 0:
            if self.playing and not self.paused and not self.ended:
                self.underruns += 1
            if self.queued == 0 and self.ended:
                self.playing = False
            return Pulled(out, None, None, self.turn_played)
        if not self.playing and self.queued < self.prebuffer_samples and not self.ended:
            return Pulled(out, None, None, self.turn_played)
        started_at = 0 if self.turn_played == 0 else None
        self.playing = True
        filled = 0
        while filled < n and self._chunks:
            chunk = self._chunks[0]
            take = min(n - filled, len(chunk) - self._head)
            out[filled : filled + take] = chunk[self._head : self._head + take]
            filled += take
            self._head += take
            if self._head == len(chunk):
                self._chunks.popleft()
                self._head = 0
        self.queued -= filled
        self.turn_played += filled
        if self.queued == 0 and self.ended:
            self.playing = False
        return Pulled(out, self.turn, started_at, self.turn_played)

    def _drop_queue(self) -> None:
        self.dropped += self.queued
        self._chunks.clear()
        self._head = 0
        self.queued = 0
        self.playing = False
        self.ended = False
