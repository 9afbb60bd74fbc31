"""`STT`: Whisper speech-to-text via faster-whisper (CTranslate2, int8 on CPU).

    stt = STT()                      # default model: Whisper base (DEFAULT_STT_MODEL)
    await stt.start()                # resolves weights (offline registry or store), loads them
    async with stt.open_session() as s:
        text = await s.transcribe(pcm16_16k_bytes_or_wav, language=None)
    await stt.stop()

Contract: one transcription runs at a time per component, in a worker thread (never on the
event loop); other callers wait their turn in FIFO order (they do not fail). Calls from another
event loop, or before `start()` / after `stop()`, raise `ComponentLifecycleError`.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine._component import Component, ComponentState
from engine.errors import ComponentLifecycleError, InvalidRequestError
from engine.stt import limits
from engine.stt.models import DEFAULT_STT_MODEL, resolve_stt_model, stt_model_dir

if TYPE_CHECKING:
    from engine.stt.session import STTSession
    from engine.stt.streaming import StreamingTranscriber

__all__ = ["STT", "Decoded", "validate_language"]


class Decoded(NamedTuple):
    """One decode: its text, seconds spent, and the language used (given, or
    detected by Whisper with `language_probability`; 1.0 when it was given)."""

    text: str
    seconds: float
    language: str
    language_probability: float


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


class STT(Component):
    """Speech-to-text component (role "stt").

    `model_id` is a store ID (default Whisper base); `num_threads` 0 means one thread per CPU.
    The weights are resolved at `start()`, so an unknown ID fails there with
    `InvalidRequestError` naming `bitvoice pull`.
    """

    role = "stt"

    def __init__(self, model_id: str = DEFAULT_STT_MODEL, *, num_threads: int = 0) -> None:
        super().__init__()
        stt_model_dir(model_id)  # validates the ID's shape early
        if not isinstance(num_threads, int) or num_threads < 0:
            raise InvalidRequestError(f"num_threads must be an int >= 0, got {num_threads!r}")
        self.model_id = model_id
        self.num_threads = num_threads or (os.cpu_count() or 1)
        self._model: Any = None
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._busy = False
        self._queued = 0
        self._transcriptions = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Resolve and load the weights in a worker thread; idempotent while running."""
        self._bind_loop()
        if self.state is ComponentState.RUNNING:
            return
        self.state = ComponentState.STARTING
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bitvoice-stt")
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(self._executor, self._load)
        except BaseException:
            self.state = ComponentState.UNAVAILABLE
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if self.state is not ComponentState.STARTING:  # stop() won the race
            return
        self._model = model
        self.state = ComponentState.RUNNING

    def _load(self) -> Any:
        from faster_whisper import WhisperModel

        folder = resolve_stt_model(self.model_id)
        return WhisperModel(
            str(folder),
            device="cpu",
            compute_type=limits.COMPUTE_TYPE,
            cpu_threads=self.num_threads,
            num_workers=1,
            local_files_only=True,
        )

    async def stop(self) -> None:
        """Wait for the running transcription (if any), then release the model. Idempotent."""
        self._check_loop()
        if self.state in (ComponentState.STOPPED, ComponentState.CREATED):
            self.state = ComponentState.STOPPED
            return
        self.state = ComponentState.STOPPING
        async with self._lock:
            self._model = None
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            self.state = ComponentState.STOPPED

    # -- sessions ----------------------------------------------------------------------------
    def open_session(self) -> STTSession:
        """A new `STTSession` (an async context manager). Requires a running component."""
        from engine.stt.session import STTSession

        self._check_running()
        return STTSession(self)

    def open_stream(self, *, language: str | None = None) -> StreamingTranscriber:
        """A `StreamingTranscriber` for one user turn (partials, then a final transcript)."""
        from engine.stt.streaming import StreamingTranscriber

        self._check_running()
        return StreamingTranscriber(self, language=language)

    def health(self) -> dict[str, object]:
        """A small JSON-able status for /healthz."""
        return {
            "state": self.state.value,
            "model": self.model_id,
            "threads": self.num_threads,
            "busy": self._busy,
            "queued": self._queued,
            "transcriptions": self._transcriptions,
        }

    @property
    def busy(self) -> bool:
        """True while a transcription runs (the streaming transcriber skips partials then)."""
        return self._busy or self._lock.locked()

    @property
    def multilingual(self) -> bool:
        return bool(self._model is not None and self._model.model.is_multilingual)

    # -- the one way in to the model -----------------------------------------------------------
    async def _transcribe_pcm(self, pcm: npt.NDArray[np.int16], language: str | None) -> Decoded:
        """Queue behind any running transcription, then decode in the worker thread.

        Returns the text, the seconds spent decoding and the language used (given, or
        detected with its probability). Raises `ComponentLifecycleError` if the
        component stops while this call waits.
        """
        self._check_running()
        self._queued += 1
        try:
            async with self._lock:
                self._check_running()
                assert self._executor is not None
                loop = asyncio.get_running_loop()
                self._busy = True
                try:
                    return await loop.run_in_executor(
                        self._executor, self._decode_blocking, pcm, language
                    )
                finally:
                    self._busy = False
                    self._transcriptions += 1
        finally:
            self._queued -= 1

    def _decode_blocking(self, pcm: npt.NDArray[np.int16], language: str | None) -> Decoded:
        model = self._model
        if model is None:
            raise ComponentLifecycleError("STT is stopped")
        if language is not None and language not in model.supported_languages:
            raise InvalidRequestError(
                f"language {language!r} is not supported by STT model {self.model_id!r}"
            )
        if not model.model.is_multilingual:
            language = "en" if language in (None, "en") else language
        t0 = time.perf_counter()
        audio = pcm.astype(np.float32) / 32768.0
        segments, info = model.transcribe(
            audio,
            language=language,
            beam_size=limits.BEAM_SIZE,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        text = " ".join(seg.text.strip() for seg in segments).strip()
        return Decoded(
            text, time.perf_counter() - t0, info.language, float(info.language_probability)
        )
