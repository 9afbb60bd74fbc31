"""`LLM`: the async component that owns one loaded model (the C engine).

One worker thread per loaded model runs every engine call (the C code
releases the GIL); the event loop only moves tokens. The component's lock
serializes start and swap_model; stop() does not wait behind them, it wins:
in-flight work is discarded and the component ends stopped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine._component import Component, ComponentState
from engine.errors import ComponentLifecycleError, InvalidRequestError
from engine.llm import bundle, limits, store, tiny
from engine.llm.sampling import defaults_from_generation_config
from engine.llm.search import SearchProvider, make_provider
from engine.llm.session import ChatSession
from engine.llm.tokenizer import ChatTokenizer
from engine.llm.worker import Engine

if TYPE_CHECKING:
    from engine.llm._native import Model

__all__ = ["LLM", "LLMOptions"]

QUANTS = (None, "int8", "int4")
HARNESSES = ("default", "search")
KV_CACHE_QUANTS = (None, "int8")


def _quant(name: str, value: object) -> str | None:
    if value == "none":
        return None
    if value not in QUANTS:
        raise InvalidRequestError(f"{name} must be None, 'none', 'int8' or 'int4'; got {value!r}")
    return None if value is None else str(value)


@dataclass(frozen=True)
class LLMOptions:
    """Everything `LLM(...)` and `swap_model(...)` accept, validated (see LLM)."""

    model_id: str
    num_threads: int = 0
    lora_dir: str | None = None
    lora_quant: str | None = None
    # int8 by default, as the server: on the reference and random models it keeps
    # the greedy token 98-99% of the time (KL <= 1e-3 nats) for half the bytes of
    # the stored f16 head; int4 changes it 13-36% of the time (bench.bench_heads)
    unembed_quant: str | None = "int8"
    trust_remote_code: bool = False
    harness_name: str = "default"
    search_provider: str | SearchProvider = "ddgs"
    search_token_budget: int | None = None
    kv_cache_bytes: int = limits.DEFAULT_KV_CACHE_BYTES
    # None: the KV cache in f16 (the default); "int8": int8 rows with a float step
    # each, half the bytes read per decoded token (see README for speed and quality)
    kv_cache_quant: str | None = None

    def __post_init__(self) -> None:
        store.validate_store_id(self.model_id)
        if self.lora_dir is not None:
            store.validate_store_id(self.lora_dir)
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int):
            raise InvalidRequestError(f"num_threads must be an int, got {self.num_threads!r}")
        if not 0 <= self.num_threads <= 1024:
            raise InvalidRequestError(f"num_threads must be in [0, 1024], got {self.num_threads}")
        object.__setattr__(self, "lora_quant", _quant("lora_quant", self.lora_quant))
        object.__setattr__(self, "unembed_quant", _quant("unembed_quant", self.unembed_quant))
        if not isinstance(self.trust_remote_code, bool):
            raise InvalidRequestError("trust_remote_code must be True or False")
        if self.harness_name not in HARNESSES:
            raise InvalidRequestError(
                f"harness_name must be 'default' or 'search', got {self.harness_name!r}"
            )
        if not isinstance(self.search_provider, SearchProvider) and self.search_provider not in (
            "ddgs",
            "brave",
        ):
            raise InvalidRequestError(
                f"search_provider must be 'ddgs' or 'brave', got {self.search_provider!r}"
            )
        budget = self.search_token_budget
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
        ):
            raise InvalidRequestError(f"search_token_budget must be a positive int, got {budget!r}")
        cap = self.kv_cache_bytes
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise InvalidRequestError(f"kv_cache_bytes must be an int >= 0, got {cap!r}")
        kvq = None if self.kv_cache_quant in ("none", "f16") else self.kv_cache_quant
        if kvq not in KV_CACHE_QUANTS:
            raise InvalidRequestError(
                f"kv_cache_quant must be None, 'none', 'f16' or 'int8'; got {self.kv_cache_quant!r}"
            )
        object.__setattr__(self, "kv_cache_quant", kvq)


def _check_known(model_id: str) -> None:
    """InvalidRequestError (saying how to add it) unless the store holds the model
    or it is the demo bundle, which _resolve_model() builds on first use."""
    if model_id != tiny.DEMO_STORE_ID:
        store.resolve(model_id)


def _resolve_model(model_id: str) -> Path:
    """Blocking: the bundle folder of `model_id`. The seeded demo bundle
    (tiny.DEMO_STORE_ID, used by the README's first example) is built into the
    store on first use (a few seconds) instead of failing on a fresh store."""
    if model_id == tiny.DEMO_STORE_ID:
        tiny.ensure_demo_bundle()
    return store.resolve(model_id)


def _load_engine(opts: LLMOptions, bundle_dir: Path, adapter_dir: Path | None) -> Engine:
    """Blocking: everything that reads files or builds the model (worker thread)."""
    from engine.llm import _native  # the C extension; imported late so the SDK imports without it

    tokenizer = ChatTokenizer.from_bundle(bundle_dir, trust_remote_code=opts.trust_remote_code)
    bundle.load_bundle_config(bundle_dir)  # checks the bundle format version
    gen_path = bundle_dir / bundle.GENERATION_CONFIG
    gen: dict[str, Any] = {}
    if gen_path.is_file():
        import json

        try:
            loaded = json.loads(gen_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InvalidRequestError(f"bad {gen_path}: {exc}") from None
        gen = loaded if isinstance(loaded, dict) else {}
    defaults = defaults_from_generation_config(gen)
    provider = make_provider(opts.search_provider) if opts.harness_name == "search" else None
    try:
        model = _native.Model(
            str(bundle_dir / bundle.MODEL_FILE),
            n_threads=opts.num_threads,
            unembed_quant=opts.unembed_quant,
            kv_quant=opts.kv_cache_quant,
        )
    except _native.BundleError as exc:
        raise InvalidRequestError(f"cannot load {opts.model_id!r}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"cannot load {opts.model_id!r}: {exc}") from None
    try:
        if adapter_dir is not None:
            from engine.llm.lora import apply_adapter

            apply_adapter(model, adapter_dir, bundle_dir, opts.lora_quant)
        if tokenizer.vocab_size > model.n_vocab:
            raise InvalidRequestError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.n_vocab}"
            )
    except BaseException:
        model.close()
        raise
    budget = opts.search_token_budget or limits.DEFAULT_SEARCH_TOKEN_BUDGET
    budget = max(1, min(budget, int(model.n_ctx * limits.SEARCH_BUDGET_CONTEXT_FRACTION)))
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bitvoice-llm")
    return Engine(
        model, executor, tokenizer, defaults, bundle_dir, provider, budget, opts.kv_cache_bytes
    )


class LLM(Component):
    """The ternary BitNet LLM on bitvoice's C engine.

    LLM(model_id, *, num_threads=0, lora_dir=None, lora_quant=None,
        unembed_quant="int8", trust_remote_code=False, harness_name="default",
        search_provider="ddgs", search_token_budget=None,
        kv_cache_bytes=limits.DEFAULT_KV_CACHE_BYTES, kv_cache_quant=None)

    unembed_quant: the LM head's format, "int8" (the default, as the server's),
    "int4", or None / "none" to keep the head as stored (f16).
    model_id and lora_dir are store IDs (`org/name`). Each session keeps its
    own KV cache, so sessions that take turns only run their new tokens;
    kv_cache_bytes caps those caches together: past it, the least recently
    used idle session's cache is dropped and that session re-runs its history
    on its next turn (Usage.cached_tokens shows the reuse). Caches of turns
    generating at that moment are never dropped, so they alone may exceed it
    (with 0, a session's cache lasts until another session runs).
    kv_cache_quant: None / "none" / "f16" keeps the caches in f16; "int8" stores
    each position's keys and values per KV head as int8 codes with one float step
    (half the bytes, so long conversations decode faster and more fit under
    kv_cache_bytes; logits move by a small fraction of their range). Options are validated
    here (InvalidRequestError); the store is read at `start()`, which raises
    InvalidRequestError for an unknown ID, saying how to pull or import it.
    """

    role = "llm"

    def __init__(
        self,
        model_id: str,
        *,
        num_threads: int = 0,
        lora_dir: str | None = None,
        lora_quant: str | None = None,
        unembed_quant: str | None = "int8",
        trust_remote_code: bool = False,
        harness_name: str = "default",
        search_provider: str | SearchProvider = "ddgs",
        search_token_budget: int | None = None,
        kv_cache_bytes: int = limits.DEFAULT_KV_CACHE_BYTES,
        kv_cache_quant: str | None = None,
    ) -> None:
        super().__init__()
        self._options = LLMOptions(
            model_id,
            num_threads=num_threads,
            lora_dir=lora_dir,
            lora_quant=lora_quant,
            unembed_quant=unembed_quant,
            trust_remote_code=trust_remote_code,
            harness_name=harness_name,
            search_provider=search_provider,
            search_token_budget=search_token_budget,
            kv_cache_bytes=kv_cache_bytes,
            kv_cache_quant=kv_cache_quant,
        )
        self._engine: Engine | None = None
        self._lock = asyncio.Lock()
        self._epoch = 0  # bumped by stop(): in-flight start/swap compare and discard
        self.generation = 0  # bumped at each hand-off: sessions of older ones are stale

    # -- introspection ----------------------------------------------------------
    @property
    def options(self) -> LLMOptions:
        return self._options

    @property
    def model_id(self) -> str:
        return self._options.model_id

    def engine(self) -> Engine:
        """The loaded engine; ComponentLifecycleError unless running on this loop."""
        self._check_running()
        assert self._engine is not None
        return self._engine

    @property
    def native_model(self) -> Model | None:
        """The loaded native Model (counters such as tokens_evaluated), or None."""
        return None if self._engine is None else self._engine.model

    # -- lifecycle --------------------------------------------------------------
    async def _load(self, opts: LLMOptions, epoch: int) -> Engine:
        bundle_dir = await asyncio.to_thread(_resolve_model, opts.model_id)
        adapter_dir = store.resolve(opts.lora_dir, kind="adapter") if opts.lora_dir else None
        engine = await asyncio.to_thread(_load_engine, opts, bundle_dir, adapter_dir)
        if self._epoch != epoch:
            await engine.close()
            raise ComponentLifecycleError("LLM was stopped while loading; the model was discarded")
        return engine

    async def start(self) -> None:
        """Load the model. No-op if already running. Raises InvalidRequestError for
        an unknown store ID or a bad bundle (state: unavailable) and
        ComponentLifecycleError if stop() is called meanwhile."""
        self._bind_loop()
        async with self._lock:
            if self.state is ComponentState.RUNNING:
                return
            epoch = self._epoch
            self.state = ComponentState.STARTING
            try:
                engine = await self._load(self._options, epoch)
            except BaseException:
                if self._epoch == epoch:
                    self.state = ComponentState.UNAVAILABLE
                raise
            self._engine = engine
            self.state = ComponentState.RUNNING

    async def stop(self) -> None:
        """Unload the model; sessions then raise ComponentLifecycleError (after a
        restart of the same model they work again, their history re-run). Wins
        over an in-flight start or swap (their work is discarded). Idempotent."""
        self._check_loop()
        self._epoch += 1
        self.state = ComponentState.STOPPING
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()
        async with self._lock:  # let an in-flight start/swap see the new epoch and discard
            engine, self._engine = self._engine, None
            if engine is not None:
                await engine.close()
            self.state = ComponentState.STOPPED

    async def swap_model(
        self,
        model_id: str,
        *,
        num_threads: int = 0,
        lora_dir: str | None = None,
        lora_quant: str | None = None,
        unembed_quant: str | None = "int8",
        trust_remote_code: bool = False,
        harness_name: str = "default",
        search_provider: str | SearchProvider = "ddgs",
        search_token_budget: int | None = None,
        kv_cache_bytes: int = limits.DEFAULT_KV_CACHE_BYTES,
        kv_cache_quant: str | None = None,
    ) -> None:
        """Replace the running model. Options not given take their defaults (they
        are not inherited from the current model).

        Raises ComponentLifecycleError unless running (or unavailable after a
        failed swap). Bad options or unknown store IDs raise InvalidRequestError
        before anything changes. Then existing sessions become stale, the old
        engine is stopped, and the new one loaded; if that fails the LLM stays
        unavailable until another swap or a restart.
        """
        self._check_loop()
        opts = LLMOptions(
            model_id,
            num_threads=num_threads,
            lora_dir=lora_dir,
            lora_quant=lora_quant,
            unembed_quant=unembed_quant,
            trust_remote_code=trust_remote_code,
            harness_name=harness_name,
            search_provider=search_provider,
            search_token_budget=search_token_budget,
            kv_cache_bytes=kv_cache_bytes,
            kv_cache_quant=kv_cache_quant,
        )
        _check_known(opts.model_id)
        if opts.lora_dir:
            store.resolve(opts.lora_dir, kind="adapter")
        async with self._lock:
            if self.state not in (ComponentState.RUNNING, ComponentState.UNAVAILABLE):
                raise ComponentLifecycleError(
                    f"swap_model needs a running LLM; it is {self.state.value}"
                )
            epoch = self._epoch
            self.generation += 1  # hand-off: every existing session is stale from here
            self.state = ComponentState.STARTING
            old, self._engine = self._engine, None
            if old is not None:
                await old.close()  # the old engine stops before the new one starts
            if self._epoch != epoch:
                raise ComponentLifecycleError("LLM was stopped during swap_model")
            try:
                engine = await self._load(opts, epoch)
            except BaseException:
                if self._epoch == epoch:
                    self.state = ComponentState.UNAVAILABLE
                raise
            self._engine = engine
            self._options = replace(opts)
            self.state = ComponentState.RUNNING

    # -- sessions ---------------------------------------------------------------
    def open_session(
        self,
        *,
        max_lifetime_tokens: int = limits.SESSION_LIFETIME_TOKENS,
        progress_timeout_s: float = limits.DEFAULT_PROGRESS_TIMEOUT_S,
    ) -> ChatSession:
        """A new ChatSession (use `async with`). AdmissionRejectedError while
        stop() drains the LLM; ComponentLifecycleError unless running."""
        self._check_admission()
        return ChatSession(
            _SessionHost(self),
            max_lifetime_tokens=max_lifetime_tokens,
            progress_timeout_s=progress_timeout_s,
        )


class _SessionHost:
    """What a ChatSession may ask of its LLM (session.SessionHost): the session
    sees this, never the component, so it cannot reach into its fields."""

    def __init__(self, llm: LLM) -> None:
        self._llm = llm

    @property
    def generation(self) -> int:
        return self._llm.generation

    def check_loop(self) -> None:
        self._llm._check_loop()

    def engine(self) -> Engine:
        return self._llm.engine()

    def admit(self) -> Engine:
        self._llm._check_admission()
        return self._llm.engine()
