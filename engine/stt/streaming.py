"""`StreamingTranscriber`: partial transcripts while the user speaks, a final one at turn end.

Used by the realtime server, one per user turn:

    stream = stt.open_stream(language=None)
    stream.feed(pcm16_16k_bytes)           # cheap, sync: append audio as it arrives
    update = await stream.maybe_partial()  # a Transcript(is_final=False) or None
    final = await stream.finalize()        # Transcript(is_final=True); the buffer is reset

Partials re-decode the growing buffer (its last `PARTIAL_WINDOW_S` seconds) at a bounded rate:
at most one every `PARTIAL_INTERVAL_S`, only once `PARTIAL_MIN_NEW_AUDIO_S` of new audio
arrived, and never while the STT engine is busy (a partial is skipped, not queued, so it
cannot delay a final transcript). `finalize()` always decodes the whole turn, waiting its turn.
`feed()` accepts raw 16 kHz mono PCM16 only (the realtime wire format); odd-length chunks or
turns longer than `STREAM_MAX_SECONDS` raise `InvalidRequestError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import InvalidRequestError
from engine.stt import limits
from engine.stt.component import validate_language

if TYPE_CHECKING:
    from engine.stt.component import STT

__all__ = ["StreamingTranscriber", "Transcript"]

_BYTES_PER_SECOND = limits.SAMPLE_RATE * 2


@dataclass(frozen=True, slots=True)
class Transcript:
    """One transcript update: `is_final` marks the end-of-turn transcript."""

    text: str
    is_final: bool
    audio_seconds: float
    decode_seconds: float


class StreamingTranscriber:
    """Created by `STT.open_stream()`; single consumer (the realtime turn task)."""

    def __init__(
        self,
        stt: STT,
        *,
        language: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stt = stt
        self._language = validate_language(language)
        self._clock = clock
        self._buf = bytearray()
        self._last_partial_at: float | None = None
        self._last_partial_bytes = 0
        self.last_partial_text = ""

    @property
    def audio_seconds(self) -> float:
        return len(self._buf) / _BYTES_PER_SECOND

    def feed(self, pcm16: bytes) -> None:
        """Append 16 kHz mono PCM16 LE audio to the current turn."""
        if len(pcm16) % 2:
            raise InvalidRequestError("streaming audio chunks must be whole PCM16 samples")
        if len(self._buf) + len(pcm16) > limits.STREAM_MAX_SECONDS * _BYTES_PER_SECOND:
            raise InvalidRequestError(
                f"a streaming turn is limited to {limits.STREAM_MAX_SECONDS:.0f} s of audio"
            )
        self._buf += pcm16

    def partial_due(self) -> bool:
        """True when a partial re-decode is allowed now (rate, new audio, engine idle)."""
        if len(self._buf) < limits.PARTIAL_MIN_AUDIO_S * _BYTES_PER_SECOND:
            return False
        new_bytes = len(self._buf) - self._last_partial_bytes
        if new_bytes < limits.PARTIAL_MIN_NEW_AUDIO_S * _BYTES_PER_SECOND:
            return False
        if self._last_partial_at is not None:
            if self._clock() - self._last_partial_at < limits.PARTIAL_INTERVAL_S:
                return False
        return not self._stt.busy

    async def maybe_partial(self) -> Transcript | None:
        """Decode the growing buffer if `partial_due()`; else None (cheap to call often)."""
        if not self.partial_due():
            return None
        window = int(limits.PARTIAL_WINDOW_S * _BYTES_PER_SECOND)
        snapshot = bytes(self._buf[-window:])
        self._last_partial_at = self._clock()
        self._last_partial_bytes = len(self._buf)
        pcm = np.frombuffer(snapshot, dtype="<i2").astype(np.int16)
        text, seconds, _, _ = await self._stt._transcribe_pcm(pcm, self._language)
        self.last_partial_text = text
        return Transcript(text, False, len(snapshot) / _BYTES_PER_SECOND, seconds)

    async def finalize(self) -> Transcript:
        """Decode the whole turn (queueing behind any running decode) and reset the buffer."""
        snapshot = bytes(self._buf)
        self.reset()
        if not snapshot:
            return Transcript("", True, 0.0, 0.0)
        pcm = np.frombuffer(snapshot, dtype="<i2").astype(np.int16)
        text, seconds, _, _ = await self._stt._transcribe_pcm(pcm, self._language)
        return Transcript(text, True, len(snapshot) / _BYTES_PER_SECOND, seconds)

    def reset(self) -> None:
        """Drop the buffered turn (barge-in or a new turn)."""
        self._buf.clear()
        self._last_partial_at = None
        self._last_partial_bytes = 0
        self.last_partial_text = ""
