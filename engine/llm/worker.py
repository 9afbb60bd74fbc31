"""`Engine`: one loaded model, its worker thread, and its KV caches, one per conversation.

Both the component (which loads and unloads engines) and the chat session
(which runs turns on them) use this module; it imports neither, so the
dependency runs one way: component -> session -> worker.

Each conversation (a `ChatSession`, known here only by an opaque key) keeps
its own KV cache (`_native.KVCache`), so sessions that take turns never re-run
each other's history. The caches together stay under a byte cap: past it, the
least recently used idle session's cache is dropped, and that session re-runs
its history on its next turn.

Decode steps of concurrent turns share one pass over the weights: a turn
hands its steps to `submit()`, and the worker runs every pending decode step
(one new token at the end of its session's cache) as one batched eval
(`Model.eval_batch`), then lets each turn sample from its own row. Each row
gets the bits it would get alone, so batching never changes a reply.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from engine.errors import ComponentLifecycleError
from engine.llm import limits
from engine.llm.sampling import SamplingOptions
from engine.llm.search import SearchProvider
from engine.llm.tokenizer import ChatTokenizer

if TYPE_CHECKING:
    from engine.llm._native import KVCache, Model

__all__ = ["Engine", "SeqCache", "Step", "common_prefix"]

T = TypeVar("T")


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(eq=False)
class SeqCache:
    """One conversation's KV cache and the tokens it holds, in order (worker thread only)."""

    kv: KVCache
    tokens: list[int] = field(default_factory=list)
    writer: object = None  # the turn (or prefill) that last extended it


class Step(Protocol):
    """One step of a turn, as `Engine.submit()` runs it (worker thread): the
    engine either runs it whole (`run`), or evaluates its last token in a
    batch and then lets it `finish` from its row of the batch's logits."""

    @property
    def key(self) -> object:
        """The session whose cache the step extends."""

    @property
    def cancelled(self) -> bool:
        """True once the turn was cancelled: the step must not start."""

    def sequence(self) -> list[int]:
        """The tokens the session's cache must hold for this step (its last
        token is the one to run)."""

    def run(self) -> Any:
        """The whole step alone: bring the cache up to date, then finish."""

    def finish(self, cache: SeqCache, row: int) -> Any:
        """After the batch ran sequence()[-1] into `cache`: sample from row
        `row` of the logits and return the step's result."""


@dataclass(eq=False)
class Engine:
    """One loaded model: the native Model, its worker thread, tokenizer and defaults,
    and the KV caches of the conversations that use it.

    `caches` maps a session key to its SeqCache, least recently used first.
    Keys in `live` belong to sessions with a turn generating: their caches are
    never evicted (so the cap may be exceeded by those caches alone). The
    caches are touched only from the worker thread, except `release()`.
    """

    model: Model
    executor: concurrent.futures.ThreadPoolExecutor
    tokenizer: ChatTokenizer
    defaults: SamplingOptions
    bundle_dir: Path
    provider: SearchProvider | None
    search_budget: int
    kv_cache_bytes: int  # the cap on every cache's bytes together (LRU eviction past it)
    caches: collections.OrderedDict[object, SeqCache] = field(
        default_factory=collections.OrderedDict
    )
    # Session keys with a turn running (added and removed on the loop; the
    # worker only reads it): eviction never drops their caches.
    live: set[object] = field(default_factory=set)
    evictions: int = 0  # caches dropped to stay under kv_cache_bytes
    closed: bool = False
    running: object = None  # the key whose single-cache eval is in flight (cancel() only then)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Steps handed to submit() and not started, and whether a drain is queued
    # on the worker; guarded by `steps_ready`.
    pending: list[tuple[Step, concurrent.futures.Future[Any]]] = field(default_factory=list)
    draining: bool = False
    steps_ready: threading.Condition = field(default_factory=threading.Condition)
    batches: int = 0  # batched evals run (eval_batch of two or more sessions)

    @property
    def n_ctx(self) -> int:
        return int(self.model.n_ctx)

    @property
    def cache_bytes(self) -> int:
        """Bytes the KV caches hold now (every position each has written)."""
        with self.lock:
            return sum(int(c.kv.nbytes) for c in self.caches.values())

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn on this model's worker thread."""
        if self.closed:
            raise ComponentLifecycleError("the model was unloaded (stopped or swapped)")
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def cancel(self, key: object) -> None:
        """Thread-safe: stop a running eval of `key`'s cache at its next layer
        boundary; an eval of another cache runs on undisturbed."""
        with self.lock:
            if self.running is key:
                self.model.cancel()

    def release(self, key: object) -> None:
        """Thread-safe: drop `key`'s cache (its session closed)."""
        with self.lock:
            self.caches.pop(key, None)

    def submit(self, step: Step) -> concurrent.futures.Future[Any]:
        """Thread-safe: queue one step of a turn for the worker; its future
        holds what the step returns. Decode steps queued together run as one
        batched eval. After close() the future fails with ComponentLifecycleError."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self.steps_ready:
            if self.closed:
                fut.set_exception(ComponentLifecycleError("the model was unloaded"))
                return fut
            self.pending.append((step, fut))
            self.steps_ready.notify_all()
            if not self.draining:
                self.draining = True
                self.executor.submit(self._drain)
        return fut

    async def close(self) -> None:
        """Cancel what runs, free the model after it, and end the worker thread."""
        if self.closed:
            return
        with self.steps_ready:
            self.closed = True
            dropped, self.pending = self.pending, []
        for _, fut in dropped:
            fut.set_exception(ComponentLifecycleError("the model was unloaded"))
        with self.lock:
            if self.running is not None:
                self.model.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.model.close)
        with self.lock:
            self.caches.clear()
        self.executor.shutdown(wait=False)

    # -- worker thread ----------------------------------------------------------
    def cache_of(self, key: object) -> SeqCache:
        """Worker thread: `key`'s cache (a new, empty one if it has none), now
        the most recently used."""
        from engine.llm import _native

        with self.lock:
            cache = self.caches.get(key)
            if cache is None:
                cache = self.caches[key] = SeqCache(_native.KVCache(self.model))
            self.caches.move_to_end(key)
            return cache

    def _evict(self, keep: object) -> None:
        """Drop least recently used idle caches (never `keep`'s, never a live
        session's) until the caches fit in kv_cache_bytes."""
        with self.lock:
            total = sum(int(c.kv.nbytes) for c in self.caches.values())
            for key in list(self.caches):
                if total <= self.kv_cache_bytes:
                    break
                if key is keep or key in self.live:
                    continue
                total -= int(self.caches.pop(key).kv.nbytes)
                self.evictions += 1

    def _eval(self, key: object, cache: SeqCache, todo: list[int], common: int) -> bool:
        """Run `todo` at positions common.. of `key`'s cache and mirror it in
        cache.tokens. False when cancelled (the cache then keeps only the
        prefix before `common`)."""
        with self.lock:
            self.model.clear_cancel()  # a cancel meant for an earlier eval
            self.running = key
        try:
            ok = self.model.eval(todo, common, cache=cache.kv)
        finally:
            with self.lock:
                self.running = None
        del cache.tokens[common:]
        if ok:
            cache.tokens.extend(todo)
        self._evict(keep=key)
        return ok

    def ensure_cache(
        self, key: object, seq: list[int], writer: object, cancel: threading.Event
    ) -> SeqCache | None:
        """Worker thread: make `key`'s cache hold exactly `seq` with the logits
        of its last token, running only what the cache lacks (everything after
        the longest common prefix of the cache and `seq`). Returns the cache,
        or None when cancelled."""
        cache = self.cache_of(key)
        if cache.writer is writer and len(cache.tokens) == len(seq) - 1:
            common = len(cache.tokens)  # the usual decode step: one new token
        else:
            common = min(common_prefix(cache.tokens, seq), len(seq) - 1)
        while True:
            if cancel.is_set():
                return None
            if self._eval(key, cache, seq[common:], common):
                cache.writer = writer
                return cache
            if cancel.is_set():
                return None
            # A cancel() meant for this session's earlier step (a prefill the
            # caller abandoned) landed on this one: run it again.
            common = min(common, len(cache.tokens))

    def extend_cache(self, key: object, seq: list[int], max_new: int) -> int:
        """Worker thread: run at most `max_new` more tokens of `seq` into `key`'s
        cache, after its longest common prefix with the cache. Returns how many
        leading tokens of `seq` the cache now holds. Computes no logits that
        anyone reads: it only warms the cache for a later ensure_cache()."""
        cache = self.cache_of(key)
        common = common_prefix(cache.tokens, seq)
        if key in self.live:  # the session's own turn started: its cache is the turn's now
            return min(common, len(cache.tokens))
        todo = seq[common : common + max_new]
        if not todo or not self._eval(key, cache, todo, common):
            return min(common, len(cache.tokens))
        cache.writer = None
        return common + len(todo)

    # -- batched decode (worker thread) -----------------------------------------
    def _drain(self) -> None:
        """Run the pending steps: decode steps together, others one by one.
        One round per call (then it queues itself again), so work handed to
        run() meanwhile (a prefill chunk) never waits behind a long decode."""
        with self.steps_ready:
            # The other live turns' next steps arrive a moment after this one
            # (the loop hands them out one by one as the last batch's results
            # land): wait briefly so they join this batch instead of the next.
            self.steps_ready.wait_for(
                lambda: len(self.pending) >= len(self.live), limits.DECODE_BATCH_GATHER_S
            )
            steps, self.pending = self.pending, []
        try:
            self._run_steps(steps)
        finally:
            with self.steps_ready:
                self.draining = bool(self.pending) and not self.closed
                if self.draining:
                    self.executor.submit(self._drain)

    def _run_steps(self, steps: list[tuple[Step, concurrent.futures.Future[Any]]]) -> None:
        """Settle every step's future: the decode steps (their session's cache
        holds all but the last token of their sequence, written by the same
        turn) in batched evals, the rest (a turn's first step, a step after a
        search or an eviction) alone."""
        batch: list[tuple[Step, concurrent.futures.Future[Any], SeqCache, int]] = []
        alone: list[tuple[Step, concurrent.futures.Future[Any]]] = []
        for step, fut in steps:
            cache = self.caches.get(step.key)
            seq = step.sequence()
            # a decode step: one token after what this step's turn last ran
            if (
                cache is not None
                and not step.cancelled
                and len(cache.tokens) == len(seq) - 1
                and cache.writer is step
                and len(cache.tokens) < self.n_ctx
            ):
                batch.append((step, fut, cache, seq[-1]))
            else:
                alone.append((step, fut))
        if len(batch) == 1:
            alone.append(batch.pop()[:2])
        for i in range(0, len(batch), limits.MAX_DECODE_BATCH):
            self._run_batch(batch[i : i + limits.MAX_DECODE_BATCH])
        for step, fut in alone:
            _settle(fut, step.run)

    def _run_batch(
        self, batch: list[tuple[Step, concurrent.futures.Future[Any], SeqCache, int]]
    ) -> None:
        """One eval_batch for every step of `batch`, then each finishes from its row.
        Not cancellable (cancel() names one session; the others must go on): a
        batch is one token per session, and a cancelled turn ignores its result."""
        with self.lock:
            self.model.clear_cancel()
        try:
            ok = self.model.eval_batch([c.kv for _, _, c, _ in batch], [t for _, _, _, t in batch])
        except BaseException as exc:
            for _, fut, _, _ in batch:
                fut.set_exception(exc)
            return
        if not ok:  # cancelled after all (nothing was written): run each alone
            for step, fut, _, _ in batch:
                _settle(fut, step.run)
            return
        self.batches += 1
        for row, (step, fut, cache, token) in enumerate(batch):
            cache.tokens.append(token)
            with self.lock:
                if step.key in self.caches:
                    self.caches.move_to_end(step.key)
            _settle(fut, step.finish, cache, row)
        self._evict(keep=None)


def _settle(fut: concurrent.futures.Future[Any], fn: Callable[..., Any], *args: Any) -> None:
    """fut = fn(*args), or the exception it raised."""
    try:
        fut.set_result(fn(*args))
    except BaseException as exc:
        fut.set_exception(exc)
