"""`Engine`: one loaded model, its worker thread, and its KV-cache bookkeeping.

Both the component (which loads and unloads engines) and the chat session
(which runs turns on them) use this module; it imports neither, so the
dependency runs one way: component -> session -> worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.errors import ComponentLifecycleError
from engine.llm.sampling import SamplingOptions
from engine.llm.search import SearchProvider
from engine.llm.tokenizer import ChatTokenizer

if TYPE_CHECKING:
    from engine.llm._native import Model

__all__ = ["Engine", "common_prefix"]

T = TypeVar("T")


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(eq=False)
class Engine:
    """One loaded model: the native Model, its worker thread, tokenizer and defaults.

    `cache` mirrors the KV cache (the tokens whose keys/values it holds, in
    order) and `owner` is the turn that last wrote it; both are only touched
    from the worker thread.
    """

    model: Model
    executor: concurrent.futures.ThreadPoolExecutor
    tokenizer: ChatTokenizer
    defaults: SamplingOptions
    bundle_dir: Path
    provider: SearchProvider | None
    search_budget: int
    cache: list[int] = field(default_factory=list)
    owner: object = None
    # Turns started and not yet committed (added and removed on the loop;
    # the worker only reads it): a prefill never evicts their cache.
    live_turns: set[object] = field(default_factory=set)
    closed: bool = False
    in_flight: int = 0  # steps submitted and not finished (cancel() only then)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def n_ctx(self) -> int:
        return int(self.model.n_ctx)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn on this model's worker thread."""
        if self.closed:
            raise ComponentLifecycleError("the model was unloaded (stopped or swapped)")
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def cancel(self) -> None:
        """Thread-safe: stop a running eval at its next layer boundary."""
        with self.lock:
            if self.in_flight:
                self.model.cancel()

    async def close(self) -> None:
        """Cancel what runs, free the model after it, and end the worker thread."""
        if self.closed:
            return
        self.closed = True
        self.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.model.close)
        self.executor.shutdown(wait=False)

    # -- worker thread ----------------------------------------------------------
    def _eval(self, todo: list[int], common: int, owner: object) -> bool:
        """Run `todo` at positions common.. and mirror it in `cache`. False when
        cancelled (the cache then keeps only the prefix before `common`)."""
        with self.lock:
            self.in_flight += 1
        try:
            ok = self.model.eval(todo, common)
        finally:
            with self.lock:
                self.in_flight -= 1
        del self.cache[common:]
        if ok:
            self.cache.extend(todo)
            self.owner = owner
        return ok

    def ensure_cache(self, seq: list[int], owner: object, cancel: threading.Event) -> bool:
        """Worker thread: make the KV cache hold exactly `seq` with the logits of
        its last token, running only what the cache lacks (everything after the
        longest common prefix of the cache and `seq`). False when cancelled."""
        if self.owner is owner and len(self.cache) == len(seq) - 1:
            common = len(self.cache)  # the usual decode step: one new token
        else:
            common = min(common_prefix(self.cache, seq), len(seq) - 1, int(self.model.n_cached))
        while True:
            if cancel.is_set():
                return False
            if self._eval(seq[common:], common, owner):
                return True
            if cancel.is_set():
                return False
            # A cancel() meant for an earlier step landed on this one: run it again.

    def extend_cache(self, seq: list[int], max_new: int, owner: object) -> tuple[int, bool]:
        """Worker thread: run at most `max_new` more tokens of `seq` into the KV
        cache, after its longest common prefix with the cache. Returns (how many
        leading tokens of `seq` the cache now holds, whether it may go on).

        Runs nothing (and says stop) when the cache belongs to a turn still
        generating: warming it for `seq` would evict that turn's cache, which
        it would then rebuild whole at its next token. Computes no logits that
        anyone reads: it only warms the cache for a later ensure_cache()."""
        common = min(common_prefix(self.cache, seq), int(self.model.n_cached))
        if self.owner is not owner and self.owner in self.live_turns:
            return common, False
        todo = seq[common : common + max_new]
        if not todo or not self._eval(todo, common, owner):
            return min(common, len(self.cache)), bool(todo)
        return common + len(todo), True
