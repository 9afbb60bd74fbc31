"""`TTS`: streaming text-to-speech (pocket-tts, or the offline Piper voice), role "tts".

    tts = TTS()
    await tts.start()                       # picks the backend (engine.tts.backends)
    await tts.list_voices()                 # ["alba", ...] or ["joe"] with Piper
    await tts.register_voice("me", "me.wav")  # bytes, str path or Path; pocket-tts only
    async with tts.open_session(voice=None, speed=None) as s:
        pcm = await s.collect("Hello there.")      # 24 kHz mono s16le bytes
        async for chunk in s.synthesize("Hi."):    # the same, streamed
            ...
        async for item in s.speak(deltas):         # streamed text in: SpeechSegment /
            ...                                    # SpeechAudio (float32) items out
    await tts.stop()

Contract: every public call must come from the loop that started the component
(`ComponentLifecycleError` otherwise, and before `start()` / after `stop()`). All model work
runs on one worker thread per TTS (the backends are not thread-safe), never on the event loop;
sessions interleave segment by segment (a session whose reader is paused or slow holds the
worker while its buffer is full). Sessions reach the component only through `_SessionHost`
(the `SynthesisHost` protocol of `engine.tts.session`): component -> session, never back. Voice
rules: see `engine.tts.voices`. `TTS()` takes no
options; `$BITVOICE_TTS_THREADS` sets the worker's thread count (default: all CPUs) and
`$BITVOICE_TTS_BACKEND` forces "pocket" or "piper".
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from engine._component import Component, ComponentState
from engine.audio import decode_audio
from engine.errors import InvalidRequestError
from engine.paths import voices_dir
from engine.tts import limits
from engine.tts.backends import Backend, select_backend
from engine.tts.limits import validate_speed
from engine.tts.session import TTSSession
from engine.tts.voices import VoiceStore, validate_voice_name

__all__ = ["TTS"]

_T = TypeVar("_T")
ENV_THREADS = "BITVOICE_TTS_THREADS"


def _threads_from_env() -> int:
    raw = os.environ.get(ENV_THREADS, "").strip()
    if not raw:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidRequestError(f"${ENV_THREADS} must be a positive integer, got {raw!r}")
    return int(raw)


class TTS(Component):
    """Text-to-speech component. See the module docstring for the calling contract."""

    role = "tts"

    def __init__(self) -> None:
        super().__init__()
        self.num_threads = _threads_from_env()
        self._executor: ThreadPoolExecutor | None = None
        self._backend: Backend | None = None
        self._voices: VoiceStore | None = None
        self._register_lock = asyncio.Lock()
        self._sessions: weakref.WeakSet[TTSSession] = weakref.WeakSet()
        self._syntheses = 0
        self._host = _SessionHost(self)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the backend and the voice store in the worker thread; idempotent."""
        self._bind_loop()
        if self.state is ComponentState.RUNNING:
            return
        self.state = ComponentState.STARTING
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bitvoice-tts")
        try:
            backend, store = await self._run(self._load)
        except BaseException:
            self.state = ComponentState.UNAVAILABLE
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if self.state is not ComponentState.STARTING:  # stop() won
            return
        self._backend, self._voices = backend, store
        self.state = ComponentState.RUNNING

    def _load(self) -> tuple[Backend, VoiceStore]:
        backend = select_backend(self.num_threads)
        store = VoiceStore(backend, voices_dir())
        store.load()
        return backend, store

    async def stop(self) -> None:
        """Cancel every session's synthesis, release the model. Idempotent.

        A session's running or next synthesis then raises `ComponentLifecycleError`.
        """
        self._check_loop()
        if self.state in (ComponentState.CREATED, ComponentState.STOPPED):
            self.state = ComponentState.STOPPED
            return
        self.state = ComponentState.STOPPING
        for session in list(self._sessions):
            session._abort_for_stop()
        executor, self._executor = self._executor, None
        if executor is not None:
            # Let the segment in flight notice its stop flag, without blocking the loop.
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        self._backend = None
        self._voices = None
        self.state = ComponentState.STOPPED

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run blocking `fn(*args)` on the worker thread."""
        if self._executor is None:
            self._check_running()
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- voices -------------------------------------------------------------------------------
    async def list_voices(self) -> list[str]:
        """Built-in voices, then custom voices (each group sorted)."""
        self._check_running()
        assert self._voices is not None
        return self._voices.names()

    async def register_voice(self, name: str, audio: bytes | str | Path) -> None:
        """Clone a voice from an audio prompt and store it under `name`.

        `audio`: WAV/FLAC/OGG bytes (or 16 kHz PCM16), or a `str`/`Path` to such a file; at
        least `MIN_VOICE_PROMPT_SECONDS` and at most `MAX_VOICE_PROMPT_SECONDS` long. Raises
        `InvalidRequestError` (bad name, taken name, built-in name, unreadable or non-audio
        file, wrong length, or a backend without cloning); nothing is written on failure.
        """
        self._check_running()
        validate_voice_name(name)
        if not isinstance(audio, bytes | bytearray | str | Path):
            raise InvalidRequestError(
                f"voice audio must be bytes, a str path or a Path, not {type(audio).__name__}"
            )
        async with self._register_lock:
            self._check_running()
            assert self._voices is not None and self._backend is not None
            self._voices.check_can_register(name)
            data = await asyncio.to_thread(_read_audio_arg, audio)
            samples = await asyncio.to_thread(
                decode_audio,
                data,
                target_rate=limits.OUTPUT_RATE,
                max_seconds=limits.MAX_VOICE_PROMPT_SECONDS,
            )
            if samples.size < limits.MIN_VOICE_PROMPT_SECONDS * limits.OUTPUT_RATE:
                raise InvalidRequestError(
                    f"voice audio is {samples.size / limits.OUTPUT_RATE:.2f} s; "
                    f"at least {limits.MIN_VOICE_PROMPT_SECONDS:.0f} s is needed"
                )
            if float(abs(samples).max()) < 1e-4:
                raise InvalidRequestError("voice audio is silent")
            samples = samples[: int(limits.VOICE_PROMPT_USED_SECONDS * limits.OUTPUT_RATE)]
            backend, store = self._backend, self._voices
            state = await self._run(backend.state_from_audio, samples)
            self._check_running()
            await self._run(store.add, name, state)

    async def delete_voice(self, name: str) -> None:
        """Delete a custom voice. Built-in or unknown names raise `InvalidRequestError`."""
        self._check_running()
        assert self._voices is not None
        async with self._register_lock:
            await self._run(self._voices.delete, name)

    # -- sessions -----------------------------------------------------------------------------
    def open_session(self, voice: str | None = None, speed: float | None = None) -> TTSSession:
        """A reusable `TTSSession`; `voice` None = the backend's default voice."""
        self._check_running()
        assert self._backend is not None
        name = self._backend.default_voice() if voice is None else self._check_voice(voice)
        session = TTSSession(self._host, name, validate_speed(speed))
        self._sessions.add(session)
        return session

    def _check_voice(self, name: str) -> str:
        assert self._voices is not None
        validate_voice_name(name)
        if name not in self._voices.names():
            raise InvalidRequestError(
                f"unknown voice {name!r}; known voices: {self._voices.names()}"
            )
        return name

    @property
    def backend_name(self) -> str | None:
        return None if self._backend is None else self._backend.name

    def health(self) -> dict[str, object]:
        """A small JSON-able status for /healthz."""
        return {
            "state": self.state.value,
            "backend": self.backend_name,
            "threads": self.num_threads,
            "voices": None if self._voices is None else len(self._voices.names()),
            "active_sessions": sum(1 for s in list(self._sessions) if s.state == "running"),
            "syntheses": self._syntheses,
        }


class _SessionHost:
    """The one door from a `TTSSession` into its TTS (implements `SynthesisHost`).

    Sessions see only this object, never the component, so the dependency is one-way:
    component -> session.
    """

    def __init__(self, tts: TTS) -> None:
        self._tts = tts

    @property
    def loop_alive(self) -> bool:
        loop = self._tts._loop
        return loop is not None and not loop.is_closed()

    def check_loop(self) -> None:
        self._tts._check_loop()

    def check_running(self) -> None:
        self._tts._check_running()

    def check_voice(self, name: str) -> str:
        return self._tts._check_voice(name)

    def synthesis_started(self) -> None:
        self._tts._syntheses += 1

    async def voice_state(self, voice: str) -> object:
        self._tts._check_running()
        voices = self._tts._voices
        assert voices is not None
        return await self._tts._run(voices.state, voice)

    async def stream(
        self,
        state: object,
        text: str,
        sink: Callable[[npt.NDArray[np.float32]], None],
        stop: threading.Event,
    ) -> None:
        self._tts._check_running()
        backend = self._tts._backend
        assert backend is not None

        def work() -> None:  # on the worker thread
            for samples in backend.stream(state, text, stop):
                if stop.is_set():
                    return
                sink(samples)

        await self._tts._run(work)


def _read_audio_arg(audio: bytes | bytearray | str | Path) -> bytes:
    if isinstance(audio, bytes | bytearray):
        return bytes(audio)
    path = Path(audio).expanduser()
    try:
        size = path.stat().st_size
        # A cheap upper bound (float32 stereo 192 kHz) before reading a huge file.
        if size > limits.MAX_VOICE_PROMPT_SECONDS * 192_000 * 8 + (1 << 16):
            raise InvalidRequestError(f"voice file {path} is too large ({size} bytes)")
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidRequestError(f"voice file not found: {path}") from None
    except IsADirectoryError:
        raise InvalidRequestError(f"voice path is a directory: {path}") from None
    except OSError as exc:
        raise InvalidRequestError(f"voice file {path} could not be read: {exc}") from None
