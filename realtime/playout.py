"""The playout model of one response: what was sent, what the client has played, what was heard.

Pure and synchronous (no I/O, no asyncio): part of the protocol core. The server does not hear
the client's speaker, so it models it: a client that starts playing at the first frame it gets
and plays at real time (`played`), lowered by the client's own `bitvoice.playback` report when
one comes. `heard_text` turns the played position into the words the user heard, so that an
interrupted reply is remembered as what was heard, not what was generated. The same object
keeps the response's stage times, which become its `TurnMetrics`.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import NamedTuple

from realtime import limits
from realtime import messages as m

__all__ = ["Playout", "TurnUsage", "heard_text"]


def heard_text(segments: list[tuple[int, str]], total: int, played: int) -> str:
    """The text of the first `played` samples of audio made of `segments`.

    `segments` are (start sample, text) in order; a segment ends where the next starts (the
    last at `total`). Whole segments that were played count fully; a partly played one
    contributes its words in proportion to the samples played (rounded down).
    """
    out: list[str] = []
    for i, (start, text) in enumerate(segments):
        end = segments[i + 1][0] if i + 1 < len(segments) else total
        if played >= end:
            out.append(text.strip())
            continue
        if played > start and end > start:
            words = text.split()
            k = math.floor(len(words) * (played - start) / (end - start))
            if k:
                out.append(" ".join(words[:k]))
        break
    return " ".join(t for t in out if t)


class TurnUsage(NamedTuple):
    """The LLM's token counts of one turn, for its metrics."""

    prompt_tokens: int
    completion_tokens: int
    tokens_per_second: float
    cached_tokens: int | None = None  # of the prompt, found in the KV cache (not re-run)


@dataclass(slots=True)
class Playout:
    """One response's audio position, its text segments and its stage times.

    `t0` is the metrics' zero: the end of the user's turn (the VAD's decision, a commit, or
    the request). Stage times are monotonic seconds; `turn_start` may precede `t0` when the
    turn's work started speculatively, before the end of the turn was confirmed.
    """

    turn: int
    id: str
    item_id: str
    t0: float
    turn_start: float | None = None
    t_stt: float | None = None
    t_first_token: float | None = None
    t_first_sentence: float | None = None
    t_tts_first_chunk: float | None = None
    t_first_audio: float | None = None
    stt_audio_s: float | None = None
    text: list[str] = field(default_factory=list)
    segments: list[tuple[int, str]] = field(default_factory=list)
    sent: int = 0  # samples sent
    playout_end: float = 0.0  # when the modelled client finishes playing what was sent
    client_played: int | None = None
    cancel_reason: str | None = None
    played_at_cancel: int | None = None
    held_at: float | None = None  # the client was told to stop playing then (barge-in hold)
    played_at_hold: int = 0
    # the newest sent audio as (offset, PCM16), so that a released hold can tell the echo
    # canceller what plays again
    recent: collections.deque[tuple[int, bytes]] = field(
        default_factory=lambda: collections.deque(maxlen=limits.REPLAY_KEEP_FRAMES)
    )

    # ---- audio position ------------------------------------------------------------------

    def played(self, now: float) -> int:
        """Samples the client has played by `now` (frozen once the response is cancelled)."""
        if self.played_at_cancel is not None:
            return self.played_at_cancel
        if self.held_at is not None:
            return self.played_at_hold
        queued = max(0.0, self.playout_end - now) * limits.OUTPUT_RATE
        est = max(0, min(self.sent, self.sent - math.ceil(queued)))
        if self.client_played is not None:
            est = min(est, self.client_played)
        return est

    def hold(self, now: float) -> int:
        """The client stops playing now (it keeps its queue); returns the sample it stopped at."""
        if self.held_at is None:
            self.played_at_hold = self.played(now)
            self.held_at = now
        return self.played_at_hold

    def release(self, now: float) -> None:
        """The client plays on from where it held: the modelled playout moves by the hold."""
        if self.held_at is not None:
            self.playout_end += now - self.held_at
            self.held_at = None

    def unplayed(self) -> list[tuple[int, bytes]]:
        """The sent audio after the held position, as (offset, PCM16) pieces."""
        start = self.played_at_hold
        out = []
        for offset, pcm in self.recent:
            end = offset + len(pcm) // 2
            if end > start:
                cut = max(0, start - offset)
                out.append((offset + cut, pcm[2 * cut :]))
        return out

    def lead(self, now: float) -> float:
        """Seconds of sent audio the modelled client has not played yet."""
        return max(0.0, self.playout_end - now)

    def add_audio(self, samples: int, now: float) -> int:
        """Account for `samples` sent now; returns their offset in the response's audio."""
        offset = self.sent
        self.sent += samples
        self.playout_end = max(self.playout_end, now) + samples / limits.OUTPUT_RATE
        if self.t_first_audio is None:
            self.t_first_audio = now
        return offset

    def add_segment(self, text: str) -> int:
        """A TTS segment starts at the current offset; returns that offset."""
        self.segments.append((self.sent, text))
        return self.sent

    def report_played(self, samples: int) -> None:
        """The client's own report of how much it played (never above what was sent)."""
        self.client_played = min(samples, self.sent)

    def cancel(self, reason: str, now: float) -> None:
        self.played_at_cancel = self.played(now)
        self.cancel_reason = reason

    def heard(self, now: float) -> str:
        return heard_text(self.segments, self.sent, self.played(now))

    # ---- metrics ---------------------------------------------------------------------------

    def mark(self, stage: str, now: float) -> None:
        """Record the first time `stage` ("sentence" or "tts_chunk") happened."""
        if stage == "sentence" and self.t_first_sentence is None:
            self.t_first_sentence = now
        elif stage == "tts_chunk" and self.t_tts_first_chunk is None:
            self.t_tts_first_chunk = now

    def metrics(self, now: float, usage: TurnUsage | None) -> m.TurnMetrics:
        """The turn's metrics, in ms from `t0`."""

        def ms(t: float | None) -> float | None:
            return None if t is None else round((t - self.t0) * 1000.0, 1)

        def dur(s: float | None) -> float | None:
            return None if s is None else round(s * 1000.0, 1)

        return m.TurnMetrics(
            stt_final_ms=ms(self.t_stt),
            first_token_ms=ms(self.t_first_token),
            first_sentence_ms=ms(self.t_first_sentence),
            tts_first_chunk_ms=ms(self.t_tts_first_chunk),
            first_audio_ms=ms(self.t_first_audio),
            total_ms=ms(now),
            stt_audio_ms=dur(self.stt_audio_s),
            prompt_tokens=usage.prompt_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            tokens_per_second=round(usage.tokens_per_second, 2) if usage else None,
            turn_start_ms=ms(self.turn_start),
        )
