"""engine.tts.segment: sentence-sized pieces, first one short, no words lost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.tts import limits, segment_text


def test_sentences_split_and_short_ones_merge() -> None:
    text = "Hello there. How are you today? I am fine! Ok. Thanks for asking, really."
    assert segment_text(text) == [
        "Hello there.",
        "How are you today? I am fine! Ok.",  # fragments under SEGMENT_MIN_CHARS merge
        "Thanks for asking, really.",
    ]


def test_abbreviations_and_initials_do_not_end_sentences() -> None:
    assert segment_text("Dr. Smith met J. R. Tolkien at noon. Then they left.") == [
        "Dr. Smith met J. R. Tolkien at noon.",
        "Then they left.",
    ]


def test_long_first_sentence_is_cut_early_at_a_comma() -> None:
    head = "When the morning came over the hills of the valley,"
    text = head + " the travellers walked along the river" * 8 + "."
    segments = segment_text(text)
    assert segments[0] == head
    assert all(len(s) <= limits.SEGMENT_MAX_CHARS for s in segments)


def test_empty_and_blank_text() -> None:
    assert segment_text("") == []
    assert segment_text("  \n\t ") == []


@given(st.text(alphabet=st.sampled_from("abc de.,!?\n"), max_size=600))
def test_no_words_are_lost_and_limits_hold(text: str) -> None:
    segments = segment_text(text)
    assert " ".join(segments).split() == text.split()
    assert all(segments) and all(len(s) <= limits.SEGMENT_MAX_CHARS for s in segments)
    if segments:
        assert len(segments[0]) <= limits.FIRST_SEGMENT_MAX_CHARS
