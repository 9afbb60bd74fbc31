"""A stand-in for the `sounddevice` module with a sound card that keeps real time: there is
no sound card on the test machine, so this is the one place where the real part cannot run.

Its streams call their callbacks from their own thread, one block per block period, like
PortAudio; the microphone plays a given recording (then silence), the loudspeaker records
what it was given. Only the rates in `rates` open (others raise `PortAudioError`, as a
device without that rate does), so the kiosk's resampling path runs too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np


class PortAudioError(Exception):
    pass


class _Stream:
    latency = 0.01

    def __init__(self, card: FakeSoundDevice, kind: str, samplerate: int, blocksize: int,
                 device: Any, channels: int, dtype: str, callback: Callable[..., None]) -> None:  # fmt: skip
        assert channels == 1 and dtype == "int16"
        card.check(kind, samplerate)
        self.card, self.kind, self.rate, self.block, self.callback = (
            card,
            kind,
            samplerate,
            blocksize,
            callback,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Stream:
        self.card.opened.append(self.kind)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.card.closed.append(self.kind)

    def _run(self) -> None:
        period = self.block / self.rate
        deadline = time.monotonic()
        pos = 0
        while not self._stop.is_set():
            if self.kind == "input":
                chunk = self.card.mic[pos : pos + self.block]
                chunk = np.pad(chunk, (0, self.block - len(chunk)))
                self.callback(chunk.astype("<i2").tobytes(), self.block, None, None)
                pos += self.block
            else:
                buf = bytearray(self.block * 2)
                self.callback(buf, self.block, None, None)
                self.card.speaker.append(np.frombuffer(bytes(buf), dtype="<i2"))
            deadline += period
            time.sleep(max(0.0, deadline - time.monotonic()))


class FakeSoundDevice:
    """Use as the `sd` module: `DeviceAudio(None, None, sd=FakeSoundDevice(mic, {48000}))`."""

    PortAudioError = PortAudioError

    def __init__(self, mic: np.ndarray, rates: set[int], default_rate: int = 48_000) -> None:
        self.mic = mic.astype(np.int16)
        self.rates = rates
        self.default_rate = default_rate
        self.speaker: list[np.ndarray] = []
        self.opened: list[str] = []
        self.closed: list[str] = []

    def check(self, kind: str, samplerate: int) -> None:
        if samplerate not in self.rates:
            raise PortAudioError(f"Invalid sample rate {samplerate} ({kind})")

    def check_input_settings(
        self, *, device: Any, channels: int, dtype: str, samplerate: int
    ) -> None:
        self.check("input", samplerate)

    def check_output_settings(
        self, *, device: Any, channels: int, dtype: str, samplerate: int
    ) -> None:
        self.check("output", samplerate)

    def query_devices(self, device: Any = None, kind: str | None = None) -> dict[str, Any]:
        return {"name": "fake", "default_samplerate": float(self.default_rate)}

    def RawInputStream(self, **kw: Any) -> _Stream:  # sounddevice's name
        return _Stream(self, "input", **kw)

    def RawOutputStream(self, **kw: Any) -> _Stream:  # sounddevice's name
        return _Stream(self, "output", **kw)
