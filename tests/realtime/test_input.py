"""The user-input part of the protocol core: when a transcript reads as a finished turn."""

from __future__ import annotations

import pytest

from realtime.input import looks_complete


@pytest.mark.parametrize(
    "text",
    ["What time is it?", "Turn on the lights.", "Thanks!", 'He said "yes."', "Is it raining? "],
)
def test_finished_sentences_and_questions_look_complete(text: str) -> None:
    assert looks_complete(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "What time is the",
        "I want to go to the.",  # Whisper's period after a word that calls for more
        "Well, I think that...",
        "So I was thinking…",
        "and then",
        "Because.",
        "um.",
    ],
)
def test_fragments_do_not_look_complete(text: str) -> None:
    assert not looks_complete(text)
