"""`PlayedReference`: the reply audio as the client plays it, on the microphone's timeline.

Sans-I/O and synchronous. The canceller needs, for every 10 ms of microphone audio, the reply
audio that the speaker was playing when that microphone audio was captured. The server does not
hear the speaker; it knows what it sent and models when the client plays it (`realtime.playout`:
real time from the first frame, corrected by the client's `bitvoice.playback` reports). So:

- `play(samples, start)` writes reply audio (24 kHz float32) at the server time the playout
  model says it starts playing; it is resampled to 16 kHz once, here;
- `capture(n, arrived)` maps `n` microphone samples that arrived at `arrived` onto server time
  (their capture time, estimated from the earliest arrivals) and returns the reference for
  that span (zeros where nothing played).

The modelled play time is never later than the real one (a client starts playing on arrival
at the earliest, and output buffers only delay it further), and the capture estimate is never
earlier than the real capture, so the reference leads its echo in the microphone: the order an
echo canceller needs. The lead (output latency + the room + jitter) is what the canceller's own
delay estimator finds.
"""

from __future__ import annotations

import numpy as np
import soxr

from realtime.echo import limits

__all__ = ["PlayedReference"]


class PlayedReference:
    """One connection's played reply audio on server time, 16 kHz (single consumer)."""

    def __init__(self, now: float) -> None:
        self._origin = now  # server time of sample 0 of the ring
        self._keep = int(limits.REFERENCE_KEEP_S * limits.RATE)
        self._ring = np.zeros(2 * self._keep, dtype=np.float32)
        self._base = 0  # absolute sample index of _ring[0]
        self._capture_offset: float | None = None  # arrival - capture time, estimated
        self._captured = 0  # microphone samples mapped so far
        self._last_arrival = now
        # one resampler over contiguous reply audio (resampling each 40 ms frame alone would
        # leave a notch at every frame edge that no echo has); `_next` is where its output
        # continues, in absolute samples
        self._stream: soxr.ResampleStream | None = None
        self._next = 0
        self._expected = 0  # where the next frame starts if it follows on

    def _index(self, t: float) -> int:
        return round((t - self._origin) * limits.RATE)

    def _slide_to(self, end: int) -> None:
        """Move the ring's window forward so that it covers absolute samples up to `end`
        (with half the kept span to spare), dropping the oldest samples."""
        if end <= self._base + len(self._ring):
            return
        shift = end + self._keep // 2 - (self._base + len(self._ring))
        if shift >= len(self._ring):
            self._ring[:] = 0.0
        else:
            self._ring[:-shift] = self._ring[shift:].copy()
            self._ring[-shift:] = 0.0
        self._base += shift

    def play(self, samples: np.ndarray, start: float) -> None:
        """Reply audio (24 kHz float32) that the client starts playing at server time `start`."""
        if not len(samples):
            return
        first = self._index(start)
        if self._stream is None or abs(first - self._expected) > limits.RATE // 1000:
            self._stream = soxr.ResampleStream(
                limits.REFERENCE_RATE, limits.RATE, 1, dtype="float32"
            )
            self._next = first
        self._expected = first + len(samples) * limits.RATE // limits.REFERENCE_RATE
        audio = self._stream.resample_chunk(samples.astype(np.float32))
        first = self._next
        self._next += len(audio)
        self._slide_to(first + len(audio))
        lo = max(first, self._base)
        if lo >= first + len(audio):
            return
        self._ring[lo - self._base : first + len(audio) - self._base] += audio[lo - first :]

    def stop(self, at: float) -> None:
        """The client stops playing at server time `at`: forget what was to play after it."""
        first = max(self._index(at), self._base)
        if first < self._base + len(self._ring):
            self._ring[first - self._base :] = 0.0
        self._stream = None  # what plays next starts a new stretch of audio

    def capture(self, n: int, arrived: float) -> np.ndarray:
        """The reference for the next `n` microphone samples, which arrived at `arrived`."""
        elapsed = max(0.0, arrived - self._last_arrival)
        self._last_arrival = arrived
        self._captured += n
        # capture time of the chunk's last sample = arrival - offset; the smallest offset seen
        # is the least delay, and it leaks upwards to follow clock drift
        offset = arrived - self._origin - self._captured / limits.RATE
        if self._capture_offset is None or offset < self._capture_offset:
            self._capture_offset = offset
        else:
            self._capture_offset += min(
                offset - self._capture_offset, elapsed * limits.CAPTURE_CLOCK_LEAK
            )
        end = self._captured + round(self._capture_offset * limits.RATE)
        begin = end - n
        self._slide_to(end)
        out = np.zeros(n, dtype=np.float32)
        lo, hi = max(begin, self._base), min(end, self._base + len(self._ring))
        if lo < hi:
            out[lo - begin : hi - begin] = self._ring[lo - self._base : hi - self._base]
        return out
