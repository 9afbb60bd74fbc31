"""Barge-in: is the user interrupting the reply, or only saying "mm-hmm"?

Pure and synchronous (no I/O, no asyncio): part of the protocol core. When speech starts over a
playing reply (the VAD already demanded pitch and a level above the echo guard: see
`realtime.vad.limits`), the protocol holds the reply at once (`bitvoice.audio.hold`: the client
stops playing within a frame, so a real interruption is heard to cut in), then decides:

- the speech goes on past `limits.BACKCHANNEL_MAX_MS`: a real barge-in; the reply is dropped
  (`bitvoice.audio.flush`) and the user's turn is answered, as before;
- the speaker pauses (180 ms of silence) sooner: the item is transcribed at once; a backchannel ("mm-hmm",
  "yeah", "okay", or nothing Whisper could read) releases the reply
  (`bitvoice.audio.release`) where it stopped, and the words go into the history unanswered
  (`bitvoice.backchannel`); anything else ("stop", "wait, no") is a barge-in.

OpenAI's semantic VAD and LiveKit's turn detector treat backchannels the same way: the reply
goes on and the acknowledgement is not answered.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from realtime import limits

__all__ = ["BargeIn", "Verdict", "is_backchannel"]

# Whisper's spellings of short acknowledgements (lower case, hyphens and punctuation removed).
_BACKCHANNEL_WORDS = frozenset(
    "mm mmm hm hmm hmmm mhm mmhmm mmhm mhmm umhum uhhuh uhuh uh huh um ah aha oh ooh "
    "yeah yea yep yes yup ok okay kay right sure alright allright cool nice wow great "
    "i see got it gotcha really true indeed "
    # laughter over the reply: Whisper writes it "Ha ha." (and reads a short "uh-huh" over
    # the echo as that, 7 of 54 tries in bench/bench_echo.py's rooms)
    "ha haha hah heh hehe "
    # thanks said over the reply acknowledges it; and "Thank you." and "you" are what Whisper
    # makes of a breath or the echo's residue more often than of anything else (an echo-only
    # reply was cut by a "Thank you." in bench/bench_echo.py's loudest reverberant room)
    "thank thanks you".split()
)
_WORD = re.compile(r"[a-z']+")


def is_backchannel(text: str) -> bool:
    """True for a transcript that only acknowledges ("Mm-hmm.", "Yeah, okay.", "I see"),
    and for an empty one (no words: a noise Whisper could not read)."""
    words = _WORD.findall(text.lower().replace("-", ""))
    return len(words) <= limits.BACKCHANNEL_MAX_WORDS and all(
        w in _BACKCHANNEL_WORDS for w in words
    )


class Verdict(enum.Enum):
    WAIT = "wait"  # not decided yet
    TRANSCRIBE = "transcribe"  # the speaker paused: transcribe the item to decide
    INTERRUPT = "interrupt"  # a real barge-in: drop the reply
    BACKCHANNEL = "backchannel"  # let the reply play on; keep the words unanswered


@dataclass(slots=True)
class BargeIn:
    """Speech `item_id` started over the reply of `turn`, which is held meanwhile."""

    item_id: str
    turn: int
    response_id: str
    offset: int  # the reply sample the client stopped at
    speech_ms: float = 0.0  # item audio after the start, while not paused
    paused: bool = False
    asked: int = 0  # transcriptions asked for; only the newest one's answer counts
    _sent: bool = False  # asked already in the current pause

    def audio(self, ms: float) -> Verdict:
        if self.paused:
            return Verdict.WAIT
        self.speech_ms += ms
        return Verdict.INTERRUPT if self.speech_ms >= limits.BACKCHANNEL_MAX_MS else Verdict.WAIT

    def pause(self) -> Verdict:
        self.paused = True
        self._sent = False
        return Verdict.WAIT

    def quiet(self, silent_ms: int) -> Verdict:
        """The speaker has been silent `silent_ms` since the pause: once that is
        `limits.BARGE_IN_QUIET_MS` (a word's inner gaps are shorter), transcribe, once."""
        if not self.paused or self._sent or silent_ms < limits.BARGE_IN_QUIET_MS:
            return Verdict.WAIT
        self._sent = True
        self.asked += 1
        return Verdict.TRANSCRIBE

    def resume(self) -> Verdict:
        self.paused = False
        self.asked += 1  # a transcript of the shorter item no longer decides
        return Verdict.WAIT

    def transcript(self, asked: int, text: str) -> Verdict:
        if asked != self.asked or not self.paused:
            return Verdict.WAIT
        return Verdict.BACKCHANNEL if is_backchannel(text) else Verdict.INTERRUPT
