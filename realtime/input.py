"""The user's side of a conversation: microphone rate limit, VAD, the item being spoken.

Pure and synchronous (no I/O, no asyncio): part of the protocol core. `UserInput.feed(pcm,
now)` runs the token-bucket rate limit and the VAD and returns typed `InputEvent`s; the
protocol turns them into wire messages and pipeline outputs. It owns the audio of the item
being spoken (`ItemEnded.audio` hands it over at the end of the turn) and the turn-end policy:

- the VAD ends a turn after `silence_duration_ms` of silence;
- at a shorter pause (`limits.SPECULATIVE_PAUSE_MS`) it reports `ItemPaused`, so the server
  can start the turn's work before the end is confirmed, and `ItemResumed` if speech goes on;
- once the transcript of the paused item reads as a complete sentence or question
  (`transcript_ready`), `limits.COMPLETE_TURN_SILENCE_MS` of silence is enough to end it
  (when that is set: it is off by default, see `realtime.limits`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from realtime import limits
from realtime import messages as m
from realtime.echo import EchoCanceller, PlayedReference
from realtime.vad import (
    SpeechAudio,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadConfig,
    VadEvent,
    VadSegmenter,
    load_speech_model,
)

__all__ = [
    "InputError",
    "InputEvent",
    "ItemAudio",
    "ItemEnded",
    "ItemPaused",
    "ItemResumed",
    "ItemStarted",
    "UserInput",
    "looks_complete",
]


@dataclass(frozen=True, slots=True)
class ItemStarted:
    item_id: str
    start_ms: int


@dataclass(frozen=True, slots=True)
class ItemAudio:
    item_id: str
    audio: bytes
    until_stop_ms: int  # the least audio before the VAD can end the turn (0: it may now)


@dataclass(frozen=True, slots=True)
class ItemPaused:
    item_id: str


@dataclass(frozen=True, slots=True)
class ItemResumed:
    item_id: str


@dataclass(frozen=True, slots=True)
class ItemEnded:
    item_id: str
    end_ms: int
    audio: bytes


@dataclass(frozen=True, slots=True)
class InputError:
    code: str
    message: str


InputEvent = ItemStarted | ItemAudio | ItemPaused | ItemResumed | ItemEnded | InputError

# Words after which a sentence is rarely over, whatever punctuation Whisper put after them.
_CONTINUATIONS = frozenset(
    "a an the and or but so because if when while than that which who to of for in on at by "
    "with from about as into like my your our their his her its is are was were be "
    "um uh er".split()
)
_TRAILING = re.compile(r"[\"')\]\s]+$")


def looks_complete(text: str) -> bool:
    """True when a transcript reads as a finished sentence or question.

    Whisper punctuates what it hears; a trailing '.', '!' or '?' (not an ellipsis) after a
    word that does not call for more is good evidence that the speaker finished.
    """
    t = _TRAILING.sub("", text)
    if not t or t.endswith("...") or t.endswith("…") or t[-1] not in ".!?":
        return False
    words = re.findall(r"[A-Za-z']+", t.lower())
    return bool(words) and words[-1] not in _CONTINUATIONS


class UserInput:
    """One connection's microphone input (single consumer; see the module docstring)."""

    def __init__(
        self, turn_detection: m.TurnDetection | None, *, now: float, echo_cancellation: bool = True
    ) -> None:
        self._items = 0
        # The reply's echo is taken out of the microphone audio before anything hears it
        # (VAD, transcripts); the canceller is made on the first reply audio.
        self.echo_cancellation = echo_cancellation
        self._reference = PlayedReference(now)
        self._canceller: EchoCanceller | None = None
        self._bucket = limits.AUDIO_BURST_S
        self._bucket_at = now
        self._last_rate_error = -1e18
        self.audio = bytearray()  # the current item's audio
        self.item_id: str | None = None
        self._complete_hint = False
        self._vad: VadSegmenter | None = None
        self.configure(turn_detection)

    def new_item_id(self) -> str:
        self._items += 1
        return f"item_{self._items}"

    @property
    def vad_enabled(self) -> bool:
        return self._vad is not None

    def configure(self, td: m.TurnDetection | None) -> bool:
        """Apply new turn detection; True when a half-heard VAD item had to be dropped."""
        self._vad = None
        if td is not None:
            self._vad = VadSegmenter(
                VadConfig(
                    aggressiveness=td.aggressiveness,
                    frame_ms=td.frame_ms,
                    prefix_padding_ms=td.prefix_padding_ms,
                    silence_duration_ms=td.silence_duration_ms,
                    pause_ms=min(limits.SPECULATIVE_PAUSE_MS, td.silence_duration_ms),
                ),
                speech_model=load_speech_model(),
            )
        dropped = self._vad is not None and self.item_id is not None
        if dropped:
            self.clear()
        return dropped

    def clear(self) -> None:
        """Forget the item being spoken (and the VAD's state)."""
        self.audio = bytearray()
        self.item_id = None
        self._complete_hint = False
        if self._vad is not None:
            self._vad.reset()

    # ---- echo --------------------------------------------------------------------------------

    def reply_played(self, pcm: bytes, start: float) -> None:
        """Reply audio (PCM16, 24 kHz) that the client starts playing at server time `start`."""
        if self.echo_cancellation:
            self._reference.play(np.frombuffer(pcm, dtype="<i2").astype(np.float32), start)
            if self._canceller is None:
                self._canceller = EchoCanceller()

    def reply_stopped(self, at: float) -> None:
        """The client stops playing reply audio at server time `at` (flush or hold)."""
        self._reference.stop(at)

    def clean(self, pcm: bytes, now: float) -> bytes:
        """Microphone audio (PCM16, 16 kHz) that arrived at `now`, with the reply's echo taken
        out (as is while echo cancellation is off or no reply has played yet). The result can
        be up to 10 ms shorter or longer than `pcm` (the canceller works in 10 ms frames)."""
        reference = self._reference.capture(len(pcm) // 2, now)
        if self._canceller is None or not self.echo_cancellation:
            return pcm
        cleaned = self._canceller.process(pcm, reference)
        if self._vad is not None:
            self._vad.echo_guard_db = self._canceller.echo_guard_db
        return cleaned

    def set_replying(self, replying: bool) -> None:
        """While the assistant speaks, a speech start is a barge-in and needs more evidence."""
        if self._vad is not None:
            self._vad.barge_in = replying

    # ---- rate limit ------------------------------------------------------------------------

    def admit(self, pcm: bytes, now: float) -> tuple[bool, InputError | None]:
        """Token bucket in seconds of audio: (accepted, error). Refused audio gets an error
        at most once per AUDIO_RATE_ERROR_INTERVAL_S, so the error itself cannot flood."""
        self._bucket = min(
            limits.AUDIO_BURST_S,
            self._bucket + (now - self._bucket_at) * limits.AUDIO_RATE_FACTOR,
        )
        self._bucket_at = now
        seconds = len(pcm) / limits.INPUT_BYTES_PER_SECOND
        if seconds <= self._bucket:
            self._bucket -= seconds
            return True, None
        if now - self._last_rate_error < limits.AUDIO_RATE_ERROR_INTERVAL_S:
            return False, None
        self._last_rate_error = now
        msg = "audio arrives faster than real time; the excess was dropped"
        return False, InputError("audio_rate_exceeded", msg)

    # ---- manual mode -----------------------------------------------------------------------

    def append_manual(self, pcm: bytes) -> list[InputEvent]:
        """Buffer audio without VAD (the client commits); it still streams to STT."""
        if len(self.audio) + len(pcm) > limits.MAX_TURN_AUDIO_S * limits.INPUT_BYTES_PER_SECOND:
            msg = f"a turn is limited to {limits.MAX_TURN_AUDIO_S:.0f} s; commit first"
            return [InputError("invalid_audio", msg)]
        if self.item_id is None:
            self.item_id = self.new_item_id()
        self.audio += pcm
        return [ItemAudio(self.item_id, pcm, 0)]

    def end_item(self) -> ItemEnded | None:
        """End the item now (a client commit, or the turn-length cap): hand its audio over."""
        if self.item_id is None:
            return None
        end_ms = 0
        if self._vad is not None:
            self._vad.reset()
            end_ms = self._vad.position_ms
        ended = ItemEnded(self.item_id, end_ms, bytes(self.audio))
        self.audio = bytearray()
        self.item_id = None
        self._complete_hint = False
        return ended

    # ---- VAD mode --------------------------------------------------------------------------

    def feed_vad(self, pcm: bytes) -> list[InputEvent]:
        """Run the VAD over microphone audio; the events it caused, in order."""
        assert self._vad is not None
        out: list[InputEvent] = []
        for ev in self._vad.feed(pcm):
            out += self._on_vad(ev)
        out += self._maybe_end_early()
        return out

    def _on_vad(self, ev: VadEvent) -> list[InputEvent]:
        assert self._vad is not None
        if isinstance(ev, SpeechStarted):
            self.item_id = self.new_item_id()
            self.audio = bytearray(ev.audio)
            self._complete_hint = False
            return [ItemStarted(self.item_id, ev.start_ms), self._item_audio(ev.audio)]
        if self.item_id is None:
            return []
        if isinstance(ev, SpeechAudio):
            self.audio += ev.audio
            out: list[InputEvent] = [self._item_audio(ev.audio)]
            if len(self.audio) >= limits.MAX_TURN_AUDIO_S * limits.INPUT_BYTES_PER_SECOND:
                ended = self.end_item()  # a turn that never pauses is cut here and answered
                assert ended is not None
                out.append(ended)
            return out
        if isinstance(ev, SpeechPaused):
            return [ItemPaused(self.item_id)]
        if isinstance(ev, SpeechResumed):
            self._complete_hint = False
            return [ItemResumed(self.item_id)]
        item, audio = self.item_id, bytes(self.audio)
        self.audio, self.item_id, self._complete_hint = bytearray(), None, False
        return [ItemEnded(item, ev.end_ms, audio)]

    def _item_audio(self, pcm: bytes) -> ItemAudio:
        assert self.item_id is not None and self._vad is not None
        until = self._vad.until_stop_ms
        return ItemAudio(self.item_id, pcm, 0 if until is None else until)

    def transcript_ready(self, item_id: str, text: str) -> list[InputEvent]:
        """The transcript of the paused item `item_id`: a complete-looking one lets the turn
        end after COMPLETE_TURN_SILENCE_MS instead of the full silence."""
        if item_id != self.item_id or self._vad is None or not self._vad.paused:
            return []
        self._complete_hint = looks_complete(text)
        return self._maybe_end_early()

    def _maybe_end_early(self) -> list[InputEvent]:
        vad = self._vad
        shorter = limits.COMPLETE_TURN_SILENCE_MS
        if shorter is None or not self._complete_hint or vad is None or not vad.paused:
            return []
        if vad.silent_ms < shorter:
            return []
        out: list[InputEvent] = []
        for ev in vad.stop_now():
            out += self._on_vad(ev)
        return out

    @property
    def silent_ms(self) -> int:
        """While an item is being spoken: the silence since its last voiced frame, in ms."""
        return self._vad.silent_ms if self._vad is not None else 0

    @property
    def position_ms(self) -> int:
        return self._vad.position_ms if self._vad is not None else 0
