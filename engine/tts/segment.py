"""Text segmentation: sentence-sized pieces so synthesis streams and the first audio comes early.

`segment_text(text) -> list[str]` splits at sentence ends (. ! ? ; and line breaks), merges
fragments shorter than `SEGMENT_MIN_CHARS` into a neighbour, and splits sentences longer than
`SEGMENT_MAX_CHARS` (the first segment: `FIRST_SEGMENT_MAX_CHARS`) at the last comma, else the
last space, before the limit. Whitespace is collapsed; the concatenation of the segments keeps
every word in order. Pure function, no I/O.
"""

from __future__ import annotations

import re

from engine.tts import limits

__all__ = ["segment_text"]

# A sentence end: terminal punctuation (and closing quotes/brackets) followed by a space, unless
# it follows a common abbreviation or a single capital letter (initials).
_SENTENCE_END = re.compile(r"(?<=[.!?;:…])[\"')\]]*\s+|\n+")
_ABBREVIATIONS = frozenset(
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


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.start()]
        last_word = candidate.rsplit(maxsplit=1)[-1].lower() if candidate.strip() else ""
        if last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last_word):
            continue
        pieces.append(text[start : match.end()])
        start = match.end()
    pieces.append(text[start:])
    return [" ".join(p.split()) for p in pieces if p.strip()]


def _split_long(sentence: str, max_chars: int) -> tuple[str, str]:
    """Split at the last comma (else space) at or before max_chars; (head, rest)."""
    window = sentence[: max_chars + 1]
    cut = max(window.rfind(", "), window.rfind("; "))
    if cut > max_chars // 3:
        return sentence[: cut + 1].strip(), sentence[cut + 1 :].strip()
    cut = window.rfind(" ")
    if cut > 0:
        return sentence[:cut].strip(), sentence[cut:].strip()
    return sentence[:max_chars], sentence[max_chars:].strip()  # one enormous "word"


def segment_text(text: str) -> list[str]:
    """Split `text` into sentence-sized segments (see the module docstring)."""
    merged: list[str] = []
    for sentence in _sentences(text):
        if merged and (
            len(merged[-1]) < limits.SEGMENT_MIN_CHARS or len(sentence) < limits.SEGMENT_MIN_CHARS
        ):
            if len(merged[-1]) + 1 + len(sentence) <= limits.SEGMENT_MAX_CHARS:
                merged[-1] = f"{merged[-1]} {sentence}"
                continue
        merged.append(sentence)
    out: list[str] = []
    queue = list(reversed(merged))
    while queue:
        sentence = queue.pop()
        max_chars = limits.FIRST_SEGMENT_MAX_CHARS if not out else limits.SEGMENT_MAX_CHARS
        if len(sentence) > max_chars:
            head, rest = _split_long(sentence, max_chars)
            out.append(head)
            if rest:
                queue.append(rest)
        else:
            out.append(sentence)
    return out
