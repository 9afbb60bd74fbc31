"""Microphone and loudspeaker through PortAudio (`sounddevice`, imported only here and only
when devices are used, so file mode runs on a machine without PortAudio or a sound card).

Streams open at the wire rates (16 kHz in, 24 kHz out) when the device takes them; otherwise
at the device's own rate, with a streaming soxr resampler in between. The stream callbacks run
on PortAudio's threads: the microphone hands its chunks to the event loop, the speaker pulls
from the core under the kiosk's lock (a few microseconds: it copies queued samples).
"""

from __future__ import annotations

import asyncio
import functools
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr

from kiosk import limits
from kiosk.core import KioskCore
from kiosk.errors import AudioDeviceError
from kiosk.player import Int16Array

if TYPE_CHECKING:
    from kiosk.app import Kiosk

__all__ = ["DeviceAudio", "import_sounddevice", "list_devices", "parse_device"]


def import_sounddevice() -> ModuleType:
    """The `sounddevice` module; `AudioDeviceError` when it or PortAudio is missing."""
    try:
        import sounddevice
    except ImportError:
        raise AudioDeviceError(
            "sound devices need the kiosk extra: pip install 'bitvoice[kiosk]' "
            "(or use --input/--output files)"
        ) from None
    except OSError as exc:  # sounddevice raises OSError when libportaudio is not installed
        raise AudioDeviceError(
            f"PortAudio is missing ({exc}): apt-get install libportaudio2 "
            "(or use --input/--output files)"
        ) from None
    module: ModuleType = sounddevice
    return module


def list_devices() -> str:
    """PortAudio's device table (index, name, channels in/out, default rate)."""
    sd = import_sounddevice()
    text = str(sd.query_devices())
    return text if text.strip() else "no audio devices found"


def parse_device(spec: str | None) -> int | str | None:
    """A device as given on the command line: an index, or part of its name."""
    if spec is None or spec == "":
        return None
    return int(spec) if spec.isdigit() else spec


def _rate_for(sd: ModuleType, device: int | str | None, kind: str, wanted: int) -> int:
    """`wanted` when the device takes it, else the device's default rate."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    which = "the default" if device is None else repr(device)
    try:
        try:
            check(device=device, channels=1, dtype="int16", samplerate=wanted)
            return wanted
        except sd.PortAudioError:
            info = sd.query_devices(device, kind=kind)
            return int(info["default_samplerate"])
    except (sd.PortAudioError, ValueError) as exc:  # no such device, or no device at all
        raise AudioDeviceError(
            f"no {kind} device ({which}: {exc}); see --list-devices, or use --input/--output files"
        ) from None


class DeviceAudio:
    """The default (or the chosen) microphone and loudspeaker. `sd` is the `sounddevice`
    module (tests pass a stand-in that paces its callbacks like a sound card)."""

    def __init__(
        self,
        input_device: int | str | None,
        output_device: int | str | None,
        sd: ModuleType | None = None,
    ) -> None:
        self.sd = sd or import_sounddevice()
        self.input_device = input_device
        self.output_device = output_device
        self._queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(limits.MIC_QUEUE_CHUNKS)
        self._fifo = np.zeros(0, dtype=np.int16)
        self._in_rs: Any = None
        self._out_rs: Any = None
        self._in_latency = 0.0
        self._out_latency = 0.0

    def clock(self) -> float:
        return time.monotonic()

    async def run(self, kiosk: Kiosk) -> None:
        """Open both streams, then send microphone chunks until cancelled; closes them."""
        sd = self.sd
        loop = asyncio.get_running_loop()
        in_rate = _rate_for(sd, self.input_device, "input", limits.INPUT_RATE)
        out_rate = _rate_for(sd, self.output_device, "output", limits.OUTPUT_RATE)
        if in_rate != limits.INPUT_RATE:
            self._in_rs = soxr.ResampleStream(in_rate, limits.INPUT_RATE, 1, dtype="int16")
        if out_rate != limits.OUTPUT_RATE:
            self._out_rs = soxr.ResampleStream(limits.OUTPUT_RATE, out_rate, 1, dtype="int16")

        def on_input(indata: Any, frames: int, _time: Any, _status: Any) -> None:
            at = time.monotonic() - frames / in_rate - self._in_latency
            pcm = np.frombuffer(bytes(indata), dtype=np.int16)
            if self._in_rs is not None:
                pcm = self._in_rs.resample_chunk(pcm)
            loop.call_soon_threadsafe(self._offer, pcm.tobytes(), at)

        def on_output(outdata: Any, frames: int, _time: Any, _status: Any) -> None:
            outdata[:] = self._speaker_block(kiosk, frames).tobytes()

        try:
            mic = sd.RawInputStream(
                samplerate=in_rate, blocksize=in_rate * limits.MIC_CHUNK_MS // 1000,
                device=self.input_device, channels=1, dtype="int16", callback=on_input,
            )  # fmt: skip
            speaker = sd.RawOutputStream(
                samplerate=out_rate, blocksize=out_rate * limits.MIC_CHUNK_MS // 1000,
                device=self.output_device, channels=1, dtype="int16", callback=on_output,
            )  # fmt: skip
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open the audio devices: {exc}") from None
        with mic, speaker:
            self._in_latency, self._out_latency = float(mic.latency), float(speaker.latency)
            while True:
                pcm, at = await self._queue.get()
                kiosk.call(functools.partial(KioskCore.mic_audio, pcm=pcm, captured_at=at))
                await kiosk.flush()

    def _offer(self, pcm: bytes, at: float) -> None:
        if self._queue.full():  # a stall: the oldest speech is the least useful
            self._queue.get_nowait()
        self._queue.put_nowait((pcm, at))

    def _speaker_block(self, kiosk: Kiosk, frames: int) -> Int16Array:
        heard_at = time.monotonic() + self._out_latency
        with kiosk.lock:
            if self._out_rs is None:
                return kiosk.core.render(frames, heard_at)
            while len(self._fifo) < frames:
                pcm = kiosk.core.render(limits.OUT_CHUNK_SAMPLES, heard_at)
                self._fifo = np.concatenate([self._fifo, self._out_rs.resample_chunk(pcm)])
        block, self._fifo = self._fifo[:frames], self._fifo[frames:]
        return block
