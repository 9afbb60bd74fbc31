"""pocket-tts weights in the store, and `pull_tts_model` for users with internet.

Store layout (`org/name` under `engine.paths.models_dir()`, like the LLM and STT stores):

    <models_dir>/kyutai/pocket-tts/
        config.yaml        a pocket-tts config whose *_path entries are local, relative paths
        model.safetensors  the weights;  tokenizer.*  the text tokenizer
        voices/<name>.safetensors  built-in voice states
        fingerprint.txt    identifies the weights (voice states are only valid for them)

The weights cannot be downloaded at test time; tests write a tiny random-weight model in this
same layout (tests/tts/tiny_pocket.py). `pull_tts_model()` fills it from the Hugging Face Hub.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final

from engine.errors import InvalidRequestError
from engine.paths import models_dir

__all__ = [
    "POCKET_TTS_MODEL",
    "pocket_model_dir",
    "pocket_model_installed",
    "pull_tts_model",
]

POCKET_TTS_MODEL: Final = "kyutai/pocket-tts"
#: The pocket-tts config (shipped inside the package) that `pull_tts_model` mirrors.
POCKET_LANGUAGE: Final = "english"


def pocket_model_dir() -> Path:
    return models_dir() / POCKET_TTS_MODEL


def pocket_model_installed() -> bool:
    folder = pocket_model_dir()
    return (folder / "config.yaml").is_file() and (folder / "fingerprint.txt").is_file()


def _hf_fetch(uri: str) -> Path:
    from huggingface_hub import hf_hub_download

    body = uri.removeprefix("hf://")
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
    org, name, filename = body.split("/", 2)
    return Path(hf_hub_download(repo_id=f"{org}/{name}", filename=filename, revision=revision))


def pull_tts_model(model_id: str = POCKET_TTS_MODEL) -> Path:
    """Download the pocket-tts weights, tokenizer and built-in voices into the store.

    Blocking; needs internet. Only `kyutai/pocket-tts` is known. Returns the store folder.
    """
    import importlib
    import shutil

    from pocket_tts.utils.config import CONFIGS_DIR
    from pocket_tts.utils.utils import _ORIGINS_OF_PREDEFINED_VOICES, get_predefined_voice

    yaml = importlib.import_module("yaml")
    if model_id != POCKET_TTS_MODEL:
        raise InvalidRequestError(f"unknown TTS model {model_id!r}; known: {POCKET_TTS_MODEL}")
    config: dict[str, Any] = yaml.safe_load(
        (CONFIGS_DIR / f"{POCKET_LANGUAGE}.yaml").read_text(encoding="utf-8")
    )
    folder = pocket_model_dir()
    (folder / "voices").mkdir(parents=True, exist_ok=True)
    weights = _hf_fetch(str(config["weights_path"]))
    shutil.copyfile(weights, folder / "model.safetensors")
    config["weights_path"] = "model.safetensors"
    config.pop("weights_path_without_voice_cloning", None)
    table = config["flow_lm"]["lookup_table"]
    tokenizer = _hf_fetch(str(table["tokenizer_path"]))
    local_tok = f"tokenizer{tokenizer.suffix}"
    shutil.copyfile(tokenizer, folder / local_tok)
    table["tokenizer_path"] = local_tok
    for voice in _ORIGINS_OF_PREDEFINED_VOICES:
        try:
            state = _hf_fetch(get_predefined_voice(POCKET_LANGUAGE, voice))
        except Exception:  # a voice missing upstream must not fail the whole pull
            continue
        shutil.copyfile(state, folder / "voices" / f"{voice}.safetensors")
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:16]
    (folder / "fingerprint.txt").write_text(f"pocket-tts:{digest}\n", encoding="utf-8")
    return folder
