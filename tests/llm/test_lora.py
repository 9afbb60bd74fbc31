"""LoRA: PEFT adapters imported into the store and applied by the C engine,
checked against the NumPy reference model with the same adapter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.errors import InvalidRequestError
from engine.llm import LLM, store
from engine.llm.importer import import_hf_model
from engine.llm.lora import load_adapter, quantize_lora
from engine.llm.reference import LoraDelta, ReferenceModel
from engine.llm.tiny import write_tiny_hf_model

REF_LOGIT_ATOL = 1e-3  # relative to the largest logit, as the engine's own reference tests
TOKENS = [1, 40, 41, 42, 43, 44, 45, 46]


def write_peft(
    dest: Path,
    *,
    targets: tuple[str, ...] = ("q_proj", "v_proj", "down_proj"),
    rank: int = 4,
    alpha: int = 8,
    rslora: bool = False,
    dtype: torch.dtype = torch.float32,
    seed: int = 3,
) -> Path:
    """A PEFT LoRA folder for the tiny config (hidden 64, ffn 160, 4 heads / 2 kv)."""
    shapes = {"q_proj": (64, 64), "k_proj": (32, 64), "v_proj": (32, 64), "o_proj": (64, 64),
              "gate_proj": (160, 64), "up_proj": (160, 64), "down_proj": (64, 160)}  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(2):
        for t in targets:
            out, inp = shapes[t]
            group = "mlp" if t in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            key = f"base_model.model.model.layers.{layer}.{group}.{t}"
            tensors[f"{key}.lora_A.weight"] = (torch.randn(rank, inp, generator=gen) * 0.3).to(
                dtype
            )
            tensors[f"{key}.lora_B.weight"] = (torch.randn(out, rank, generator=gen) * 0.3).to(
                dtype
            )
    dest.mkdir(parents=True)
    save_file(tensors, str(dest / "adapter_model.safetensors"))
    (dest / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": rank,
                "lora_alpha": alpha,
                "target_modules": list(targets),
                "use_rslora": rslora,
                "bias": "none",
                "base_model_name_or_path": "local/tiny",
            }
        )
    )
    return dest


async def engine_logits(llm: LLM) -> np.ndarray:
    eng = llm.engine()

    def run() -> np.ndarray:
        eng.model.eval(TOKENS, 0, all_logits=True)  # the model's own cache: no session's
        return np.array(eng.model.logits(), dtype=np.float32).reshape(len(TOKENS), -1)

    return await eng.run(run)


def reference_logits(home: Path, adapter_id: str | None, quant: str | None = None) -> np.ndarray:
    # the LLM's default LM head (int8), which the reference computes too
    ref = ReferenceModel(store.resolve("local/tiny") / "model.bvm", unembed_quant="int8")
    if adapter_id is not None:
        meta, pairs = load_adapter(store.resolve(adapter_id, kind="adapter"))
        for name, (a, b) in pairs.items():
            ref.set_lora(
                name, LoraDelta(quantize_lora(a, quant), quantize_lora(b, quant), meta["scale"])
            )
    return ref.forward(TOKENS)


@pytest.mark.parametrize(
    ("dtype", "rslora", "quant"),
    [
        (torch.float32, False, None),
        (torch.bfloat16, True, None),
        (torch.float32, False, "int8"),
        (torch.float32, False, "int4"),
    ],
)
async def test_adapter_matches_numpy_reference(
    home: Path, tmp_path: Path, dtype: torch.dtype, rslora: bool, quant: str | None
) -> None:
    src = write_peft(tmp_path / "peft", dtype=dtype, rslora=rslora)
    store.import_local(src, "local/ad", base_id="local/tiny")
    meta, _ = load_adapter(store.resolve("local/ad", kind="adapter"))
    assert meta["scale"] == (8 / math.sqrt(4) if rslora else 8 / 4)
    base = LLM("local/tiny")
    await base.start()
    plain = await engine_logits(base)
    await base.stop()
    llm = LLM("local/tiny", lora_dir="local/ad", lora_quant=quant)
    await llm.start()
    got = await engine_logits(llm)
    await llm.stop()
    want = reference_logits(home, "local/ad", quant)
    np.testing.assert_allclose(got, want, atol=REF_LOGIT_ATOL * float(np.abs(want).max()))
    assert np.abs(got - plain).max() > 1e-2  # the adapter really changed the model


async def test_adapter_for_another_base_is_refused(home: Path, tmp_path: Path) -> None:
    src = write_peft(tmp_path / "peft")
    store.import_local(src, "local/ad", base_id="local/tiny")
    other = write_tiny_hf_model(tmp_path / "other", seed=1, rms_norm_eps=1e-6)
    store.publish("local/other", lambda d: import_hf_model(other, d))
    llm = LLM("local/other", lora_dir="local/ad")
    with pytest.raises(InvalidRequestError, match="another config"):
        await llm.start()


def test_import_validation(home: Path, tmp_path: Path) -> None:
    src = write_peft(tmp_path / "peft")
    with pytest.raises(InvalidRequestError, match="--base"):
        store.import_local(src, "local/ad")
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg["target_modules"] = ["embed_tokens"]
    (src / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRequestError, match="unsupported LoRA target"):
        store.import_local(src, "local/ad", base_id="local/tiny")
    wrong = write_peft(tmp_path / "wrong", targets=("q_proj",))
    t = wrong / "adapter_model.safetensors"
    from safetensors.torch import load_file

    data = load_file(str(t))
    key = next(k for k in data if k.endswith("lora_A.weight"))
    data[key] = torch.zeros(4, 65)
    save_file(data, str(t))
    with pytest.raises(InvalidRequestError, match="do not fit"):
        store.import_local(wrong, "local/ad", base_id="local/tiny")
    assert not store.store_path("local/ad").exists()


async def test_unknown_adapter_id_says_how_to_import(home: Path) -> None:
    with pytest.raises(InvalidRequestError, match="bitvoice import ADAPTER_DIR"):
        await LLM("local/tiny", lora_dir="local/nope").start()


async def test_quantized_adapters_are_stored_quantized(home: Path, tmp_path: Path) -> None:
    # rank 4 on q (64x64), v (32x64) and down (64x160), 2 layers (write_peft)
    src = write_peft(tmp_path / "peft")
    store.import_local(src, "local/ad", base_id="local/tiny")
    shapes = [(64, 64), (32, 64), (64, 160)] * 2  # (out, in) of each adapted linear
    rank = 4
    weights = sum(rank * i + o * rank for o, i in shapes)
    steps = 4 * sum(rank + o for o, _ in shapes)  # one float32 step per row of A and of B
    int4 = sum(rank * ((i + 1) // 2) + o * ((rank + 1) // 2) for o, i in shapes)
    want = {None: 4 * weights, "int8": weights + steps, "int4": int4 + steps}
    got = {}
    for quant in (None, "int8", "int4"):
        llm = LLM("local/tiny", lora_dir="local/ad", lora_quant=quant)
        await llm.start()
        model = llm.native_model
        assert model is not None
        got[quant] = model.lora_bytes
        await llm.stop()
    assert got == want
    assert got["int4"] < got["int8"] < got[None] / 2


async def test_set_lora_checks_the_storage_of_its_buffers(home: Path) -> None:
    llm = LLM("local/tiny")
    await llm.start()
    model = llm.engine().model
    a, b = np.zeros((4, 64), np.float32), np.zeros((64, 4), np.float32)
    with pytest.raises(ValueError, match="float32"):
        model.set_lora("layers.0.q_proj", a.astype(np.int8).tobytes(), b.tobytes(), 4, 1.0)
    step = np.ones(4, np.float32).tobytes()
    with pytest.raises(ValueError, match="steps"):
        model.set_lora(
            "layers.0.q_proj", a.astype(np.int8).tobytes(), b.astype(np.int8).tobytes(), 4, 1.0,
            quant="int8", a_step=step,
        )  # fmt: skip
    with pytest.raises(ValueError, match="quant"):
        model.set_lora("layers.0.q_proj", a.tobytes(), b.tobytes(), 4, 1.0, quant="int2")
    assert model.lora_bytes == 0
    await llm.stop()
