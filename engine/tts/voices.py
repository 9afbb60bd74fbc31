"""The voice store: built-in voices, custom voices on disk, and the in-memory cache.

Rules (SDK):
- Names are ASCII letters and digits only (1..`MAX_VOICE_NAME_LEN`).
- Built-in voices come from the backend; they cannot be deleted or shadowed (names compare
  case-insensitively, so "Alba" cannot shadow "alba" either).
- Custom voices persist as `<voices_dir>/<name>.safetensors` (the voice state, with metadata
  `bitvoice_voice_format` and the backend's weights `fingerprint`). At load, files that are
  unreadable, legacy (no/old format), made for other weights, badly named or shadowing a
  built-in are skipped with a `VoiceStoreWarning` and are not listed.
- The in-memory cache is the source of truth while running; disk is synced best effort (a
  failed write warns and keeps the voice in memory). A custom name that exists must be deleted
  before it is registered again.

All methods are blocking and run on the TTS worker thread.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Final

from engine.errors import InvalidRequestError
from engine.tts import limits
from engine.tts.backends import Backend

__all__ = ["VOICE_FORMAT", "VoiceStore", "VoiceStoreWarning", "validate_voice_name"]

VOICE_FORMAT: Final = "1"
#: Voice files of the old format (pickled states), never loaded: each is skipped with a warning.
LEGACY_SUFFIXES: Final = (".state",)

log = logging.getLogger("bitvoice.tts")
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9]+$")


class VoiceStoreWarning(UserWarning):
    """A file in the voice folder was skipped (unreadable, legacy, or not allowed)."""


def _skip(path: Path, reason: str) -> None:
    log.warning("skipping voice file %s: %s", path, reason)
    warnings.warn(f"skipping voice file {path}: {reason}", VoiceStoreWarning, stacklevel=3)


def validate_voice_name(name: object) -> str:
    """Return `name` if it is 1..64 ASCII letters/digits, else raise `InvalidRequestError`."""
    if (
        not isinstance(name, str)
        or not name.isascii()
        or not _NAME_RE.match(name)
        or len(name) > limits.MAX_VOICE_NAME_LEN
    ):
        raise InvalidRequestError(
            f"voice name must be 1-{limits.MAX_VOICE_NAME_LEN} ASCII letters and digits, "
            f"got {name!r}"
        )
    return name


class VoiceStore:
    """Built-in + custom voices for one backend, cached in memory."""

    def __init__(self, backend: Backend, folder: Path) -> None:
        self._backend = backend
        self._folder = folder
        self._builtin = {n: None for n in backend.builtin_voices()}  # states loaded lazily
        self._builtin_lower = {n.lower() for n in self._builtin}
        self._custom: dict[str, Any] = {}

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the custom voices from disk, skipping bad files with a warning.

        Each skipped file (legacy `.state`, unreadable, foreign, badly named, shadowing) is
        reported twice: a `VoiceStoreWarning` and a WARNING on the "bitvoice.tts" logger
        (args: the path, the reason), so servers that only log still see it.
        """
        if not self._folder.is_dir():
            return
        for path in sorted(self._folder.iterdir()):
            if path.suffix in LEGACY_SUFFIXES and path.is_file():
                _skip(path, "legacy voice state from an older bitvoice; register the voice again")
                continue
            if path.suffix != ".safetensors":
                continue
            name = path.stem
            reason = self._skip_reason(path, name)
            if reason is not None:
                _skip(path, reason)
                continue
            try:
                self._custom[name] = self._backend.load_state(path)
            except Exception as exc:  # any loader failure means "unreadable": skip, do not die
                _skip(path, f"unreadable ({exc})")

    def _skip_reason(self, path: Path, name: str) -> str | None:
        if not _NAME_RE.match(name) or len(name) > limits.MAX_VOICE_NAME_LEN:
            return "the name is not ASCII letters and digits"
        if name.lower() in self._builtin_lower:
            return "it would shadow a built-in voice"
        if not self._backend.supports_cloning:
            return f"the {self._backend.name} backend cannot use custom voices"
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as exc:  # not a safetensors file at all
            return f"unreadable ({exc})"
        if meta.get("bitvoice_voice_format") != VOICE_FORMAT:
            return "legacy or foreign file (no bitvoice voice format)"
        if meta.get("fingerprint") != self._backend.fingerprint:
            return "made for other TTS weights"
        return None

    # -- queries ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Built-in voices first (sorted), then custom voices (sorted)."""
        return sorted(self._builtin) + sorted(self._custom)

    def is_builtin(self, name: str) -> bool:
        return name in self._builtin

    def state(self, name: str) -> Any:
        """The voice state for `name`; `InvalidRequestError` if unknown."""
        validate_voice_name(name)
        if name in self._builtin:
            if self._builtin[name] is None:
                self._builtin[name] = self._backend.builtin_state(name)
            return self._builtin[name]
        if name in self._custom:
            return self._custom[name]
        raise InvalidRequestError(f"unknown voice {name!r}; known voices: {self.names()}")

    # -- changes ------------------------------------------------------------------------------
    def check_can_register(self, name: str) -> None:
        """Raise `InvalidRequestError` if `name` cannot be registered now (before any work)."""
        validate_voice_name(name)
        if name.lower() in self._builtin_lower:
            raise InvalidRequestError(f"{name!r} is a built-in voice and cannot be replaced")
        if any(name.lower() == n.lower() for n in self._custom):
            raise InvalidRequestError(
                f"voice {name!r} already exists; delete it first to register it again"
            )
        if len(self._custom) >= limits.MAX_CUSTOM_VOICES:
            raise InvalidRequestError(f"at most {limits.MAX_CUSTOM_VOICES} custom voices")
        if not self._backend.supports_cloning:
            raise InvalidRequestError(
                "voice cloning needs the pocket-tts weights, and this TTS runs the built-in "
                "Piper voice; run `bitvoice pull kyutai/pocket-tts` (needs internet) and restart"
            )

    def add(self, name: str, state: Any) -> None:
        """Cache `state` under `name`, then persist it (best effort, atomic on disk)."""
        self.check_can_register(name)
        self._custom[name] = state
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self._folder)
            os.close(fd)
            try:
                meta = {
                    "bitvoice_voice_format": VOICE_FORMAT,
                    "fingerprint": self._backend.fingerprint,
                }
                self._backend.save_state(state, Path(tmp), meta)
                os.replace(tmp, self._folder / f"{name}.safetensors")
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            warnings.warn(
                f"voice {name!r} is registered in memory but could not be saved: {exc}",
                VoiceStoreWarning,
                stacklevel=2,
            )

    def delete(self, name: str) -> None:
        validate_voice_name(name)
        if name in self._builtin:
            raise InvalidRequestError(f"{name!r} is a built-in voice and cannot be deleted")
        if name not in self._custom:
            raise InvalidRequestError(f"unknown voice {name!r}; known voices: {self.names()}")
        del self._custom[name]
        try:
            (self._folder / f"{name}.safetensors").unlink(missing_ok=True)
        except OSError as exc:
            warnings.warn(
                f"voice {name!r} is deleted in memory but its file remains: {exc}",
                VoiceStoreWarning,
                stacklevel=2,
            )
