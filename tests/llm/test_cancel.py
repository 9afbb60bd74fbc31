"""Cancelling a consumer of ChatSession.generate() at any point of a turn.

Python 3.11's `asyncio.wait_for` returned the result and dropped a cancel
when the awaited step finished in the same loop iteration (issue 12, bug 8):
the consumer then ran on and the conversation stayed stuck.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.llm import LLM, ChatDoneEvent, ChatTokenEvent

TURN = {"temperature": 0.0, "max_tokens": 6}


async def _check_cancel_takes_effect(llm: LLM, yields: int) -> bool:
    """Cancel the consumer after `yields` loop steps; False when the turn had
    already ended by then (nothing left to cancel)."""
    async with llm.open_session() as s:
        events: list[object] = []

        async def consume() -> None:
            async for event in s.generate("Count with me", **TURN):
                events.append(event)

        task = asyncio.create_task(consume())
        for _ in range(yields):
            await asyncio.sleep(0)
        if task.done():
            await task
            return False
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled(), f"the cancel after {yields} loop steps was dropped"
        assert not any(isinstance(e, ChatDoneEvent) for e in events)
        assert s.state == "idle"
        done = [e async for e in s.generate("again", **TURN)][-1]
        assert isinstance(done, ChatDoneEvent)
    return True


async def test_cancel_at_every_loop_step_of_a_turn_takes_effect(llm: LLM) -> None:
    # Enough loop steps to cover the prefill, every token and the last step;
    # the worker thread finishes steps at varying points of these yields.
    cancels = 0
    for yields in range(200):
        if not await _check_cancel_takes_effect(llm, yields):
            break
        cancels += 1
    assert cancels >= 10  # the sweep covered the turn, not just its start


async def _cancel_after_tokens(llm: LLM, k: int) -> None:
    async with llm.open_session() as s:
        seen = asyncio.Event()
        count = 0

        async def consume() -> None:
            nonlocal count
            async for event in s.generate("Tell me more", temperature=0.0, max_tokens=40):
                if isinstance(event, ChatTokenEvent):
                    count += 1
                    if count == k:
                        seen.set()

        task = asyncio.create_task(consume())
        await seen.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert s.state == "idle"
        assert s.messages[-1][0] == "assistant"
        assert isinstance(await s.collect("next", **TURN), str)


async def test_cancel_after_each_token_takes_effect(llm: LLM) -> None:
    for k in range(1, 5):
        await _cancel_after_tokens(llm, k)


async def test_cancel_while_the_stream_aborts_is_not_swallowed(llm: LLM) -> None:
    # A second cancel that lands while aclose() waits for the step in flight
    # must still end the task (the abort used to swallow it).
    async with llm.open_session() as s:
        stream = s.generate("Go on", temperature=0.0, max_tokens=40)
        await stream.__anext__()

        async def close_it() -> None:
            await stream.aclose()
            await asyncio.sleep(3600)  # reached only when the cancel was swallowed

        task = asyncio.create_task(close_it())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert s.state == "idle"
