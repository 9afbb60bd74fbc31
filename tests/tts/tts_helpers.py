"""TTS test helpers."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def prompt_wav(seconds: float = 2.0, rate: int = 22_050, channels: int = 1) -> bytes:
    """A voice prompt: a harmonic tone with a little noise, as 16-bit WAV."""
    t = np.arange(int(rate * seconds)) / rate
    x = 0.2 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 360 * t)
    x += 0.01 * np.random.default_rng(0).standard_normal(t.size)
    data = np.repeat(x[:, None], channels, axis=1).astype(np.float32)
    bio = io.BytesIO()
    sf.write(bio, data, rate, format="WAV", subtype="PCM_16")
    return bio.getvalue()
