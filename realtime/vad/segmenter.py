"""`VadSegmenter`: webrtcvad over a PCM16 stream, cut into speech segments.

Sans-I/O and synchronous (webrtcvad costs microseconds per frame, so it runs inline on
whatever thread feeds it):

    seg = VadSegmenter(VadConfig(aggressiveness=2, frame_ms=30, pause_ms=150))
    for event in seg.feed(pcm16_16k_bytes):   # any length; partial frames are carried over
        ...  # SpeechStarted | SpeechAudio | SpeechPaused | SpeechResumed | SpeechStopped

`SpeechStarted.audio` holds the prefix padding plus the voiced frames that triggered the
start; `SpeechAudio` carries the rest of the segment as it arrives (trailing silence
included, up to the stop). With `pause_ms` set, `SpeechPaused` comes once the speaker has
been silent that long (the turn may be ending: the server starts its work speculatively) and
`SpeechResumed` if they speak again before `SpeechStopped` (the speculation is thrown away).
`stop_now()` ends the turn at once (the server decided from the transcript that the turn is
complete). Times are ms of audio since the segmenter was created (or reset).
`feed()` raises `InvalidRequestError` for an odd byte count.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
import webrtcvad

from engine.errors import InvalidRequestError
from realtime.vad import limits
from realtime.vad.speech_model import SpeechProbability

__all__ = [
    "SpeechAudio",
    "SpeechStarted",
    "SpeechStopped",
    "VadConfig",
    "VadEvent",
    "VadSegmenter",
    "periodicity",
]


def periodicity(frame: bytes) -> float:
    """How strongly a PCM16 frame repeats at a pitch period: the largest normalised
    autocorrelation at a lag in `limits.PITCH_RANGE_HZ` (1.0 for a pure tone, ~0.1 for noise)."""
    x = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    x -= x.mean()
    n = len(x)
    lo = int(limits.SAMPLE_RATE / limits.PITCH_RANGE_HZ[1])
    hi = min(n - 1, int(limits.SAMPLE_RATE / limits.PITCH_RANGE_HZ[0]))
    if hi <= lo:
        return 0.0
    spectrum = np.fft.rfft(x, 2 * n)
    corr = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    energy_head = np.cumsum(x * x)  # energy of x[:k+1]
    energy_tail = np.cumsum((x * x)[::-1])[::-1]  # energy of x[k:]
    lags = np.arange(lo, hi)
    # the overlap of x and x shifted by `lag`: x[lag:] against x[:n-lag]
    norm = np.sqrt(energy_tail[lags] * energy_head[n - 1 - lags]) + 1e-9
    return float(np.max(corr[lo:hi] / norm))


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Settings; `check()` (called by the segmenter) raises `InvalidRequestError` when bad."""

    aggressiveness: int = 2
    frame_ms: int = 30
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 600
    start_speech_ms: int = limits.START_SPEECH_MS
    pause_ms: int = 0  # 0: no SpeechPaused / SpeechResumed events

    def check(self) -> None:
        lo, hi = limits.AGGRESSIVENESS_RANGE
        if not lo <= self.aggressiveness <= hi:
            raise InvalidRequestError(f"VAD aggressiveness must be {lo}..{hi}")
        if self.frame_ms not in limits.FRAME_MS_CHOICES:
            raise InvalidRequestError(f"VAD frame_ms must be one of {limits.FRAME_MS_CHOICES}")
        if not 0 <= self.prefix_padding_ms <= limits.MAX_PREFIX_PADDING_MS:
            raise InvalidRequestError("VAD prefix_padding_ms out of range")
        if self.silence_duration_ms < self.frame_ms or self.start_speech_ms < self.frame_ms:
            raise InvalidRequestError("VAD durations must be at least one frame")
        if not 0 <= self.pause_ms <= self.silence_duration_ms:
            raise InvalidRequestError("VAD pause_ms must be 0..silence_duration_ms")


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    start_ms: int
    audio: bytes


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    audio: bytes


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """`pause_ms` of silence after the last voiced frame (which ended at `end_ms`)."""

    end_ms: int


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Voiced audio again after a `SpeechPaused`, before the turn ended."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    end_ms: int


VadEvent = SpeechStarted | SpeechAudio | SpeechPaused | SpeechResumed | SpeechStopped


class VadSegmenter:
    """Stateful speech/silence segmentation of one microphone stream (single consumer)."""

    def __init__(
        self, config: VadConfig | None = None, speech_model: SpeechProbability | None = None
    ) -> None:
        """`speech_model` (optional): a second opinion that lets a barge-in start on one
        chunk of clear speech over the echo guard (see `limits.BARGE_IN_SPEECH_PROB`)."""
        self.config = config or VadConfig()
        self.config.check()
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._frame_bytes = limits.SAMPLE_RATE * self.config.frame_ms // 1000 * 2
        self._start_frames = -(-self.config.start_speech_ms // self.config.frame_ms)
        self._stop_frames = -(-self.config.silence_duration_ms // self.config.frame_ms)
        self._pause_frames = -(-self.config.pause_ms // self.config.frame_ms)
        pad_frames = self.config.prefix_padding_ms // self.config.frame_ms
        self._barge_frames = -(-limits.BARGE_IN_START_MS // self.config.frame_ms)
        self._ring: collections.deque[bytes] = collections.deque(
            maxlen=pad_frames + max(self._start_frames, self._barge_frames)
        )
        self._warmup_left = -(-limits.WARMUP_MS // self.config.frame_ms)  # never reset
        self._floor_db: float | None = limits.FLOOR_START_DB  # the room's noise floor; kept
        self._floor_rise = limits.FLOOR_RISE_DB_PER_S * self.config.frame_ms / 1000.0
        # Set by the owner while the assistant speaks: a start is then a barge-in, which needs
        # pitch and, with `echo_guard_db`, a level above what the reply's echo could leave.
        self.barge_in = False
        self.echo_guard_db: float | None = None
        self._speech_model = speech_model
        self._model_live = False  # the model has followed the stream since the reply began
        self.reset()

    def reset(self) -> None:
        """Forget all state (new stream); times restart at 0."""
        self._carry = b""
        self._frames = 0  # frames processed since reset
        self._ring.clear()
        self._voiced_run = 0
        self._periodic_run = 0  # frames with a pitch in the current voiced run
        self._silent_run = 0
        self.in_speech = False
        self.paused = False  # a SpeechPaused was sent and no voiced frame came since
        self._peak_db = 0.0  # the loudest frame of the current turn, in dB (PCM16 units)
        self._last_voiced_end = 0
        self._model_live = False

    @property
    def position_ms(self) -> int:
        """Audio processed so far, in ms."""
        return self._frames * self.config.frame_ms

    @property
    def until_stop_ms(self) -> int | None:
        """While in speech: the least audio (ms) before `SpeechStopped` can come, i.e. the
        silence still needed if the speaker stopped now. None when not in speech."""
        if not self.in_speech:
            return None
        return max(0, (self._stop_frames - self._silent_run) * self.config.frame_ms)

    @property
    def silent_ms(self) -> int:
        """While in speech: the silence since the last voiced frame, in ms (0 otherwise)."""
        return self._silent_run * self.config.frame_ms if self.in_speech else 0

    def stop_now(self) -> list[VadEvent]:
        """End the current turn now (no more silence needed); [] when not in speech."""
        if not self.in_speech:
            return []
        self._end_turn()
        return [SpeechStopped(self._last_voiced_end)]

    def _end_turn(self) -> None:
        self.in_speech = False
        self.paused = False
        self._voiced_run = 0
        self._silent_run = 0

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Run VAD over `pcm` (PCM16 LE mono 16 kHz) and return the events it caused."""
        if len(pcm) % 2:
            raise InvalidRequestError("VAD audio must be whole PCM16 samples")
        data = self._carry + pcm
        usable = len(data) - len(data) % self._frame_bytes
        self._carry = data[usable:]
        events: list[VadEvent] = []
        speech = bytearray()
        fb = self._frame_bytes
        for off in range(0, usable, fb):
            frame = data[off : off + fb]
            voiced = self._vad.is_speech(frame, limits.SAMPLE_RATE)
            self._frames += 1
            if not self.in_speech:
                if self._starts(frame, voiced, self._speech_chunks(frame)):
                    events.append(self._start())
                continue
            speech += frame
            events += self._in_speech_frame(voiced and self._loud(frame), speech)
        if speech:
            events.append(SpeechAudio(bytes(speech)))
        return events

    def _speech_chunks(self, frame: bytes) -> list[tuple[float, float]]:
        """The speech model's (probability, level) for the chunks this frame completes; it
        listens only while a reply plays and no turn is open, from a fresh state each time
        (its context from before would be stale)."""
        if self._speech_model is None or not self.barge_in:
            self._model_live = False
            return []
        if not self._model_live:
            self._speech_model.reset()
            self._model_live = True
        return self._speech_model.feed(frame)

    def _starts(self, frame: bytes, voiced: bool, chunks: list[tuple[float, float]]) -> bool:
        """One frame outside speech: True when it completes the evidence for a start."""
        self._ring.append(frame)
        level = self._level_db(frame)
        floor = self._floor_db
        evidence = voiced and (floor is None or level >= floor + limits.START_OVER_FLOOR_DB)
        warming = self._warmup_left > 0
        if warming:
            self._warmup_left -= 1
            evidence = False
        guard = self.echo_guard_db
        if self.barge_in and evidence:
            evidence = guard is None or level >= guard
        # a chunk of clear speech over the echo guard and the floor: a barge-in at once
        heard = not warming and any(
            prob >= limits.BARGE_IN_SPEECH_PROB
            and (guard is None or chunk_db >= guard)
            and (floor is None or chunk_db >= floor + limits.START_OVER_FLOOR_DB)
            for prob, chunk_db in chunks
        )
        self._floor_db = (
            level if floor is None or level < floor else min(level, floor + self._floor_rise)
        )
        if self.barge_in and heard:
            return True
        if not evidence:
            self._voiced_run = self._periodic_run = 0
            return False
        self._voiced_run += 1
        if self.barge_in:
            self._periodic_run += periodicity(frame) >= limits.PERIODICITY_MIN
            return (
                self._voiced_run >= self._barge_frames
                and self._periodic_run >= limits.BARGE_IN_PERIODIC_FRAMES
            )
        return self._voiced_run >= self._start_frames

    def _start(self) -> SpeechStarted:
        self.in_speech = True
        self._model_live = False
        self._peak_db = max(self._level_db(f) for f in self._ring)
        self._silent_run = 0
        self._last_voiced_end = self.position_ms
        start = self.position_ms - len(self._ring) * self.config.frame_ms
        started = SpeechStarted(start, b"".join(self._ring))
        self._ring.clear()
        return started

    @staticmethod
    def _level_db(frame: bytes) -> float:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        return 10.0 * math.log10(float(np.mean(samples * samples)) + 1.0)

    def _loud(self, frame: bytes) -> bool:
        """Inside a turn, a frame counts as speech only within END_DROP_DB of the turn's
        loudest frame. webrtcvad keeps calling the fading tail of a word voiced for ~100 ms
        (measured on the pytest-audioeval clips: its end of speech came 80-100 ms after the
        energy's); that tail is inaudible next to the speech, so the silence that ends a
        turn is counted from the real end of the words. In a noisy room the drop is never
        reached and webrtcvad decides alone."""
        level = self._level_db(frame)
        self._peak_db = max(self._peak_db, level)
        return level >= self._peak_db - limits.END_DROP_DB

    def _in_speech_frame(self, voiced: bool, speech: bytearray) -> list[VadEvent]:
        """One frame inside a turn (already appended to `speech`): pause, resume or stop."""
        events: list[VadEvent] = []
        if voiced:
            self._silent_run = 0
            self._last_voiced_end = self.position_ms
            if self.paused:
                self.paused = False
                events += self._flush(speech)
                events.append(SpeechResumed(self.position_ms))
            return events
        self._silent_run += 1
        if self._silent_run >= self._stop_frames:
            events += self._flush(speech)
            events.append(SpeechStopped(self._last_voiced_end))
            self._end_turn()
        elif self._pause_frames and self._silent_run == self._pause_frames:
            self.paused = True
            events += self._flush(speech)
            events.append(SpeechPaused(self._last_voiced_end))
        return events

    @staticmethod
    def _flush(speech: bytearray) -> list[VadEvent]:
        """The audio so far as one SpeechAudio (so events stay in stream order)."""
        if not speech:
            return []
        out: list[VadEvent] = [SpeechAudio(bytes(speech))]
        speech.clear()
        return out
