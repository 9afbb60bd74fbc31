"""`EchoCanceller`: the reply's echo taken out of the microphone stream.

WebRTC's AEC3 (through LiveKit's `AudioProcessingModule`) does the cancelling, with the
high-pass filter; noise suppression and gain control stay off, so that the VAD and Whisper hear
the room as it is. Chosen by measurement (`python -m bench.bench_echo`, AMD EPYC Zen 4): on a
Piper reply through synthetic rooms (20-250 ms delay, 0 to -20 dB, RT60 0.2-0.5 s) AEC3 removed
19-38 dB of echo against 3-16 dB for speexdsp's MDF filter (tail 300 or 500 ms), at 15 ms of
CPU per second of audio.

Sans-I/O and synchronous: `process(mic, reference)` takes PCM16 microphone audio of any length
and the reference for the same samples (`PlayedReference.capture`), and returns the cleaned
PCM16 audio, 10 ms frames at a time (a partial frame is carried to the next call, so the output
can lag the input by < 10 ms). `echo_guard_db` is the level that speech must exceed to be
told from the echo's residue (the barge-in gate, `realtime.vad`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from realtime.echo import limits

if TYPE_CHECKING:
    from livekit.rtc import AudioFrame

__all__ = ["EchoCanceller", "level_db"]

_FRAME_BYTES = 2 * limits.FRAME_SAMPLES


def level_db(samples: np.ndarray) -> float:
    """Mean power in dB of PCM16 units (float or int samples; -inf guarded by +1)."""
    if not len(samples):
        return 0.0
    x = samples.astype(np.float32)
    return 10.0 * math.log10(float(np.mean(x * x)) + 1.0)


class EchoCanceller:
    """One microphone stream's echo canceller (single consumer)."""

    def __init__(self) -> None:
        from livekit import rtc  # imported here: ~0.5 s, only once a connection needs it

        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=False,
            high_pass_filter=True,
            auto_gain_control=False,
        )
        self._mic_carry = b""
        self._ref_carry = np.zeros(0, dtype=np.float32)
        self.echo_peak_db = 0.0  # the reference level, held at its recent peak
        self.residue_db = limits.ECHO_RESIDUE_START_DB  # cleaned over reference, learnt

    @property
    def echo_guard_db(self) -> float | None:
        """The least level (dB, PCM16 units) of cleaned audio that the echo of what played
        recently cannot explain; None while no echo plays."""
        if self.echo_peak_db < limits.ECHO_ACTIVE_DB:
            return None
        return self.echo_peak_db + self.residue_db + limits.ECHO_GUARD_MARGIN_DB

    def _learn(self, ref: np.ndarray, cleaned: bytes) -> None:
        """One 10 ms frame: follow the reference's peak and the residue the canceller leaves."""
        ref_db = level_db(ref)
        fall = limits.ECHO_PEAK_FALL_DB_PER_S * limits.FRAME_SAMPLES / limits.RATE
        self.echo_peak_db = max(ref_db, self.echo_peak_db - fall)
        if ref_db >= limits.ECHO_ACTIVE_DB:
            seen = level_db(np.frombuffer(cleaned, dtype="<i2")) - ref_db
            if seen > self.residue_db + limits.ECHO_GUARD_MARGIN_DB:
                return  # double talk: louder than any residue, so the user's voice; not learnt
            rate = limits.ECHO_RESIDUE_RISE if seen > self.residue_db else limits.ECHO_RESIDUE_FALL
            self.residue_db += rate * (seen - self.residue_db)

    def _frame(self, pcm: bytes) -> AudioFrame:
        return self._rtc.AudioFrame(
            data=bytearray(pcm),
            sample_rate=limits.RATE,
            num_channels=1,
            samples_per_channel=limits.FRAME_SAMPLES,
        )

    def process(self, mic: bytes, reference: np.ndarray) -> bytes:
        """Cleaned PCM16 for `mic` (PCM16 LE, 16 kHz) given its `reference` (float32 in PCM16
        units, one sample per microphone sample)."""
        assert len(reference) * 2 == len(mic), "one reference sample per microphone sample"
        data = self._mic_carry + mic
        ref = np.concatenate([self._ref_carry, reference])
        usable = len(data) - len(data) % _FRAME_BYTES
        out = bytearray()
        ref16 = np.clip(np.round(ref), -32768, 32767).astype("<i2")
        for k, off in enumerate(range(0, usable, _FRAME_BYTES)):
            far = self._frame(
                ref16[k * limits.FRAME_SAMPLES : (k + 1) * limits.FRAME_SAMPLES].tobytes()
            )
            self._apm.process_reverse_stream(far)
            near = self._frame(data[off : off + _FRAME_BYTES])
            self._apm.process_stream(near)
            cleaned = bytes(near.data)
            self._learn(ref16[k * limits.FRAME_SAMPLES : (k + 1) * limits.FRAME_SAMPLES], cleaned)
            out += cleaned
        self._mic_carry = data[usable:]
        self._ref_carry = ref[usable // 2 :]
        return bytes(out)
