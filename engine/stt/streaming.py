"""`StreamingTranscriber`: one user turn's audio, its partial transcripts and its final one.

Used by the realtime server, one per connection (reset between turns):

    stream = stt.open_stream(language=None)
    stream.feed(pcm16_16k_bytes)                    # cheap, sync: append audio as it arrives
    partial = await stream.transcribe_buffer()      # Transcript(is_final=False), all audio so far
    final = await stream.finalize()                 # Transcript(is_final=True); buffer reset

The turn's audio lives here only: `feed()` takes raw 16 kHz mono PCM16 (the wire format),
never sniffed for file formats, and `finalize()` transcribes that same buffer, so the turn's
audio is never sent a second time through `STTSession`. Every decode runs in the STT worker
thread (never on the event loop) and queues behind a running one (FIFO; none fails for being
second); `STT.busy` is True meanwhile. Each decode uses the component's encoder window (the
short window by default, see `engine.stt.whisper`).

`language` (on `open_stream`, or per call, which wins): None to detect (the Transcript says
what was detected and how sure Whisper was), or a tag of letters and hyphens. Odd-length
chunks or turns longer than `STREAM_MAX_SECONDS` raise `InvalidRequestError`.

`partial_due()` / `maybe_partial()` are the older self-scheduling partials (rate-limited,
skipped while the engine is busy); new callers schedule `transcribe_buffer()` themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidRequestError
from engine.stt import limits
from engine.stt.core import DecodeService, Int16Array, validate_language

__all__ = ["StreamingTranscriber", "Transcript"]

_BYTES_PER_SECOND = limits.SAMPLE_RATE * 2


@dataclass(frozen=True, slots=True)
class Transcript:
    """One transcript of a turn's audio: `is_final` marks the end-of-turn transcript.

    `audio_seconds` is the audio decoded, `decode_seconds` the time the decode took (without
    its wait in the queue); `language` the language used (given or detected, "" when there
    was no audio to detect it on) with `language_probability` (1.0 when given).
    """

    text: str
    is_final: bool
    audio_seconds: float
    decode_seconds: float
    language: str
    language_probability: float


class StreamingTranscriber:
    """Created by `STT.open_stream()`; single consumer (the realtime connection)."""

    def __init__(
        self,
        service: DecodeService,
        *,
        language: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._language = validate_language(language)
        self._clock = clock
        self._buf = bytearray()
        self._last_partial_at: float | None = None
        self._last_partial_bytes = 0
        self.last_partial_text = ""

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio fed since the last `reset()` / `finalize()`."""
        return len(self._buf) / _BYTES_PER_SECOND

    def feed(self, pcm16: bytes) -> None:
        """Append 16 kHz mono PCM16 LE audio to the current turn (raw, never sniffed)."""
        if len(pcm16) % 2:
            raise InvalidRequestError("streaming audio chunks must be whole PCM16 samples")
        if len(self._buf) + len(pcm16) > limits.STREAM_MAX_SECONDS * _BYTES_PER_SECOND:
            raise InvalidRequestError(
                f"a streaming turn is limited to {limits.STREAM_MAX_SECONDS:.0f} s of audio"
            )
        self._buf += pcm16

    async def transcribe_buffer(
        self, language: str | None = None, *, pad_seconds: float = 0.0
    ) -> Transcript:
        """Transcribe all audio fed so far, without resetting (partials, speculative final).

        `pad_seconds` of silence are appended to what is decoded (not to the buffer): a
        speculative final decodes the turn as it will stand once its closing silence is
        over, since Whisper's words change with the trailing silence (tiny.en on one espeak
        sentence: "round fox jump" with 0.6 s after it, "round-foc stump" with 0.3 s).
        Raises `InvalidRequestError` for a bad language, `ComponentLifecycleError` when the
        STT is not running (or stops while this call waits its turn).
        """
        pad = bytes(2 * int(max(0.0, pad_seconds) * limits.SAMPLE_RATE))
        return await self._transcribe(bytes(self._buf) + pad, language, is_final=False)

    async def finalize(self, language: str | None = None) -> Transcript:
        """Transcribe the whole turn and reset the buffer (audio fed while this decode runs
        belongs to the next turn). Raises as `transcribe_buffer`."""
        code = self._pick_language(language)
        snapshot = bytes(self._buf)
        self.reset()
        return await self._transcribe(snapshot, code, is_final=True)

    def reset(self) -> None:
        """Drop the buffered turn (barge-in or a new turn)."""
        self._buf.clear()
        self._last_partial_at = None
        self._last_partial_bytes = 0
        self.last_partial_text = ""

    def partial_due(self) -> bool:
        """True when a rate-limited partial is allowed now (enough audio, enough new audio,
        `PARTIAL_INTERVAL_S` since the last one, engine idle)."""
        if len(self._buf) < limits.PARTIAL_MIN_AUDIO_S * _BYTES_PER_SECOND:
            return False
        new_bytes = len(self._buf) - self._last_partial_bytes
        if new_bytes < limits.PARTIAL_MIN_NEW_AUDIO_S * _BYTES_PER_SECOND:
            return False
        if self._last_partial_at is not None:
            if self._clock() - self._last_partial_at < limits.PARTIAL_INTERVAL_S:
                return False
        return not self._service.busy

    async def maybe_partial(self) -> Transcript | None:
        """Decode the buffer's last `PARTIAL_WINDOW_S` if `partial_due()`; else None."""
        if not self.partial_due():
            return None
        window = int(limits.PARTIAL_WINDOW_S * _BYTES_PER_SECOND)
        self._last_partial_at = self._clock()
        self._last_partial_bytes = len(self._buf)
        update = await self._transcribe(bytes(self._buf[-window:]), None, is_final=False)
        self.last_partial_text = update.text
        return update

    def _pick_language(self, language: str | None) -> str | None:
        code = validate_language(language)
        return code if code is not None else self._language

    async def _transcribe(
        self, pcm16: bytes, language: str | None, *, is_final: bool
    ) -> Transcript:
        code = self._pick_language(language)
        if not pcm16:
            self._service.check_running()
            return Transcript("", is_final, 0.0, 0.0, code or "", 1.0 if code else 0.0)
        samples: Int16Array = np.frombuffer(pcm16, dtype="<i2").astype(np.int16, copy=False)
        decoded = await self._service.decode(samples, code)
        probability = 1.0 if code else decoded.language_probability
        return Transcript(
            decoded.text,
            is_final,
            samples.size / limits.SAMPLE_RATE,
            decoded.seconds,
            decoded.language,
            probability,
        )
