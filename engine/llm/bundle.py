"""The bitvoice LLM bundle: what a folder in the model store holds.

<store>/<org>/<name>/
    model.bvm               packed weights (csrc/include/bv_format.h)
    config.json             the Hugging Face config it was imported from
    tokenizer.json          `tokenizers` file
    tokenizer_config.json   special tokens, chat template (when the source had one)
    generation_config.json  sampling defaults (when the source had one)
    bundle.json             {"format": BUNDLE_FORMAT, "source": ..., "imported_at": ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import InvalidRequestError

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_META",
    "CONFIG",
    "GENERATION_CONFIG",
    "MODEL_FILE",
    "OPTIONAL_FILES",
    "TOKENIZER",
    "TOKENIZER_CONFIG",
    "load_bundle_config",
]

BUNDLE_FORMAT = 1
MODEL_FILE = "model.bvm"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"
BUNDLE_META = "bundle.json"
OPTIONAL_FILES = (TOKENIZER_CONFIG, GENERATION_CONFIG)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequestError(f"bundle file missing: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(f"bundle file unreadable: {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"bundle file is not a JSON object: {path}")
    return data


def load_bundle_config(bundle_dir: Path) -> dict[str, Any]:
    """The bundle's config.json, after checking that bundle.json names a format we read."""
    meta = _read_json(bundle_dir / BUNDLE_META)
    if meta.get("format") != BUNDLE_FORMAT:
        raise InvalidRequestError(
            f"bundle {bundle_dir} has format {meta.get('format')!r}; this bitvoice reads "
            f"format {BUNDLE_FORMAT}. Re-import it with `bitvoice import` or `bitvoice pull`."
        )
    return _read_json(bundle_dir / CONFIG)
