"""LoRA adapters: import PEFT adapters into adapter bundles, apply them to a model.

    <store>/<org>/<name>/          (an adapter bundle)
        adapter.json               {"format", "base", "base_config_hash", "rank", "alpha",
                                    "use_rslora", "scale", "targets"}
        adapter.safetensors        float32 "layers.N.<proj>.lora_A" [r, in], ".lora_B" [out, r]

The delta y += scale * B @ (A @ x) runs at run time on top of the ternary
base (scale = alpha / r, or alpha / sqrt(r) with rsLoRA). An adapter is bound
to its base by a hash of the base's config.json: applying it to a model with
another config is refused. `lora_quant` ("int8"/"int4") rounds A and B to a
symmetric per-row integer grid (127 or 7 levels each side, one float32 step
per row) and the engine keeps them as those codes: int8 one byte per weight,
int4 two weights per byte (csrc/include/bv_format.h), and applies them with
its quantized-LoRA kernels. The NumPy reference applies `quantize_lora`, the
same grid as float32 values.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file, save_file

from engine.errors import InvalidRequestError
from engine.llm import bundle
from engine.llm.importer import BitNetShapes

if TYPE_CHECKING:
    from engine.llm._native import Model

__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_FORMAT",
    "TARGETS",
    "apply_adapter",
    "base_config_hash",
    "import_peft_adapter",
    "load_adapter",
    "pack_int4",
    "quantize_lora",
    "quantize_lora_codes",
    "set_lora_factors",
]

ADAPTER_FORMAT = 1
ADAPTER_FILE = "adapter.safetensors"
ADAPTER_META = "adapter.json"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_KEY = re.compile(
    r"layers\.(\d+)\.(?:self_attn|mlp)\.("
    + "|".join(TARGETS)
    + r")\.lora_([AB])(?:\.[\w-]+)?\.weight$"
)
# Config keys that do not change what the weights mean (tooling, dtype of the source).
_VOLATILE = {"_name_or_path", "transformers_version", "torch_dtype", "auto_map"}
MAX_RANK = 4096

F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]
U8 = npt.NDArray[np.uint8]
# Largest code of each lora_quant grid (symmetric: -QMAX..QMAX).
QMAX = {"int8": 127, "int4": 7}
# csrc/include/bv_format.h BV_LORA_I4_ZERO: an int4 code is stored as code + 8.
_I4_ZERO = 8


def base_config_hash(bundle_dir: Path) -> str:
    """sha256 of the base bundle's config.json, canonical (sorted keys, volatile keys dropped)."""
    cfg = bundle.load_bundle_config(bundle_dir)
    canonical = {k: v for k, v in cfg.items() if k not in _VOLATILE}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _linear_shape(cfg: dict[str, Any], target: str) -> tuple[int, int]:
    # the importer's reading of the config, defaults included (a missing
    # num_key_value_heads is transformers' 5, not num_attention_heads)
    return BitNetShapes(cfg).linear_shape(target)


def _read_safetensors(path: Path) -> dict[str, F32]:
    """Tensors as float32. NumPy has no bfloat16, so BF16 is widened by hand."""
    try:
        return {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}
    except (TypeError, ValueError, KeyError):
        pass  # bf16 or an unknown dtype: read the header ourselves
    except Exception as exc:  # safetensors raises its own SafetensorError
        if "bf16" not in str(exc).lower() and "dtype" not in str(exc).lower():
            raise InvalidRequestError(f"cannot read {path}: {exc}") from None
    try:
        raw = path.read_bytes()
        (n,) = struct.unpack_from("<Q", raw, 0)
        header = json.loads(raw[8 : 8 + n])
    except (OSError, struct.error, ValueError) as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc}") from None
    out: dict[str, F32] = {}
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = raw[base + start : base + end]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            bits = np.frombuffer(buf, "<u2").astype(np.uint32) << np.uint32(16)
            out[name] = bits.view(np.float32).reshape(shape)
        elif info["dtype"] in ("F32", "F16"):
            out[name] = (
                np.frombuffer(buf, "<f4" if info["dtype"] == "F32" else "<f2")
                .astype(np.float32)
                .reshape(shape)
            )
        else:
            raise InvalidRequestError(
                f"{path}: tensor {name} has unsupported dtype {info['dtype']}"
            )
    return out


def import_peft_adapter(src: Path, dest: Path, base_dir: Path, base_id: str) -> None:
    """Convert a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)
    into an adapter bundle at `dest` (created), bound to the base bundle at `base_dir`.

    Raises InvalidRequestError for unsupported options (targets outside
    q/k/v/o/gate/up/down, biases, fan_in_fan_out, per-module alpha), missing
    tensors or shapes that do not fit the base."""
    try:
        acfg = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"cannot read {src / 'adapter_config.json'}: {exc}") from None
    if not isinstance(acfg, dict) or acfg.get("peft_type", "LORA") != "LORA":
        raise InvalidRequestError(f"{src} is not a PEFT LoRA adapter")
    targets = acfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    bad = [t for t in targets if t.split(".")[-1] not in TARGETS]
    if bad:
        raise InvalidRequestError(f"unsupported LoRA target modules {bad}; supported: {TARGETS}")
    if acfg.get("bias", "none") != "none" or acfg.get("fan_in_fan_out"):
        raise InvalidRequestError("LoRA adapters with biases or fan_in_fan_out are not supported")
    if acfg.get("alpha_pattern") or acfg.get("modules_to_save"):
        raise InvalidRequestError("LoRA alpha_pattern / modules_to_save are not supported")
    rank, alpha = acfg.get("r"), acfg.get("lora_alpha", acfg.get("r"))
    if not isinstance(rank, int) or not 0 < rank <= MAX_RANK or not isinstance(alpha, int | float):
        raise InvalidRequestError(f"bad LoRA r={rank!r} / lora_alpha={alpha!r}")
    rslora = bool(acfg.get("use_rslora", False))
    weights = src / "adapter_model.safetensors"
    if not weights.is_file():
        raise InvalidRequestError(f"missing {weights} (only safetensors adapters are supported)")
    tensors = _read_safetensors(weights)
    cfg = bundle.load_bundle_config(base_dir)
    n_layers = int(cfg["num_hidden_layers"])
    pairs: dict[str, dict[str, F32]] = {}
    for key, value in tensors.items():
        m = _KEY.search(key)
        if m is None:
            raise InvalidRequestError(f"unexpected tensor {key!r} in the LoRA adapter")
        layer, target, ab = int(m.group(1)), m.group(2), m.group(3)
        if layer >= n_layers:
            raise InvalidRequestError(f"LoRA tensor {key!r}: the base has {n_layers} layers")
        pairs.setdefault(f"layers.{layer}.{target}", {})[ab] = value
    if not pairs:
        raise InvalidRequestError(f"{weights} holds no LoRA tensors")
    out: dict[str, F32] = {}
    ranks: dict[str, int] = {}
    for name, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise InvalidRequestError(f"LoRA {name} needs both lora_A and lora_B")
        a, b = ab["A"], ab["B"]
        rows, cols = _linear_shape(cfg, name.split(".")[-1])
        r = a.shape[0]
        if a.shape != (r, cols) or b.shape != (rows, r):
            raise InvalidRequestError(
                f"LoRA {name}: A {a.shape} / B {b.shape} do not fit the base linear [{rows}, {cols}]"
            )
        out[name + ".lora_A"] = np.ascontiguousarray(a, dtype=np.float32)
        out[name + ".lora_B"] = np.ascontiguousarray(b, dtype=np.float32)
        ranks[name] = int(r)
    dest.mkdir(parents=True)
    save_file(out, str(dest / ADAPTER_FILE))
    meta = {
        "format": ADAPTER_FORMAT,
        "base": base_id,
        "base_config_hash": base_config_hash(base_dir),
        "rank": rank,
        "alpha": alpha,
        "use_rslora": rslora,
        "scale": alpha / math.sqrt(rank) if rslora else alpha / rank,
        "ranks": ranks,
        "targets": sorted(pairs),
    }
    (dest / ADAPTER_META).write_text(json.dumps(meta, indent=2))


def load_adapter(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, tuple[F32, F32]]]:
    """(adapter.json, {"layers.N.proj": (A, B)}) of an adapter bundle."""
    try:
        meta = json.loads((adapter_dir / ADAPTER_META).read_text(encoding="utf-8"))
        tensors = load_file(str(adapter_dir / ADAPTER_FILE))
    except Exception as exc:  # OSError, JSON or safetensors errors
        raise InvalidRequestError(f"adapter bundle unreadable: {adapter_dir}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise InvalidRequestError(f"adapter bundle {adapter_dir} has an unknown format")
    pairs = {
        name: (tensors[name + ".lora_A"], tensors[name + ".lora_B"]) for name in meta["targets"]
    }
    return meta, pairs


def quantize_lora_codes(x: F32, quant: str) -> tuple[I8, F32]:
    """Round each row of x to a symmetric grid of QMAX[quant] levels each side:
    (codes int8 [rows, cols], steps float32 [rows]) with x ~ codes * steps[:, None].
    An all-zero row gets step 1 (its codes are 0)."""
    qmax = np.float32(QMAX[quant])
    amax = np.abs(x).max(axis=1, keepdims=True)
    step = np.where(amax > 0, amax / qmax, np.float32(1.0)).astype(np.float32)
    codes = np.clip(np.round(x / step), -qmax, qmax).astype(np.int8)
    return codes, step[:, 0]


def quantize_lora(x: F32, quant: str | None) -> F32:
    """The float32 values the engine's quantized factors stand for (codes * step);
    None: x unchanged. The NumPy reference applies these."""
    if quant is None:
        return x
    codes, step = quantize_lora_codes(x, quant)
    return (codes.astype(np.float32) * step[:, None]).astype(np.float32)


def pack_int4(codes: I8) -> U8:
    """int4 codes (-7..7) [rows, cols] -> the engine's layout [rows, (cols + 1) // 2]:
    two per byte, even column in the low nibble, each stored as code + 8."""
    rows, cols = codes.shape
    biased = np.full((rows, cols + (cols & 1)), _I4_ZERO, dtype=np.uint8)
    biased[:, :cols] = (codes.astype(np.int16) + _I4_ZERO).astype(np.uint8)
    packed: U8 = (biased[:, 0::2] | (biased[:, 1::2] << 4)).astype(np.uint8)
    return packed


def set_lora_factors(
    model: Model, name: str, a: F32, b: F32, scale: float, quant: str | None
) -> None:
    """Hand one float32 A [rank, in] / B [out, rank] pair to a native Model in the
    storage of `quant` (None: float32; "int8" / "int4": codes and per-row steps).
    ValueError (from the engine) when the shapes do not fit the linear."""
    rank = int(a.shape[0])
    if quant is None:
        model.set_lora(name, a.tobytes(), b.tobytes(), rank, scale)
        return
    packed: list[bytes] = []
    steps: list[bytes] = []
    for factor in (a, b):
        codes, step = quantize_lora_codes(factor, quant)
        packed.append((pack_int4(codes) if quant == "int4" else codes).tobytes())
        steps.append(step.tobytes())
    model.set_lora(
        name, packed[0], packed[1], rank, scale, quant=quant, a_step=steps[0], b_step=steps[1]
    )


def apply_adapter(
    model: Model, adapter_dir: Path, base_dir: Path, quant: str | None
) -> dict[str, Any]:
    """Attach an adapter bundle to a loaded native Model (blocking).

    Raises InvalidRequestError when the adapter was made for another base
    config. Returns the adapter's metadata."""
    meta, pairs = load_adapter(adapter_dir)
    if meta.get("base_config_hash") != base_config_hash(base_dir):
        raise InvalidRequestError(
            f"LoRA adapter {adapter_dir.name!r} was made for base {meta.get('base')!r} "
            "with another config; it cannot be applied to this model"
        )
    scale = float(meta["scale"])
    for name, (a, b) in pairs.items():
        try:
            set_lora_factors(model, name, a, b, scale, quant)
        except ValueError as exc:
            raise InvalidRequestError(f"cannot apply LoRA {name}: {exc}") from None
    return meta
