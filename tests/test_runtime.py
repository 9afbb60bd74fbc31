"""Runtime, the sync facade. A small fake component is the thing it drives here
(the facade is generic); tests/llm/test_llm_runtime.py drives the real LLM."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from types import TracebackType

import pytest

from engine._component import Component, ComponentState
from engine.errors import ComponentLifecycleError, InvalidRequestError
from engine.runtime import Runtime


class Counter:
    def __init__(self, owner: Fake, n: int) -> None:
        self.owner, self.n, self.i = owner, n, 0

    def __aiter__(self) -> Counter:
        return self

    async def __anext__(self) -> int:
        self.owner._check_running()
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        await asyncio.sleep(0)
        return self.i

    async def aclose(self) -> None:
        self.owner.closed_iterators += 1


class FakeSession:
    def __init__(self, owner: Fake) -> None:
        self.owner = owner
        self.open = False

    async def __aenter__(self) -> FakeSession:
        self.open = True
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.open = False

    async def echo(self, x: str) -> str:
        self.owner._check_running()
        return x.upper()

    def count(self, n: int) -> AsyncIterator[int]:
        return Counter(self.owner, n)


class Fake(Component):
    role = "llm"

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.closed_iterators = 0
        self.thread: threading.Thread | None = None

    async def start(self) -> None:
        self._bind_loop()
        if self.fail:
            raise InvalidRequestError("cannot start")
        self.thread = threading.current_thread()
        self.state = ComponentState.RUNNING

    async def stop(self) -> None:
        self.state = ComponentState.STOPPED

    def open_session(self) -> FakeSession:
        self._check_running()
        return FakeSession(self)


def test_blocking_calls_iterators_and_context_managers() -> None:
    fake = Fake()
    with Runtime(fake) as rt:
        assert fake.state is ComponentState.RUNNING
        assert fake.thread is not threading.current_thread()
        with rt.llm.open_session() as s:
            assert s.open
            assert s.echo("hi") == "HI"
            assert list(s.count(3)) == [1, 2, 3]
        assert not s.open
    assert fake.state is ComponentState.STOPPED


def test_breaking_out_closes_the_async_iterator() -> None:
    fake = Fake()
    with Runtime(fake) as rt, rt.llm.open_session() as s:
        for i in s.count(100):
            if i == 2:
                break
        assert fake.closed_iterators == 1


def test_used_from_plain_threads() -> None:
    fake = Fake()
    results: list[str] = []
    with Runtime(fake) as rt:

        def work(k: int) -> None:
            with rt.llm.open_session() as s:
                results.append(s.echo(f"t{k}"))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == ["T0", "T1", "T2", "T3"]


def test_start_failure_is_raised_and_cleans_up() -> None:
    ok, bad = Fake(), Fake(fail=True)
    bad.role = "tts"
    with pytest.raises(InvalidRequestError, match="cannot start"), Runtime(ok, bad):
        pass
    assert ok.state is ComponentState.STOPPED


def test_roles_must_be_unique_and_present() -> None:
    with pytest.raises(InvalidRequestError, match="two components"):
        Runtime(Fake(), Fake())
    with Runtime(Fake()) as rt, pytest.raises(AttributeError, match="stt"):
        rt.stt  # noqa: B018


def test_calls_outside_the_context_fail_clearly() -> None:
    rt = Runtime(Fake())
    with pytest.raises(ComponentLifecycleError, match="not started"):
        rt.llm.open_session()


def test_component_refuses_another_event_loop() -> None:
    fake = Fake()
    with Runtime(fake):
        # Directly from this thread's own loop: the one-loop rule answers clearly.
        async def misuse() -> None:
            fake.open_session()

        with pytest.raises(ComponentLifecycleError, match="another event loop"):
            asyncio.run(misuse())
