"""The STT package's internal interface: what sessions need from their component.

Dependencies in `engine.stt` run one way: `component` imports `session`, `streaming` and
`whisper`; those import only this module (and `limits`). A session never sees the `STT`
class: it holds a `DecodeService`, which the component implements with a small adapter.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidRequestError
from engine.stt import limits

__all__ = ["DecodeService", "Decoded", "Int16Array", "validate_language"]

Int16Array = npt.NDArray[np.int16]


class Decoded(NamedTuple):
    """One decode: its text, seconds spent, the language used (given, or detected by Whisper
    with `language_probability`; 1.0 when it was given), the encoder window that produced the
    text ("short" or "full") and, when the short window was tried and refused, why
    (`fallback`: "budget", "repetition", "logprob", "language", "coverage"; "" otherwise)."""

    text: str
    seconds: float
    language: str
    language_probability: float
    window: str = "full"
    fallback: str = ""


class DecodeService(Protocol):
    """What an `STTSession` or `StreamingTranscriber` may ask of its component."""

    @property
    def busy(self) -> bool:
        """True while a decode runs or waits its turn."""
        ...

    def check_running(self) -> None:
        """Raise `ComponentLifecycleError` unless the component runs on the caller's loop."""
        ...

    async def decode(self, pcm: Int16Array, language: str | None) -> Decoded:
        """Decode 16 kHz mono int16 samples in the worker thread, after any running or
        queued decode (FIFO; never fails for being second). `language` is a code from
        `validate_language` or None (detect). Raises `ComponentLifecycleError` if the
        component stops, `InvalidRequestError` for a language the model lacks."""
        ...


_LANGUAGE_RE = re.compile(r"^[A-Za-z]+(?:-[A-Za-z]+)*$")


def validate_language(language: str | None) -> str | None:
    """Check a language tag (letters and hyphens); return Whisper's code (primary subtag).

    Raises `InvalidRequestError` for anything else (digits, spaces, empty, too long).
    """
    if language is None:
        return None
    if (
        not isinstance(language, str)
        or len(language) > limits.MAX_LANGUAGE_LEN
        or not _LANGUAGE_RE.match(language)
    ):
        raise InvalidRequestError(
            f"language must be letters and hyphens (e.g. 'en' or 'pt-BR'), got {language!r}"
        )
    return language.split("-", 1)[0].lower()
