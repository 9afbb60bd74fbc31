"""A readable NumPy BitNet b1.58 model: the reference the C engine is tested against.

It reads the same model.bvm bundle as the C engine and computes the same
thing, one line per step, in float32 (with exact integer matmuls):

    x = embed[tokens]
    for each layer:
        h = rmsnorm(x, attn_norm);  q, k, v = bitlinear(h, Wq), bitlinear(h, Wk), bitlinear(h, Wv)
        q, k = rope(q), rope(k);    cache k, v (as float16, like the C cache; or kv_quant int8)
        a = softmax(q k^T / sqrt(hd) + causal mask) v          (grouped-query heads)
        x = x + bitlinear(rmsnorm(a, attn_sub_norm), Wo)
        h = rmsnorm(x, ffn_norm)
        x = x + bitlinear(rmsnorm(relu(bitlinear(h, Wg))^2 * bitlinear(h, Wu), ffn_sub_norm), Wd)
    logits = rmsnorm(x, norm) @ head^T

bitlinear(x, W) quantizes x per token to int8 (absmax), multiplies by the
ternary T exactly in integers, then rescales: (xq @ T^T) / s_x * w_scale.
An optional LoRA adds scale * (x @ A^T) @ B^T to a linear's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.llm.importer import BV_QK, DTYPE_F16, DTYPE_F32, DTYPE_TERNARY, ENTRY, HEADER, LINEARS

__all__ = [
    "LoraDelta",
    "ReferenceModel",
    "act_quant",
    "kv_quant",
    "pack_t1",
    "quantize_head",
    "rmsnorm",
    "unpack_t1",
    "unpack_ternary",
]

T1_QK, T1_BLOCK = 320, 64

F32 = npt.NDArray[np.float32]


def unpack_ternary(packed: npt.NDArray[np.uint8], cols: int) -> npt.NDArray[np.int8]:
    """bv_format.h 2-bit layout -> int8 ternary [rows, cols]."""
    rows = packed.shape[0]
    blocks = packed.reshape(rows, -1, 32)
    codes = np.stack([(blocks >> (2 * q)) & 3 for q in range(4)], axis=2)  # [rows, nb, q, j]
    return (codes.reshape(rows, -1)[:, :cols].astype(np.int8) - 1).astype(np.int8)


def pack_t1(t: npt.NDArray[np.int8]) -> npt.NDArray[np.uint8]:
    """int8 ternary [rows, cols] -> the T1 layout (bv_format.h), uint8 [rows, nb1 * 64].
    Byte j of a block holds weights j + 64*i (i = 0..4) as ceil(v * 256 / 243),
    v the base-3 number of their codes (w + 1), most significant first."""
    rows, cols = t.shape
    nb1 = (cols + T1_QK - 1) // T1_QK
    codes = np.ones((rows, nb1 * T1_QK), dtype=np.int32)
    codes[:, :cols] = t.astype(np.int32) + 1
    digits = codes.reshape(rows, nb1, 5, T1_BLOCK)  # [.., i, j] = weight j + 64*i
    v = np.zeros((rows, nb1, T1_BLOCK), dtype=np.int32)
    for i in range(5):
        v = v * 3 + digits[:, :, i]
    return ((v * 256 + 242) // 243).astype(np.uint8).reshape(rows, nb1 * T1_BLOCK)


def unpack_t1(packed: npt.NDArray[np.uint8], cols: int) -> npt.NDArray[np.int8]:
    """T1 layout -> int8 ternary [rows, cols]: digit i = (((byte * 3^i) mod 256) * 3) >> 8."""
    rows = packed.shape[0]
    blocks = packed.reshape(rows, -1, T1_BLOCK).astype(np.uint32)
    digits = [((((blocks * 3**i) & 0xFF) * 3) >> 8) for i in range(5)]
    codes = np.stack(digits, axis=2).reshape(rows, -1)[:, :cols]
    return (codes.astype(np.int8) - 1).astype(np.int8)


def rmsnorm(x: F32, w: F32, eps: float) -> F32:
    ms = (x.astype(np.float64) ** 2).mean(axis=-1, keepdims=True)
    out: F32 = (
        w * (x * (np.float32(1.0) / np.sqrt(ms.astype(np.float32) + np.float32(eps))))
    ).astype(np.float32)
    return out


def act_quant(x: F32) -> tuple[npt.NDArray[np.int32], F32]:
    """Per-token absmax int8: x ~ q * step, step = max|x| / 127."""
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-5))
    s = np.float32(127.0) / amax
    q = np.clip(np.round(x * s), -128, 127).astype(np.int32)
    return q, (np.float32(1.0) / s).astype(np.float32)


def kv_quant(x: F32) -> tuple[npt.NDArray[np.int8], F32]:
    """The int8 KV cache's rows (C: bv_kv_quant_row), per row of the last axis:
    step = max|x| / 127, code = round(x * 127 / max|x|) (to nearest even) in -127..127.
    Returns (codes, steps[..., 1]); x ~ codes * steps."""
    amax = np.abs(x).max(axis=-1, keepdims=True).astype(np.float32)
    inv = np.float32(127.0) / np.maximum(amax, np.float32(1e-30))
    codes = np.clip(np.round(x * inv), -127, 127).astype(np.int8)
    return codes, (amax / np.float32(127.0)).astype(np.float32)


def quantize_head(head: F32, bits: int) -> tuple[npt.NDArray[np.int32], F32]:
    """Per-row symmetric quantization of the LM head (unembed_quant)."""
    qmax = np.float32(127.0 if bits == 8 else 7.0)
    amax = np.abs(head).max(axis=1, keepdims=True)
    scale = np.where(amax > 0, amax / qmax, np.float32(1.0)).astype(np.float32)
    return np.round(head / scale).astype(np.int32), scale[:, 0]


@dataclass
class LoraDelta:
    a: F32  # [rank, in]
    b: F32  # [out, rank]
    scale: float


@dataclass
class _Linear:
    t: npt.NDArray[np.int32]  # [out, in] ternary
    scale: float
    lora: LoraDelta | None = None

    def __call__(self, x: F32) -> F32:
        q, step = act_quant(x)
        y = (q @ self.t.T).astype(np.float32) * (step * np.float32(self.scale))
        if self.lora is not None:
            y = y + np.float32(self.lora.scale) * ((x @ self.lora.a.T) @ self.lora.b.T)
        return y.astype(np.float32)


@dataclass
class _Layer:
    attn_norm: F32
    ffn_norm: F32
    attn_sub_norm: F32
    ffn_sub_norm: F32
    lin: dict[str, _Linear] = field(default_factory=dict)


class ReferenceModel:
    """Loads model.bvm with NumPy; `forward(tokens)` returns logits for every token."""

    def __init__(
        self, bvm: Path, *, unembed_quant: str | None = None, kv_quant: str | None = None
    ) -> None:
        """kv_quant: None/'f16' (the cache in float16) or 'int8' (rows as kv_quant codes)."""
        if kv_quant not in (None, "f16", "int8"):
            raise ValueError(f"kv_quant must be None, 'f16' or 'int8', not {kv_quant!r}")
        self.kv_quant = kv_quant
        raw = Path(bvm).read_bytes()
        (_magic, _version, n_tensors, _hs, _size, self.dim, self.n_layers, self.n_heads,
         self.n_kv_heads, self.ffn, self.vocab, self.max_ctx, self.head_dim,
         self.rope_theta, self.eps) = HEADER.unpack_from(raw, 0)  # fmt: skip
        tensors: dict[str, np.ndarray] = {}
        scales: dict[str, float] = {}
        for i in range(n_tensors):
            name_b, dtype, rows, cols, scale, offset, nbytes = ENTRY.unpack_from(
                raw, HEADER.size + i * ENTRY.size
            )
            name = name_b.split(b"\0", 1)[0].decode()
            buf = raw[offset : offset + nbytes]
            if dtype == DTYPE_F32:
                tensors[name] = np.frombuffer(buf, "<f4").reshape(rows, cols).astype(np.float32)
            elif dtype == DTYPE_F16:
                tensors[name] = np.frombuffer(buf, "<f2").reshape(rows, cols).astype(np.float32)
            elif dtype == DTYPE_TERNARY:
                nb = (cols + BV_QK - 1) // BV_QK
                packed = np.frombuffer(buf, np.uint8).reshape(rows, nb * 32)
                tensors[name] = unpack_ternary(packed, cols).astype(np.int32)
                scales[name] = scale
        self.embed = tensors["embed"]
        self.head = tensors.get("lm_head", self.embed)
        self.norm = tensors["norm"][0]
        self.layers = []
        for layer in range(self.n_layers):
            p = f"layers.{layer}."
            lay = _Layer(
                *(
                    tensors[p + n][0]
                    for n in ("attn_norm", "ffn_norm", "attn_sub_norm", "ffn_sub_norm")
                )
            )
            for ours in LINEARS.values():
                lay.lin[ours] = _Linear(tensors[p + ours], scales[p + ours])
            self.layers.append(lay)
        self.unembed_quant = unembed_quant
        if unembed_quant in ("int8", "int4"):
            self.head_q, self.head_scale = quantize_head(
                self.head, 8 if unembed_quant == "int8" else 4
            )
        # HF: inv_freq = 1 / theta ** (arange(0, hd, 2) / hd), float32
        idx = np.arange(0, self.head_dim, 2, dtype=np.float32) / np.float32(self.head_dim)
        self.rope_inv = (np.float32(1.0) / np.power(np.float32(self.rope_theta), idx)).astype(
            np.float32
        )

    def set_lora(self, name: str, delta: LoraDelta) -> None:
        """name: 'layers.N.q_proj' etc."""
        _, layer, target = name.split(".")
        self.layers[int(layer)].lin[target].lora = delta

    def rope(self, v: F32, positions: npt.NDArray[np.int64]) -> F32:
        """v: [n, heads, hd]; rotate-half RoPE at the given positions."""
        angle = positions.astype(np.float32)[:, None] * self.rope_inv[None, :]  # [n, hd/2]
        cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
        half = self.head_dim // 2
        x1, x2 = v[..., :half], v[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(
            np.float32
        )

    def _cached(self, x: F32) -> F32:
        """x [n, kv_heads, hd] as the cache holds it: float16, or int8 codes * step."""
        if self.kv_quant == "int8":
            codes, step = kv_quant(x)
            return (codes.astype(np.float32) * step).astype(np.float32)
        return x.astype(np.float16).astype(np.float32)

    def forward(self, tokens: list[int]) -> F32:
        """Logits [n, vocab] for a fresh sequence (no cache reuse: the reference is simple)."""
        n, hd = len(tokens), self.head_dim
        pos = np.arange(n)
        group = self.n_heads // self.n_kv_heads
        x = self.embed[np.asarray(tokens)].copy()
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), k=1)
        for lay in self.layers:
            h = rmsnorm(x, lay.attn_norm, self.eps)
            q = lay.lin["q_proj"](h).reshape(n, self.n_heads, hd)
            k = lay.lin["k_proj"](h).reshape(n, self.n_kv_heads, hd)
            v = lay.lin["v_proj"](h).reshape(n, self.n_kv_heads, hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            k, v = self._cached(k), self._cached(v)
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
            scores = np.einsum("thd,shd->hts", q, k) / np.float32(np.sqrt(hd)) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            a = np.einsum("hts,shd->thd", probs, v).reshape(n, self.dim).astype(np.float32)
            x = x + lay.lin["o_proj"](rmsnorm(a, lay.attn_sub_norm, self.eps))
            h = rmsnorm(x, lay.ffn_norm, self.eps)
            f = np.maximum(lay.lin["gate_proj"](h), 0) ** 2 * lay.lin["up_proj"](h)
            x = x + lay.lin["down_proj"](rmsnorm(f.astype(np.float32), lay.ffn_sub_norm, self.eps))
        hn = rmsnorm(x, self.norm, self.eps)
        if self.unembed_quant in ("int8", "int4"):
            q8, step = act_quant(hn)
            logits: F32 = (q8 @ self.head_q.T).astype(np.float32) * step * self.head_scale[None, :]
            return logits.astype(np.float32)
        full: F32 = (hn @ self.head.T).astype(np.float32)
        return full
