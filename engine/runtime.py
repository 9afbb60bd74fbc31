"""`Runtime`: the synchronous facade over the async components.

    with Runtime(LLM("org/model")) as rt:
        with rt.llm.open_session() as s:
            print(s.collect("Hello"))
            for event in s.generate("And then?"):
                ...

The runtime owns one event loop running in a background thread. Every call
through it is sent to that loop (components are bound to the loop that started
them) and waited for: coroutines become blocking calls, async iterators become
plain iterators, async context managers become plain context managers, and
whatever they return is wrapped the same way.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from engine._component import Component
from engine.errors import ComponentLifecycleError, InvalidRequestError

__all__ = ["Runtime", "SyncProxy"]

T = TypeVar("T")
# How long __exit__ waits for components to stop before giving up on the loop.
STOP_TIMEOUT_S = 60.0


class Runtime:
    """Starts `components` on a background event loop; exposes them by role.

    Use as a context manager (or call `start()`/`close()`). Roles must be
    unique. Calls through the runtime must come from threads other than the
    runtime's own loop thread; they may come from several threads at once
    (each call is serialized by the components' own rules).
    """

    def __init__(self, *components: Component) -> None:
        # Any: the base class declares no start/stop; each role's component does.
        roles: dict[str, Any] = {}
        for comp in components:
            role = getattr(comp, "role", "")
            if not isinstance(comp, Component) or not role:
                raise InvalidRequestError(f"Runtime takes components (LLM, STT, TTS), got {comp!r}")
            if role in roles:
                raise InvalidRequestError(f"Runtime got two components with role {role!r}")
            roles[role] = comp
        self._components = roles
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started: list[Any] = []

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Runtime:
        """Start the loop thread and every component, in the order given.

        If one fails to start, those already started are stopped, the loop is
        shut down and the error is raised."""
        if self._loop is not None:
            raise ComponentLifecycleError("Runtime is already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="bitvoice-runtime", daemon=True)
        self._loop = loop
        self._thread.start()
        ready.wait()
        try:
            for comp in self._components.values():
                self.call(comp.start)
                self._started.append(comp)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the started components (in reverse order) and the loop thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        errors: list[BaseException] = []
        for comp in reversed(self._started):
            try:
                self.call(comp.stop, timeout=STOP_TIMEOUT_S)
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self._started.clear()

        async def drain() -> None:
            # Let async generators and pending tasks finish their clean-up.
            await loop.shutdown_asyncgens()
            await loop.shutdown_default_executor()

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(STOP_TIMEOUT_S)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(STOP_TIMEOUT_S)
            loop.close()
            self._loop = self._thread = None
        if errors:
            raise errors[0]

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- access ----------------------------------------------------------------
    def component(self, role: str) -> SyncProxy:
        """The component with this role, wrapped for blocking use."""
        try:
            comp = self._components[role]
        except KeyError:
            raise AttributeError(f"this Runtime has no {role!r} component") from None
        return SyncProxy(comp, self)

    @property
    def llm(self) -> SyncProxy:
        return self.component("llm")

    @property
    def stt(self) -> SyncProxy:
        return self.component("stt")

    @property
    def tts(self) -> SyncProxy:
        return self.component("tts")

    def call(
        self, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kw: Any
    ) -> Any:
        """Run `fn(*args, **kw)` on the runtime's loop, awaiting its result if it is
        awaitable, and return it (unwrapped). Blocks the calling thread."""
        loop = self._loop
        if loop is None:
            raise ComponentLifecycleError("Runtime is not started; use `with Runtime(...) as rt:`")
        if self._thread is threading.current_thread():
            raise ComponentLifecycleError(
                "blocking Runtime call made from the runtime's own event loop thread; "
                "use the async component API there"
            )

        async def invoke() -> Any:
            result = fn(*args, **kw)
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result(timeout)

    def run(self, awaitable: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine function on the runtime's loop and return its result."""

        async def invoke() -> T:
            return await awaitable()

        result: T = self.call(invoke)
        return result


def wrap(value: Any, runtime: Runtime) -> Any:
    """Wrap async context managers, async iterators and components for sync use."""
    if hasattr(value, "__anext__"):
        return _iterate(value, runtime)
    if hasattr(value, "__aenter__") or isinstance(value, Component):
        return SyncProxy(value, runtime)
    return value


def _iterate(aiter: Any, runtime: Runtime) -> Iterator[Any]:
    # A generator: when the caller breaks out of its `for`, the generator is
    # closed and `finally` closes the async iterator on the loop, so the work
    # behind it (a generation, a synthesis) stops instead of running on.
    try:
        while True:
            try:
                item = runtime.call(aiter.__anext__)
            except StopAsyncIteration:
                return
            yield wrap(item, runtime)
    finally:
        aclose: Callable[[], Coroutine[Any, Any, None]] | None = getattr(aiter, "aclose", None)
        if aclose is not None and runtime._loop is not None:
            if runtime._thread is threading.current_thread():
                runtime._loop.create_task(aclose())
            else:
                runtime.call(aclose)


class SyncProxy:
    """A blocking view of an async object living on a Runtime's loop.

    Attribute reads pass through; method calls run on the loop and are waited
    for; results are wrapped (see `wrap`). `with proxy:` enters and exits the
    wrapped async context manager.
    """

    def __init__(self, target: Any, runtime: Runtime) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runtime", runtime)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def blocking(*args: Any, **kw: Any) -> Any:
            return wrap(self._runtime.call(attr, *args, **kw), self._runtime)

        blocking.__name__ = name
        blocking.__doc__ = getattr(attr, "__doc__", None)
        return blocking

    def __enter__(self) -> Any:
        entered = self._runtime.call(self._target.__aenter__)
        return self if entered is self._target else wrap(entered, self._runtime)

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return bool(self._runtime.call(self._target.__aexit__, et, ev, tb))

    def __repr__(self) -> str:
        return f"<sync {self._target!r}>"
