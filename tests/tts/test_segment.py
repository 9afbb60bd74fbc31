"""engine.tts.segment: one streaming segmenter; first segment short, no words lost, split-proof."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.tts import TextSegmenter, limits, segment_text


def _feed_all(deltas: list[str]) -> list[str]:
    segmenter = TextSegmenter()
    out: list[str] = []
    for delta in deltas:
        out += segmenter.feed(delta)
    return out + segmenter.flush()


def test_sentences_split_and_short_ones_join_the_next() -> None:
    text = "Hello there friend. How are you today? I am fine! Ok. Thanks for asking, really."
    assert segment_text(text) == [
        "Hello there friend.",  # first: a sentence end once it has 3 words
        "How are you today?",
        "I am fine! Ok.",  # "I am fine!" is under SEGMENT_MIN_CHARS: it joins the next
        "Thanks for asking, really.",
    ]


def test_first_segment_ends_at_the_first_clause_with_three_words() -> None:
    assert segment_text("Well, I think that, in the end, it works. Yes it does.") == [
        "Well, I think that,",
        "in the end, it works.",
        "Yes it does.",
    ]


def test_first_segment_without_a_clause_is_cut_at_the_soft_word_or_char_limit() -> None:
    words = segment_text("When the morning came over the hills of the valley we walked on.")
    text = "When the morning came over the hills"
    assert words[0] == " ".join(text.split()[: limits.FIRST_SEGMENT_SOFT_WORDS])
    chars = segment_text("Extraordinarily complicated circumstances nevertheless prevailed today.")
    assert chars[0] == "Extraordinarily complicated circumstances"  # 41 chars, 3 words
    assert len(chars[0]) >= limits.FIRST_SEGMENT_SOFT_CHARS


def test_abbreviations_initials_and_decimals_do_not_end_sentences() -> None:
    text = "So we began. Dr. Smith met J. R. Tolkien and the U.S. team at 3.5 p.m. today. Then bye."
    assert segment_text(text) == [
        "So we began.",
        "Dr. Smith met J. R. Tolkien and the U.S. team at 3.5 p.m. today.",
        "Then bye.",
    ]


def test_punctuation_alone_is_never_a_segment() -> None:
    assert segment_text("...") == []
    assert segment_text("-- !! ?") == []
    assert segment_text("One two three. ... !") == ["One two three."]
    assert segment_text("One two three, ... and four five six seven. ...") == [
        "One two three,",
        "... and four five six seven.",
    ]


def test_long_runs_are_cut_at_a_clause_else_a_space() -> None:
    text = "Start with these words. " + "and the travellers walked along the river, " * 10
    segments = segment_text(text)
    assert all(len(s) <= limits.SEGMENT_MAX_CHARS for s in segments)
    assert all(s.endswith(",") for s in segments[1:-1])  # cut at the last comma in the window
    assert segment_text("x" * 300) == ["x" * limits.FIRST_SEGMENT_MAX_CHARS, "x" * 210]


def test_empty_and_blank_text() -> None:
    assert segment_text("") == []
    assert segment_text("  \n\t ") == []
    assert TextSegmenter().flush() == []


def test_line_breaks_end_segments_even_when_they_arrive_late() -> None:
    assert _feed_all(["One two three", " ", "\n", "four five six seven eight."]) == [
        "One two three",
        "four five six seven eight.",
    ]


def test_token_stream_cuts_as_soon_as_the_clause_is_complete() -> None:
    segmenter = TextSegmenter()
    assert segmenter.feed("Sure, I can") == []
    assert segmenter.feed(" help,") == []  # the cut waits for the space after the word
    assert segmenter.feed(" ") == ["Sure, I can help,"]
    assert segmenter.feed("what do you need?") == []
    assert segmenter.flush() == ["what do you need?"]


_ALPHABET = st.sampled_from([*"abc de.,!?;\n", "Dr. ", "3.5", "J. ", " - ", "xyzxyzxyz"])


def _letters(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


@given(st.lists(_ALPHABET, max_size=300), st.data())
def test_any_split_into_deltas_gives_the_same_segments(
    parts: list[str], data: st.DataObject
) -> None:
    text = "".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    deltas = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    segments = segment_text(text)
    assert _feed_all(deltas) == segments
    assert _letters(" ".join(segments)) == _letters(text)  # no letter lost or reordered
    assert all(_letters(s) and s == " ".join(s.split()) for s in segments)
    assert all(len(s) <= limits.SEGMENT_MAX_CHARS for s in segments)
    if segments:
        assert len(segments[0]) <= limits.FIRST_SEGMENT_MAX_CHARS


@pytest.mark.parametrize("text", ["Hello world. How are you?", "a, b; c: d - e. f! g? h"])
def test_character_by_character_feed_equals_one_shot(text: str) -> None:
    assert _feed_all(list(text)) == segment_text(text)
