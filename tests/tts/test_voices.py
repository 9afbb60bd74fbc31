"""Voice store rules on the real pocket-tts code path (tiny random-weight model)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tts_helpers import prompt_wav

from engine.errors import InvalidRequestError
from engine.tts import TTS, VoiceStoreWarning

pytestmark = pytest.mark.slow


async def test_builtin_voices_are_listed(tts: TTS) -> None:
    assert tts.backend_name == "pocket-tts"
    assert await tts.list_voices() == ["alba"]


@pytest.mark.parametrize("kind", ["bytes", "str", "path"])
async def test_register_from_bytes_str_and_path(
    tts: TTS, pocket_home: Path, tmp_path: Path, kind: str
) -> None:
    wav = prompt_wav(rate=48_000, channels=2)
    source: bytes | str | Path = wav
    if kind != "bytes":
        (tmp_path / "p.wav").write_bytes(wav)
        source = str(tmp_path / "p.wav") if kind == "str" else tmp_path / "p.wav"
    await tts.register_voice("Me2", source)
    assert await tts.list_voices() == ["alba", "Me2"]
    assert (pocket_home / "voices" / "Me2.safetensors").is_file()
    # The voice speaks: a synthesis with it returns audio.
    async with tts.open_session(voice="Me2") as session:
        assert len(await session.collect("Hi there.")) > 0


async def test_custom_voice_persists_and_is_deleted(tts: TTS, pocket_home: Path) -> None:
    await tts.register_voice("bob", prompt_wav())
    await tts.stop()
    again = TTS()
    await again.start()
    try:
        assert await again.list_voices() == ["alba", "bob"]
        await again.delete_voice("bob")
        assert await again.list_voices() == ["alba"]
        assert not (pocket_home / "voices" / "bob.safetensors").exists()
    finally:
        await again.stop()


@pytest.mark.parametrize("name", ["", "has space", "dash-name", "ünï", "a" * 65, "x.y"])
async def test_invalid_names_are_refused(tts: TTS, name: str) -> None:
    with pytest.raises(InvalidRequestError, match="letters and digits"):
        await tts.register_voice(name, prompt_wav())


async def test_builtins_cannot_be_shadowed_or_deleted(tts: TTS) -> None:
    for name in ("alba", "Alba"):
        with pytest.raises(InvalidRequestError, match="built-in"):
            await tts.register_voice(name, prompt_wav())
    with pytest.raises(InvalidRequestError, match="built-in"):
        await tts.delete_voice("alba")
    with pytest.raises(InvalidRequestError, match="unknown voice"):
        await tts.delete_voice("nobody")


async def test_existing_custom_name_must_be_deleted_first(tts: TTS) -> None:
    await tts.register_voice("carol", prompt_wav())
    with pytest.raises(InvalidRequestError, match="delete it first"):
        await tts.register_voice("carol", prompt_wav())


@pytest.mark.parametrize(
    ("audio", "words"),
    [
        (b"", "empty"),
        (b"this is a text file, not a recording at all", "neither"),
        (b"RIFF\x00\x00\x00\x00WAVEnonsense-header", "header"),
        (prompt_wav(seconds=0.3), "at least"),
        (prompt_wav(seconds=61.0, rate=8_000), "limit"),
        (bytes(24_000 * 2 * 2), "silent"),
    ],
)
async def test_bad_voice_audio_writes_nothing(
    tts: TTS, pocket_home: Path, audio: bytes, words: str
) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        await tts.register_voice("dave", audio)
    assert await tts.list_voices() == ["alba"]
    assert (
        not list((pocket_home / "voices").glob("*")) if (pocket_home / "voices").exists() else True
    )


async def test_voice_path_that_is_missing_or_not_audio(tts: TTS, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="not found"):
        await tts.register_voice("erin", tmp_path / "missing.wav")
    (tmp_path / "fake.wav").write_bytes(b"%PDF-1.4 definitely not audio")
    with pytest.raises(InvalidRequestError, match="neither"):
        await tts.register_voice("erin", tmp_path / "fake.wav")


async def test_unreadable_legacy_and_shadowing_files_are_skipped(pocket_home: Path) -> None:
    voices = pocket_home / "voices"
    voices.mkdir()
    (voices / "broken.safetensors").write_bytes(b"not a safetensors file")
    save_file({"x": np.zeros(3, dtype=np.float32)}, str(voices / "legacy.safetensors"))
    save_file(
        {"x": np.zeros(3, dtype=np.float32)},
        str(voices / "alba.safetensors"),
        metadata={"bitvoice_voice_format": "1", "fingerprint": "pocket-tts:tiny-seed1234"},
    )
    (voices / "notes.txt").write_text("ignored: not a voice file")
    engine = TTS()
    with pytest.warns(VoiceStoreWarning) as record:
        await engine.start()
    try:
        messages = " ".join(str(w.message) for w in record)
        assert "broken" in messages and "legacy" in messages and "shadow" in messages
        assert await engine.list_voices() == ["alba"]
    finally:
        await engine.stop()


async def test_open_session_with_unknown_voice(tts: TTS) -> None:
    with pytest.raises(InvalidRequestError, match="unknown voice"):
        tts.open_session(voice="ghost")


async def test_skipped_voice_files_are_logged(
    pocket_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 11: legacy `.state` files and unreadable files are skipped with a logged warning.
    voices = pocket_home / "voices"
    voices.mkdir()
    (voices / "oldvoice.state").write_bytes(b"\x80\x04legacy pickled state")
    (voices / "broken.safetensors").write_bytes(b"not a safetensors file")
    engine = TTS()
    with caplog.at_level(logging.WARNING, logger="bitvoice.tts"), pytest.warns(VoiceStoreWarning):
        await engine.start()
    try:
        records = [r for r in caplog.records if r.name == "bitvoice.tts"]
        by_file = {Path(str(r.args[0])).name: str(r.args[1]) for r in records}  # type: ignore[index]
        assert "legacy" in by_file["oldvoice.state"]
        assert "unreadable" in by_file["broken.safetensors"]
        assert all(r.levelno == logging.WARNING for r in records)
        assert await engine.list_voices() == ["alba"]
    finally:
        await engine.stop()
