"""Tiny BitNet b1.58 models made from a fixed seed, in the real Hugging Face
on-disk format (config.json + model.safetensors + tokenizer.json +
tokenizer_config.json + generation_config.json).

Tests use them to run the whole real path (import -> C engine -> SDK) in
seconds, and `bitvoice serve` uses one as its last-resort demo model when the
store has no real bundle. Their weights are random, so their replies are not
language.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

__all__ = [
    "DEMO_STORE_ID",
    "SPECIAL_TOKENS",
    "TINY_CONFIG",
    "ensure_demo_bundle",
    "pack_ternary_hf",
    "train_tiny_tokenizer",
    "write_tiny_hf_model",
]

# LLaMA-3 style special tokens, as microsoft/bitnet-b1.58-2B-4T uses them.
SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
)

TINY_CONFIG: dict[str, Any] = {
    "architectures": ["BitNetForCausalLM"],
    "model_type": "bitnet",
    "hidden_act": "relu2",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
}

DEMO_STORE_ID = "local/tiny-demo"
DEMO_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 640,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
}

DEMO_EMBED_STD = 0.12

_CORPUS = """
The quick brown fox jumps over the lazy dog. Hello, how are you today?
I am a small voice assistant that runs on your own computer, with no cloud.
What is the weather like? It is sunny and warm, with a light breeze from the sea.
Please tell me a short story about a robot who learns to sing.
Once upon a time, a little robot lived in a quiet town by the river.
Numbers: one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9.
Search the web for the latest news. The answer is forty-two.
Thank you! You're welcome. Goodbye, see you soon. Café, naïve, déjà vu, 你好, 🙂.
"""


def word_tokenizer() -> Tokenizer:
    """A word-level tokenizer over the corpus's words and punctuation.

    The demo model uses it: a random model then strings real words together
    (nonsense, but speakable, with full stops the TTS segmenter can cut at),
    where a byte-level vocabulary would emit stray bytes."""
    words = sorted({w.lower() for w in re.findall(r"[A-Za-z']+", _CORPUS)})
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, "[UNK]", ".", ",", "?", "!", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def train_tiny_tokenizer(vocab_size: int = 384) -> Tokenizer:
    """A byte-level BPE tokenizer trained on a fixed corpus (deterministic).

    Byte-level, so any UTF-8 text round-trips, and multi-byte characters can
    split across tokens (which the incremental detokenizer must handle)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tok


def pack_ternary_hf(ternary: np.ndarray) -> np.ndarray:
    """Hugging Face's packed BitNet layout: uint8 [out/4, in]; stored row i of
    slice q (rows q*out/4 .. ) lives in bits 2q..2q+1, as code = w + 1."""
    out, _ = ternary.shape
    if out % 4:
        raise ValueError("packed HF BitNet weights need out_features divisible by 4")
    codes = (ternary + 1).astype(np.uint8)
    quarter = out // 4
    packed = np.zeros((quarter, ternary.shape[1]), dtype=np.uint8)
    for q in range(4):
        packed |= codes[q * quarter : (q + 1) * quarter] << np.uint8(2 * q)
    return packed


def _linear_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, int]]:
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q_out, kv_out = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    return {
        "self_attn.q_proj": (q_out, h),
        "self_attn.k_proj": (kv_out, h),
        "self_attn.v_proj": (kv_out, h),
        "self_attn.o_proj": (h, q_out),
        "mlp.gate_proj": (f, h),
        "mlp.up_proj": (f, h),
        "mlp.down_proj": (h, f),
    }


def write_tiny_hf_model(
    dest: Path,
    *,
    seed: int = 0,
    packed: bool = False,
    embed_std: float = 1.0,
    words: bool = False,
    **config_overrides: Any,
) -> Path:
    """Write a tiny random BitNet model in the HF format into `dest` (created).

    packed=False writes float32 master weights (quantization_mode "online": the
    importer applies the absmean rule); packed=True writes HF's packed uint8
    ternary weights with a `weight_scale` per linear (quantization_mode
    "offline", linear_class "autobitlinear": W = T * weight_scale).
    embed_std: spread of the (tied) embedding; logits scale with it, so a small
    value gives a soft next-token distribution (the demo model uses one, so that
    sampling wanders over the vocabulary instead of repeating one token).
    words=True uses the word-level tokenizer (see `word_tokenizer`).
    Returns `dest`.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tok = word_tokenizer() if words else train_tiny_tokenizer()
    cfg = {**TINY_CONFIG, **config_overrides}
    cfg["vocab_size"] = int(config_overrides.get("vocab_size", tok.get_vocab_size()))
    bos, eos, eot = (tok.token_to_id(t) for t in SPECIAL_TOKENS[:3])
    cfg["bos_token_id"], cfg["eos_token_id"] = bos, eos
    cfg["quantization_config"] = {
        "quant_method": "bitnet",
        "linear_class": "autobitlinear",
        "quantization_mode": "offline" if packed else "online",
        "use_rms_norm": False,
    }
    h, n_layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    f32 = np.float32
    tensors: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": rng.normal(0, embed_std, (cfg["vocab_size"], h)).astype(f32),
        "model.norm.weight": (1 + 0.1 * rng.standard_normal(h)).astype(f32),
    }
    for layer in range(n_layers):
        tensors.update(_layer_tensors(rng, cfg, layer, packed))
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    _write_tokenizer_files(dest, tok, cfg, bos, eos, eot)
    return dest


def _layer_tensors(
    rng: np.random.Generator, cfg: dict[str, Any], layer: int, packed: bool
) -> dict[str, np.ndarray]:
    """One layer's HF tensors (norms, then the linears), drawn from `rng` in a fixed order."""
    f32 = np.float32
    h = cfg["hidden_size"]
    p = f"model.layers.{layer}."
    tensors: dict[str, np.ndarray] = {}
    for norm, size in (
        ("input_layernorm", h),
        ("post_attention_layernorm", h),
        ("self_attn.attn_sub_norm", h),
        ("mlp.ffn_sub_norm", cfg["intermediate_size"]),
    ):
        tensors[p + norm + ".weight"] = (1 + 0.1 * rng.standard_normal(size)).astype(f32)
    for name, (out, inp) in _linear_shapes(cfg).items():
        master = rng.normal(0, 0.5 / np.sqrt(inp), (out, inp)).astype(f32)
        if not packed:
            tensors[p + name + ".weight"] = master
            continue
        scale = f32(max(np.abs(master).mean(), 1e-5))
        ternary = np.clip(np.round(master / scale), -1, 1).astype(np.int8)
        tensors[p + name + ".weight"] = pack_ternary_hf(ternary)
        tensors[p + name + ".weight_scale"] = np.array([scale], dtype=f32)
    return tensors


def _write_tokenizer_files(
    dest: Path,
    tok: Tokenizer,
    cfg: dict[str, Any],
    bos: int | None,
    eos: int | None,
    eot: int | None,
) -> None:
    """tokenizer.json, tokenizer_config.json and generation_config.json."""
    tok.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": SPECIAL_TOKENS[0],
                "eos_token": SPECIAL_TOKENS[2],
                "model_max_length": cfg["max_position_embeddings"],
                "tokenizer_class": "PreTrainedTokenizerFast",
            },
            indent=2,
        )
    )
    (dest / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": bos,
                "eos_token_id": [eos, eot],
                "do_sample": True,
                "temperature": 0.6,
                "top_p": 0.9,
                "max_new_tokens": 64,
            },
            indent=2,
        )
    )


def ensure_demo_bundle(store_id: str = DEMO_STORE_ID) -> str:
    """Make sure the store holds the seeded demo bundle; return its store ID.

    Built once (a few seconds) and published atomically by the store."""
    from engine.errors import InvalidRequestError
    from engine.llm import store
    from engine.llm.importer import import_hf_model

    if (store.store_path(store_id) / "bundle.json").exists():
        return store_id
    with tempfile.TemporaryDirectory() as tmp:
        src = write_tiny_hf_model(
            Path(tmp) / "hf", seed=1234, embed_std=DEMO_EMBED_STD, words=True, **DEMO_CONFIG
        )
        gen = json.loads((src / "generation_config.json").read_text())
        gen.update(temperature=1.0, top_p=0.95, repetition_penalty=1.8, max_new_tokens=48)
        (src / "generation_config.json").write_text(json.dumps(gen, indent=2))
        try:
            store.publish(store_id, lambda dest: import_hf_model(src, dest))
        except InvalidRequestError:
            if not (store.store_path(store_id) / "bundle.json").exists():
                raise
            # another process published it first: theirs is the same seeded model
    return store_id
