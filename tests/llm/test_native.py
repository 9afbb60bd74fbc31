"""The C engine against the NumPy reference (engine/llm/reference.py), on a
tiny seeded model, on every kernel path this CPU can run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.llm import _native
from engine.llm.importer import import_hf_model
from engine.llm.reference import LoraDelta, ReferenceModel
from engine.llm.tiny import write_tiny_hf_model

# C vs NumPy: same integer matmuls, float32 elsewhere; differences come from
# float summation order only (plus, rarely, an int8 rounding flip).
REF_LOGIT_ATOL = 1e-3
PATHS = _native.supported_kernels()
PROMPT = [5, 17, 33, 2, 250, 100, 7, 9, 41, 42, 43]
KV_QUANTS = [None, "int8"]  # the KV cache in f16, or int8 rows with a float step each
# The int8 cache rounds each K/V row to 1/127 of its largest value. V rows are
# integer multiples of one step (int32 matmul * scale), so values on a rounding
# tie happen, and a last-bit difference upstream (float summation order) can
# round one the other way in C and in NumPy; one code flipped moves the tiny
# models' later logits by up to ~0.3% of their range (the whole int8 cache
# moves them ~0.5% at most, ~0.25% on average). So with kv_quant="int8": every
# position within KV_INT8_FLIP_ATOL, and on average within half of
# REF_LOGIT_ATOL (measured: <= 0.03%, against the cache's own ~0.25%), which a
# systematic difference from the reference would break.
KV_INT8_FLIP_ATOL = 5e-3


def assert_matches_reference(c: np.ndarray, r: np.ndarray, kv_quant: str | None) -> None:
    """C logits [n, vocab] against the reference's, as REF_LOGIT_ATOL (and
    KV_INT8_FLIP_ATOL for the int8 cache) allow; relative to the logit range."""
    span = max(1.0, float(np.abs(r).max()))
    if kv_quant != "int8":
        np.testing.assert_allclose(c, r, atol=REF_LOGIT_ATOL * span)
        return
    per_position = np.abs(c - r).max(axis=1) / span
    assert per_position.max() <= KV_INT8_FLIP_ATOL, per_position.max()
    assert per_position.mean() <= REF_LOGIT_ATOL / 2, per_position.mean()


@pytest.fixture(scope="module")
def packed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = write_tiny_hf_model(tmp_path_factory.mktemp("hfp") / "m", seed=3, packed=True)
    dest = tmp_path_factory.mktemp("bp") / "b"
    import_hf_model(src, dest)
    return dest


def c_logits(bundle: Path, tokens: list[int], **kw: object) -> np.ndarray:
    m = _native.Model(str(bundle / "model.bvm"), **kw)  # type: ignore[arg-type]
    assert m.eval(tokens, 0, all_logits=True)
    out = np.array(m.logits(), dtype=np.float32).reshape(len(tokens), m.n_vocab)
    m.close()
    return out


@pytest.mark.parametrize("kv_quant", KV_QUANTS)
@pytest.mark.parametrize("unembed_quant", [None, "int8", "int4"])
def test_logits_match_reference(
    kernel: str, tiny_bundle: Path, unembed_quant: str | None, kv_quant: str | None
) -> None:
    c = c_logits(tiny_bundle, PROMPT, n_threads=2, unembed_quant=unembed_quant, kv_quant=kv_quant)
    r = ReferenceModel(
        tiny_bundle / "model.bvm", unembed_quant=unembed_quant, kv_quant=kv_quant
    ).forward(PROMPT)
    assert_matches_reference(c, r, kv_quant)
    assert (c.argmax(1) == r.argmax(1)).all()


def test_packed_import_matches_reference(kernel: str, packed_bundle: Path) -> None:
    c = c_logits(packed_bundle, PROMPT, n_threads=2)
    r = ReferenceModel(packed_bundle / "model.bvm").forward(PROMPT)
    np.testing.assert_allclose(c, r, atol=REF_LOGIT_ATOL * float(np.abs(r).max()))


def test_every_path_gives_identical_logits(tiny_bundle: Path) -> None:
    """Integer kernels are exact, so every path computes the same bits up to
    the float kernels; compare each SIMD path against ref."""
    before = _native.kernel_backend()
    results = {}
    try:
        for path in PATHS:
            _native.select_kernel(path)
            results[path] = c_logits(tiny_bundle, PROMPT, n_threads=2, unembed_quant="int8")
    finally:
        _native.select_kernel(before)
    for path, logits in results.items():
        np.testing.assert_allclose(logits, results["ref"], atol=1e-4, err_msg=path)


@pytest.mark.parametrize("kv_quant", KV_QUANTS)
def test_thread_count_does_not_change_results(tiny_bundle: Path, kv_quant: str | None) -> None:
    one = c_logits(tiny_bundle, PROMPT, n_threads=1, kv_quant=kv_quant)
    three = c_logits(tiny_bundle, PROMPT, n_threads=3, kv_quant=kv_quant)
    np.testing.assert_array_equal(one, three)


def test_incremental_decode_equals_full_prefill(kernel: str, tiny_bundle: Path) -> None:
    full = c_logits(tiny_bundle, PROMPT, n_threads=2)
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    m.eval(PROMPT[:4], 0)
    for i in range(4, len(PROMPT)):
        assert m.eval([PROMPT[i]], i)
        np.testing.assert_allclose(np.array(m.logits()), full[i], atol=1e-3)
    assert m.n_cached == len(PROMPT)


@pytest.mark.parametrize("kv_quant", KV_QUANTS)
def test_prefill_longer_than_one_batch_chunk(tiny_bundle: Path, kv_quant: str | None) -> None:
    tokens = [int(t) for t in np.random.default_rng(7).integers(0, 384, size=150)]
    c = c_logits(tiny_bundle, tokens, n_threads=2, kv_quant=kv_quant)
    r = ReferenceModel(tiny_bundle / "model.bvm", kv_quant=kv_quant).forward(tokens)
    assert_matches_reference(c, r, kv_quant)


# (heads, KV heads, hidden): group sizes 1, 3 and 8 (one tile, a partial tile,
# two tiles of the SIMD attention), head dims 16, 12 (a masked tail) and 8;
# hidden 76 gives the f16 LM head GEMV its 16-column steps, an 8-column step
# and a 4-column masked tail; groups of 4 with head dims 32 and 16 take the
# register-tiled attention of the AVX2 path (the 2B shapes' case)
ATTENTION_SHAPES = [(4, 4, 64), (6, 2, 72), (8, 1, 64), (2, 2, 76), (8, 2, 128), (4, 1, 128)]


@pytest.fixture(
    scope="module", params=ATTENTION_SHAPES, ids=lambda s: f"h{s[0]}-kv{s[1]}-hidden{s[2]}"
)
def shaped_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    heads, kv_heads, hidden = request.param
    src = write_tiny_hf_model(
        tmp_path_factory.mktemp("hfs") / "m",
        seed=11,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
    )
    dest = tmp_path_factory.mktemp("bs") / "b"
    import_hf_model(src, dest)
    return dest


@pytest.mark.parametrize("kv_quant", KV_QUANTS)
def test_attention_spans_and_groups_match_reference(
    kernel: str, shaped_bundle: Path, kv_quant: str | None
) -> None:
    """150 positions: several attention spans merged, over GQA groups that fill
    the SIMD head tile, leave part of it empty, or need two of it."""
    tokens = [int(t) for t in np.random.default_rng(5).integers(0, 384, size=150)]
    c = c_logits(shaped_bundle, tokens, n_threads=2, kv_quant=kv_quant)
    r = ReferenceModel(shaped_bundle / "model.bvm", kv_quant=kv_quant).forward(tokens)
    assert_matches_reference(c, r, kv_quant)


def test_ffn_narrower_than_qkv_matches_reference(kernel: str, tmp_path: Path) -> None:
    """The int32 matmul scratch holds the fused q+k+v rows too: with an FFN
    narrower than them (2 * 48 < 128 + 2 * 32) it once overflowed the heap."""
    src = write_tiny_hf_model(
        tmp_path / "hf", seed=4, hidden_size=128, intermediate_size=48, num_key_value_heads=1
    )
    import_hf_model(src, tmp_path / "b")
    tokens = [int(t) for t in np.random.default_rng(6).integers(0, 384, size=130)]
    c = c_logits(tmp_path / "b", tokens, n_threads=2)
    r = ReferenceModel(tmp_path / "b" / "model.bvm").forward(tokens)
    np.testing.assert_allclose(c, r, atol=REF_LOGIT_ATOL * float(np.abs(r).max()))


@pytest.mark.parametrize("kv_quant", KV_QUANTS)
def test_long_context_is_thread_count_invariant(
    kernel: str, tiny_bundle: Path, kv_quant: str | None
) -> None:
    """Attention spans depend on the position count, not on the threads: the
    same bits for 1 and 3 threads, and decode after a long prefill agrees."""
    tokens = [int(t) for t in np.random.default_rng(9).integers(0, 384, size=200)]
    one = c_logits(tiny_bundle, tokens, n_threads=1, kv_quant=kv_quant)
    three = c_logits(tiny_bundle, tokens, n_threads=3, kv_quant=kv_quant)
    np.testing.assert_array_equal(one, three)
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2, kv_quant=kv_quant)
    m.eval(tokens[:130], 0)
    for i in range(130, 200, 23):
        m.eval(tokens[m.n_cached : i + 1], m.n_cached)
        np.testing.assert_allclose(np.array(m.logits()), one[i], atol=1e-3)
    m.close()


def test_kv_cache_memory_is_committed_as_it_fills(tmp_path: Path) -> None:
    """The cache is sized for the whole context but costs memory only where
    tokens are written: loading with a 131072-token context (a 33.5 MB cache
    here) grows the resident set by far less than that."""
    src = write_tiny_hf_model(tmp_path / "hf", seed=2, max_position_embeddings=131072)
    import_hf_model(src, tmp_path / "b")
    code = (
        "import sys; from engine.llm import _native\n"
        "def rss():\n"
        "    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])\n"
        "before = rss()\n"
        "m = _native.Model(sys.argv[1], n_threads=1)\n"
        "m.eval(list(range(8)), 0)\n"
        "print(m.n_ctx, rss() - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b" / "model.bvm")],
        capture_output=True,
        text=True,
        check=True,
    )
    n_ctx, grown_kb = (int(v) for v in out.stdout.split())
    assert n_ctx == 131072
    assert grown_kb < 8 * 1024, f"loading grew the resident set by {grown_kb} KB"


def test_int8_kv_cache_counts_its_own_bytes(tiny_bundle: Path) -> None:
    """Codes (1 byte per value) and one float32 step per (position, KV head) row,
    for keys and values: what bv_kv_bytes and the LRU cap count."""
    f16 = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=1)
    i8 = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=1, kv_quant="int8")
    ref = ReferenceModel(tiny_bundle / "model.bvm")
    rows = ref.n_layers * ref.n_kv_heads * 2  # per position: K and V of each layer and KV head
    assert (f16.kv_quant, i8.kv_quant) == ("f16", "int8")
    assert f16.kv_bytes_per_token == rows * ref.head_dim * 2
    assert i8.kv_bytes_per_token == rows * (ref.head_dim + 4)
    cache = _native.KVCache(i8)
    assert i8.eval(PROMPT, 0, cache=cache)
    assert cache.nbytes == len(PROMPT) * i8.kv_bytes_per_token
    with pytest.raises(ValueError, match="kv_quant"):
        _native.Model(str(tiny_bundle / "model.bvm"), kv_quant="int4")


def test_int8_kv_cache_is_what_the_reference_quantizes(tiny_bundle: Path) -> None:
    """The C int8 cache matches the reference's int8 cache far more closely, on
    average over the positions, than the f16 one: the rows are quantized the
    same way (and are quantized at all)."""
    tokens = [int(t) for t in np.random.default_rng(8).integers(0, 384, size=100)]
    c = c_logits(tiny_bundle, tokens, n_threads=2, kv_quant="int8")
    r8 = ReferenceModel(tiny_bundle / "model.bvm", kv_quant="int8").forward(tokens)
    r16 = ReferenceModel(tiny_bundle / "model.bvm").forward(tokens)
    assert np.abs(c - r8).max(axis=1).mean() * 10 < np.abs(c - r16).max(axis=1).mean()


def test_kv_cache_reuse_runs_only_new_tokens(tiny_bundle: Path) -> None:
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    m.eval(PROMPT[:6], 0)
    assert m.tokens_evaluated == 6
    m.eval(PROMPT[6:], 6)  # the follow-up only runs what is new
    assert m.tokens_evaluated == len(PROMPT)
    reused = np.array(m.logits())
    # rewinding: truncate to 3 and run a different continuation
    m.eval([99, 98], 3)
    assert m.n_cached == 5
    expected = c_logits(tiny_bundle, PROMPT, n_threads=2)[-1]
    np.testing.assert_allclose(reused, expected, atol=1e-4)
    fresh = c_logits(tiny_bundle, [*PROMPT[:3], 99, 98], n_threads=2)[-1]
    np.testing.assert_allclose(np.array(m.logits()), fresh, atol=1e-4)


def test_lora_matches_reference(kernel: str, tiny_bundle: Path) -> None:
    rng = np.random.default_rng(11)
    ref = ReferenceModel(tiny_bundle / "model.bvm")
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    dims = {"q_proj": (64, 64), "v_proj": (32, 64), "down_proj": (64, 160), "up_proj": (160, 64)}
    for layer in range(2):
        for target, (out, inp) in dims.items():
            a = rng.normal(0, 0.1, (4, inp)).astype(np.float32)
            b = rng.normal(0, 0.1, (out, 4)).astype(np.float32)
            name = f"layers.{layer}.{target}"
            m.set_lora(name, a.tobytes(), b.tobytes(), 4, 2.0)
            ref.set_lora(name, LoraDelta(a, b, 2.0))
    m.eval(PROMPT, 0, all_logits=True)
    c = np.array(m.logits()).reshape(len(PROMPT), -1)
    r = ref.forward(PROMPT)
    np.testing.assert_allclose(c, r, atol=REF_LOGIT_ATOL * float(np.abs(r).max()))
    base = c_logits(tiny_bundle, PROMPT, n_threads=2)
    assert np.abs(c - base).max() > 1e-2, "the adapter must change the output"
    m.clear_lora()
    m.eval(PROMPT, 0, all_logits=True)
    np.testing.assert_allclose(np.array(m.logits()).reshape(len(PROMPT), -1), base, atol=1e-5)


def test_sampling(tiny_bundle: Path) -> None:
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    m.eval(PROMPT, 0)
    logits = np.array(m.logits())
    assert m.sample() == int(logits.argmax())  # greedy
    assert m.sample(temperature=1.0, top_k=1) == int(logits.argmax())
    draws = []
    for _ in range(2):
        m.set_seed(42)
        draws.append([m.sample(temperature=10.0, top_p=0.95) for _ in range(20)])
    assert draws[0] == draws[1], "a seed reproduces a sample sequence"
    assert len(set(draws[0])) > 1, "temperature sampling varies"
    top5 = set(np.argsort(logits)[-5:].tolist())
    assert {m.sample(temperature=50.0, top_k=5) for _ in range(50)} <= top5
    # repetition penalty steers greedy away from a penalised argmax
    best = int(logits.argmax())
    assert m.sample(repetition_penalty=1e6, history=[best], lookback=4) != best
    np.testing.assert_array_equal(np.array(m.logits()), logits)  # penalised on a copy
    # ...but only within the lookback window
    assert m.sample(repetition_penalty=1e6, history=[best, 1, 2, 3, 4], lookback=4) == best
    # the sampler's scratch is clean between calls: the penalty applies again
    assert m.sample(repetition_penalty=1e6, history=[best], lookback=4) != best
    with pytest.raises(ValueError):
        m.sample(top_p=0.0)


def test_cancel_stops_eval_and_keeps_prefix(tiny_bundle: Path) -> None:
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    m.eval(PROMPT[:3], 0)
    m.cancel()
    assert m.eval(PROMPT[3:], 3) is False
    assert m.n_cached == 3
    assert m.eval(PROMPT[3:], 3) is True  # the flag is consumed; the model is usable
    m.cancel()
    m.clear_cancel()
    assert m.eval([1], len(PROMPT)) is True


def test_gil_released_during_eval(tmp_path: Path) -> None:
    """Another Python thread keeps running while eval computes."""
    src = write_tiny_hf_model(tmp_path / "hf", seed=5, hidden_size=256, intermediate_size=1024,
                              num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=4,
                              max_position_embeddings=1024)  # fmt: skip
    import_hf_model(src, tmp_path / "b")
    m = _native.Model(str(tmp_path / "b" / "model.bvm"), n_threads=1)
    ticks = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0)

    t = threading.Thread(target=spin)
    t.start()
    start = time.perf_counter()
    m.eval(list(range(300)), 0)
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    assert elapsed > 0.005
    assert ticks > 10, f"the other thread only ran {ticks} times in {elapsed:.3f}s"


def test_bad_calls_raise(tiny_bundle: Path) -> None:
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=1, n_ctx=16)
    assert m.n_ctx == 16
    with pytest.raises(ValueError, match="exceed the context"):
        m.eval(list(range(17)), 0)
    with pytest.raises(ValueError, match="vocabulary"):
        m.eval([384], 0)
    with pytest.raises(ValueError, match="cache holds"):
        m.eval([1], 5)
    with pytest.raises(ValueError):
        m.eval([], 0)
    with pytest.raises(ValueError, match="unembed_quant"):
        _native.Model(str(tiny_bundle / "model.bvm"), unembed_quant="int3")
    with pytest.raises(ValueError, match=r"not supported|unknown"):
        _native.select_kernel("neon")
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.eval([1], 0)


@pytest.mark.parametrize("path", PATHS)
def test_environment_override_forces_path(path: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from engine.llm import _native; print(_native.kernel_backend())"],
        env={**os.environ, "BITVOICE_KERNEL": path}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == path


def test_environment_override_rejects_unknown_path() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import engine.llm._native"],
        env={**os.environ, "BITVOICE_KERNEL": "sparc"}, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode != 0 and "BITVOICE_KERNEL=sparc" in out.stderr


@pytest.mark.parametrize("unembed_quant", [None, "int4"])
def test_t1_layout_gives_identical_logits(
    kernel: str, tiny_bundle: Path, unembed_quant: str | None
) -> None:
    """The 1.6-bit in-memory layout holds the same ternary weights: exact integer
    products, so the logits are bit-identical to the 2-bit layout's."""
    two_bit = c_logits(
        tiny_bundle, PROMPT, n_threads=2, unembed_quant=unembed_quant, ternary_layout="2bit"
    )
    t1 = c_logits(
        tiny_bundle, PROMPT, n_threads=2, unembed_quant=unembed_quant, ternary_layout="t1"
    )
    np.testing.assert_array_equal(t1, two_bit)


def test_ternary_layout_choice(tiny_bundle: Path) -> None:
    path = str(tiny_bundle / "model.bvm")
    assert _native.Model(path, ternary_layout="t1").ternary_layout == "t1"
    assert _native.Model(path, ternary_layout="2bit").ternary_layout == "2bit"
    assert _native.Model(path).ternary_layout in ("t1", "2bit")  # the path's preference
    with pytest.raises(ValueError, match="ternary_layout"):
        _native.Model(path, ternary_layout="3bit")


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"BITVOICE_KERNEL": "ref"}, "2bit"), ({"BITVOICE_KERNEL": "avx512"}, "t1"),
     ({"BITVOICE_KERNEL": "avx512", "BITVOICE_T1": "0"}, "2bit")],
)  # fmt: skip
def test_default_layout_follows_the_path(
    tiny_bundle: Path, env: dict[str, str], expected: str
) -> None:
    """AVX-512 decodes faster from T1 and asks for it; the scalar path keeps the
    file's layout; BITVOICE_T1=0 opts out."""
    if env["BITVOICE_KERNEL"] not in PATHS:
        pytest.skip(f"this CPU cannot run {env['BITVOICE_KERNEL']}")
    code = f"from engine.llm import _native; print(_native.Model({str(tiny_bundle / 'model.bvm')!r}).ternary_layout)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected
