"""The LLM component and ChatSession through the real C engine on the tiny bundle."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from engine._component import ComponentState
from engine.errors import (
    ComponentLifecycleError,
    ContextOverflowError,
    InvalidRequestError,
    ProgressTimeoutError,
    SessionBusyError,
    SessionClosedError,
    SessionExhaustedError,
    SessionStaleError,
)
from engine.llm import LLM, ChatDoneEvent, ChatFinalTextEvent, ChatTokenEvent, store
from engine.llm.importer import import_hf_model
from engine.llm.tiny import write_tiny_hf_model

GREEDY = {"temperature": 0.0, "max_tokens": 12}


async def test_generate_event_order_and_usage(llm: LLM) -> None:
    async with llm.open_session() as s:
        events = [e async for e in s.generate("Hello there", **GREEDY)]
    tokens = [e for e in events if isinstance(e, ChatTokenEvent)]
    assert isinstance(events[-2], ChatFinalTextEvent)
    assert isinstance(events[-1], ChatDoneEvent)
    assert all(isinstance(e, ChatTokenEvent) for e in events[:-2])
    assert "".join(t.text for t in tokens) == events[-2].text
    u = events[-1].usage
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert 1 <= u.completion_tokens <= 12
    assert u.time_to_first_token_s is not None and u.time_to_first_token_s > 0
    assert u.finish_reason in {"stop", "length"}


async def test_greedy_is_deterministic_and_collect_matches(llm: LLM) -> None:
    async with llm.open_session() as a, llm.open_session() as b:
        ta = await a.collect("Tell me a story", **GREEDY)
        tb = [e async for e in b.generate("Tell me a story", **GREEDY)][-2]
        assert isinstance(tb, ChatFinalTextEvent) and ta == tb.text


async def test_follow_up_turn_only_runs_new_tokens(llm: LLM) -> None:
    model = llm.native_model
    async with llm.open_session() as s:
        first = [e async for e in s.generate("Hello", **GREEDY)][-1]
        assert isinstance(first, ChatDoneEvent)
        before = model.tokens_evaluated
        second = [e async for e in s.generate("And then?", **GREEDY)][-1]
        assert isinstance(second, ChatDoneEvent)
    u1, u2 = first.usage, second.usage
    assert u1.cached_tokens == 0 and u1.prefill_tokens == u1.prompt_tokens
    # The cache holds turn 1's prompt and all but its last generated token
    # (sampled, never evaluated); only the rest of the prompt is run.
    assert u2.cached_tokens == u1.prompt_tokens + u1.completion_tokens - 1
    assert u2.prefill_tokens == u2.prompt_tokens - u2.cached_tokens
    tok = llm.engine().tokenizer
    new = tok.message("user", "And then?") + tok.generation_prompt()
    assert u2.prefill_tokens == len(new) + 2  # + last reply token + end-of-turn
    decode_evals = u2.completion_tokens - 1
    assert model.tokens_evaluated - before == u2.prefill_tokens + decode_evals


async def test_alternating_sessions_rebuild_the_cache_correctly(llm: LLM) -> None:
    async with llm.open_session() as a, llm.open_session() as b:
        await a.collect("one", **GREEDY)
        await b.collect("two", **GREEDY)  # evicts a's thread from the cache
        got = await a.collect("three", **GREEDY)
        history = a.history_tokens
    # The same conversation without interleaving gives the same greedy reply.
    async with llm.open_session() as c:
        await c.collect("one", **GREEDY)
        assert await c.collect("three", **GREEDY) == got
        assert c.history_tokens == history


async def test_cancel_by_break_stops_within_a_token_and_keeps_session(llm: LLM) -> None:
    model = llm.native_model
    async with llm.open_session() as s:
        n = 0
        async for event in s.generate("Count to one hundred", temperature=0.0, max_tokens=200):
            if isinstance(event, ChatTokenEvent):
                n += 1
                if n == 3:
                    break
        assert s.state == "idle"
        evaluated = model.tokens_evaluated
        await asyncio.sleep(0.05)
        assert model.tokens_evaluated - evaluated <= 1  # nothing runs on after the break
        text = await s.collect("still there?", **GREEDY)
        assert isinstance(text, str)
        assert s.messages[0][0] == "user" and s.messages[1][0] == "assistant"


async def test_task_cancellation_leaves_session_usable(llm: LLM) -> None:
    async with llm.open_session() as s:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in s.generate("Go on and on", temperature=0.0, max_tokens=200):
                started.set()
                await asyncio.sleep(0.01)

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert s.state == "idle"
        usage = [e async for e in s.generate("ok", **GREEDY)][-1]
        assert isinstance(usage, ChatDoneEvent)
        assert usage.usage.cached_tokens > 0  # the cache survived the cancel


async def test_busy_closed_and_bad_options(llm: LLM) -> None:
    s = llm.open_session()
    stream = s.generate("first", **GREEDY)
    await stream.__anext__()
    assert s.state == "streaming"
    with pytest.raises(SessionBusyError):
        s.generate("second")
    with pytest.raises(SessionBusyError):
        s.append_message("user", "x")
    await stream.aclose()
    with pytest.raises(InvalidRequestError, match="top_p"):
        s.generate("x", top_p=0.0)
    with pytest.raises(InvalidRequestError, match="role"):
        s.append_message("robot", "x")
    await s.close()
    assert s.state == "done"
    with pytest.raises(SessionClosedError):
        await s.collect("again")


async def test_append_message_and_new_chat(llm: LLM) -> None:
    async with llm.open_session() as s:
        s.append_message("system", "You are terse.")
        s.append_message("search", "Result 1: it is sunny.")
        await s.collect("Weather?", **GREEDY)
        roles = [r for r, _ in s.messages]
        assert roles == ["system", "search", "user", "assistant"]
        s.new_chat()
        assert s.messages == []
        u = [e async for e in s.generate("Hi", **GREEDY)][-1]
        assert isinstance(u, ChatDoneEvent)
        tok = llm.engine().tokenizer
        assert u.usage.prompt_tokens == len(
            tok.render([("user", "Hi")], add_generation_prompt=True)
        )


async def test_context_overflow(llm: LLM) -> None:
    async with llm.open_session() as s:
        with pytest.raises(ContextOverflowError, match="context window is 256"):
            s.generate("word " * 400)
        assert s.state == "idle"


async def test_lifetime_cap(llm: LLM) -> None:
    async with llm.open_session(max_lifetime_tokens=30) as s:
        await s.collect("Hello", temperature=0.0, max_tokens=40)
        assert s.lifetime_tokens >= 30
        with pytest.raises(SessionExhaustedError):
            await s.collect("more")


async def test_progress_timeout(llm: LLM) -> None:
    async with llm.open_session(progress_timeout_s=1e-9) as s:
        with pytest.raises(ProgressTimeoutError):
            await s.collect("Hello", **GREEDY)
        assert s.state == "idle"


async def test_sampling_defaults_come_from_generation_config(llm: LLM) -> None:
    d = llm.engine().defaults
    assert (d.temperature, d.top_p, d.max_tokens) == (0.6, 0.9, 64)


async def test_seeded_sampling_is_reproducible(llm: LLM) -> None:
    async with llm.open_session() as a, llm.open_session() as b:
        opts = {"temperature": 1.0, "top_k": 50, "seed": 7, "max_tokens": 10}
        assert await a.collect("Hi", **opts) == await b.collect("Hi", **opts)


async def test_unknown_model_and_lifecycle_errors(home: Path) -> None:
    with pytest.raises(InvalidRequestError, match="store ID"):
        LLM("not-an-id")
    llm = LLM("nobody/none")
    with pytest.raises(InvalidRequestError, match="bitvoice pull nobody/none"):
        await llm.start()
    with pytest.raises(ComponentLifecycleError, match="start"):
        LLM("local/tiny").open_session()


async def test_trust_remote_code_is_required_for_custom_code(home: Path) -> None:
    path = store.store_path("local/tiny")
    cfg = json.loads((path / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling.MyModel"}
    custom = store.store_path("local/custom")
    shutil.copytree(path, custom)
    (custom / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRequestError, match="trust_remote_code"):
        await LLM("local/custom").start()
    llm = LLM("local/custom", trust_remote_code=True)
    await llm.start()
    await llm.stop()


async def test_used_from_another_loop_fails_clearly(llm: LLM) -> None:
    def other_thread() -> BaseException | None:
        async def use() -> None:
            llm.open_session()

        try:
            asyncio.run(use())
        except BaseException as exc:
            return exc
        return None

    err = await asyncio.to_thread(other_thread)
    assert isinstance(err, ComponentLifecycleError)
    assert "another event loop" in str(err)


# -- swap_model ---------------------------------------------------------------


@pytest.fixture
def second_model(home: Path, tmp_path: Path) -> str:
    src = write_tiny_hf_model(tmp_path / "hf2", seed=5)
    store.publish("local/tiny2", lambda d: import_hf_model(src, d))
    return "local/tiny2"


async def test_swap_model_makes_sessions_stale(llm: LLM, second_model: str) -> None:
    old = llm.native_model
    s = llm.open_session()
    await s.collect("Hi", **GREEDY)
    await llm.swap_model(second_model)
    assert llm.state is ComponentState.RUNNING and llm.model_id == second_model
    assert llm.native_model is not old
    assert s.state == "stale"
    with pytest.raises(SessionStaleError):
        await s.collect("again")
    async with llm.open_session() as fresh:
        assert isinstance(await fresh.collect("Hi", **GREEDY), str)


async def test_swap_during_generation_stales_the_stream(llm: LLM, second_model: str) -> None:
    s = llm.open_session()
    stream = s.generate("Hi", temperature=0.0, max_tokens=100)
    await stream.__anext__()
    await llm.swap_model(second_model)
    with pytest.raises(SessionStaleError):
        async for _ in stream:
            pass


async def test_swap_options_reset_to_defaults(home: Path, second_model: str) -> None:
    llm = LLM("local/tiny", unembed_quant="none", num_threads=1)
    assert llm.options.unembed_quant is None
    await llm.start()
    await llm.swap_model(second_model)
    assert llm.options.unembed_quant == "int8" and llm.options.num_threads == 0
    await llm.stop()


async def test_swap_requires_running_and_validates_first(home: Path, second_model: str) -> None:
    llm = LLM("local/tiny")
    with pytest.raises(ComponentLifecycleError):
        await llm.swap_model(second_model)
    await llm.start()
    with pytest.raises(InvalidRequestError, match="bitvoice pull"):
        await llm.swap_model("nobody/none")
    assert llm.state is ComponentState.RUNNING  # a typo does not kill the running model
    await llm.stop()


async def test_failed_swap_leaves_unavailable_until_next_swap(llm: LLM, second_model: str) -> None:
    broken = store.store_path(second_model) / "model.bvm"
    good = broken.read_bytes()
    broken.write_bytes(good[:100])
    with pytest.raises(InvalidRequestError):
        await llm.swap_model(second_model)
    assert llm.state is ComponentState.UNAVAILABLE
    with pytest.raises(ComponentLifecycleError):
        llm.open_session()
    broken.write_bytes(good)
    await llm.swap_model(second_model)
    assert llm.state is ComponentState.RUNNING


@pytest.mark.parametrize("yields", [0, 1, 2, 5])
async def test_stop_wins_over_in_flight_swap(llm: LLM, second_model: str, yields: int) -> None:
    swap = asyncio.create_task(llm.swap_model(second_model))
    for _ in range(yields):
        await asyncio.sleep(0)
    await llm.stop()
    try:
        await swap
    except ComponentLifecycleError:
        pass
    assert llm.state is ComponentState.STOPPED
    assert llm.native_model is None


@pytest.mark.parametrize("yields", [1, 3])
async def test_stop_wins_over_in_flight_start(home: Path, yields: int) -> None:
    llm = LLM("local/tiny")
    start = asyncio.create_task(llm.start())
    for _ in range(yields):
        await asyncio.sleep(0)
    # The tiny model may finish loading within a few loop turns on a quiet
    # machine: then this is a plain stop after start. Either way stop() wins.
    in_flight = not start.done()
    await llm.stop()
    if in_flight:
        with pytest.raises(ComponentLifecycleError):
            await start
    else:
        await start
    assert llm.state is ComponentState.STOPPED and llm.native_model is None
    await llm.start()  # a restart works
    assert llm.state is ComponentState.RUNNING
    await llm.stop()


async def test_sessions_after_stop_and_restart(home: Path) -> None:
    llm = LLM("local/tiny")
    await llm.start()
    s = llm.open_session()
    first = await s.collect("Hi", **GREEDY)
    await llm.stop()
    with pytest.raises(ComponentLifecycleError, match="stopped"):
        await s.collect("again")
    await llm.start()
    again = await s.collect("again", **GREEDY)  # history re-run on the fresh engine
    assert isinstance(first, str) and isinstance(again, str)
    assert s.messages[0] == ("user", "Hi")
    await llm.stop()
