"""Batched decode (issue 17, part 2): Model.eval_batch runs one token of each of
several KV caches in one pass over the weights, and every row gets the bits
that token gets alone, on every kernel path this CPU runs, for any thread count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.llm import _native
from engine.llm.importer import import_hf_model
from engine.llm.tiny import write_tiny_hf_model

PATHS = _native.supported_kernels()
# prompt lengths: one attention span, several spans (> 64 positions), and one
# token; the rows of a batch sit at different positions
LENGTHS = [5, 150, 1, 70]
STEPS = 5


@pytest.fixture(scope="module")
def wide_vocab_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with 2100 vocabulary rows: one thread's head rows
    (4 tasks of 525) span several of the head's L2 blocks and a partial one."""
    src = write_tiny_hf_model(tmp_path_factory.mktemp("hfw") / "m", seed=4, vocab_size=2100)
    dest = tmp_path_factory.mktemp("bw") / "b"
    import_hf_model(src, dest)
    return dest


def prompts(vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(17)
    return [[int(t) for t in rng.integers(0, vocab, size=n)] for n in LENGTHS]


def decode_alone(model: _native.Model, prompt: list[int], feed: list[int]) -> np.ndarray:
    """Logits of each fed token, decoded one at a time on a cache of its own."""
    cache = _native.KVCache(model)
    assert model.eval(prompt, 0, cache=cache)
    rows = []
    for token in feed:
        assert model.eval([token], cache.n_cached, cache=cache)
        rows.append(np.array(model.logits(), dtype=np.float32))
    return np.stack(rows)


def decode_batched(
    model: _native.Model, batch: list[list[int]], feed: list[list[int]]
) -> np.ndarray:
    """[step][row] logits: every row's fed token of a step in one eval_batch."""
    caches = [_native.KVCache(model) for _ in batch]
    for cache, prompt in zip(caches, batch, strict=True):
        assert model.eval(prompt, 0, cache=cache)
    out = []
    for step in range(STEPS):
        assert model.eval_batch(caches, [f[step] for f in feed])
        out.append(np.array(model.logits(), dtype=np.float32).reshape(len(batch), -1))
    assert [c.n_cached for c in caches] == [len(p) + STEPS for p in batch]
    return np.stack(out)


def feeds(vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(23)
    return [[int(t) for t in rng.integers(0, vocab, size=STEPS)] for _ in LENGTHS]


@pytest.mark.parametrize("kv_quant", [None, "int8"])
@pytest.mark.parametrize("head", [None, "int8", "int4"])
@pytest.mark.parametrize("threads", [1, 2])
def test_batched_rows_equal_each_sequence_alone(
    kernel: str, wide_vocab_bundle: Path, head: str | None, threads: int, kv_quant: str | None
) -> None:
    m = _native.Model(
        str(wide_vocab_bundle / "model.bvm"),
        n_threads=threads,
        unembed_quant=head,
        kv_quant=kv_quant,
    )
    batch, feed = prompts(m.n_vocab), feeds(m.n_vocab)
    got = decode_batched(m, batch, feed)
    for row, (prompt, fed) in enumerate(zip(batch, feed, strict=True)):
        np.testing.assert_array_equal(got[:, row], decode_alone(m, prompt, fed))
    assert not np.array_equal(got[:, 0], got[:, 1])  # the rows are not all one sequence


def test_a_wide_batch_equals_each_sequence_alone(kernel: str, tiny_bundle: Path) -> None:
    """13 rows: more than one tile of tokens in the SIMD GEMMs, and a partial one."""
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    rng = np.random.default_rng(29)
    batch = [[int(t) for t in rng.integers(0, m.n_vocab, size=3 + 7 * i)] for i in range(13)]
    feed = [[int(t) for t in rng.integers(0, m.n_vocab, size=STEPS)] for _ in batch]
    got = decode_batched(m, batch, feed)
    for row in (0, 5, 12):
        np.testing.assert_array_equal(got[:, row], decode_alone(m, batch[row], feed[row]))


@pytest.mark.parametrize("kv_quant", [None, "int8"])
@pytest.mark.parametrize("layout", ["2bit", "t1"])
def test_batched_decode_is_thread_count_invariant(
    kernel: str, tiny_bundle: Path, layout: str, kv_quant: str | None
) -> None:
    runs = []
    for threads in (1, 3):
        m = _native.Model(
            str(tiny_bundle / "model.bvm"),
            n_threads=threads,
            ternary_layout=layout,
            kv_quant=kv_quant,
        )
        runs.append(decode_batched(m, prompts(m.n_vocab), feeds(m.n_vocab)))
        m.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_batched_decode_with_lora_equals_alone(kernel: str, tiny_bundle: Path) -> None:
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((4, 64)) * 0.3).astype(np.float32)
    b = (rng.standard_normal((32, 4)) * 0.3).astype(np.float32)
    m.set_lora("layers.1.v_proj", a.tobytes(), b.tobytes(), 4, 2.0)
    batch, feed = prompts(m.n_vocab)[:2], feeds(m.n_vocab)[:2]
    got = decode_batched(m, batch, feed)
    for row in range(2):
        np.testing.assert_array_equal(got[:, row], decode_alone(m, batch[row], feed[row]))


def test_each_row_samples_from_its_own_generator(tiny_bundle: Path) -> None:
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    caches = [_native.KVCache(m) for _ in range(2)]
    for seed, cache in enumerate(caches):
        cache.set_seed(seed)
        assert m.eval([1, 2, 3], 0, cache=cache)
    assert m.eval_batch(caches, [4, 4])
    both = [m.sample(temperature=2.0, cache=c, row=i) for i, c in enumerate(caches)]
    alone = []
    for seed in range(2):
        solo = _native.KVCache(m)
        solo.set_seed(seed)
        assert m.eval([1, 2, 3, 4], 0, cache=solo)
        alone.append(m.sample(temperature=2.0, cache=solo))
    assert both == alone


def test_a_cancelled_batch_changes_no_cache(tiny_bundle: Path) -> None:
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    caches = [_native.KVCache(m) for _ in range(3)]
    for cache in caches:
        assert m.eval([1, 2], 0, cache=cache)
    m.cancel()
    assert m.eval_batch(caches, [3, 4, 5]) is False
    assert [c.n_cached for c in caches] == [2, 2, 2]
    assert m.eval_batch(caches, [3, 4, 5])  # the flag was consumed
    assert [c.n_cached for c in caches] == [3, 3, 3]


def test_bad_batches_raise(tiny_bundle: Path) -> None:
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=1, n_ctx=4)
    a, b = _native.KVCache(m), _native.KVCache(m)
    with pytest.raises(ValueError, match="twice"):
        m.eval_batch([a, a], [1, 2])
    with pytest.raises(ValueError, match="one per cache"):
        m.eval_batch([a, b], [1])
    with pytest.raises(ValueError, match="one per cache"):
        m.eval_batch([], [])
    with pytest.raises(TypeError):
        m.eval_batch([a, None], [1, 2])  # type: ignore[list-item]
    assert m.eval([1, 2, 3, 4], 0, cache=a)
    with pytest.raises(ValueError, match="full"):
        m.eval_batch([a, b], [1, 2])
    with pytest.raises(ValueError, match="vocabulary"):
        m.eval_batch([b], [m.n_vocab])
    other = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=1)
    with pytest.raises(ValueError, match="another model"):
        other.eval_batch([b], [1])
    with pytest.raises(ValueError, match="row"):
        m.sample(row=1)
