"""Time-stretch with the pitch kept: WSOLA (waveform-similarity overlap-add) in NumPy.

`StreamingStretcher(sample_rate, speed=1.0)` works chunk by chunk so the realtime server can
change the speed of audio that is already being spoken:

    st = StreamingStretcher(24_000, speed=1.25)
    out = st.process(chunk_float32)   # any chunk size; returns what is ready (maybe empty)
    st.speed = 0.8                    # applies to audio not yet processed
    tail = st.flush()                 # end of stream: the rest; the stretcher is then reset

`speed` > 1 shortens (faster speech), < 1 lengthens; output length is about input / speed.
The result does not depend on how the input was chunked. At speed 1.0 with nothing buffered,
audio passes through untouched. `time_stretch(samples, speed, sample_rate)` is the one-shot form.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.tts import limits

__all__ = ["StreamingStretcher", "time_stretch"]

Float32Array = npt.NDArray[np.float32]
_EMPTY: Float32Array = np.zeros(0, dtype=np.float32)


class StreamingStretcher:
    """Streaming WSOLA; not thread-safe (one producer)."""

    def __init__(self, sample_rate: int, speed: float = 1.0) -> None:
        self._frame = max(32, int(sample_rate * limits.STRETCH_FRAME_S) // 2 * 2)
        self._hop = self._frame // 2  # synthesis hop: 50 % overlap of a periodic Hann sums to 1
        self._tol = max(1, int(sample_rate * limits.STRETCH_TOLERANCE_S))
        n = np.arange(self._frame, dtype=np.float64)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * n / self._frame)).astype(np.float32)
        self.speed = speed
        self._reset()

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if not limits.MIN_SPEED <= value <= limits.MAX_SPEED:
            raise ValueError(f"speed must be in [{limits.MIN_SPEED}, {limits.MAX_SPEED}]")
        self._speed = float(value)

    def _reset(self) -> None:
        # The stream is pre-padded by one hop of zeros so the first frame ramps in over
        # silence; positions are absolute indices into that padded stream.
        self._buf: Float32Array = np.zeros(self._hop, dtype=np.float32)
        self._buf_start = 0
        self._next_pos = 0.0  # nominal analysis position of the next frame
        self._prev_pos: int | None = None  # chosen position of the previous frame
        self._overlap: Float32Array = np.zeros(self._frame - self._hop, dtype=np.float32)
        self._to_drop = self._hop  # the first output hop is pure pre-pad silence
        self._expected_out = 0.0  # sum of len(chunk) / speed over the input so far
        self._emitted = 0
        self._active = False

    def process(self, chunk: Float32Array) -> Float32Array:
        """Feed float32 mono samples; return the stretched samples that are ready."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if not self._active and self._speed == 1.0:
            return chunk.copy()
        self._active = True
        self._expected_out += chunk.size / self._speed
        self._buf = np.concatenate([self._buf, chunk])
        return self._run(stop_at=None)

    def flush(self) -> Float32Array:
        """Process what is buffered (padding with silence), return it, and reset."""
        if not self._active:
            return _EMPTY.copy()
        end = self._buf_start + self._buf.size  # absolute end of the real input
        pad = np.zeros(self._frame + 2 * self._tol + self._hop, dtype=np.float32)
        self._buf = np.concatenate([self._buf, pad])
        out = np.concatenate([self._run(stop_at=end), self._overlap])
        # Output length follows the input length over the speed (exactly, up to rounding).
        want = max(0, round(self._expected_out) - self._emitted)
        if out.size >= want:
            out = out[:want]
        else:
            out = np.concatenate([out, np.zeros(want - out.size, dtype=np.float32)])
        self._reset()
        return out

    def _run(self, *, stop_at: int | None) -> Float32Array:
        frame, hop, tol = self._frame, self._hop, self._tol
        outs: list[Float32Array] = []
        while True:
            nominal = round(self._next_pos)
            if stop_at is not None and nominal >= stop_at:
                break
            lo = max(nominal - tol, self._buf_start)
            need_end = nominal + tol + frame
            if self._prev_pos is not None:
                need_end = max(need_end, self._prev_pos + hop + frame)
            if need_end > self._buf_start + self._buf.size:
                break
            if self._prev_pos is None:
                pos = nominal
            else:
                # The frame that best continues the previous one's waveform (WSOLA).
                target = self._slice(self._prev_pos + hop, frame)
                region = self._slice(lo, nominal + tol + frame - lo)
                scores = np.correlate(region, target, mode="valid")
                pos = lo + int(np.argmax(scores))
            piece = self._slice(pos, frame) * self._window
            outs.append((self._overlap + piece[:hop]).astype(np.float32))
            self._overlap = piece[hop:].copy()
            self._prev_pos = pos
            self._next_pos += hop * self._speed
            # Drop input no later search or continuation can reach.
            keep_from = min(int(self._next_pos) - tol, self._prev_pos + hop)
            if keep_from > self._buf_start:
                self._buf = self._buf[keep_from - self._buf_start :]
                self._buf_start = keep_from
        result = np.concatenate(outs) if outs else _EMPTY.copy()
        if self._to_drop and result.size:
            drop = min(self._to_drop, result.size)
            result = result[drop:]
            self._to_drop -= drop
        if stop_at is None:
            self._emitted += result.size
        return result

    def _slice(self, start: int, length: int) -> Float32Array:
        i = start - self._buf_start
        return self._buf[i : i + length]


def time_stretch(samples: Float32Array, speed: float, sample_rate: int) -> Float32Array:
    """One-shot time-stretch of float32 mono audio by `speed` (pitch kept)."""
    stretcher = StreamingStretcher(sample_rate, speed)
    return np.concatenate([stretcher.process(samples), stretcher.flush()])
