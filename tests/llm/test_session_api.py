"""The ChatSession calls the realtime server builds on (history edits and
prefill), and admission while the LLM drains, through the real C engine."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import (
    AdmissionRejectedError,
    InvalidRequestError,
    SessionBusyError,
    SessionClosedError,
)
from engine.llm import LLM, ChatDoneEvent, ChatFinalTextEvent, ChatSession, ChatTokenEvent, limits

GREEDY = {"temperature": 0.0, "max_tokens": 8}
LONG = "word " * 60  # several prefill chunks, within the tiny model's 256-token window


async def _reply(llm: LLM, history: list[tuple[str, str]], message: str) -> str:
    """The greedy reply of a fresh session preloaded with `history`."""
    async with llm.open_session() as s:
        for role, content in history:
            s.append_message(role, content)
        return await s.collect(message, **GREEDY)


# -- set_system_prompt ---------------------------------------------------------
async def test_set_system_prompt_sets_replaces_and_removes_the_head(llm: LLM) -> None:
    async with llm.open_session() as s:
        s.set_system_prompt("You are terse.")
        assert s.messages == [("system", "You are terse.")]
        await s.collect("Hello", **GREEDY)
        s.set_system_prompt("You are chatty.")
        roles = [r for r, _ in s.messages]
        assert roles == ["system", "user", "assistant"]
        assert s.messages[0] == ("system", "You are chatty.")
        reply = s.messages[2][1]
        s.set_system_prompt(None)
        assert [r for r, _ in s.messages] == ["user", "assistant"]
        s.set_system_prompt("Again.")
        s.set_system_prompt("")
        assert s.messages == [("user", "Hello"), ("assistant", reply)]


async def test_set_system_prompt_changes_what_the_model_sees(llm: LLM) -> None:
    async with llm.open_session() as s:
        await s.collect("Hello", **GREEDY)
        s.set_system_prompt("You answer in French.")
        got = await s.collect("And then?", **GREEDY)
        history = s.messages
    # The same reply as a session built with the system message from the start
    # (the assistant reply kept as the tokens the model generated).
    assert history[0] == ("system", "You answer in French.")
    async with llm.open_session() as t:
        t.set_system_prompt("You answer in French.")
        await t.collect("Hello", **GREEDY)
        assert await t.collect("And then?", **GREEDY) == got


# -- replace_last_reply --------------------------------------------------------
async def test_replace_last_reply_keeps_what_was_heard(llm: LLM) -> None:
    async with llm.open_session() as s:
        await s.collect("Tell me a story", **GREEDY)
        s.replace_last_reply("Once upon")
        assert s.messages == [("user", "Tell me a story"), ("assistant", "Once upon")]
        tok = llm.engine().tokenizer
        assert s.history_tokens[-1] == tok.eot_id
        await s.collect("Go on", **GREEDY)
        assert [r for r, _ in s.messages] == ["user", "assistant", "user", "assistant"]
        s.replace_last_reply("")
        assert s.messages[-1] == ("user", "Go on")
        with pytest.raises(InvalidRequestError, match="assistant"):
            s.replace_last_reply("x")
        s.new_chat()
        with pytest.raises(InvalidRequestError):
            s.replace_last_reply("x")


async def test_replaced_reply_is_what_the_next_turn_sees(llm: LLM) -> None:
    async with llm.open_session() as s:
        await s.collect("Tell me a story", **GREEDY)
        s.replace_last_reply("Once upon a time")
        heard = llm.engine().tokenizer.reply("Once upon a time")
        assert s.history_tokens[-len(heard) :] == heard  # what the next turn runs
        got = await s.collect("Go on", **GREEDY)
    async with llm.open_session() as u:
        await u.collect("Tell me a story", **GREEDY)
        u.replace_last_reply("Once upon a time")
        assert await u.collect("Go on", **GREEDY) == got


# -- discard_last_turn ---------------------------------------------------------
async def test_discard_last_turn_leaves_nothing_behind(llm: LLM) -> None:
    async with llm.open_session() as s:
        assert s.discard_last_turn() is None
        s.set_system_prompt("Be brief.")
        first = await s.collect("Hello", **GREEDY)
        before = (s.messages, s.history_tokens)
        second = await s.collect("Speculative question", **GREEDY)
        assert s.discard_last_turn() == ("Speculative question", second)
        assert (s.messages, s.history_tokens) == before
        assert s.discard_last_turn() == ("Hello", first)
        assert s.messages == [("system", "Be brief.")]
        assert s.discard_last_turn() is None
        s.append_message("user", "unanswered")
        assert s.discard_last_turn() == ("unanswered", "")


async def test_discarded_turn_does_not_change_the_next_reply(llm: LLM) -> None:
    async with llm.open_session() as s:
        await s.collect("Hello", **GREEDY)
        await s.collect("thrown away", **GREEDY)
        s.discard_last_turn()
        got = await s.collect("And then?", **GREEDY)
    async with llm.open_session() as t:
        await t.collect("Hello", **GREEDY)
        assert await t.collect("And then?", **GREEDY) == got


# -- idle-only rules -----------------------------------------------------------
async def _every_edit_raises(s: ChatSession, error: type[Exception]) -> None:
    for call in (
        lambda: s.set_system_prompt("x"),
        lambda: s.replace_last_reply("x"),
        lambda: s.discard_last_turn(),
    ):
        with pytest.raises(error):
            call()
    with pytest.raises(error):
        await s.prefill("x")


async def test_history_edits_need_an_idle_open_session(llm: LLM) -> None:
    s = llm.open_session()
    await s.collect("Hello", **GREEDY)
    stream = s.generate("more", **GREEDY)
    await stream.__anext__()
    await _every_edit_raises(s, SessionBusyError)
    await stream.aclose()
    await s.close()
    await _every_edit_raises(s, SessionClosedError)


# -- prefill -------------------------------------------------------------------
async def _turn(llm: LLM, message: str, prefix: str | None) -> tuple[list[str], int, int, int]:
    """(token texts, usage.cached_tokens, tokens evaluated by the turn, history
    length) of a greedy turn after one earlier turn, with an optional prefill."""
    model = llm.native_model
    assert model is not None
    async with llm.open_session() as s:
        await s.collect("Hello", **GREEDY)
        if prefix is not None:
            cached = await s.prefill(prefix)
            assert cached == len(s.history_tokens) + len(
                llm.engine().tokenizer.message_prefix("user", prefix)
            )
        before, history = model.tokens_evaluated, len(s.history_tokens)
        events = [e async for e in s.generate(message, **GREEDY)]
        ran = model.tokens_evaluated - before
    done = events[-1]
    assert isinstance(done, ChatDoneEvent)
    texts = [e.text for e in events if isinstance(e, ChatTokenEvent)]
    return texts, done.usage.cached_tokens, ran, history


async def test_prefill_is_reused_and_changes_no_token(llm: LLM) -> None:
    message = "What is the weather like in Paris?"
    plain, plain_cached, plain_ran, history = await _turn(llm, message, None)
    warm, warm_cached, warm_ran, _ = await _turn(llm, message, "What is the weather like")
    assert warm == plain  # greedy: exactly the same tokens
    tok = llm.engine().tokenizer
    prefix = tok.message_prefix("user", "What is the weather like")
    assert tok.message("user", message)[: len(prefix)] == prefix
    # Without prefill the cache lacks the last reply token and end-of-turn of
    # the earlier turn; with it, it holds the whole history and the prefix.
    assert plain_cached == history - 2
    assert warm_cached == history + len(prefix)
    assert warm_ran == plain_ran - (warm_cached - plain_cached)


async def test_prefill_of_a_diverging_message_reuses_the_common_prefix(llm: LLM) -> None:
    # The user said something else in the end: the history is still reused,
    # and the reply is the one without prefill.
    plain, _, _, history = await _turn(llm, "Play some music", None)
    warm, warm_cached, _, _ = await _turn(llm, "Play some music", "What is the weather like")
    assert warm == plain
    tok = llm.engine().tokenizer
    user = tok.message("user", "Play some music")
    shared = tok.message_prefix("user", "What is the weather like")
    common = next(i for i, (a, b) in enumerate(zip(user, shared, strict=False)) if a != b)
    assert warm_cached == history + common


async def test_prefill_commits_nothing_and_holds_no_turn(llm: LLM) -> None:
    async with llm.open_session() as s:
        await s.collect("Hello", **GREEDY)
        messages, tokens = s.messages, s.history_tokens
        assert await s.prefill("What is") > len(tokens)
        assert (s.messages, s.history_tokens, s.state) == (messages, tokens, "idle")


async def test_prefill_runs_in_chunks_and_a_generate_ends_it(llm: LLM) -> None:
    model = llm.native_model
    assert model is not None
    async with llm.open_session() as s:
        calls = model.eval_calls
        cached = await s.prefill(LONG)
        assert cached > 2 * limits.PREFILL_CHUNK_TOKENS
        assert model.eval_calls - calls == -(-cached // limits.PREFILL_CHUNK_TOKENS)
        s.new_chat()
        s.append_message("system", "fresh")  # nothing of it is cached yet
        task = asyncio.create_task(s.prefill(LONG))
        await asyncio.sleep(0)
        events = [e async for e in s.generate("short", **GREEDY)]
        assert isinstance(events[-1], ChatDoneEvent)
        got = await task  # ended at a chunk boundary by the generate
        # Only the chunk in flight when generate() came ran (the cache shared
        # just the begin token with the new history).
        assert got <= 1 + limits.PREFILL_CHUNK_TOKENS


async def test_prefill_cancel_takes_effect_and_the_cache_stays_valid(llm: LLM) -> None:
    for yields in range(0, 12, 2):
        async with llm.open_session() as s:
            task = asyncio.create_task(s.prefill(LONG))
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert s.state == "idle"
            got = await s.collect("Hello", **GREEDY)
        assert got == await _reply(llm, [], "Hello")


async def test_prefill_checks_its_input(llm: LLM) -> None:
    async with llm.open_session() as s:
        with pytest.raises(InvalidRequestError):
            await s.prefill(42)  # type: ignore[arg-type]
        task = asyncio.create_task(s.prefill(LONG))
        await asyncio.sleep(0)
        with pytest.raises(SessionBusyError, match="prefill"):
            await s.prefill("again")
        await task


# -- admission while draining --------------------------------------------------
async def test_new_work_during_stop_is_rejected_as_draining(llm: LLM) -> None:
    idle = llm.open_session()
    busy = llm.open_session()
    stream = busy.generate("Count to one hundred", temperature=0.0, max_tokens=200)
    await stream.__anext__()
    stopping = asyncio.create_task(llm.stop())
    await asyncio.sleep(0)  # stop() is now draining: the engine is closing
    assert llm.state.value == "stopping"
    with pytest.raises(AdmissionRejectedError):
        llm.open_session()
    with pytest.raises(AdmissionRejectedError):
        idle.generate("Hello")
    with pytest.raises(AdmissionRejectedError):
        await idle.collect("Hello")
    with pytest.raises(AdmissionRejectedError):
        await idle.prefill("Hello")
    await stopping
    await stream.aclose()
    assert llm.state.value == "stopped"


async def test_prefill_beside_a_generating_turn_keeps_both_caches(llm: LLM) -> None:
    # One LLM serves several conversations, each with its own KV cache: a
    # prefill for one of them while another generates runs whole into its own
    # cache, and the generating turn never rebuilds its prompt.
    model = llm.native_model
    assert model is not None
    async with llm.open_session() as a, llm.open_session() as b:
        alone = await b.collect("Count to one hundred", temperature=0.0, max_tokens=30)
        b.new_chat()
        start = model.tokens_evaluated
        stream = b.generate("Count to one hundred", temperature=0.0, max_tokens=30)
        events = [await stream.__anext__()]
        cached = await a.prefill(LONG)
        tok = llm.engine().tokenizer
        assert cached == len(tok.begin() + tok.message_prefix("user", LONG))
        events += [e async for e in stream]
        done = events[-1]
        assert isinstance(done, ChatDoneEvent)
        u = done.usage
        assert isinstance(events[-2], ChatFinalTextEvent) and events[-2].text == alone
        # b ran its prompt once (its first step) and one token per step after:
        # the prefill between its steps took nothing from its cache
        assert u.prefill_tokens == u.prompt_tokens - u.cached_tokens
        ran = u.prefill_tokens + u.completion_tokens - 1 + cached  # cached: all of a
        assert model.tokens_evaluated - start == ran
        assert await a.prefill(LONG) == cached  # and stayed: nothing more to run
