"""The bitvoice chain against Hugging Face `transformers`' own BitNet: same
tiny random model, same logits within tolerance, same greedy tokens.

Tolerance: our bundle stores embeddings and the KV cache in float16 and HF
keeps float32, and a float difference can flip one int8 activation rounding;
so logits agree to about 1% of their range (measured: 0.5%).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.llm import _native
from engine.llm.importer import import_hf_model
from engine.llm.reference import ReferenceModel
from engine.llm.tiny import write_tiny_hf_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

HF_LOGIT_RTOL = 1e-2  # of max |logit|
PROMPT = [5, 17, 33, 2, 250, 100, 7, 9]
pytestmark = [
    pytest.mark.slow,
    # transformers warns about CPU-only BitNet unpacking and deprecated kwargs
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def hf_greedy(model: object, prompt: list[int], steps: int) -> tuple[np.ndarray, list[int]]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(ids).logits[0].float().numpy()  # type: ignore[operator]
        out = model.generate(ids, max_new_tokens=steps, do_sample=False, pad_token_id=0)  # type: ignore[attr-defined]
    return logits, out[0, len(prompt) :].tolist()


def c_greedy(bundle: Path, prompt: list[int], steps: int) -> tuple[np.ndarray, list[int]]:
    m = _native.Model(str(bundle / "model.bvm"), n_threads=2)
    m.eval(prompt, 0, all_logits=True)
    logits = np.array(m.logits()).reshape(len(prompt), -1)
    tokens: list[int] = []
    for _ in range(steps):
        tok = m.sample()
        tokens.append(tok)
        m.eval([tok], m.n_cached)
    return logits, tokens


@pytest.mark.parametrize("packed", [False, True], ids=["master-f32", "packed-uint8"])
def test_matches_transformers(tmp_path: Path, packed: bool) -> None:
    src = write_tiny_hf_model(tmp_path / "hf", seed=0, packed=packed)
    import_hf_model(src, tmp_path / "bundle")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    model.eval()
    hf_logits, hf_tokens = hf_greedy(model, PROMPT, 8)
    c_logits, c_tokens = c_greedy(tmp_path / "bundle", PROMPT, 8)
    ref_logits = ReferenceModel(tmp_path / "bundle" / "model.bvm").forward(PROMPT)
    scale = float(np.abs(hf_logits).max())
    np.testing.assert_allclose(c_logits, hf_logits, atol=HF_LOGIT_RTOL * scale)
    np.testing.assert_allclose(ref_logits, hf_logits, atol=HF_LOGIT_RTOL * scale)
    assert c_tokens == hf_tokens
