"""The short encoder window (issue 15): guards, fallback, and WER against the full window.

Real recorded speech: the pytest-audioeval clips, alone and joined in pairs (0.2 s apart).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from stt_helpers import AUDIOEVAL_EN, wer

from engine.audio import decode_pcm16
from engine.stt import STT, TINY_EN_STT_MODEL
from engine.stt.whisper import is_repetitive, token_budget

pytestmark = [pytest.mark.slow]
session_loop = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize(
    "text",
    [
        "Turn it off. Turn it off. Turn it off.",
        "Hola mundos, Hola mundos, Hola mundos",
        "i i i i i i",
        "The quick brown fox jumps over the lazy dog. The quick brown fox jumps",
        "1, 2, 3, 4, 5, 6, 7, 8, 9, 10. 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
        "你好世界你好世界你好世界你好世界你好世界你好世界",
    ],
)
def test_decoder_loops_are_repetitive(text: str) -> None:
    assert is_repetitive(text)


@pytest.mark.parametrize(
    "text",
    [
        "One, two, three, four, five, six, seven, eight, nine, ten.",
        "The quick brown fox jumps over the lazy dog.",
        "Hello world.",
        "No, no. I think I know what you mean, and I think so too.",
        "Could you turn the kitchen lights off, please? It is getting late.",
        "天地玄黄宇宙洪荒日月盈昃辰宿列张。",
        "",
    ],
)
def test_speech_is_not_repetitive(text: str) -> None:
    assert not is_repetitive(text)


def test_token_budget_grows_with_duration() -> None:
    assert token_budget(0.5) < token_budget(3.0) < token_budget(10.0)
    assert token_budget(3.0) >= 30  # "1, 2, ..., 10." in 3 s is 21 tokens


def _utterances() -> list[tuple[np.ndarray, str]]:
    """The English clips and each pair of them: 6 utterances of 1.1-7.6 s."""
    singles = [
        (decode_pcm16(w.read_bytes()), w.with_suffix(".txt").read_text(encoding="utf-8"))
        for w in sorted(AUDIOEVAL_EN.glob("*.wav"))
    ]
    gap = np.zeros(3200, dtype=np.int16)
    pairs = [
        (np.concatenate([a1, gap, a2]), f"{r1} {r2}")
        for (a1, r1), (a2, r2) in itertools.combinations(singles, 2)
    ]
    return singles + pairs


async def _wer_and_decodes(stt: STT) -> tuple[float, list[str], dict[str, int]]:
    await stt.start()
    try:
        refs, hyps = [], []
        async with stt.open_session() as session:
            for pcm, ref in _utterances():
                refs.append(ref)
                hyps.append(await session.transcribe(pcm.tobytes(), language="en"))
        decodes = stt.health()["decodes"]
        assert isinstance(decodes, dict)
        return wer(refs, hyps), hyps, decodes
    finally:
        await stt.stop()


# Measured (bench/bench_voice.py, the clips and their 6 ordered pairs): base 0.000 on both
# windows; tiny.en 0.086 full against 0.114 short, every difference in how it groups the counted digits
# ("1-2-345-67-8-9-10" against "1-2-3-4-5-6-7-8-9-10", and once the other way round). On an
# AMD EPYC with AVX2 only (CTranslate2 takes other kernels there) tiny.en's short window gave
# 0.162 against 0.086, again only digit grouping ("1-234-567-8910"): hence 0.08 for tiny.en.
ALLOWED_WER_INCREASE = {"Systran/faster-whisper-base": 0.0, TINY_EN_STT_MODEL: 0.08}


@session_loop
@pytest.mark.parametrize("model_id", sorted(ALLOWED_WER_INCREASE))
async def test_short_window_wer_against_the_full_window(stt_home: object, model_id: str) -> None:
    full_wer, full_hyps, full_decodes = await _wer_and_decodes(
        STT(model_id, num_threads=2, encoder_window="full")
    )
    short_wer, short_hyps, short_decodes = await _wer_and_decodes(
        STT(model_id, num_threads=2, encoder_window="auto")
    )
    assert set(full_decodes) == {"full"}
    # the short window did the work (a guard may send one or two to the full window)
    assert short_decodes.get("short", 0) >= len(_utterances()) - 2, short_decodes
    assert short_wer <= full_wer + ALLOWED_WER_INCREASE[model_id], list(
        zip(full_hyps, short_hyps, strict=True)
    )


@session_loop
async def test_a_repetitive_transcript_falls_back_to_the_full_window(stt_base: STT) -> None:
    """Speech that really repeats trips the repetition guard: the full window decides, the
    fallback is counted, and the words are right."""
    pcm = decode_pcm16((AUDIOEVAL_EN / "hello_world.wav").read_bytes())
    gap = np.zeros(3200, dtype=np.int16)
    said = np.concatenate([pcm, gap, pcm, gap, pcm])
    before = stt_base.health()["decodes"]
    assert isinstance(before, dict)
    async with stt_base.open_session() as session:
        text = await session.transcribe(said.tobytes(), language="en")
    after = stt_base.health()["decodes"]
    assert isinstance(after, dict)
    fallbacks = {k: after[k] - before.get(k, 0) for k in after if k.startswith("fallback_")}
    assert sum(fallbacks.values()) == 1, (fallbacks, text)
    assert wer(["Hello world. Hello world. Hello world."], [text]) <= 0.34, text
