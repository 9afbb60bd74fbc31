"""Fixtures of the realtime tests: real speech from espeak-ng as PCM16 16 kHz mono."""

from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np
import pytest

from engine.audio import decode_pcm16


@functools.cache
def speech_pcm16k(text: str) -> bytes:
    """`text` spoken by espeak-ng, as PCM16 LE mono 16 kHz bytes (cached per text)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    wav = subprocess.run(
        [exe, "-s", "160", "--stdout", text], check=True, capture_output=True
    ).stdout
    return decode_pcm16(wav, target_rate=16_000).astype("<i2").tobytes()


def silence_pcm16k(seconds: float) -> bytes:
    return bytes(int(16_000 * seconds) * 2)


def noise_pcm16k(seconds: float, level: float = 50.0, seed: int = 0) -> bytes:
    """Very quiet white noise (a room's background), never voiced for webrtcvad."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16_000 * seconds)) * level).astype("<i2").tobytes()
