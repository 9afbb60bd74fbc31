"""STT on real speech with the real Whisper base weights from the registry packages."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from stt_helpers import AUDIOEVAL_EN, espeak_wav, wav_bytes, wer

from engine.audio import decode_audio, decode_pcm16
from engine.errors import ComponentLifecycleError, InvalidRequestError, SessionClosedError
from engine.stt import STT
from engine.stt.core import Decoded

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

ESPEAK_SENTENCES = [
    "The weather is lovely today.",
    "Please open the window in the kitchen.",
    "My favourite colour is green.",
]
# Whisper base meets these here (measured: 0.0 on the audioeval clips, 0.0-0.07 on espeak-ng);
# the bounds leave room for int8 and thread-count noise, not for a broken pipeline.
AUDIOEVAL_MAX_WER = 0.10
ESPEAK_MAX_WER = 0.20


async def test_wer_on_pytest_audioeval_samples(stt_base: STT) -> None:
    refs, hyps = [], []
    async with stt_base.open_session() as session:
        for wav in sorted(AUDIOEVAL_EN.glob("*.wav")):
            refs.append(wav.with_suffix(".txt").read_text(encoding="utf-8"))
            hyps.append(await session.transcribe(wav.read_bytes(), language="en"))
    assert len(refs) >= 3
    assert wer(refs, hyps) <= AUDIOEVAL_MAX_WER, list(zip(refs, hyps, strict=True))


async def test_wer_on_espeak_speech_generated_now(stt_base: STT) -> None:
    async with stt_base.open_session() as session:
        hyps = [await session.transcribe(espeak_wav(s)) for s in ESPEAK_SENTENCES]
    assert wer(ESPEAK_SENTENCES, hyps) <= ESPEAK_MAX_WER, hyps


async def test_every_input_format_gives_the_same_words(stt_base: STT) -> None:
    source = decode_audio(espeak_wav("Good morning, my friend."), target_rate=48_000)
    stereo48 = np.stack([source, source], axis=1)
    formats = {
        "raw pcm16 16k": decode_pcm16(espeak_wav("Good morning, my friend.")).tobytes(),
        "wav 8-bit 16k": wav_bytes(
            decode_audio(wav_bytes(source, 48_000, "FLOAT")), 16_000, "PCM_U8"
        ),
        "wav 48k stereo float": wav_bytes(stereo48, 48_000, "FLOAT"),
        "wav 44.1k 24-bit": wav_bytes(
            decode_audio(espeak_wav("Good morning, my friend."), target_rate=44_100),
            44_100,
            "PCM_24",
        ),
    }
    async with stt_base.open_session() as session:
        for label, data in formats.items():
            text = await session.transcribe(data)
            assert wer(["Good morning, my friend."], [text]) <= 0.25, (label, text)


@pytest.mark.parametrize("language", ["en_US", "e n", "", "123", "en;", "x" * 40])
async def test_language_must_be_letters_and_hyphens(stt_base: STT, language: str) -> None:
    async with stt_base.open_session() as session:
        with pytest.raises(InvalidRequestError, match="language"):
            await session.transcribe(bytes(3200), language=language)


async def test_language_tag_with_region_and_unknown_language(stt_base: STT) -> None:
    async with stt_base.open_session() as session:
        assert await session.transcribe(espeak_wav("Hello world."), language="en-US")
        with pytest.raises(InvalidRequestError, match="not supported"):
            await session.transcribe(espeak_wav("Hello world."), language="xq")


@pytest.mark.parametrize(
    ("audio", "words"),
    [
        (b"", "empty"),
        (b"GIF89a not audio at all, really", "neither"),
        (b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", "header"),
        (bytes(16_000 * 2 * 301), "limit"),
        (b"\x01\x02\x03", "even"),
    ],
)
async def test_bad_audio_is_invalid_request(stt_base: STT, audio: bytes, words: str) -> None:
    async with stt_base.open_session() as session:
        with pytest.raises(InvalidRequestError, match=words):
            await session.transcribe(audio)


async def test_callers_queue_one_transcription_at_a_time(stt_base: STT) -> None:
    clip = espeak_wav("One two.")
    seen_busy: list[int] = []
    assert stt_base._decoder is not None
    original = stt_base._decoder.decode
    active = threading.Semaphore(1)

    def guarded(*args: object) -> Decoded:
        # Fails if two decodes ever overlap.
        assert active.acquire(blocking=False), "two transcriptions ran at once"
        try:
            queued = stt_base.health()["queued"]
            assert isinstance(queued, int)
            seen_busy.append(queued)
            return original(*args)  # type: ignore[arg-type]
        finally:
            active.release()

    stt_base._decoder.decode = guarded  # type: ignore[method-assign,assignment]
    try:
        sessions = [stt_base.open_session() for _ in range(3)]
        texts = await asyncio.gather(*(s.transcribe(clip) for s in sessions))
    finally:
        del stt_base._decoder.decode
    assert all(wer(["One two."], [t]) == 0 for t in texts), texts
    assert max(seen_busy) >= 2  # the others were waiting in line, not failing


async def test_closed_session_is_refused(stt_base: STT) -> None:
    session = stt_base.open_session()
    await session.close()
    with pytest.raises(SessionClosedError):
        await session.transcribe(bytes(3200))


async def test_streaming_partials_then_final(stt_base: STT) -> None:
    text = "Open the door, please."
    pcm = decode_pcm16(espeak_wav(text)).tobytes()
    now = [0.0]
    stream = stt_base.open_stream(language="en")
    stream._clock = lambda: now[0]
    partials = []
    chunk = 3200  # 100 ms
    for i in range(0, len(pcm), chunk):
        stream.feed(pcm[i : i + chunk])
        now[0] += 0.1  # simulated real time: 100 ms per chunk
        update = await stream.maybe_partial()
        if update is not None:
            assert not update.is_final
            partials.append(update.text)
    # Bounded rate: at most one partial per PARTIAL_INTERVAL_S of (simulated) audio time.
    audio_s = len(pcm) / 32000
    assert 1 <= len(partials) <= audio_s / 0.6 + 1
    final = await stream.finalize()
    assert final.is_final and wer([text], [final.text]) <= ESPEAK_MAX_WER, final.text
    assert stream.audio_seconds == 0.0
    assert await stream.maybe_partial() is None


async def test_stream_refuses_odd_chunks(stt_base: STT) -> None:
    stream = stt_base.open_stream()
    with pytest.raises(InvalidRequestError):
        stream.feed(b"\x00")


async def test_lifecycle_errors() -> None:
    stt = STT("Systran/faster-whisper-tiny.en", num_threads=1)
    with pytest.raises(ComponentLifecycleError, match="start"):
        stt.open_session()
    await stt.start()
    async with stt.open_session() as session:
        assert "hello" in (await session.transcribe(espeak_wav("Hello."))).lower()
        other: list[BaseException] = []

        def from_another_loop() -> None:
            try:
                asyncio.run(session.transcribe(bytes(3200)))
            except BaseException as exc:
                other.append(exc)

        thread = threading.Thread(target=from_another_loop)
        thread.start()
        thread.join()
        assert isinstance(other[0], ComponentLifecycleError), other
        await stt.stop()
        with pytest.raises(ComponentLifecycleError):
            await session.transcribe(bytes(3200))


async def test_unknown_model_fails_at_start_with_pull_hint() -> None:
    stt = STT("acme/not-a-model")
    with pytest.raises(InvalidRequestError, match="bitvoice pull"):
        await stt.start()


async def test_session_reports_the_language_it_used(stt_base: STT) -> None:
    """With no language, Whisper detects one and says how sure it is (the realtime
    server keeps a confident detection for later turns); a given one is used as is."""
    clip = espeak_wav("Could you turn the kitchen lights off, please? It is getting late.")
    session = stt_base.open_session()
    await session.transcribe(clip)
    assert session.last_language == "en"
    assert 0.8 <= session.last_language_probability <= 1.0
    await session.transcribe(clip, language="de")
    assert session.last_language == "de" and session.last_language_probability == 1.0


# -- raw PCM is never sniffed (issue 15) ------------------------------------------------------
def _audioeval_pcm(name: str) -> np.ndarray:
    return decode_pcm16((AUDIOEVAL_EN / f"{name}.wav").read_bytes())


@pytest.mark.parametrize("first", [0x7B, 0x5B, 0x5B7B, 0x227B, 0x3F3C, 0x4449])
async def test_speech_whose_first_sample_is_printable_transcribes(
    stt_base: STT, first: int
) -> None:
    """Raw PCM whose first bytes are `{`, `[`, `{"`, `<?`, `ID`: audio, not a file or text."""
    pcm = _audioeval_pcm("quick_brown_fox").copy()
    pcm[0] = first
    data = pcm.astype("<i2").tobytes()
    assert data[:1] in (b"{", b"[", b"<", b"I")
    async with stt_base.open_session() as session:
        text = await session.transcribe(data, language="en")
    assert wer(["The quick brown fox jumps over the lazy dog."], [text]) <= 0.12, text


async def test_json_sent_as_audio_is_still_refused(stt_base: STT) -> None:
    doc = b'{"type": "input_audio_buffer.append", "audio": "UklGRiQAAABXQVZF"}'
    async with stt_base.open_session() as session:
        with pytest.raises(InvalidRequestError, match="neither"):
            await session.transcribe(doc)


# -- the streaming transcriber: one STT path per realtime turn ------------------------------
async def test_transcribe_buffer_keeps_the_audio_and_finalize_resets(stt_base: STT) -> None:
    pcm = _audioeval_pcm("quick_brown_fox").tobytes()
    stream = stt_base.open_stream()
    half = len(pcm) // 2 // 2 * 2
    stream.feed(pcm[:half])
    partial = await stream.transcribe_buffer(language="en")
    assert not partial.is_final and partial.audio_seconds == pytest.approx(half / 32000)
    assert (partial.language, partial.language_probability) == ("en", 1.0)
    assert stream.audio_seconds == pytest.approx(half / 32000)  # not reset
    stream.feed(pcm[half:])
    final = await stream.finalize()  # no language: detected
    assert final.is_final and final.audio_seconds == pytest.approx(len(pcm) / 32000)
    assert wer(["The quick brown fox jumps over the lazy dog."], [final.text]) <= 0.12
    assert final.language == "en" and 0.5 <= final.language_probability <= 1.0
    assert final.decode_seconds > 0
    assert stream.audio_seconds == 0.0
    empty = await stream.finalize(language="de")
    assert (empty.text, empty.language, empty.language_probability) == ("", "de", 1.0)


async def test_stream_decodes_queue_and_run_off_the_event_loop(stt_base: STT) -> None:
    """Partials, a final and a session call at once: all succeed (FIFO), none overlaps,
    each decode runs in the STT worker thread while the event loop keeps ticking."""
    assert stt_base._decoder is not None
    original = stt_base._decoder.decode
    threads: list[str] = []

    def recording(*args: object) -> object:
        threads.append(threading.current_thread().name)
        return original(*args)  # type: ignore[arg-type]

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    stream = stt_base.open_stream(language="en")
    stream.feed(_audioeval_pcm("hello_world").tobytes())
    stt_base._decoder.decode = recording  # type: ignore[method-assign,assignment]
    tick_task = asyncio.create_task(ticker())
    try:
        first = asyncio.create_task(stream.transcribe_buffer())
        await asyncio.sleep(0)
        assert stt_base.busy
        results = await asyncio.gather(
            first,
            stream.transcribe_buffer(),
            stream.finalize(),
            stt_base.open_session().transcribe(espeak_wav("One two.")),
        )
    finally:
        tick_task.cancel()
        del stt_base._decoder.decode
    assert [wer(["Hello world."], [r.text]) for r in results[:3]] == [0.0, 0.0, 0.0]
    assert results[2].is_final and not results[0].is_final
    assert wer(["One two."], [results[3]]) == 0.0
    assert len(threads) == 4 and all(t.startswith("bitvoice-stt") for t in threads), threads
    assert ticks >= 5  # the loop ran while Whisper worked
    assert not stt_base.busy


async def test_encoder_window_is_validated_and_reported(stt_base: STT) -> None:
    for bad in ("short", "", 30, None):
        with pytest.raises(InvalidRequestError, match="encoder_window"):
            STT(encoder_window=bad)  # type: ignore[arg-type]
    assert stt_base.health()["encoder_window"] == "auto"
    before = dict(stt_base.health()["decodes"])  # type: ignore[call-overload]
    async with stt_base.open_session() as session:
        await session.transcribe(_audioeval_pcm("hello_world").tobytes(), language="en")
    after = stt_base.health()["decodes"]
    assert sum(after.values()) > sum(before.values())  # type: ignore[attr-defined]
