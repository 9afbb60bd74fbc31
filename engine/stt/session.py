"""`STTSession`: the per-caller handle returned by `STT.open_session()`.

    async with stt.open_session() as session:
        text = await session.transcribe(audio, language="en")

`audio`: signed 16-bit little-endian mono 16 kHz PCM bytes, whatever its first bytes, or
WAV (FLAC/OGG) bytes of any common rate, width and channel count (converted with soundfile +
soxr); a container is recognised by its magic, text (refused) by a long printable run. `language`: None
(auto-detect; English for `.en` models) or letters and hyphens. Bad input raises
`InvalidRequestError` before any work is queued. Concurrent calls (from one session or many)
queue behind each other; none fails for being second. After `close()`, `transcribe` raises
`SessionClosedError`.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from engine.audio import decode_pcm16
from engine.errors import SessionClosedError
from engine.stt import limits
from engine.stt.core import DecodeService, validate_language

__all__ = ["STTSession"]

#: Inputs longer than this are decoded and resampled off the event loop.
_DECODE_INLINE_MAX_BYTES = 1 << 16


class STTSession:
    """Never constructed by users: use `STT.open_session()`.

    After each `transcribe`: `last_decode_seconds`, `last_audio_seconds`, `last_language`
    (given, or detected) and `last_language_probability` (1.0 when given).
    """

    def __init__(self, service: DecodeService) -> None:
        self._service = service
        self._closed = False
        self.last_decode_seconds = 0.0
        self.last_audio_seconds = 0.0
        self.last_language: str | None = None
        self.last_language_probability = 0.0

    async def transcribe(self, audio: bytes, language: str | None = None) -> str:
        """Transcribe one utterance; returns the text (possibly empty for silence)."""
        if self._closed:
            raise SessionClosedError("this STT session is closed; open a new one")
        self._service.check_running()
        code = validate_language(language)
        if len(audio) > _DECODE_INLINE_MAX_BYTES:
            pcm = await asyncio.to_thread(
                decode_pcm16,
                audio,
                target_rate=limits.SAMPLE_RATE,
                max_seconds=limits.MAX_AUDIO_SECONDS,
            )
        else:
            pcm = decode_pcm16(
                audio, target_rate=limits.SAMPLE_RATE, max_seconds=limits.MAX_AUDIO_SECONDS
            )
        decoded = await self._service.decode(pcm, code)
        self.last_decode_seconds = decoded.seconds
        self.last_audio_seconds = pcm.size / limits.SAMPLE_RATE
        self.last_language = decoded.language
        self.last_language_probability = 1.0 if code else decoded.language_probability
        return decoded.text

    async def close(self) -> None:
        """Close the session; later `transcribe` calls raise `SessionClosedError`."""
        self._closed = True

    async def __aenter__(self) -> STTSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
