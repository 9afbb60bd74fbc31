"""engine.audio: decoding PCM16 and WAV of any common format, resampling, validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from engine.audio import (
    decode_audio,
    decode_pcm16,
    float_to_pcm16_bytes,
    pcm16_bytes_to_float,
    resample,
)
from engine.errors import InvalidRequestError


def _sine(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _wav(samples: np.ndarray, rate: int, subtype: str) -> bytes:
    bio = io.BytesIO()
    sf.write(bio, samples, rate, format="WAV", subtype=subtype)
    return bio.getvalue()


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


def test_raw_pcm16_passes_through_exactly() -> None:
    pcm = (np.arange(-1000, 1000, dtype=np.int16) * 16).astype("<i2")
    out = decode_pcm16(pcm.tobytes())
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, pcm)


@pytest.mark.parametrize(
    ("rate", "channels", "subtype"),
    [
        (8_000, 1, "PCM_U8"),  # 8-bit unsigned
        (16_000, 1, "PCM_16"),
        (22_050, 1, "PCM_24"),
        (44_100, 2, "PCM_16"),
        (48_000, 2, "FLOAT"),  # 48 kHz stereo float
        (48_000, 6, "PCM_32"),
    ],
)
def test_wav_of_any_common_format_becomes_16k_mono(rate: int, channels: int, subtype: str) -> None:
    mono = _sine(440.0, rate)
    data = _wav(np.repeat(mono[:, None], channels, axis=1), rate, subtype)
    out = decode_audio(data)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - 16_000) <= 2  # one second at 16 kHz
    assert abs(_peak_hz(out, 16_000) - 440.0) < 2.0
    # Amplitude survives conversion (8-bit is coarse, so a loose bound).
    assert 0.45 < float(np.abs(out[100:-100]).max()) < 0.55


def test_stereo_is_averaged_not_left_channel() -> None:
    left = _sine(300.0, 16_000)
    data = _wav(np.stack([left, np.zeros_like(left)], axis=1), 16_000, "FLOAT")
    out = decode_audio(data)
    np.testing.assert_allclose(out, left / 2, atol=1e-6)


def test_resampling_is_band_limited_not_nearest_sample() -> None:
    # 1 kHz at 48 kHz down to 16 kHz must equal the 1 kHz sine sampled at 16 kHz.
    out = resample(_sine(1000.0, 48_000), 48_000, 16_000)
    ref = _sine(1000.0, 16_000)
    assert np.sqrt(np.mean((out[200:-200] - ref[200:-200]) ** 2)) < 1e-3
    # A tone above the new Nyquist is removed, not aliased into the band.
    aliased = resample(_sine(11_000.0, 48_000), 48_000, 16_000)
    assert float(np.abs(aliased[200:-200]).max()) < 0.01


def test_float_pcm_roundtrip_and_clipping() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.5, -1.5], dtype=np.float32)
    back = pcm16_bytes_to_float(float_to_pcm16_bytes(x))
    np.testing.assert_allclose(back, [0.0, 0.5, -0.5, 32767 / 32768, -32767 / 32768], atol=1e-4)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02", "even number"),
        (b"%PDF-1.7 some document bytes here", "neither"),
        (b"hello, this is plain text and not audio at all", "neither"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "neither"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage-header-bytes", "header"),
        (b"RIFF" + bytes(40), "header"),
    ],
)
def test_bad_audio_is_a_typed_error(data: bytes, words: str) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        decode_audio(data)


def test_wav_with_no_samples_is_empty() -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        decode_audio(_wav(np.zeros(0, dtype=np.float32), 16_000, "PCM_16"))


def test_absurdly_long_audio_is_refused_before_decoding() -> None:
    raw = bytes(16_000 * 2 * 11)  # 11 s of raw PCM
    with pytest.raises(InvalidRequestError, match="limit is 10 s"):
        decode_audio(raw, max_seconds=10)
    wav = _wav(np.zeros(16_000 * 11, dtype=np.float32), 16_000, "PCM_16")
    with pytest.raises(InvalidRequestError, match="limit is 10 s"):
        decode_audio(wav, max_seconds=10)


def test_nan_samples_are_refused() -> None:
    x = _sine(440.0, 16_000)
    x[10] = np.nan
    with pytest.raises(InvalidRequestError, match="NaN"):
        decode_audio(_wav(x, 16_000, "FLOAT"))


def test_unusual_rate_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="sample rate"):
        decode_audio(_wav(_sine(200.0, 1_000), 1_000, "PCM_16"))


# Raw PCM16 turns that begin with room noise can start with any bytes; issue 15 found ~1% of
# them refused because their first byte was `{` or `[`. Each start below is a sample pair.
PRINTABLE_STARTS = [
    b"{\x00",
    b"[\x00",
    b'{"',
    b"[{",
    b"<?xm",
    b"ID3\x04",
    b"\x1f\x8b",
    b"\xff\xd8\xff\xe0",
    b"GIF8",
]


@pytest.mark.parametrize("start", PRINTABLE_STARTS)
def test_raw_pcm_is_accepted_whatever_its_first_bytes(start: bytes) -> None:
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 300, 16_000)).astype("<i2").tobytes()
    data = start + noise[len(start) :]
    out = decode_pcm16(data)
    np.testing.assert_array_equal(out, np.frombuffer(data, dtype="<i2"))


def test_raw_pcm_with_a_short_printable_run_is_accepted() -> None:
    # 12 printable samples (24 bytes) then quiet noise: below the text run, so still audio.
    rng = np.random.default_rng(8)
    data = b"[" + b"a" * 23 + rng.normal(0, 50, 8000).astype("<i2").tobytes()
    assert decode_pcm16(data).size == 12 + 8000


@pytest.mark.parametrize(
    "text",
    [
        b'{"type": "input_audio_buffer.append", "audio": "AAAA"}',
        b'[{"role": "user", "content": "hello there, how are you today?"}]',
        '{"text": "voil\u00e0 un caf\u00e9 cr\u00e8me, s\'il vous pla\u00eet, merci beaucoup"}'.encode(),
        b'<?xml version="1.0"?><note>not audio</note>',
        b"# a markdown file\n\nwith two lines of text that is long enough to be text.\n",
    ],
)
def test_text_is_refused_when_it_really_is_text(text: bytes) -> None:
    with pytest.raises(InvalidRequestError, match="neither"):
        decode_audio(text if len(text) % 2 == 0 else text + b" ")
