from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine.errors import InvalidRequestError
from engine.llm import store
from engine.llm.bundle import BUNDLE_META


@pytest.mark.parametrize(
    "bad", ["tiny", "a/b/c", "../x", "a/..", ".hidden/x", "a/-x", "a b/c", "", "a/", 7]
)
def test_invalid_ids_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidRequestError, match="store ID"):
        store.validate_store_id(bad)


def test_store_root_follows_bitvoice_home(home: Path) -> None:
    assert store.store_path("org/name") == home / "models" / "org" / "name"
    assert store.resolve("local/tiny") == home / "models" / "local" / "tiny"


def test_unknown_id_says_how_to_pull(home: Path) -> None:
    with pytest.raises(InvalidRequestError) as err:
        store.resolve("nobody/nothing")
    assert "nobody/nothing" in err.value.message
    assert "bitvoice pull nobody/nothing" in err.value.message


def test_import_then_list(home: Path, tiny_hf: Path) -> None:
    path = store.import_local(tiny_hf, "me/copy")
    assert (path / BUNDLE_META).is_file()
    ids = [(e.store_id, e.kind) for e in store.list_store()]
    assert ids == [("local/tiny", "model"), ("me/copy", "model")]
    with pytest.raises(InvalidRequestError, match="already exists"):
        store.import_local(tiny_hf, "me/copy")
    assert store.import_local(tiny_hf, "me/copy", force=True) == path


def test_failed_import_leaves_nothing_visible(home: Path, tiny_hf: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_hf, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InvalidRequestError):
        store.import_local(broken, "me/broken")
    assert not store.store_path("me/broken").exists()
    staging = home / "models" / ".staging"
    assert not staging.exists() or os.listdir(staging) == []
    assert [e.store_id for e in store.list_store()] == ["local/tiny"]


def test_half_written_bundle_is_never_listed(home: Path) -> None:
    # A build that dies half-way: the staging folder is not a published bundle.
    def build(d: Path) -> None:
        d.mkdir()
        (d / "model.bvm").write_bytes(b"partial")
        assert [e.store_id for e in store.list_store()] == ["local/tiny"]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.publish("me/half", build)
    assert not store.store_path("me/half").exists()


def _fake_hf_cache(cache: Path, repo_id: str, src: Path) -> None:
    """The on-disk layout huggingface_hub's cache uses: refs/main -> snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(src, repo / "snapshots" / commit)


def test_pull_imports_a_hugging_face_snapshot(home: Path, tiny_hf: Path, tmp_path: Path) -> None:
    # No network in tests: huggingface_hub resolves the repo from a local cache.
    cache = tmp_path / "hf-cache"
    _fake_hf_cache(cache, "someorg/bitnet-tiny", tiny_hf)
    path = store.pull("someorg/bitnet-tiny", cache_dir=cache, local_files_only=True)
    assert path == store.store_path("someorg/bitnet-tiny")
    assert store.resolve("someorg/bitnet-tiny") == path


def test_pull_failure_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="cannot download 'no/such'"):
        store.pull("no/such", cache_dir=tmp_path / "empty", local_files_only=True)
    assert not store.store_path("no/such").exists()
