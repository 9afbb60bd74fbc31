"""Where bitvoice keeps its data: one root, overridable by BITVOICE_HOME."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["bitvoice_home", "models_dir", "voices_dir"]


def bitvoice_home() -> Path:
    """`$BITVOICE_HOME`, else `~/.bitvoice`. Read on every call so tests can redirect it."""
    env = os.environ.get("BITVOICE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".bitvoice"


def models_dir() -> Path:
    return bitvoice_home() / "models"


def voices_dir() -> Path:
    return bitvoice_home() / "voices"
