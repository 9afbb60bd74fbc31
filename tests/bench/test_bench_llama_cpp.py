"""bench/bench_llama_cpp.py: model.bvm -> GGUF conversion, llama-bench output parsing,
and (when a llama.cpp build is cached) the real llama-quantize + llama-bench on a tiny model.

The llama.cpp sources and build are never fetched here: the GGUF tests need the
sdist's gguf-py and the end-to-end test the built tools, both left in the bench
cache by `python -m bench.bench_llama_cpp --prepare-only`; without them they skip.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import bench_llama_cpp as blc
from bench.bench_llm import write_random_model
from engine.llm.reference import ReferenceModel

# TQ1_0/TQ2_0 blocks are 256 weights: every row length must be a multiple of 256.
TINY = dict(hidden=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn=512, vocab=384, max_ctx=512)
BITNET_LAYER_TENSORS = {
    "attn_norm",
    "attn_sub_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_sub_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
}  # fmt: skip  (src/models/bitnet.cpp: every tensor the loader requires per layer)


@pytest.fixture(scope="module")
def tiny_bvm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bvm") / "tiny.bvm"
    write_random_model(path, TINY, seed=3)
    return path


@pytest.fixture(scope="module")
def gguf_py() -> Any:
    src = blc.cached_sources()
    if src is None:
        pytest.skip("no llama.cpp sdist cached: python -m bench.bench_llama_cpp --prepare-only")
    return blc.load_gguf_py(src)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_bvm: Path, gguf_py: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf"
    blc.write_gguf(tiny_bvm, out, gguf_py)
    return out


def test_every_bvm_tensor_gets_the_bitnet_name(tiny_bvm: Path) -> None:
    header, tensors = blc.read_bvm(tiny_bvm)
    assert header.hidden == TINY["hidden"] and header.vocab == TINY["vocab"]
    names = [blc.gguf_name(t.name) for t in tensors]
    assert len(set(names)) == len(names)
    assert {"token_embd.weight", "output_norm.weight"} <= set(names)
    for layer in range(TINY["n_layers"]):
        have = {n.split(".")[2] for n in names if n.startswith(f"blk.{layer}.")}
        assert have == BITNET_LAYER_TENSORS


def test_untied_head_and_unknown_names_are_refused() -> None:
    with pytest.raises(blc.LlamaCppError, match="ties the head"):
        blc.gguf_name("lm_head")
    with pytest.raises(blc.LlamaCppError, match="no GGUF name"):
        blc.gguf_name("layers.0.mystery")


def test_not_a_bvm_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bvm"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(blc.LlamaCppError, match=r"not a model\.bvm"):
        blc.read_bvm(bad)
    bad.write_bytes(b"TB")
    with pytest.raises(blc.LlamaCppError, match="too short"):
        blc.read_bvm(bad)


def test_gguf_round_trip_matches_the_reference_model(
    tiny_bvm: Path, tiny_gguf: Path, gguf_py: Any
) -> None:
    """Read the GGUF back with gguf-py's reader and compare each tensor with what the
    NumPy reference model (an independent model.bvm reader) computes with."""
    ref = ReferenceModel(tiny_bvm)
    reader = gguf_py.GGUFReader(tiny_gguf)
    fields = {f.name: f for f in reader.fields.values()}
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    assert arch == "bitnet"
    assert int(fields["bitnet.vocab_size"].parts[-1][0]) == TINY["vocab"]
    assert int(fields["bitnet.attention.head_count_kv"].parts[-1][0]) == TINY["n_kv_heads"]
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "none"
    got = {t.name: np.asarray(t.data) for t in reader.tensors}
    np.testing.assert_array_equal(got["token_embd.weight"].astype(np.float32), ref.embed)
    np.testing.assert_array_equal(got["output_norm.weight"], ref.norm)
    for i, layer in enumerate(ref.layers):
        np.testing.assert_array_equal(got[f"blk.{i}.ffn_sub_norm.weight"], layer.ffn_sub_norm)
        for ours, theirs in blc.GGUF_LINEARS.items():
            w = got[f"blk.{i}.{theirs}.weight"]
            lin = layer.lin[ours]
            assert w.dtype == np.float16 and w.shape == lin.t.shape
            expect = (lin.t.astype(np.float32) * np.float32(lin.scale)).astype(np.float16)
            np.testing.assert_array_equal(w, expect)
            # three levels, all of them used: a ternary matrix, not noise or zeros
            assert set(np.unique(np.sign(w)).tolist()) == {-1.0, 0.0, 1.0}


def test_gguf_write_is_atomic(tiny_bvm: Path, gguf_py: Any, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    blc.write_gguf(tiny_bvm, out, gguf_py)
    assert out.exists() and not out.with_suffix(".tmp").exists()
    assert out.read_bytes()[:4] == b"GGUF"


def _llama_bench_entry(n_prompt: int, n_gen: int, ts: float) -> dict[str, Any]:
    # the fields llama-bench's JSON printer writes (tools/llama-bench/llama-bench.cpp)
    return {"build_commit": "abc1234", "cpu_info": "test cpu", "model_type": "bitnet ?B TQ2_0",
            "model_size": 123456, "n_threads": 2, "n_prompt": n_prompt, "n_gen": n_gen,
            "n_depth": 0, "avg_ns": 1, "stddev_ns": 0, "avg_ts": ts, "stddev_ts": 0.0,
            "samples_ts": [ts]}  # fmt: skip


def test_parse_llama_bench_picks_prefill_and_decode() -> None:
    out = json.dumps([_llama_bench_entry(128, 0, 51.26), _llama_bench_entry(0, 128, 26.04)])
    r = blc.parse_llama_bench(out)
    assert r["prefill_tok_s"] == 51.3 and r["decode_tok_s"] == 26.0
    assert r["model_size"] == 123456 and r["build_commit"] == "abc1234"


@pytest.mark.parametrize(
    "stdout",
    ["not json", json.dumps([_llama_bench_entry(128, 0, 50.0)]), json.dumps([])],
)
def test_parse_llama_bench_rejects_incomplete_output(stdout: str) -> None:
    with pytest.raises(blc.LlamaCppError):
        blc.parse_llama_bench(stdout)


def test_best_and_ratio() -> None:
    runs = [
        {"prefill_tok_s": 10.0, "decode_tok_s": 5.0},
        {"prefill_tok_s": 8.0, "decode_tok_s": 6.0},
    ]
    assert blc.best(runs) == {"prefill_tok_s": 10.0, "decode_tok_s": 6.0}
    assert blc.ratio(50.0, 25.0) == 2.0
    assert np.isnan(blc.ratio(1.0, 0.0))


def test_python_m_bench_skips_it_unless_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`python -m bench` calls main([]): that must neither build nor measure."""
    monkeypatch.delenv(blc.ENV_OPT_IN, raising=False)
    monkeypatch.setattr(blc, "LLAMA_CACHE", tmp_path / "untouched")
    assert blc.main([]) == 0
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "untouched").exists()


@pytest.mark.slow
def test_llama_cpp_loads_and_runs_the_converted_model(tiny_gguf: Path, tmp_path: Path) -> None:
    """The real llama-quantize and llama-bench accept the GGUF as a bitnet model."""
    tools = blc.cached_tools()
    if tools is None:
        pytest.skip("no llama.cpp build cached: python -m bench.bench_llama_cpp --prepare-only")
    out = tmp_path / "tiny-tq2_0.gguf"
    blc.quantize_gguf(tools["llama-quantize"], tiny_gguf, out, "TQ2_0")
    log = out.with_suffix(".quantize.log").read_text()
    assert "converting to tq2_0" in log  # the ternary matrices really became TQ2_0
    r = blc.run_llama_bench(tools["llama-bench"], out, threads=1)
    assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0
    assert "bitnet" in str(r["model_type"]) and "TQ2_0" in str(r["model_type"])


def test_cpu_busy_probe_sees_a_spinning_process() -> None:
    """The quiet-machine probe counts other processes' CPU, in cores."""
    import subprocess
    import sys

    spin = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])  # fmt: skip
    try:
        time.sleep(0.3)  # let it start spinning
        busy = blc.cpu_busy_cores(1.0)
    finally:
        spin.wait()
    assert 0.3 < busy <= (os.cpu_count() or 1)
    assert blc.wait_quiet(0.0) >= 0.0  # no waiting allowed: one probe, returned
