"""`ChatSession`: one multi-turn conversation on an LLM, and its token stream.

The session keeps its history as tokens (exactly what the model saw) and its
own KV cache on the engine (worker.Engine, keyed by the session). Each turn
makes that cache hold `history + new message + generation prompt`, reusing
the longest prefix it already has, so a follow-up turn only runs its new
tokens, whatever other sessions ran in between (unless the engine evicted
the cache to stay under its byte cap: then the turn re-runs the history). Every engine call runs on the model's worker thread,
one step (prefill, or one token) at a time; the stream computes the next
token while the consumer handles the current one.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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
from engine.llm import limits
from engine.llm.events import ChatDoneEvent, ChatEvent, ChatFinalTextEvent, ChatTokenEvent, Usage
from engine.llm.sampling import SamplingOptions, resolve_sampling
from engine.llm.search import SearchError, SearchTagScanner, format_results
from engine.llm.tokenizer import IncrementalDecoder
from engine.llm.worker import Engine, SeqCache

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["ChatSession", "ChatStream", "SessionHost"]

IDLE, STREAMING, DONE, STALE = "idle", "streaming", "done", "stale"


class SessionHost(Protocol):
    """What a ChatSession needs from the LLM that made it (handed in by
    `LLM.open_session()`; the session never sees the component itself)."""

    @property
    def generation(self) -> int:
        """Bumped at each model hand-off: sessions of an older one are stale."""

    def check_loop(self) -> None:
        """ComponentLifecycleError unless called on the LLM's event loop."""

    def engine(self) -> Engine:
        """The loaded engine, for work already admitted; ComponentLifecycleError
        unless running on this loop."""

    def admit(self) -> Engine:
        """The loaded engine, for new work: AdmissionRejectedError while the LLM
        drains (stop() in progress), else as engine()."""


@dataclass(frozen=True)
class _Message:
    """One message of the history: what the caller sees and the tokens the model saw."""

    role: str
    content: str
    tokens: tuple[int, ...]


@dataclass(eq=False)
class _Turn:
    """The state of one generate() call, shared by the loop and the worker thread."""

    session: ChatSession
    engine: Engine
    user_message: str
    options: SamplingOptions
    prompt: list[int]
    decoder: IncrementalDecoder
    scanner: SearchTagScanner
    started: float
    cancel: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    completion: int = 0  # generated tokens in earlier search segments
    cached: int = -1  # cache hit of the first prefill (-1 until known)
    prefilled: int = 0
    first_token_at: float | None = None
    visible: list[str] = field(default_factory=list)
    # Messages this turn adds to the history before its final reply (the user
    # message, then an assistant part and a search result per search round).
    segments: list[_Message] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    finished: bool = False
    finish_reason: str = "stop"
    # Tokens emitted instead of sampled, first to last. Only tests set it (via
    # ChatSession._force_reply) to make a random tiny model write a search tag;
    # they still run through the engine like sampled tokens.
    forced: list[int] = field(default_factory=list)
    seed: int | None = None  # seeds the session's sampler at the turn's first step

    # -- worker thread: worker.Step, run by Engine.submit() -------------------------
    @property
    def key(self) -> object:
        return self.session._key

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def sequence(self) -> list[int]:
        return self.prompt + self.generated

    def run(self) -> tuple[str, str | None, str | None]:
        """Bring the cache up to date, sample one token. Returns (visible text,
        search query or None, finish reason or None)."""
        seq = self.sequence()
        before = self.engine.model.tokens_evaluated
        cache = self.engine.ensure_cache(self.key, seq, self, self.cancel)
        if cache is None:
            return "", None, "cancelled"
        return self._sample(cache, seq, int(self.engine.model.tokens_evaluated - before), -1)

    def finish(self, cache: SeqCache, row: int) -> tuple[str, str | None, str | None]:
        """After a batched eval ran this turn's last token into `cache`: as run()."""
        return self._sample(cache, self.sequence(), 1, row)

    def _sample(
        self, cache: SeqCache, seq: list[int], ran: int, row: int
    ) -> tuple[str, str | None, str | None]:
        """Sample from row `row` of the logits (`ran` tokens just ran for `seq`)."""
        if self.seed is not None:
            cache.kv.set_seed(self.seed)
            self.seed = None
        if self.cached < 0:
            self.cached = len(seq) - ran
        if not self.generated:
            self.prefilled += ran
        o = self.options
        history = seq[-o.lookback :] if o.lookback else []
        if self.forced:
            token = self.forced.pop(0)
        else:
            token = int(
                self.engine.model.sample(
                    temperature=o.temperature,
                    top_k=o.top_k,
                    top_p=o.top_p,
                    repetition_penalty=o.repetition_penalty,
                    history=history,
                    lookback=o.lookback,
                    cache=cache.kv,
                    row=row,
                )
            )
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if token in self.engine.tokenizer.stop_ids:
            return "", None, "stop"
        self.generated.append(token)
        visible, query = self.scanner.feed(self.decoder.push(token))
        if query is not None:
            return visible, query, None
        total = self.completion + len(self.generated)
        lifetime = self.session._lifetime + self.prefilled + total
        if (
            total >= o.max_tokens
            or len(seq) + 1 >= self.engine.n_ctx
            or lifetime >= self.session._max_lifetime
        ):
            return visible, None, "length"
        return visible, None, None


class ChatStream:
    """The async iterator that `ChatSession.generate()` returns.

    Yields ChatTokenEvent* then ChatFinalTextEvent then ChatDoneEvent. Leaving
    early (break, aclose(), task cancellation, or dropping it) stops the
    engine within one token; the partial reply is kept in the history and
    the session is idle again.
    """

    def __init__(self, turn: _Turn, progress_timeout_s: float) -> None:
        self._turn = turn
        self._timeout = progress_timeout_s
        self._out: collections.deque[ChatEvent] = collections.deque()
        self._next: asyncio.Future[tuple[str, str | None, str | None]] | None = None
        self._done = False

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatEvent:
        if not self._out and not self._done:
            try:
                await self._advance()
            except BaseException:
                await self._abort()
                raise
        if self._out:
            return self._out.popleft()
        raise StopAsyncIteration

    def _submit(self) -> None:
        # concurrent turns' decode steps submitted together run as one batch
        self._next = asyncio.wrap_future(self._turn.engine.submit(self._turn))

    async def _advance(self) -> None:
        turn = self._turn
        while not self._out:
            turn.session._check_usable(turn)
            if self._next is None:
                self._submit()
            assert self._next is not None
            fut = self._next
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for returns the
                # result and drops a cancel that lands in the step where the
                # future completes, and the consumer then runs on (issue 12).
                async with asyncio.timeout(self._timeout):
                    visible, query, finish = await asyncio.shield(fut)
            except TimeoutError:
                raise ProgressTimeoutError(
                    f"the engine made no progress for {self._timeout:g} s; generation cancelled"
                ) from None
            self._next = None
            if finish is None and query is None:
                self._submit()  # compute the next token while the consumer handles this one
            if visible:
                turn.visible.append(visible)
                self._out.append(ChatTokenEvent(visible))
            if finish == "cancelled":
                turn.session._check_usable(turn)
                raise ComponentLifecycleError("the generation was cancelled by the engine")
            if query is not None:
                await self._search(query)
            elif finish is not None:
                self._finish(finish)

    async def _search(self, query: str) -> None:
        turn, engine = self._turn, self._turn.engine
        tok = engine.tokenizer
        turn.searches.append(query)
        raw = tok.decode(turn.generated)
        turn.segments.append(_reply_message(turn, raw))
        assert engine.provider is not None
        try:
            results = await engine.provider.search(query, limits.MAX_SEARCH_RESULTS)
            text = format_results(query, results)
        except SearchError as exc:
            text = f'Search for "{query}" failed: {exc}'
        ids = tok.encode(text)
        if len(ids) > engine.search_budget:
            text = tok.decode(ids[: engine.search_budget]).rstrip("\ufffd")
        turn.segments.append(_Message("search", text, tuple(tok.message("search", text))))
        new_prompt = [
            *turn.prompt,
            *turn.generated,
            tok.eot_id,
            *tok.message("search", text),
            *tok.generation_prompt(),
        ]
        turn.session._turn_check_fits(new_prompt)
        turn.completion += len(turn.generated)
        turn.prompt, turn.generated = new_prompt, []
        turn.decoder = tok.decoder()
        turn.scanner.reset()
        turn.scanner.enabled = len(turn.searches) < limits.MAX_SEARCH_ROUNDS

    def _finish(self, reason: str) -> None:
        turn = self._turn
        tail = turn.scanner.feed(turn.decoder.flush())[0] + turn.scanner.flush()
        if tail:
            turn.visible.append(tail)
            self._out.append(ChatTokenEvent(tail))
        turn.finish_reason = reason
        usage = turn.session._commit(turn)
        self._out.append(ChatFinalTextEvent("".join(turn.visible)))
        self._out.append(ChatDoneEvent(usage))
        self._done = True

    async def _abort(self) -> None:
        """Stop the engine, wait for the step in flight, keep the partial reply."""
        if self._done:
            return
        self._done = True
        turn = self._turn
        turn.cancel.set()
        turn.engine.cancel(turn.session._key)
        fut, self._next = self._next, None
        try:
            if fut is not None:
                # Wait for the step to end; its outcome no longer matters. wait()
                # never raises the step's error, and a cancel of this task still
                # propagates (after the commit below), it is never swallowed.
                fut.add_done_callback(_retrieve)
                await asyncio.wait([fut])
        finally:
            turn.finish_reason = "cancelled"
            turn.session._commit(turn)

    async def aclose(self) -> None:
        """Stop early (idempotent)."""
        await self._abort()

    def __del__(self) -> None:
        # Dropped without finishing (e.g. `break` out of `async for`): stop the
        # engine now and commit, so the session is idle before the next call.
        if not self._done:
            self._done = True
            turn = self._turn
            turn.cancel.set()
            turn.engine.cancel(turn.session._key)
            if self._next is not None:
                self._next.add_done_callback(_retrieve)
            turn.finish_reason = "cancelled"
            turn.session._commit(turn)


def _reply_message(turn: _Turn, text: str) -> _Message:
    """The assistant message of the tokens generated so far, as the model saw them."""
    tok = turn.engine.tokenizer
    return _Message("assistant", text, (*tok.generation_prompt(), *turn.generated, tok.eot_id))


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class ChatSession:
    """A multi-turn chat on an LLM. Made by `LLM.open_session()`, never directly.

    States: "idle" (ready), "streaming" (a turn runs), "done" (closed: every
    call raises SessionClosedError) and "stale" (the LLM swapped its model:
    every call raises SessionStaleError). Must be used from the LLM's loop.
    Calls that start new work raise AdmissionRejectedError while the LLM is
    stopping (draining).
    """

    def __init__(
        self, host: SessionHost, *, max_lifetime_tokens: int, progress_timeout_s: float
    ) -> None:
        self._host = host
        self._generation = host.generation
        self._max_lifetime = max_lifetime_tokens
        self._timeout = progress_timeout_s
        self._history: list[_Message] = []
        self._lifetime = 0
        self._turn: _Turn | None = None
        self._stream: weakref.ref[ChatStream] | None = None
        self._closed = False
        self._prefilling = False
        self._forced: list[int] = []
        # Names this conversation's KV cache on the engine (worker.Engine.caches).
        self._key = object()

    def _force_reply(self, text: str) -> None:
        """Test seam: the next turn starts with these tokens instead of sampled ones."""
        self._forced = self._host.engine().tokenizer.encode(text)

    # -- state ------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self._closed:
            return DONE
        if self._generation != self._host.generation:
            return STALE
        return STREAMING if self._busy() else IDLE

    @property
    def messages(self) -> list[tuple[str, str]]:
        """Committed history as (role, content) pairs (a copy)."""
        return [(m.role, m.content) for m in self._history]

    @property
    def history_tokens(self) -> list[int]:
        """The committed history as the tokens the model sees (a copy; empty
        when there is no history, else it starts with the begin token)."""
        return self._history_tokens(self._host.engine()) if self._history else []

    @property
    def lifetime_tokens(self) -> int:
        return self._lifetime

    def _busy(self) -> bool:
        return self._turn is not None and not self._turn.finished

    def _check_usable(self, turn: _Turn | None = None, *, admit: bool = False) -> Engine:
        self._host.check_loop()
        if self._closed:
            raise SessionClosedError("this chat session is closed; open a new one")
        if self._generation != self._host.generation:
            raise SessionStaleError(
                "the LLM swapped or restarted its model; this session is stale, open a new one"
            )
        engine = self._host.admit() if admit else self._host.engine()
        if turn is not None and turn.engine is not engine:
            raise SessionStaleError("the model changed during this generation")
        return engine

    def _check_idle(self) -> Engine:
        engine = self._check_usable(admit=True)
        if self._busy():
            raise SessionBusyError("this session already has a generation running")
        return engine

    def _history_tokens(self, engine: Engine) -> list[int]:
        out = engine.tokenizer.begin()
        for message in self._history:
            out.extend(message.tokens)
        return out

    def _turn_check_fits(self, prompt: list[int]) -> None:
        n_ctx = self._host.engine().n_ctx
        if len(prompt) + 1 > n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(prompt)} tokens; the context window is {n_ctx} "
                "(including one token to generate). Start a new chat or shorten the input."
            )

    # -- public API: history ----------------------------------------------------
    def append_message(self, role: str, content: str) -> None:
        """Add a system, user, assistant or search message to the history; it is
        run with the next generated turn. Only while idle (SessionBusyError)."""
        engine = self._check_idle()
        tokens = engine.tokenizer.message(role, content)
        self._history.append(_Message(role, content, tuple(tokens)))

    def new_chat(self) -> None:
        """Forget the history (idle sessions only). The lifetime count is kept."""
        self._check_idle()
        self._history = []

    def set_system_prompt(self, text: str | None) -> None:
        """Set, replace or (with None or "") remove the system message at the head
        of the history; every other message stays as it is.

        Only while idle: SessionBusyError while a turn runs, SessionClosedError
        when closed, InvalidRequestError for a non-str or oversized text. The
        next turn re-runs the history after the head (its positions moved).
        """
        engine = self._check_idle()
        head = 1 if self._history and self._history[0].role == "system" else 0
        if text is None or text == "":
            del self._history[:head]
            return
        message = _Message("system", text, tuple(engine.tokenizer.message("system", text)))
        self._history[:head] = [message]

    def replace_last_reply(self, text: str) -> None:
        """Replace the content of the last assistant message, e.g. with the part
        of an interrupted reply that the user heard. "" removes that message
        (the user message before it stays).

        Only while idle (SessionBusyError, SessionClosedError). InvalidRequestError
        when the last message of the history is not an assistant message.
        """
        engine = self._check_idle()
        if not self._history or self._history[-1].role != "assistant":
            raise InvalidRequestError(
                "replace_last_reply needs an assistant message at the end of the history"
            )
        if text == "":
            self._history.pop()
            return
        self._history[-1] = _Message("assistant", text, tuple(engine.tokenizer.reply(text)))

    def discard_last_turn(self) -> tuple[str, str] | None:
        """Remove the last user message and everything after it (the reply, and
        any search results of that turn), as if that turn never happened.

        Returns (user message, last assistant reply after it, "" if none), or
        None when the history holds no user message. Only while idle
        (SessionBusyError, SessionClosedError).
        """
        self._check_idle()
        users = [i for i, m in enumerate(self._history) if m.role == "user"]
        if not users:
            return None
        start = users[-1]
        removed, self._history = self._history[start:], self._history[:start]
        replies = [m.content for m in removed if m.role == "assistant"]
        return removed[0].content, replies[-1] if replies else ""

    # -- public API: turns ------------------------------------------------------
    async def prefill(self, user_message_prefix: str) -> int:
        """Warm the KV cache with the history and the start of a user message
        that is still being spoken, generating and committing nothing.

        A later `generate(message)` reuses every cached token its prompt starts
        with (the longest common prefix), so when `message` continues the
        prefix at a word boundary only the rest of it is run. Runs in chunks of
        limits.PREFILL_CHUNK_TOKENS, so the engine is never held longer than one
        chunk: a generate() started meanwhile (on this session) ends the prefill
        at the next chunk boundary. It runs into this session's own cache, so
        it never touches another session's. Cancelling the caller stops it at
        once.

        Returns how many tokens of history + prefix the cache now holds.
        Raises SessionBusyError while a turn or another prefill runs,
        SessionClosedError, SessionStaleError, AdmissionRejectedError,
        InvalidRequestError, ContextOverflowError, ComponentLifecycleError.
        """
        engine = self._check_idle()
        if self._prefilling:
            raise SessionBusyError("this session already has a prefill running")
        seq = self._history_tokens(engine) + engine.tokenizer.message_prefix(
            "user", user_message_prefix
        )
        self._turn_check_fits(seq)
        self._prefilling = True
        try:
            return await self._prefill_chunks(engine, seq)
        finally:
            self._prefilling = False

    async def _prefill_chunks(self, engine: Engine, seq: list[int]) -> int:
        cached = -1
        while True:
            fut = asyncio.ensure_future(
                engine.run(engine.extend_cache, self._key, seq, limits.PREFILL_CHUNK_TOKENS)
            )
            try:
                before, cached = cached, await asyncio.shield(fut)
            except asyncio.CancelledError:
                # the chunk stops at a layer boundary; the cache stays valid
                engine.cancel(self._key)
                fut.add_done_callback(_retrieve)
                raise
            if cached >= len(seq) or cached <= before or self._busy():
                return cached
            self._check_usable()

    def generate(
        self,
        user_message: str,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        lookback: int | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> ChatStream:
        """Start an assistant turn answering `user_message`; returns its event stream.

        Options not given come from the bundle's generation_config.json.
        Raises at once: SessionClosedError, SessionStaleError, SessionBusyError,
        SessionExhaustedError, InvalidRequestError (bad option or message),
        ContextOverflowError (prompt too long), AdmissionRejectedError (the LLM
        is stopping), ComponentLifecycleError. While streaming:
        ProgressTimeoutError when a step takes longer than the session's
        progress timeout. A prefill() still running ends at its next chunk.
        """
        engine = self._check_idle()
        if self._lifetime >= self._max_lifetime:
            raise SessionExhaustedError(
                f"this session used {self._lifetime} of its {self._max_lifetime} lifetime tokens; "
                "open a new session"
            )
        options = resolve_sampling(
            engine.defaults,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            lookback=lookback,
            max_tokens=max_tokens,
            seed=seed,
        )
        tok = engine.tokenizer
        user = tok.message("user", user_message)
        prompt = self._history_tokens(engine) + user + tok.generation_prompt()
        self._turn_check_fits(prompt)
        turn = _Turn(
            session=self,
            engine=engine,
            user_message=user_message,
            options=options,
            prompt=prompt,
            decoder=tok.decoder(),
            scanner=SearchTagScanner(enabled=engine.provider is not None),
            started=time.perf_counter(),
        )
        turn.segments.append(_Message("user", user_message, tuple(user)))
        turn.forced, self._forced = self._forced, []
        turn.seed = options.seed
        self._turn = turn
        engine.live.add(self._key)
        stream = ChatStream(turn, self._timeout)
        self._stream = weakref.ref(stream)
        return stream

    async def collect(self, user_message: str, **options: Any) -> str:
        """Run a whole turn and return the final assistant text (same errors as generate)."""
        stream = self.generate(user_message, **options)
        text = ""
        async for event in stream:
            if isinstance(event, ChatFinalTextEvent):
                text = event.text
        return text

    async def close(self) -> None:
        """Stop any running turn and close the session (state "done"). Idempotent."""
        stream = self._stream() if self._stream is not None else None
        if stream is not None:
            await stream.aclose()
        self._closed = True
        try:
            self._host.engine().release(self._key)
        except ComponentLifecycleError:
            pass  # no model loaded: no cache to free

    async def __aenter__(self) -> ChatSession:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- bookkeeping ------------------------------------------------------------
    def _commit(self, turn: _Turn) -> Usage:
        """Close a turn: its messages join the history, the session is idle again."""
        if turn.finished:
            return _usage(turn)
        turn.finished = True
        turn.engine.live.discard(self._key)
        reply = _reply_message(turn, turn.engine.tokenizer.decode(turn.generated))
        self._history.extend([*turn.segments, reply])
        self._lifetime += turn.prefilled + turn.completion + len(turn.generated)
        return _usage(turn)


def _usage(turn: _Turn) -> Usage:
    completion = turn.completion + len(turn.generated)
    cached = max(turn.cached, 0)
    prompt = len(turn.prompt) - turn.completion if turn.searches else len(turn.prompt)
    ttft = None if turn.first_token_at is None else turn.first_token_at - turn.started
    tps = None
    if turn.first_token_at is not None and completion > 1:
        elapsed = time.perf_counter() - turn.first_token_at
        tps = (completion - 1) / elapsed if elapsed > 0 else None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=cached,
        prefill_tokens=turn.prefilled,
        time_to_first_token_s=ttft,
        tokens_per_second=tps,
        finish_reason=turn.finish_reason,
        search_queries=tuple(turn.searches),
    )
