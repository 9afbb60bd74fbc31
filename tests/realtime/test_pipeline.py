"""The pipeline's pure parts: the sentence chunker that feeds TTS."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from realtime import limits
from realtime.pipeline import SentenceChunker


def chunk(deltas: list[str]) -> list[str]:
    c = SentenceChunker()
    out = [p for d in deltas for p in c.feed(d)]
    return out + c.flush()


def test_sentences_are_cut_at_their_end_and_short_ones_are_joined() -> None:
    text = "Hi. Paris is the capital of France. It is big! Is it old? Yes"
    assert chunk([text[i : i + 3] for i in range(0, len(text), 3)]) == [
        "Hi. Paris is the capital of France.",
        "It is big! Is it old?",
        "Yes",
    ]


def test_a_long_first_sentence_is_cut_early_so_the_first_audio_comes_soon() -> None:
    words = " ".join(f"word{i}" for i in range(40)) + ". Then a second long sentence follows."
    pieces = chunk([w + " " for w in words.split()])
    assert len(pieces[0]) <= limits.FIRST_SEGMENT_MAX_CHARS
    assert words.startswith(pieces[0] + " ")  # cut between words
    assert all(len(p) <= limits.MAX_SEGMENT_CHARS for p in pieces)
    # later pieces are whole sentences again
    assert pieces[-1] == "Then a second long sentence follows."


def test_a_first_sentence_that_arrives_whole_is_cut_too() -> None:
    long = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron."
    pieces = chunk([long + " ", "Next one is here. "])
    assert len(pieces[0]) <= limits.FIRST_SEGMENT_MAX_CHARS
    assert " ".join(pieces[:2]) == long
    assert pieces[2] == "Next one is here."


@given(st.lists(st.text(alphabet="ab ,.!?\n", max_size=30), max_size=30))
def test_no_text_is_lost_or_reordered(deltas: list[str]) -> None:
    pieces = chunk(deltas)
    assert "".join("".join(deltas).split()) == "".join("".join(pieces).split())
    assert all(p and p == p.strip() for p in pieces)
    assert all(len(p) <= limits.MAX_SEGMENT_CHARS for p in pieces)
