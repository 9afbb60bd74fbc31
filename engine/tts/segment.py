"""Text segmentation for speech: one streaming segmenter, used for whole texts and LLM deltas.

    seg = TextSegmenter()
    for delta in llm_deltas:
        for segment in seg.feed(delta):   # the segments completed by this delta
            speak(segment)
    for segment in seg.flush():           # end of text: the rest
        speak(segment)

`segment_text(text)` is exactly `TextSegmenter().feed(text) + flush()`, and any split of a text
into deltas gives the same segments (a cut is decided only from text already seen, and a
decision never changes when more text arrives). Rules:

- Words are whitespace-separated; whitespace is collapsed to one space in the segments.
- First segment (short, for first-audio latency): cut after the first word that ends a clause
  (`, ; :` a dash, or a sentence end) once the segment holds `FIRST_SEGMENT_MIN_WORDS` words;
  else after the first word at which it holds `FIRST_SEGMENT_SOFT_WORDS` words or
  `FIRST_SEGMENT_SOFT_CHARS` characters.
- Later segments: cut after the first sentence end (`. ! ? ; : …`, closing quotes or brackets
  allowed, or a line break) once the segment holds `SEGMENT_MIN_CHARS` characters; shorter
  sentences join the next one.
- Never longer than `FIRST_SEGMENT_MAX_CHARS` (first) / `SEGMENT_MAX_CHARS` (later): a longer
  run is cut at its last clause end past a third of the limit, else its last space, else (one
  enormous word) inside the word.
- An abbreviation ("Dr.", "e.g."), initials ("J.", "U.S.") or a decimal ("3.5") never ends a
  sentence; a "word" counts only if it has a letter or digit.
- A segment without any letter or digit is never emitted (nothing to say): punctuation joins
  the next segment, and punctuation left at the end is dropped.
Pure Python, no I/O.
"""

from __future__ import annotations

import re
from typing import Final

from engine.tts import limits

__all__ = ["TextSegmenter", "segment_text"]

_WORD: Final = re.compile(r"\S+")
_GAP: Final = re.compile(r"\s*")
_CLOSERS: Final = "\"')]}\u00bb\u201d\u2019"  # quotes and brackets that may follow an end
_SENTENCE_END: Final = ".!?;:…"
_CLAUSE_END: Final = ",;:-\u2013\u2014"  # and the hyphen, en dash and em dash
_INITIALS: Final = re.compile(r"(?:[a-z]\.)+")
_ABBREVIATIONS: Final = frozenset(
    {
        "mr.",
        "mrs.",
        "ms.",
        "dr.",
        "prof.",
        "st.",
        "vs.",
        "etc.",
        "e.g.",
        "i.e.",
        "no.",
        "jr.",
        "sr.",
    }
)


def _has_alnum(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _ends_sentence(word: str) -> bool:
    core = word.rstrip(_CLOSERS)
    if not core or core[-1] not in _SENTENCE_END:
        return False
    lower = core.lower()
    return lower not in _ABBREVIATIONS and not _INITIALS.fullmatch(lower)


def _ends_clause(word: str) -> bool:
    core = word.rstrip(_CLOSERS)
    return bool(core) and (core[-1] in _CLAUSE_END or _ends_sentence(word))


class TextSegmenter:
    """Streaming segmenter (module docstring has the rules). Not thread-safe; one per text."""

    def __init__(self) -> None:
        self._pending = ""
        self._first = True

    def feed(self, delta: str) -> list[str]:
        """Append `delta`; return the segments it completed (maybe none)."""
        self._pending += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of text: return the remaining segments; the segmenter is then empty."""
        out = self._drain(final=True)
        rest = " ".join(self._pending.split())
        self._pending = ""
        if _has_alnum(rest):
            out.append(rest)
            self._first = False
        return out

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while (cut := self._find_cut(final=final)) is not None:
            segment = " ".join(self._pending[:cut].split())
            self._pending = self._pending[cut:]
            if _has_alnum(segment):  # punctuation alone is dropped, never spoken
                out.append(segment)
                self._first = False
        return out

    def _find_cut(self, *, final: bool) -> int | None:
        """Index in `_pending` after which the next segment ends, or None (need more text).

        Scans word by word. A word's rule is applied once whitespace follows it (or at the
        final flush), and depends only on the words up to it, so the cut is split-invariant.
        """
        max_chars = limits.FIRST_SEGMENT_MAX_CHARS if self._first else limits.SEGMENT_MAX_CHARS
        text = self._pending
        ends: list[tuple[int, int, bool]] = []  # (end index, length so far, clause end?)
        length, words = -1, 0
        for match in _WORD.finditer(text):
            word = match.group()
            length += len(word) + 1
            if length > max_chars:
                return _cut_long(ends, match.start(), max_chars)
            complete = match.end() < len(text)
            if not complete and not final:
                return None
            words += _has_alnum(word)
            clause = _ends_clause(word)
            ends.append((match.end(), length, clause))
            if not complete:
                return None  # the last word at flush: the rest is one segment
            gap = _GAP.match(text, match.end())
            newline = gap is not None and "\n" in gap.group()
            if words and self._rule_cuts(word, newline, words, length, clause):
                return match.end()
        return None

    def _rule_cuts(self, word: str, newline: bool, words: int, length: int, clause: bool) -> bool:
        """Whether the segment ends after `word` (holding `words` words, `length` chars;
        `newline`: a line break follows it, so far)."""
        if self._first:
            if words >= limits.FIRST_SEGMENT_MIN_WORDS and (clause or newline):
                return True
            return (
                words >= limits.FIRST_SEGMENT_SOFT_WORDS
                or length >= limits.FIRST_SEGMENT_SOFT_CHARS
            )
        return (_ends_sentence(word) or newline) and length >= limits.SEGMENT_MIN_CHARS


def _cut_long(ends: list[tuple[int, int, bool]], word_start: int, max_chars: int) -> int:
    """A run past `max_chars`: cut at its last clause end past a third, else its last space."""
    for end, length, clause in reversed(ends):
        if clause and length > max_chars // 3:
            return end
    if ends:
        return ends[-1][0]
    return word_start + max_chars  # one enormous word: cut inside it


def segment_text(text: str) -> list[str]:
    """Split a whole `text` into speech segments; equals feeding it at once, then flushing."""
    segmenter = TextSegmenter()
    return segmenter.feed(text) + segmenter.flush()
