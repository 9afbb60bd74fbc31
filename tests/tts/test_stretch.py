"""engine.tts.stretch: WSOLA time-stretch keeps pitch, scales length, streams exactly."""

from __future__ import annotations

import numpy as np
import pytest

from engine.tts import StreamingStretcher, time_stretch

RATE = 24_000


def _tone(freq: float = 220.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * RATE / x.size)


@pytest.mark.parametrize("speed", [0.5, 0.8, 1.25, 1.5, 2.0])
def test_length_scales_and_pitch_is_kept(speed: float) -> None:
    x = _tone()
    y = time_stretch(x, speed, RATE)
    assert y.size == round(x.size / speed)
    assert abs(_peak_hz(y) - 220.0) < 3.0  # a resampler would move it to 220 * speed
    # No holes or clicks: the envelope of a steady tone stays steady.
    middle = np.abs(y[2000:-2000])
    assert middle.max() < 0.56
    frames = middle[: middle.size // 480 * 480].reshape(-1, 480).max(axis=1)
    assert frames.min() > 0.4


def test_speed_one_is_identity() -> None:
    x = _tone()
    np.testing.assert_array_equal(time_stretch(x, 1.0, RATE), x)


def test_streaming_equals_one_shot_for_any_chunking() -> None:
    x = _tone(seconds=1.3)
    rng = np.random.default_rng(7)
    st = StreamingStretcher(RATE, 1.5)
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 2500))
        out.append(st.process(x[i : i + n]))
        i += n
    out.append(st.flush())
    np.testing.assert_array_equal(np.concatenate(out), time_stretch(x, 1.5, RATE))


def test_speed_change_mid_stream_applies_to_later_audio() -> None:
    x = _tone(seconds=2.0)
    st = StreamingStretcher(RATE, 2.0)
    first = st.process(x[:RATE])
    st.speed = 0.5
    rest = np.concatenate([st.process(x[RATE:]), st.flush()])
    total = first.size + rest.size
    assert abs(total - (RATE / 2.0 + RATE / 0.5)) <= 2


def test_speed_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        StreamingStretcher(RATE, 3.0)
