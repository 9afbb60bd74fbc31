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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from engine._component import Component, ComponentState
from engine.errors import ComponentLifecycleError, InvalidRequestError
from engine.stt import limits
from engine.stt.core import Decoded, DecodeService, Int16Array, validate_language
from engine.stt.models import DEFAULT_STT_MODEL, resolve_stt_model, stt_model_dir
from engine.stt.session import STTSession
from engine.stt.streaming import StreamingTranscriber
from engine.stt.whisper import WhisperDecoder

__all__ = ["STT", "Decoded", "validate_language"]


class _Link:
    """The `DecodeService` an STT hands its sessions: they see this, never the STT."""

    def __init__(self, stt: STT) -> None:
        self._stt = stt

    @property
    def busy(self) -> bool:
        return self._stt.busy

    def check_running(self) -> None:
        self._stt._check_running()

    async def decode(self, pcm: Int16Array, language: str | None) -> Decoded:
        return await self._stt._decode(pcm, language)


class STT(Component):
    """Speech-to-text component (role "stt").

    `model_id` is a store ID (default Whisper base); `num_threads` 0 means one thread per CPU.
    `encoder_window` is "auto" (encode only the audio, guarded, falling back to the 30 s
    window; see `engine.stt.whisper`) or "full" (always the 30 s window); anything else
    raises `InvalidRequestError`. The weights are resolved at `start()`, so an unknown ID
    fails there with `InvalidRequestError` naming `bitvoice pull`.
    """

    role = "stt"

    def __init__(
        self,
        model_id: str = DEFAULT_STT_MODEL,
        *,
        num_threads: int = 0,
        encoder_window: str = limits.DEFAULT_ENCODER_WINDOW,
    ) -> None:
        super().__init__()
        stt_model_dir(model_id)  # validates the ID's shape early
        if not isinstance(num_threads, int) or num_threads < 0:
            raise InvalidRequestError(f"num_threads must be an int >= 0, got {num_threads!r}")
        if encoder_window not in limits.ENCODER_WINDOWS:
            raise InvalidRequestError(
                f"encoder_window must be one of {limits.ENCODER_WINDOWS}, got {encoder_window!r}"
            )
        self.model_id = model_id
        self.num_threads = num_threads or (os.cpu_count() or 1)
        self.encoder_window = encoder_window
        self._decoder: WhisperDecoder | None = None
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._busy = False
        self._queued = 0
        self._transcriptions = 0
        self._link: DecodeService = _Link(self)

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
            decoder = await loop.run_in_executor(self._executor, self._load)
        except BaseException:
            self.state = ComponentState.UNAVAILABLE
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if self.state is not ComponentState.STARTING:  # stop() won the race
            return
        self._decoder = decoder
        self.state = ComponentState.RUNNING

    def _load(self) -> WhisperDecoder:
        from faster_whisper import WhisperModel

        folder = resolve_stt_model(self.model_id)
        model = WhisperModel(
            str(folder),
            device="cpu",
            compute_type=limits.COMPUTE_TYPE,
            cpu_threads=self.num_threads,
            num_workers=1,
            local_files_only=True,
        )
        return WhisperDecoder(model, model_id=self.model_id, encoder_window=self.encoder_window)

    async def stop(self) -> None:
        """Wait for the running transcription (if any), then release the model. Idempotent."""
        self._check_loop()
        if self.state in (ComponentState.STOPPED, ComponentState.CREATED):
            self.state = ComponentState.STOPPED
            return
        self.state = ComponentState.STOPPING
        async with self._lock:
            self._decoder = None
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            self.state = ComponentState.STOPPED

    # -- sessions ----------------------------------------------------------------------------
    def open_session(self) -> STTSession:
        """A new `STTSession` (an async context manager). Requires a running component."""
        self._check_running()
        return STTSession(self._link)

    def open_stream(self, *, language: str | None = None) -> StreamingTranscriber:
        """A `StreamingTranscriber` for one user turn (its audio, partials and the final
        transcript). Requires a running component; `language` as in `transcribe`."""
        self._check_running()
        return StreamingTranscriber(self._link, language=language)

    def health(self) -> dict[str, object]:
        """A small JSON-able status for /healthz: state, model, threads, encoder window,
        queue, and decodes per window with fallbacks per reason (`decodes`)."""
        return {
            "state": self.state.value,
            "model": self.model_id,
            "threads": self.num_threads,
            "encoder_window": self.encoder_window,
            "busy": self._busy,
            "queued": self._queued,
            "transcriptions": self._transcriptions,
            "decodes": dict(self._decoder.stats) if self._decoder is not None else {},
        }

    @property
    def busy(self) -> bool:
        """True while a transcription runs or waits its turn."""
        return self._busy or self._queued > 0 or self._lock.locked()

    @property
    def multilingual(self) -> bool:
        return bool(self._decoder is not None and self._decoder.multilingual)

    # -- the one way in to the model -----------------------------------------------------------
    async def _decode(self, pcm: Int16Array, language: str | None) -> Decoded:
        """Queue behind any running transcription (FIFO), then decode in the worker thread.

        Raises `ComponentLifecycleError` if the component stops while this call waits.
        """
        self._check_running()
        self._queued += 1
        try:
            async with self._lock:
                self._check_running()
                decoder, executor = self._decoder, self._executor
                if decoder is None or executor is None:
                    raise ComponentLifecycleError("STT is stopped")
                self._busy = True
                try:
                    work: Callable[[Int16Array, str | None], Decoded] = decoder.decode
                    return await asyncio.get_running_loop().run_in_executor(
                        executor, work, pcm, language
                    )
                finally:
                    self._busy = False
                    self._transcriptions += 1
        finally:
            self._queued -= 1
