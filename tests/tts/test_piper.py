"""The offline Piper voice behind the TTS surface: intelligible, proved by an STT round trip."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import jiwer
import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf
from tts_helpers import prompt_wav

from engine.errors import InvalidRequestError
from engine.stt import STT
from engine.tts import TTS

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SENTENCES = [
    "The library opens at nine in the morning.",
    "Please bring me a glass of cold water.",
    "It is going to rain later this afternoon.",
]
# Measured here: WER 0.0 with Whisper base; the bound allows a word or two of drift.
MAX_WER = 0.15


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def piper_tts(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TTS]:
    mp = pytest.MonkeyPatch()
    mp.setenv("BITVOICE_HOME", str(tmp_path_factory.mktemp("piper-home")))
    mp.setenv("BITVOICE_TTS_BACKEND", "auto")  # no pocket weights in this home: Piper
    mp.setenv("BITVOICE_TTS_THREADS", "2")
    tts = TTS()
    await tts.start()
    yield tts
    await tts.stop()
    mp.undo()


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c == " ").split())


async def test_piper_round_trip_through_whisper(piper_tts: TTS) -> None:
    assert piper_tts.backend_name == "piper"
    assert await piper_tts.list_voices() == ["joe"]
    stt = STT(num_threads=2)
    await stt.start()
    try:
        hyps = []
        async with piper_tts.open_session() as tts_session, stt.open_session() as stt_session:
            for sentence in SENTENCES:
                pcm = await tts_session.collect(sentence)
                samples = np.frombuffer(pcm, dtype="<i2")
                assert samples.size > 24_000  # over a second of 24 kHz speech
                bio = io.BytesIO()
                sf.write(bio, samples, 24_000, format="WAV", subtype="PCM_16")
                hyps.append(await stt_session.transcribe(bio.getvalue(), language="en"))
    finally:
        await stt.stop()
    error = jiwer.wer([_norm(s) for s in SENTENCES], [_norm(h) for h in hyps])
    assert error <= MAX_WER, hyps


async def test_piper_registration_says_cloning_needs_pocket_weights(
    piper_tts: TTS, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequestError, match="pocket-tts weights"):
        await piper_tts.register_voice("me", prompt_wav())
    assert await piper_tts.list_voices() == ["joe"]
