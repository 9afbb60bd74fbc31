"""One KV cache per conversation (issue 17, part 1): sessions that take turns
keep their caches, a byte cap evicts the least recently used idle one, and
outputs never depend on what the other sessions ran or on eviction."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_lora import write_peft

from engine.errors import InvalidRequestError
from engine.llm import LLM, ChatDoneEvent, ChatSession, Usage, store, tiny

QUESTIONS = [
    "Tell me about the sea",
    "And the mountains?",
    "Which one is colder at night?",
    "Say that again, shorter",
]
GREEDY: dict[str, Any] = {"temperature": 0.0, "max_tokens": 12}
DEMO = tiny.DEMO_STORE_ID  # the seeded demo model: varied replies (the tiny one repeats a token)


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo bundle, built once for this module."""
    root = tmp_path_factory.mktemp("demo-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BITVOICE_HOME", str(root))
        tiny.ensure_demo_bundle()
        return store.resolve(DEMO)


def start_demo(home: Path, demo_bundle: Path, **options: Any) -> LLM:
    """An LLM on a copy of the demo bundle in this test's store (not started)."""
    dest = home / "models" / DEMO
    if not dest.exists():
        shutil.copytree(demo_bundle, dest)
    return LLM(DEMO, **options)


@pytest.fixture
async def demo(home: Path, demo_bundle: Path) -> AsyncIterator[LLM]:
    llm = start_demo(home, demo_bundle)
    await llm.start()
    yield llm
    await llm.stop()


async def turn(session: ChatSession, message: str, **options: Any) -> tuple[list[int], Usage]:
    """Run one turn; (the tokens it added to the history, usage)."""
    before = len(session.history_tokens) or 1  # the begin token comes with the first turn
    usage = None
    async for event in session.generate(message, **{**GREEDY, **options}):
        if isinstance(event, ChatDoneEvent):
            usage = event.usage
    assert usage is not None
    return session.history_tokens[before:], usage


async def alone(llm: LLM, questions: list[str], **options: Any) -> list[list[int]]:
    """The replies of one session running `questions` with no other session."""
    async with llm.open_session() as s:
        return [(await turn(s, q, **options))[0] for q in questions]


async def test_interleaved_sessions_keep_their_caches(demo: LLM) -> None:
    llm = demo
    # The repro: a's 4th turn, right after b's turn, used to serve 3
    # of its 127 prompt tokens from the cache and re-run the rest.
    want_a = await alone(llm, QUESTIONS)
    async with llm.open_session() as a, llm.open_session() as b:
        got_a = []
        for q in QUESTIONS:
            history = len(a.history_tokens)
            text, usage = await turn(a, q)
            got_a.append(text)
            await turn(b, q[::-1])  # another conversation runs between a's turns
        assert got_a == want_a
        # a's last turn ran only its new message: the history (but for the
        # reply's last token and end token, never evaluated) came from the cache
        assert usage.cached_tokens >= history - 2
        assert usage.prefill_tokens == usage.prompt_tokens - usage.cached_tokens
        assert usage.prefill_tokens <= usage.prompt_tokens - history + 2


@pytest.mark.parametrize("kv_cache_quant", [None, "int8"])
async def test_eviction_under_a_cap_gives_identical_outputs(
    home: Path, demo_bundle: Path, kv_cache_quant: str | None
) -> None:
    # Three sessions, the same conversation each (equal cache sizes), under a
    # cap that holds two of them: the least recently used is evicted, re-runs
    # its history on its next turn, and answers exactly as without a cap.
    free = start_demo(home, demo_bundle, kv_cache_quant=kv_cache_quant)
    await free.start()
    want = await alone(free, QUESTIONS[:2])
    async with free.open_session() as probe:
        await turn(probe, QUESTIONS[0])
        one = free.engine().cache_bytes
    await free.stop()
    assert one > 0

    llm = start_demo(home, demo_bundle, kv_cache_bytes=2 * one, kv_cache_quant=kv_cache_quant)
    await llm.start()
    try:
        engine = llm.engine()
        async with llm.open_session() as a, llm.open_session() as b, llm.open_session() as c:
            for s in (a, b, c):  # a is the least recently used when c's turn runs
                assert (await turn(s, QUESTIONS[0]))[0] == want[0]
            assert engine.evictions == 1 and engine.cache_bytes <= 2 * one
            text_b, usage_b = await turn(b, QUESTIONS[1])
            text_a, usage_a = await turn(a, QUESTIONS[1])
            assert usage_b.cached_tokens > 0  # b kept its cache
            assert usage_a.cached_tokens == 0  # a's was evicted: its history ran again
            assert usage_a.prefill_tokens == usage_a.prompt_tokens
            assert text_a == text_b == want[1]
    finally:
        await llm.stop()


async def test_cap_zero_keeps_a_cache_only_until_another_session_runs(
    home: Path, demo_bundle: Path
) -> None:
    llm = start_demo(home, demo_bundle, kv_cache_bytes=0)
    await llm.start()
    try:
        want = await alone(llm, QUESTIONS[:2])
        async with llm.open_session() as a, llm.open_session() as b:
            await turn(a, QUESTIONS[0])
            await turn(b, QUESTIONS[0])
            text, usage = await turn(a, QUESTIONS[1])
            assert usage.cached_tokens == 0 and text == want[1]
            assert llm.engine().evictions >= 2
    finally:
        await llm.stop()


async def test_concurrent_turns_match_each_session_alone(demo: LLM) -> None:
    llm = demo
    # Two turns generating at once take steps in turn on the worker; neither
    # evicts the other, and each gets the tokens it gets alone.
    want_a = await alone(llm, QUESTIONS[:1], max_tokens=24)
    want_b = await alone(llm, QUESTIONS[1:2], max_tokens=24)
    async with llm.open_session() as a, llm.open_session() as b:
        (got_a, _), (got_b, _) = await asyncio.gather(
            turn(a, QUESTIONS[0], max_tokens=24), turn(b, QUESTIONS[1], max_tokens=24)
        )
    assert [got_a, got_b] == want_a + want_b
    assert llm.engine().batches > 0  # their decode steps ran together


async def test_seeded_sampling_is_per_session(demo: LLM) -> None:
    llm = demo
    sampled: dict[str, Any] = {"temperature": 1.5, "max_tokens": 16}
    want_a = await alone(llm, QUESTIONS[:1], seed=1, **sampled)
    want_b = await alone(llm, QUESTIONS[:1], seed=2, **sampled)
    assert want_a != want_b  # the seeds matter: the check below can fail
    async with llm.open_session() as a, llm.open_session() as b:
        (got_a, _), (got_b, _) = await asyncio.gather(
            turn(a, QUESTIONS[0], seed=1, **sampled), turn(b, QUESTIONS[0], seed=2, **sampled)
        )
    assert [got_a, got_b] == want_a + want_b


async def test_cancel_of_one_session_leaves_the_other_alone(demo: LLM) -> None:
    llm = demo
    want_b = await alone(llm, QUESTIONS[:1], max_tokens=120)
    async with llm.open_session() as a, llm.open_session() as b:
        stream_a = a.generate(QUESTIONS[1], temperature=0.0, max_tokens=200)
        task_b = asyncio.ensure_future(turn(b, QUESTIONS[0], max_tokens=120))
        batches = llm.engine().batches
        for _ in range(8):  # a few of a's steps, batched with b's
            await stream_a.__anext__()
        assert llm.engine().batches > batches and not task_b.done()
        await stream_a.aclose()  # while b's turn is generating, in the same batches
        got_b, _ = await task_b
        assert [got_b] == want_b
        _, usage = await turn(a, QUESTIONS[2])  # a's cache survived its cancel
        assert usage.cached_tokens > 0


async def test_lora_applies_to_every_session_alike(home: Path, tmp_path: Path) -> None:
    store.import_local(write_peft(tmp_path / "peft"), "local/ad", base_id="local/tiny")
    llm = LLM("local/tiny", lora_dir="local/ad")
    await llm.start()
    sampled: dict[str, Any] = {"temperature": 1.5, "max_tokens": 16}
    try:
        want_a = await alone(llm, QUESTIONS[:2], seed=1, **sampled)
        want_b = await alone(llm, QUESTIONS[2:], seed=2, **sampled)
        assert want_a[0][-8:] != want_b[0][-8:]  # replies differ: the check below can fail
        async with llm.open_session() as a, llm.open_session() as b:
            got_a, got_b = [], []
            for qa, qb in zip(QUESTIONS[:2], QUESTIONS[2:], strict=True):
                (ta, _), (tb, _) = await asyncio.gather(
                    turn(a, qa, seed=1, **sampled), turn(b, qb, seed=2, **sampled)
                )
                got_a.append(ta)
                got_b.append(tb)
        assert (got_a, got_b) == (want_a, want_b)
        assert llm.engine().batches > 0  # the sessions' decode steps ran batched
    finally:
        await llm.stop()


async def test_closing_a_session_frees_its_cache(demo: LLM) -> None:
    llm = demo
    engine = llm.engine()
    async with llm.open_session() as a:
        await turn(a, QUESTIONS[0])
        async with llm.open_session() as b:
            await turn(b, QUESTIONS[0])
            both = engine.cache_bytes
        assert 0 < engine.cache_bytes < both
    assert engine.cache_bytes == 0 and not engine.caches


def test_kv_cache_byte_cap_is_validated() -> None:
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(InvalidRequestError, match="kv_cache_bytes"):
            LLM("local/tiny", kv_cache_bytes=bad)  # type: ignore[arg-type]


async def test_int8_caches_count_their_bytes(home: Path, demo_bundle: Path) -> None:
    """The same turn holds about half the bytes in an int8 cache (codes and a
    float step per row) as in an f16 one, as the LRU cap counts them."""
    held, per_position = {}, {}
    for quant in (None, "int8"):
        llm = start_demo(home, demo_bundle, kv_cache_quant=quant)
        await llm.start()
        try:
            async with llm.open_session() as s:
                await turn(s, QUESTIONS[0])
                held[quant] = llm.engine().cache_bytes
                per_position[quant] = llm.engine().model.kv_bytes_per_token
        finally:
            await llm.stop()
    assert held[None] // per_position[None] == held["int8"] // per_position["int8"] > 0
    assert held["int8"] < 0.6 * held[None]


def test_kv_cache_quant_is_validated() -> None:
    for bad in ("int4", "fp8", 8, True):
        with pytest.raises(InvalidRequestError, match="kv_cache_quant"):
            LLM("local/tiny", kv_cache_quant=bad)  # type: ignore[arg-type]
    for same in (None, "none", "f16"):
        assert LLM("local/tiny", kv_cache_quant=same).options.kv_cache_quant is None
    assert LLM("local/tiny", kv_cache_quant="int8").options.kv_cache_quant == "int8"


def test_native_caches_are_independent(tiny_bundle: Path) -> None:
    from engine.llm import _native

    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2)
    a, b = _native.KVCache(m), _native.KVCache(m)
    assert a.n_cached == b.n_cached == a.nbytes == 0 and a.n_ctx == m.n_ctx
    prompt_a, prompt_b = [1, 40, 41, 42, 43], [1, 50, 51]
    assert m.eval(prompt_a, 0)
    want = np.array(m.logits())  # the model's own cache, a alone
    assert m.eval(prompt_a[:3], 0, cache=a)
    assert m.eval(prompt_b, 0, cache=b)  # between a's two evals
    assert m.eval(prompt_a[3:], 3, cache=a)
    np.testing.assert_array_equal(np.array(m.logits()), want)
    assert (a.n_cached, b.n_cached, m.n_cached) == (5, 3, 5)
    assert a.nbytes == 5 * m.kv_bytes_per_token
    other = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=1)
    with pytest.raises(ValueError, match="another model"):
        other.eval([1], 0, cache=a)
    with pytest.raises(ValueError, match="holds 3"):
        m.eval([1], 4, cache=b)
