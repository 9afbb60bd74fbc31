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
told from the echo's residue (the barge-in gate, `realtime.vad`). Where no echo reaches the
microphone at all (`bypassed`), the audio passes through uncancelled.
"""

from __future__ import annotations

import collections
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
        window = round(limits.ECHO_WINDOW_S * limits.RATE / limits.FRAME_SAMPLES)
        # raw and cleaned levels over the reference's peak, in dB (see limits: the prior fills
        # the windows until a window of reply has been measured)
        self._coupling = collections.deque([limits.ECHO_PRIOR_DB] * window, maxlen=window)
        self._residue = collections.deque([limits.ECHO_PRIOR_DB] * window, maxlen=window)
        self._prior_left = window  # prior entries still in the windows
        # loud-reply frames heard with a quiet microphone and nothing else (no echo path?)
        self._no_path_frames = 0
        self._no_path_needed = round(limits.ECHO_NO_PATH_S * limits.RATE / limits.FRAME_SAMPLES)

    @property
    def echo_guard_db(self) -> float | None:
        """The least level (dB, PCM16 units) of cleaned audio that the echo of what played
        recently cannot explain; None while no echo plays."""
        if self.echo_peak_db < limits.ECHO_ACTIVE_DB:
            return None
        left = min(max(self._residue), self.coupling_db)  # cleaned never exceeds the input
        return self.echo_peak_db + left + limits.ECHO_GUARD_MARGIN_DB

    @property
    def bypassed(self) -> bool:
        """No echo reaches the microphone (headphones, a client's own echo cancellation, a
        file): the prior is gone and every frame of reply heard so far left it quiet. The raw
        microphone audio then goes on as it is: AEC3's suppressor, finding no echo path,
        mutes speech that starts over the reply (a kiosk fed from a file lost the first second
        of "one, two, three" and at times all of it)."""
        return not self._prior_left and self.coupling_db <= limits.ECHO_QUIET_DB

    @property
    def coupling_db(self) -> float:
        """How loud the echo reaches the raw microphone against the reference's peak: the
        loudest of the last window of frames."""
        return max(self._coupling)

    def _learn(self, ref: np.ndarray, raw: bytes, cleaned: bytes) -> None:
        """One 10 ms frame: follow the reference's peak, the room's coupling and the residue
        the canceller leaves. Only frames that are echo teach: those the canceller took
        something out of (and left no louder than the residue it learnt), and those too quiet
        to matter; anything else is the user's voice (or an echo path not learnt yet, which
        the prior covers)."""
        ref_db = level_db(ref)
        fall = limits.ECHO_PEAK_FALL_DB_PER_S * limits.FRAME_SAMPLES / limits.RATE
        self.echo_peak_db = max(ref_db, self.echo_peak_db - fall)
        if self.echo_peak_db < limits.ECHO_ACTIVE_DB:
            return
        raw_db = level_db(np.frombuffer(raw, dtype="<i2"))
        cleaned_db = level_db(np.frombuffer(cleaned, dtype="<i2"))
        residue = cleaned_db - self.echo_peak_db
        # Once no echo path has been found (`bypassed`), what AEC3 takes out of a loud frame
        # is the user's voice that its suppressor mistook for echo: learning it would raise
        # the guard against the user (measured: coupling -55 -> -3 dB in 20 ms of "one").
        # Likewise a frame louder at the raw microphone than the loudest echo learnt (+6 dB) is
        # the user: an echo path does not jump in 10 ms.
        echo = (
            not self.bypassed
            and raw_db - cleaned_db >= limits.ECHO_REMOVED_DB
            and residue <= max(self._residue) + limits.ECHO_DOUBLE_TALK_DB
            and raw_db - self.echo_peak_db <= self.coupling_db + limits.ECHO_DOUBLE_TALK_DB
        )
        quiet = raw_db - self.echo_peak_db <= limits.ECHO_QUIET_DB
        if echo or quiet:
            self._coupling.append(raw_db - self.echo_peak_db)
            self._residue.append(residue)
            self._prior_left = max(0, self._prior_left - 1)
        self._learn_no_path(quiet, loud=ref_db - self.echo_peak_db >= limits.ECHO_LOUD_DB)

    def _learn_no_path(self, quiet: bool, *, loud: bool) -> None:
        """Drop the prior early when the reply has played loud for long enough and the
        microphone stayed quiet all along: there is no echo path (limits.ECHO_NO_PATH_S)."""
        if not self._prior_left:
            return
        if not quiet:
            self._no_path_frames = 0
            return
        self._no_path_frames += loud
        if self._no_path_frames >= self._no_path_needed:
            learnt = len(self._coupling) - self._prior_left
            for window in (self._coupling, self._residue):
                kept = list(window)[-learnt:]
                window.clear()
                window.extend(kept)
            self._prior_left = 0

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
            raw = data[off : off + _FRAME_BYTES]
            self._learn(
                ref16[k * limits.FRAME_SAMPLES : (k + 1) * limits.FRAME_SAMPLES], raw, cleaned
            )
            out += raw if self.bypassed else cleaned
        self._mic_carry = data[usable:]
        self._ref_carry = ref[usable // 2 :]
        return bytes(out)
