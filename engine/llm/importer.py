"""Import a Hugging Face BitNet b1.58 checkpoint into a bitvoice bundle.

Reads config.json and the safetensors files (single or sharded) tensor by
tensor through a memory map, so importing a 2B model never holds the whole
model in RAM: each linear is converted (bf16/f16/f32 master weights quantized
with the BitNet absmean rule, or HF's packed uint8 ternary + `weight_scale`
unpacked) and appended to model.bvm, then dropped.

The layout of model.bvm is csrc/include/bv_format.h; this file mirrors its
constants (a test checks they agree with the C header).
"""

from __future__ import annotations

import json
import mmap
import shutil
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from engine.errors import InvalidRequestError
from engine.llm import bundle

__all__ = [
    "BV_ALIGN",
    "BV_MAGIC",
    "BV_VERSION",
    "LINEARS",
    "BitNetShapes",
    "BvmWriter",
    "import_hf_model",
    "pack_ternary",
    "quantize_absmean",
    "unpack_hf_ternary",
    "validate_config",
]

# --- mirrors of csrc/include/bv_format.h -------------------------------------
BV_MAGIC = 0x4D564254
BV_VERSION = 1
BV_ALIGN = 64
BV_QK = 128
BV_NAME_LEN = 48
HEADER = struct.Struct("<IIIIQ8Iff")  # bv_file_header, 64 bytes
ENTRY = struct.Struct(f"<{BV_NAME_LEN}sIIIfQQ")  # bv_tensor_entry, 80 bytes
DTYPE_F32, DTYPE_F16, DTYPE_TERNARY = 0, 1, 2
assert HEADER.size == 64 and ENTRY.size == 80

# HF module path -> our tensor name suffix, in the order the C loader expects.
LINEARS = {
    "self_attn.q_proj": "q_proj",
    "self_attn.k_proj": "k_proj",
    "self_attn.v_proj": "v_proj",
    "self_attn.o_proj": "o_proj",
    "mlp.gate_proj": "gate_proj",
    "mlp.up_proj": "up_proj",
    "mlp.down_proj": "down_proj",
}
NORMS = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.attn_sub_norm": "attn_sub_norm",
    "mlp.ffn_sub_norm": "ffn_sub_norm",
}
# Generous upper bounds: a config beyond them is a typo or an attack, not a model.
MAX_DIM = 1 << 16
MAX_VOCAB = 1 << 20
MAX_LAYERS = 512
MAX_CTX = 1 << 20


# transformers' BitNetConfig defaults for keys a config.json leaves out
# (transformers 5.x, models/bitnet/configuration_bitnet.py): a checkpoint means
# what transformers computes from it, so a missing key must mean the same here.
HF_DEFAULTS: dict[str, Any] = {
    "num_key_value_heads": 5,  # a missing key is 5; an explicit null means num_attention_heads
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "rope_theta": 500000.0,  # BitNetConfig.default_theta
}
# RoPE variants transformers knows; only "default" is what the C engine computes.
ROPE_KEYS = ("rope_scaling", "rope_parameters")


def _rope(cfg: dict[str, Any]) -> tuple[str, float]:
    """(rope_type, rope_theta) as transformers resolves them: the legacy
    `rope_scaling` replaces `rope_parameters`; a theta inside the dict wins over
    the top-level `rope_theta`, which wins over the model's default."""
    for key in ROPE_KEYS:
        rope = cfg.get(key)
        if rope:
            break
    else:
        key, rope = "rope_parameters", {}
    if not isinstance(rope, dict):
        raise InvalidRequestError(f"{key} must be an object, got {rope!r}")
    rope_type = str(rope.get("rope_type", rope.get("type", "default")))
    if rope_type != "default":
        raise InvalidRequestError(
            f"{key}.rope_type={rope_type!r} is not supported: the bitvoice engine computes "
            "only the default RoPE (no position scaling)"
        )
    if rope.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0)) != 1.0:
        raise InvalidRequestError("partial_rotary_factor is not supported: RoPE covers every dim")
    theta = rope.get("rope_theta", cfg.get("rope_theta", HF_DEFAULTS["rope_theta"]))
    try:
        return rope_type, float(theta)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"rope_theta={theta!r} is not a number") from None


class BitNetShapes:
    """The sizes the engine needs, read from a validated config.json.

    A key the config leaves out takes transformers' BitNetConfig default (HF_DEFAULTS)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.hidden = int(cfg["hidden_size"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.n_heads = int(cfg["num_attention_heads"])
        kv = cfg.get("num_key_value_heads", HF_DEFAULTS["num_key_value_heads"])
        self.n_kv_heads = int(self.n_heads if kv is None else kv)
        self.ffn = int(cfg["intermediate_size"])
        self.vocab = int(cfg["vocab_size"])
        self.max_ctx = int(
            cfg.get("max_position_embeddings", HF_DEFAULTS["max_position_embeddings"])
        )
        self.head_dim = int(cfg.get("head_dim") or self.hidden // self.n_heads)
        self.tied = bool(cfg.get("tie_word_embeddings", HF_DEFAULTS["tie_word_embeddings"]))
        self.rope_theta = _rope(cfg)[1]
        self.eps = float(cfg.get("rms_norm_eps", HF_DEFAULTS["rms_norm_eps"]))

    @property
    def n_tensors(self) -> int:
        """Tensors in a bundle: embed, norm, 4 norms + 7 linears per layer, lm_head if untied."""
        return 2 + self.n_layers * (len(NORMS) + len(LINEARS)) + (0 if self.tied else 1)

    def linear_shape(self, suffix: str) -> tuple[int, int]:
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        return {
            "q_proj": (q, self.hidden),
            "k_proj": (kv, self.hidden),
            "v_proj": (kv, self.hidden),
            "o_proj": (self.hidden, q),
            "gate_proj": (self.ffn, self.hidden),
            "up_proj": (self.ffn, self.hidden),
            "down_proj": (self.hidden, self.ffn),
        }[suffix]


def _quantization(cfg: dict[str, Any]) -> dict[str, Any]:
    """The BitNet quantization_config with transformers' defaults filled in;
    refuses (naming the key) what the engine would compute differently."""
    qc = cfg.get("quantization_config")
    if not isinstance(qc, dict):
        # without it transformers runs every linear in full precision, not ternary
        raise InvalidRequestError(
            "quantization_config is missing: transformers would run this model's linears in "
            "full precision; bitvoice runs BitNet b1.58 (quant_method 'bitnet') only"
        )
    q = {
        "linear_class": "bitlinear",
        "quantization_mode": "offline",
        "use_rms_norm": False,
        "modules_to_not_convert": None,
        **qc,
    }
    if q.get("quant_method") != "bitnet":
        raise InvalidRequestError(
            f"quantization_config.quant_method={q.get('quant_method')!r}: expected 'bitnet'"
        )
    if q["linear_class"] not in ("bitlinear", "autobitlinear"):
        raise InvalidRequestError(
            f"quantization_config.linear_class={q['linear_class']!r}: expected "
            "'bitlinear' or 'autobitlinear'"
        )
    if q["quantization_mode"] not in ("online", "offline"):
        raise InvalidRequestError(
            f"quantization_config.quantization_mode={q['quantization_mode']!r}: expected "
            "'online' or 'offline'"
        )
    if q["use_rms_norm"]:
        raise InvalidRequestError(
            "quantization_config.use_rms_norm=true is not supported: the engine has no "
            "RMSNorm inside each linear"
        )
    skip = q["modules_to_not_convert"]
    # transformers adds its default skip (lm_head) only when the list is absent:
    # a list without lm_head quantizes the head, one with more keeps linears in float
    if skip is not None and sorted(set(skip)) != ["lm_head"]:
        raise InvalidRequestError(
            f"quantization_config.modules_to_not_convert={skip!r} is not supported: "
            "bitvoice keeps exactly lm_head unquantized"
        )
    return q


def validate_config(cfg: dict[str, Any]) -> BitNetShapes:
    """Check that a config.json describes a BitNet b1.58 model we can run."""
    archs = cfg.get("architectures") or []
    if cfg.get("model_type") != "bitnet" and "BitNetForCausalLM" not in archs:
        raise InvalidRequestError(
            f"unsupported architecture {archs or cfg.get('model_type')!r}: bitvoice runs "
            "BitNet b1.58 models (model_type 'bitnet', BitNetForCausalLM)"
        )
    if cfg.get("hidden_act", "relu2") != "relu2":
        raise InvalidRequestError(
            f"unsupported hidden_act {cfg.get('hidden_act')!r}; expected relu2"
        )
    _rope(cfg)
    _quantization(cfg)
    if cfg.get("attention_bias"):
        raise InvalidRequestError("attention_bias=true is not supported (BitNet has no biases)")
    try:
        s = BitNetShapes(cfg)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequestError(f"config.json lacks or mistypes a size: {exc}") from None
    problems = []
    for name, value, hi in (
        ("hidden_size", s.hidden, MAX_DIM),
        ("num_hidden_layers", s.n_layers, MAX_LAYERS),
        ("num_attention_heads", s.n_heads, MAX_DIM),
        ("num_key_value_heads", s.n_kv_heads, MAX_DIM),
        ("intermediate_size", s.ffn, 4 * MAX_DIM),
        ("vocab_size", s.vocab, MAX_VOCAB),
        ("max_position_embeddings", s.max_ctx, MAX_CTX),
        ("head_dim", s.head_dim, MAX_DIM),
    ):
        if not 0 < value <= hi:
            problems.append(f"{name}={value} (must be 1..{hi})")
    if not problems:
        if s.n_heads % s.n_kv_heads:
            problems.append("num_attention_heads must be a multiple of num_key_value_heads")
        if s.head_dim % 2:
            problems.append(f"head_dim={s.head_dim} must be even for RoPE")
        if s.n_heads * s.head_dim != s.hidden:
            # attn_sub_norm has hidden_size weights and normalizes the concatenated heads
            problems.append("num_attention_heads * head_dim must equal hidden_size")
        if s.ffn % 4 or s.hidden % 4:
            problems.append("hidden_size and intermediate_size must be multiples of 4")
    if problems:
        raise InvalidRequestError("unsupported BitNet shapes: " + "; ".join(problems))
    return s


# --- safetensors, read lazily through mmap -------------------------------------
_ST_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "U8": np.uint8,
    "I8": np.int8,
}


class _SafetensorsFile:
    def __init__(self, path: Path, stack: ExitStack) -> None:
        self.path = path
        fh: BinaryIO = stack.enter_context(open(path, "rb"))
        size = path.stat().st_size
        if size < 8:
            raise InvalidRequestError(f"{path.name} is truncated")
        self.mm = stack.enter_context(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
        (n,) = struct.unpack("<Q", self.mm[:8])
        if n > size - 8 or n > 100 << 20:
            raise InvalidRequestError(f"{path.name}: safetensors header length {n} is corrupt")
        try:
            header = json.loads(bytes(self.mm[8 : 8 + n]))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRequestError(
                f"{path.name}: safetensors header is not JSON: {exc}"
            ) from None
        header.pop("__metadata__", None)
        self.header: dict[str, Any] = header
        self.data_start = 8 + n
        self.size = size

    def tensor(self, name: str) -> np.ndarray:
        info = self.header[name]
        dtype = _ST_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise InvalidRequestError(f"{name}: unsupported dtype {info.get('dtype')!r}")
        start, end = (self.data_start + int(o) for o in info["data_offsets"])
        shape = tuple(int(d) for d in info["shape"])
        count = int(np.prod(shape)) if shape else 1
        if end > self.size or end - start != count * np.dtype(dtype).itemsize:
            raise InvalidRequestError(f"{self.path.name}: tensor {name} is truncated or corrupt")
        # A copy of one tensor at a time (never a view): the map must be
        # closable even while an error's traceback still holds arrays.
        arr = np.frombuffer(self.mm, dtype=dtype, count=count, offset=start).reshape(shape)
        if info["dtype"] == "BF16":  # bf16 is the top half of an f32
            out = (arr.astype(np.uint32) << 16).view(np.float32)
        else:
            out = arr.copy()
        del arr
        self._release(start, end)
        return out

    def _release(self, start: int, end: int) -> None:
        """Drop the mapped pages of a tensor already copied out, so a 2B import's
        resident memory stays about one tensor, not the whole checkpoint."""
        page = mmap.PAGESIZE
        lo = start // page * page
        if end > lo:
            self.mm.madvise(mmap.MADV_DONTNEED, lo, end - lo)


class _Checkpoint:
    """All tensors of a (possibly sharded) safetensors checkpoint, by name."""

    def __init__(self, src: Path, stack: ExitStack) -> None:
        index = src / "model.safetensors.index.json"
        if index.exists():
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = [p.name for p in sorted(src.glob("*.safetensors"))]
        if not files:
            raise InvalidRequestError(f"no .safetensors weights in {src}")
        self.by_name: dict[str, _SafetensorsFile] = {}
        for fname in files:
            f = _SafetensorsFile(src / fname, stack)
            for name in f.header:
                self.by_name[name] = f

    def has(self, name: str) -> bool:
        return name in self.by_name

    def get(self, name: str) -> np.ndarray:
        f = self.by_name.get(name)
        if f is None:
            raise InvalidRequestError(f"checkpoint lacks tensor {name}")
        return f.tensor(name)


# --- conversions ------------------------------------------------------------------
def quantize_absmean(w: np.ndarray) -> tuple[np.ndarray, float]:
    """BitNet b1.58 weight rule, as Hugging Face computes it:
    s = 1 / max(mean|W|, 1e-5); T = clip(round(W * s), -1, 1); W ~ T / s."""
    w = np.asarray(w, dtype=np.float32)
    s = np.float32(1.0) / np.float32(max(float(np.abs(w).mean(dtype=np.float32)), 1e-5))
    t = np.clip(np.round(w * s), -1, 1).astype(np.int8)
    return t, float(np.float32(1.0) / s)


def unpack_hf_ternary(packed: np.ndarray) -> np.ndarray:
    """HF packed uint8 [out/4, in] -> int8 ternary [out, in] (code - 1)."""
    quarter = packed.shape[0]
    out = np.empty((4 * quarter, packed.shape[1]), dtype=np.int8)
    for q in range(4):
        out[q * quarter : (q + 1) * quarter] = ((packed >> np.uint8(2 * q)) & 3).astype(np.int8) - 1
    if (out > 1).any():
        raise InvalidRequestError("packed ternary weights hold the invalid code 3")
    return out


def pack_ternary(t: np.ndarray) -> np.ndarray:
    """int8 ternary [rows, cols] -> the bv_format.h 2-bit layout, uint8 [rows, nb*32]."""
    rows, cols = t.shape
    nb = (cols + BV_QK - 1) // BV_QK
    codes = np.ones((rows, nb * BV_QK), dtype=np.uint8)  # pad with code 1 (weight 0)
    codes[:, :cols] = (t + 1).astype(np.uint8)
    blocks = codes.reshape(rows, nb, 4, 32)  # [.., q, j] = weight j + 32*q
    packed = blocks[:, :, 0] | blocks[:, :, 1] << 2 | blocks[:, :, 2] << 4 | blocks[:, :, 3] << 6
    return np.ascontiguousarray(packed.reshape(rows, nb * 32))


def _to_f16(w: np.ndarray) -> np.ndarray:
    f16_max = float(np.finfo(np.float16).max)
    return np.clip(np.asarray(w, dtype=np.float32), -f16_max, f16_max).astype("<f2")


# --- the bundle writer ---------------------------------------------------------------
class BvmWriter:
    """Writes a model.bvm front to back: a zeroed header and table, then each
    tensor (64-byte aligned) as it comes, then the real header and table.
    The importer and the benchmark's random-model writer both use it."""

    def __init__(self, fh: BinaryIO, n_tensors: int, s: BitNetShapes) -> None:
        self.fh, self.n, self.s = fh, n_tensors, s
        self.entries: list[bytes] = []
        self.pos = self._align(HEADER.size + ENTRY.size * n_tensors)
        fh.write(b"\0" * self.pos)

    @staticmethod
    def _align(x: int) -> int:
        return (x + BV_ALIGN - 1) // BV_ALIGN * BV_ALIGN

    def add(
        self, name: str, dtype: int, rows: int, cols: int, scale: float, data: np.ndarray
    ) -> None:
        self.add_chunks(name, dtype, rows, cols, scale, [data])

    def add_chunks(
        self,
        name: str,
        dtype: int,
        rows: int,
        cols: int,
        scale: float,
        chunks: Iterable[np.ndarray],
    ) -> None:
        """One tensor written from consecutive row slices (bounded memory)."""
        pad = self._align(self.pos) - self.pos
        self.fh.write(b"\0" * pad)
        self.pos += pad
        start = self.pos
        for chunk in chunks:
            raw = np.ascontiguousarray(chunk).tobytes()
            self.fh.write(raw)
            self.pos += len(raw)
        self.entries.append(
            ENTRY.pack(
                name.encode()[: BV_NAME_LEN - 1], dtype, rows, cols, scale, start, self.pos - start
            )
        )

    def finish(self) -> None:
        if len(self.entries) != self.n:
            raise AssertionError(f"wrote {len(self.entries)} tensors, planned {self.n}")
        s = self.s
        self.fh.seek(0)
        self.fh.write(
            HEADER.pack(
                BV_MAGIC, BV_VERSION, self.n, HEADER.size, self.pos,
                s.hidden, s.n_layers, s.n_heads, s.n_kv_heads, s.ffn, s.vocab, s.max_ctx, s.head_dim,
                s.rope_theta, s.eps,
            )
        )  # fmt: skip
        self.fh.write(b"".join(self.entries))


def _weight_scale(ck: _Checkpoint, name: str) -> float:
    ws = float(np.asarray(ck.get(name + ".weight_scale"), dtype=np.float32).reshape(-1)[0])
    if not np.isfinite(ws) or ws <= 0:
        raise InvalidRequestError(f"{name}.weight_scale = {ws} is not a positive number")
    return ws


def _ternary_linear(
    ck: _Checkpoint, name: str, rows: int, cols: int, q: dict[str, Any]
) -> tuple[np.ndarray, float]:
    """One linear as (int8 ternary [rows, cols], scale) with W = T * scale, the
    way transformers computes it for the quantization_config `q`:
    - BitLinear (packed uint8 only): y = x.T / weight_scale;
    - AutoBitLinear online: the absmean rule on whatever is stored (packed
      weights are unpacked to ternary first, and weight_scale is unused);
    - AutoBitLinear offline: W as stored (ternary, packed or float) times weight_scale."""
    w = ck.get(name + ".weight")
    if w.dtype == np.uint8:
        if w.shape != (rows // 4, cols):
            raise InvalidRequestError(
                f"{name}: packed shape {w.shape}, expected {(rows // 4, cols)}"
            )
        t = unpack_hf_ternary(w)
        if q["linear_class"] == "bitlinear":
            return t, 1.0 / _weight_scale(ck, name)
        if q["quantization_mode"] == "online":
            return quantize_absmean(t)
        return t, _weight_scale(ck, name)
    if w.shape != (rows, cols):
        raise InvalidRequestError(f"{name}: shape {w.shape}, expected {(rows, cols)}")
    if q["linear_class"] == "bitlinear":
        raise InvalidRequestError(
            f"{name} holds float weights, but quantization_config.linear_class='bitlinear' "
            "reads packed uint8 ternary weights only"
        )
    if q["quantization_mode"] == "online":
        return quantize_absmean(w)
    # offline: transformers multiplies the stored float weights as they are, so
    # they must be one magnitude times a ternary pattern for the engine to match
    w = np.asarray(w, dtype=np.float32)
    mags = np.unique(np.abs(w[w != 0]))
    if mags.size > 1:
        raise InvalidRequestError(
            f"{name} holds float weights that are not ternary ({mags.size} magnitudes), but "
            "quantization_config.quantization_mode='offline' uses them unquantized"
        )
    magnitude = float(mags[0]) if mags.size else 1.0
    return np.sign(w).astype(np.int8), magnitude * _weight_scale(ck, name)


def _iter_tensors(
    ck: _Checkpoint, cfg: dict[str, Any], s: BitNetShapes
) -> Iterator[tuple[str, int, int, int, float, np.ndarray]]:
    """Yield (name, dtype, rows, cols, scale, data) in the order the C loader reads."""
    q = _quantization(cfg)

    def f32_vector(hf_name: str, n: int) -> np.ndarray:
        v = np.asarray(ck.get(hf_name), dtype=np.float32).reshape(-1)
        if v.size != n:
            raise InvalidRequestError(f"{hf_name} has {v.size} values, config implies {n}")
        return v

    emb = ck.get("model.embed_tokens.weight")
    if emb.shape != (s.vocab, s.hidden):
        raise InvalidRequestError(
            f"embed_tokens has shape {emb.shape}, config implies {(s.vocab, s.hidden)}"
        )
    yield "embed", DTYPE_F16, s.vocab, s.hidden, 1.0, _to_f16(emb)
    yield "norm", DTYPE_F32, 1, s.hidden, 1.0, f32_vector("model.norm.weight", s.hidden)
    for layer in range(s.n_layers):
        p = f"model.layers.{layer}."
        for hf, ours in NORMS.items():
            n = s.ffn if ours == "ffn_sub_norm" else s.hidden
            yield f"layers.{layer}.{ours}", DTYPE_F32, 1, n, 1.0, f32_vector(p + hf + ".weight", n)
        for hf, ours in LINEARS.items():
            rows, cols = s.linear_shape(ours)
            t, scale = _ternary_linear(ck, p + hf, rows, cols, q)
            yield f"layers.{layer}.{ours}", DTYPE_TERNARY, rows, cols, scale, pack_ternary(t)
    if not s.tied:
        if not ck.has("lm_head.weight"):
            raise InvalidRequestError(
                "the checkpoint has no lm_head.weight but tie_word_embeddings is false "
                "(transformers' default when the key is missing): set it to true if the head "
                "is the embedding"
            )
        head = ck.get("lm_head.weight")
        if head.shape != (s.vocab, s.hidden):
            raise InvalidRequestError(
                f"lm_head has shape {head.shape}, expected {(s.vocab, s.hidden)}"
            )
        yield "lm_head", DTYPE_F16, s.vocab, s.hidden, 1.0, _to_f16(head)


def _check_tokenizer(path: Path, s: BitNetShapes) -> None:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises bare Exception subclasses
        raise InvalidRequestError(f"tokenizer.json cannot be read: {exc}") from None
    n = tok.get_vocab_size(with_added_tokens=True)
    if not 0 < n <= s.vocab:
        raise InvalidRequestError(
            f"tokenizer has {n} tokens but the model's vocabulary is {s.vocab}: they do not match"
        )


def import_hf_model(src: Path, dest: Path, *, source: str | None = None) -> None:
    """Convert the HF BitNet folder `src` into a bundle folder `dest` (must not exist).

    Raises InvalidRequestError for an unsupported architecture or shapes, a
    missing or corrupt file, or a tokenizer that does not match the vocabulary.
    On error nothing is left at `dest`. Publication into the store (atomic
    rename) is the store's job; this writes `dest` directly.
    """
    src, dest = Path(src), Path(dest)
    if dest.exists():
        raise InvalidRequestError(f"import destination already exists: {dest}")
    try:
        cfg = json.loads((src / bundle.CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequestError(
            f"{src} has no config.json: not a Hugging Face model folder"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(f"{src}/config.json is unreadable: {exc}") from None
    if not isinstance(cfg, dict):
        raise InvalidRequestError(f"{src}/config.json is not a JSON object")
    s = validate_config(cfg)
    if not (src / bundle.TOKENIZER).exists():
        raise InvalidRequestError(f"{src} has no tokenizer.json")
    _check_tokenizer(src / bundle.TOKENIZER, s)
    dest.mkdir(parents=True)
    try:
        with ExitStack() as stack:
            ck = _Checkpoint(src, stack)
            with open(dest / bundle.MODEL_FILE, "wb") as fh:
                writer = BvmWriter(fh, s.n_tensors, s)
                for item in _iter_tensors(ck, cfg, s):
                    writer.add(*item)
                writer.finish()
        shutil.copyfile(src / bundle.CONFIG, dest / bundle.CONFIG)
        shutil.copyfile(src / bundle.TOKENIZER, dest / bundle.TOKENIZER)
        for name in bundle.OPTIONAL_FILES:
            if (src / name).exists():
                shutil.copyfile(src / name, dest / name)
        meta = {
            "format": bundle.BUNDLE_FORMAT,
            "source": source or str(src),
            "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "requires_remote_code": bool(cfg.get("auto_map")),
        }
        (dest / bundle.BUNDLE_META).write_text(json.dumps(meta, indent=2))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
