"""The managed model store: `<BITVOICE_HOME or ~/.bitvoice>/models/<org>/<name>`.

Models and LoRA adapters are addressed by store IDs (`org/name`), never by raw
paths. A bundle is built in a staging folder inside the store's own
filesystem and published with one `rename`, so a reader never sees a
half-written bundle: either the folder is absent, or it is complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidRequestError
from engine.llm import bundle, limits
from engine.paths import models_dir

__all__ = [
    "ADAPTER_META",
    "StoreEntry",
    "import_local",
    "list_store",
    "publish",
    "pull",
    "resolve",
    "store_path",
    "validate_store_id",
]

ADAPTER_META = "adapter.json"
# The org of IDs that name imported (or built-in) bundles, never a hub repository.
LOCAL_ORG = "local"
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_STAGING = ".staging"
# What `pull` fetches from a Hugging Face repository (weights, configs, tokenizer).
PULL_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model"]


@dataclass(frozen=True)
class StoreEntry:
    """One published bundle: its ID, kind ("model" or "adapter"), folder and size on disk."""

    store_id: str
    kind: str
    path: Path
    size_bytes: int


def validate_store_id(store_id: object) -> str:
    """Return the ID if it is `org/name` (letters, digits, `._-`, not starting with
    a dot or dash, each part at most MAX_STORE_NAME_LEN); else InvalidRequestError."""
    if not isinstance(store_id, str):
        raise InvalidRequestError(f"store ID must be a string 'org/name', got {store_id!r}")
    parts = store_id.split("/")
    if len(parts) != 2 or not all(
        _PART.fullmatch(p) and len(p) <= limits.MAX_STORE_NAME_LEN and ".." not in p for p in parts
    ):
        raise InvalidRequestError(
            f"invalid store ID {store_id!r}: expected 'org/name' (letters, digits, '.', '_', '-')"
        )
    return store_id


def store_path(store_id: str) -> Path:
    """Where the bundle of a (validated) ID lives or would live."""
    org, name = validate_store_id(store_id).split("/")
    return models_dir() / org / name


def _kind(path: Path) -> str | None:
    if (path / bundle.BUNDLE_META).is_file():
        return "model"
    if (path / ADAPTER_META).is_file():
        return "adapter"
    return None


def resolve(store_id: str, *, kind: str = "model") -> Path:
    """The folder of a published bundle of this kind.

    Raises InvalidRequestError naming the ID and how to pull or import it when
    the store does not hold it (or holds something of another kind)."""
    path = store_path(store_id)
    found = _kind(path)
    if found == kind:
        return path
    if found is not None:
        raise InvalidRequestError(f"store ID {store_id!r} is a {found} bundle, not a {kind}")
    if kind != "model":
        how = f"`bitvoice import ADAPTER_DIR --as {store_id} --base BASE_ID`"
    elif store_id.startswith(LOCAL_ORG + "/"):
        # `local/...` names what the user imported; no hub repository has it.
        how = f"`bitvoice import PATH --as {store_id}` (an HF BitNet folder)"
    else:
        how = f"`bitvoice pull {store_id}` (Hugging Face) or `bitvoice import PATH --as {store_id}`"
    raise InvalidRequestError(
        f"unknown {kind} {store_id!r}: not in the store at {models_dir()}; add it with {how}"
    )


def list_store() -> list[StoreEntry]:
    """Every published bundle, sorted by ID (staging folders are never listed)."""
    root = models_dir()
    out: list[StoreEntry] = []
    if not root.is_dir():
        return out
    for org in sorted(root.iterdir()):
        if org.name.startswith(".") or not org.is_dir():
            continue
        for item in sorted(org.iterdir()):
            kind = _kind(item) if item.is_dir() and not item.name.startswith(".") else None
            if kind is None:
                continue
            size = sum(f.stat().st_size for f in item.rglob("*") if f.is_file())
            out.append(StoreEntry(f"{org.name}/{item.name}", kind, item, size))
    return out


def publish(store_id: str, build: Callable[[Path], None], *, force: bool = False) -> Path:
    """Build a bundle with `build(staging_dir)` and publish it under `store_id`.

    `build` must fill the (not yet existing) folder it is given. The folder is
    renamed into place only if `build` returns; on any error it is removed and
    the store is unchanged. An existing bundle is replaced only with force=True
    (else InvalidRequestError). Returns the published folder.
    """
    final = store_path(store_id)
    if final.exists() and not force:
        raise InvalidRequestError(
            f"store ID {store_id!r} already exists at {final}; pass --force to replace it"
        )
    staging_root = models_dir() / _STAGING
    staging_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=staging_root))
    try:
        staged = work / "bundle"
        build(staged)
        if _kind(staged) is None:
            raise InvalidRequestError(f"import of {store_id!r} produced no bundle metadata")
        final.parent.mkdir(parents=True, exist_ok=True)
        trash = None
        if final.exists():
            # Move the old bundle aside with one rename, then put the new one in
            # place with another: readers see the old or the new, never a mix.
            trash = staging_root / f"old-{uuid.uuid4().hex}"
            os.rename(final, trash)
        try:
            os.rename(staged, final)
        except OSError as exc:
            if trash is not None:
                os.rename(trash, final)
            raise InvalidRequestError(f"cannot publish {store_id!r} at {final}: {exc}") from None
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def import_local(
    src: Path, store_id: str, *, base_id: str | None = None, force: bool = False
) -> Path:
    """Import a local Hugging Face BitNet folder, or a PEFT LoRA adapter folder
    (it has adapter_config.json; then `base_id` names the base model in the
    store that the adapter binds to), into the store as `store_id`.

    Raises InvalidRequestError for a missing folder or bad input."""
    validate_store_id(store_id)
    src = Path(src).expanduser()
    if not src.is_dir():
        raise InvalidRequestError(f"not a folder: {src}")
    if (src / "adapter_config.json").is_file():
        from engine.llm.lora import import_peft_adapter

        if base_id is None:
            raise InvalidRequestError(
                f"{src} is a LoRA adapter; name its base model with --base org/name"
            )
        base_dir = resolve(base_id)
        return publish(
            store_id, lambda d: import_peft_adapter(src, d, base_dir, base_id), force=force
        )
    from engine.llm.importer import import_hf_model

    return publish(store_id, lambda d: import_hf_model(src, d), force=force)


def pull(
    repo_id: str,
    store_id: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: Path | None = None,
    local_files_only: bool = False,
    force: bool = False,
) -> Path:
    """Download a Hugging Face BitNet repository with huggingface_hub and import it.

    `store_id` defaults to the repo ID. Without `cache_dir` the download goes to
    a temporary folder in the store's staging area and is deleted after the
    import; with it (or with local_files_only=True) the Hugging Face cache
    there is used and kept. Raises InvalidRequestError when the repository
    cannot be fetched or imported.
    """
    from huggingface_hub import snapshot_download

    validate_store_id(repo_id)
    store_id = validate_store_id(store_id or repo_id)
    if store_path(store_id).exists() and not force:
        raise InvalidRequestError(
            f"store ID {store_id!r} already exists; pass --force to pull it again"
        )
    staging_root = models_dir() / _STAGING
    staging_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pull-", dir=staging_root) as tmp:
        try:
            snapshot = snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=str(cache_dir) if cache_dir else str(Path(tmp) / "hf-cache"),
                local_files_only=local_files_only,
                allow_patterns=PULL_PATTERNS,
            )
        except Exception as exc:  # huggingface_hub raises many error types
            raise InvalidRequestError(
                f"cannot download {repo_id!r} from Hugging Face: {type(exc).__name__}: {exc}"
            ) from None
        return import_local(Path(str(snapshot)), store_id, force=force)


def read_adapter_meta(path: Path) -> dict[str, object]:
    """adapter.json of an adapter bundle folder."""
    try:
        data = json.loads((path / ADAPTER_META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"adapter bundle unreadable: {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"adapter bundle metadata is not an object: {path}")
    return data
