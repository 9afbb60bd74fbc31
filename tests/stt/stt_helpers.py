"""STT test helpers: real speech clips (espeak-ng, pytest-audioeval) and a normalized WER."""

from __future__ import annotations

import functools
import importlib.util
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def _audioeval_en() -> Path:
    spec = importlib.util.find_spec("pytest_audioeval")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio" / "en"


AUDIOEVAL_EN = _audioeval_en()


@functools.cache
def espeak_wav(text: str, voice: str = "en-us", speed: int = 150) -> bytes:
    """`text` spoken by espeak-ng: WAV bytes as espeak writes them (22.05 kHz, 16-bit mono)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    return subprocess.run(
        [exe, "-v", voice, "-s", str(speed), "--stdout", text], check=True, capture_output=True
    ).stdout


def wav_bytes(samples: np.ndarray, rate: int, subtype: str) -> bytes:
    bio = io.BytesIO()
    sf.write(bio, samples, rate, format="WAV", subtype=subtype)
    return bio.getvalue()


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    return str(n)


def normalize(text: str) -> str:
    """Lower case, no punctuation, digits spelled out ("10" == "ten"), British -our == -or.

    Whisper's own English normalizer merges runs of number words into one number
    ("one two three" -> "123"), which would make counting clips score as one word.
    """
    words = []
    for raw in re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split():
        word = raw.strip("'")
        if word.isdigit():
            word = _number_words(int(word))
        words.append(word.replace("colour", "color").replace("favourite", "favorite"))
    return " ".join(words)


def wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalize(r) for r in references], [normalize(h) for h in hypotheses]))
