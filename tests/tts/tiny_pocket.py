"""A tiny pocket-tts model with random weights from a fixed seed, in the store layout.

pocket-tts weights cannot be downloaded here, so tests write this model (a few MB) into
`<models_dir>/kyutai/pocket-tts` and run the whole real code path: config loading from local
paths, a locally trained `tokenizers` tokenizer, voice states from an audio prompt, streaming
generation. The speech is noise, by design; what is tested is the plumbing and the formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

N_BINS = 96
SEED = 1234
CORPUS = (
    "Hello world. The quick brown fox jumps over the lazy dog. "
    "How are you today? I am fine, thank you. One two three four five six seven eight nine ten. "
    "Speech synthesis turns written text into sound, sentence by sentence."
)


def _config(weights: str, tokenizer: str) -> dict[str, Any]:
    seanet = {
        "dimension": 32,
        "channels": 1,
        "n_filters": 8,
        "n_residual_layers": 1,
        "ratios": [6, 5, 4],
        "kernel_size": 3,
        "residual_kernel_size": 3,
        "last_kernel_size": 3,
        "dilation_base": 2,
        "pad_mode": "constant",
        "compress": 2,
    }
    transformer = {
        "d_model": 32,
        "num_heads": 2,
        "num_layers": 1,
        "layer_scale": 0.01,
        "context": 50,
        "dim_feedforward": 64,
        "input_dimension": 32,
        "output_dimensions": [32],
    }
    return {
        "weights_path": weights,
        "default_temperature": 0.3,
        "default_eos_threshold": -1.0,
        "flow_lm": {
            "insert_bos_before_voice": True,
            "dtype": "float32",
            "flow": {"depth": 1, "dim": 16, "type": "pointwise"},
            "transformer": {
                "d_model": 32,
                "hidden_scale": 1,
                "max_period": 10000,
                "num_heads": 2,
                "num_layers": 1,
                "dim_feedforward": 32,
            },
            "lookup_table": {
                "dim": 32,
                "n_bins": N_BINS,
                "tokenizer": "tokenizers",
                "tokenizer_path": tokenizer,
            },
            "z_dim": 16,
        },
        "mimi": {
            "dtype": "float32",
            "sample_rate": 24000,
            "inner_dim": 16,
            "outer_dim": 32,
            "channels": 1,
            "frame_rate": 12.5,
            "seanet": {**seanet, "ratios": [8, 6, 5, 4]},
            "transformer": transformer,
            "quantizer": {"dimension": 16, "output_dimension": 32},
        },
    }


def _train_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=N_BINS, special_tokens=["<unk>"], show_progress=False)
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    filler = N_BINS - tok.get_vocab_size()
    if filler > 0:  # a small corpus may stop short of N_BINS merges: pad the vocabulary
        tok.add_tokens([f"<unused{i}>" for i in range(filler)])
    assert tok.get_vocab_size() == N_BINS, tok.get_vocab_size()
    tok.save(str(path))


def write_tiny_pocket_model(folder: Path, voice_names: tuple[str, ...] = ("alba",)) -> Path:
    """Write the model into `folder` (store layout); returns `folder`. Deterministic."""
    import safetensors.torch
    import torch
    from pocket_tts import TTSModel
    from pocket_tts.utils.config import Config

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "voices").mkdir(exist_ok=True)
    _train_tokenizer(folder / "tokenizer.json")
    config = _config("model.safetensors", "tokenizer.json")
    resolved = _config(str(folder / "model.safetensors"), str(folder / "tokenizer.json"))
    resolved.pop("weights_path")
    torch.manual_seed(SEED)
    model = TTSModel._from_pydantic_config_with_weights(
        Config(**resolved), 0.3, 1, None, -1.0, origin=folder / "config.yaml"
    )
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "model.safetensors"),
    )
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (folder / "fingerprint.txt").write_text(f"pocket-tts:tiny-seed{SEED}\n", encoding="utf-8")
    # Built-in voices: states from a fixed synthetic prompt, through the same export path.
    from engine.tts.backends import PocketBackend

    backend = PocketBackend(folder, num_threads=1)
    rng = np.random.default_rng(SEED)
    t = np.arange(24_000 * 2) / 24_000
    for i, name in enumerate(voice_names):
        prompt = 0.3 * np.sin(2 * np.pi * (140 + 40 * i) * t) + 0.02 * rng.standard_normal(t.size)
        state = backend.state_from_audio(prompt.astype(np.float32))
        backend.save_state(state, folder / "voices" / f"{name}.safetensors", {})
    return folder
