"""Every limit of the LLM package, named and documented in one place."""

from __future__ import annotations

__all__ = [
    "DECODE_BATCH_GATHER_S",
    "DEFAULT_KV_CACHE_BYTES",
    "DEFAULT_LOOKBACK",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_PROGRESS_TIMEOUT_S",
    "DEFAULT_SEARCH_TOKEN_BUDGET",
    "MAX_DECODE_BATCH",
    "MAX_LOOKBACK",
    "MAX_MESSAGE_CHARS",
    "MAX_SEARCH_QUERY_CHARS",
    "MAX_SEARCH_RESULTS",
    "MAX_SEARCH_ROUNDS",
    "MAX_STORE_NAME_LEN",
    "MAX_TOKENS_CAP",
    "PREFILL_CHUNK_TOKENS",
    "SEARCH_BUDGET_CONTEXT_FRACTION",
    "SEARCH_HTTP_TIMEOUT_S",
    "SEARCH_MAX_RESPONSE_BYTES",
    "SESSION_LIFETIME_TOKENS",
]

# The KV caches of every conversation on one LLM together (LLM(kv_cache_bytes=),
# `bitvoice serve --kv-cache-bytes`). Past it the least recently used idle
# conversation's cache is dropped (it re-runs its history next turn). 1 GiB
# holds ~14,000 positions on the 2B shapes (30 layers x 5 KV heads x 128 x
# 2 x f16 = 76.8 KB per position): a dozen 1,000-token voice conversations.
DEFAULT_KV_CACHE_BYTES = 1 << 30
# Concurrent turns' decode steps run as one batched eval of at most this many
# sessions (BV_MAX_BATCH in csrc/include/bitvoice.h: the run state's rows).
MAX_DECODE_BATCH = 64
# Before a batch, the worker waits at most this long for the other generating
# turns' next steps (the loop hands them out one by one as the last batch's
# results land; they usually arrive within a fraction of a millisecond). Costs
# nothing to a turn generating alone; bounds the wait on a turn whose consumer
# is slow to ask for its next token.
DECODE_BATCH_GATHER_S = 0.002

# Per-turn generation cap used when neither the call nor generation_config.json
# names one (`max_new_tokens`).
DEFAULT_MAX_TOKENS = 256
# Hard ceiling on `max_tokens` a caller may ask for in one turn.
MAX_TOKENS_CAP = 32768
# Repetition penalty window (tokens of history the penalty looks at).
DEFAULT_LOOKBACK = 64
MAX_LOOKBACK = 4096
# One message (system/user/assistant/search) in characters; a larger one is a
# client bug or abuse, not a conversation, and is rejected before tokenizing.
MAX_MESSAGE_CHARS = 1_000_000
# Lifetime cap of one ChatSession: tokens prefilled plus tokens generated,
# summed over its turns. Past it the session raises SessionExhaustedError.
SESSION_LIFETIME_TOKENS = 1_000_000
# A single engine step (prefill of a turn, or one decoded token) that takes
# longer than this raises ProgressTimeoutError and cancels the engine.
DEFAULT_PROGRESS_TIMEOUT_S = 120.0
# ChatSession.prefill() runs the cache warm-up in chunks of this many tokens:
# a generate() that arrives meanwhile waits behind at most one chunk, and a
# cancel lands between chunks. Large enough to keep the batched (GEMM) prefill
# kernels busy, small enough that the wait stays a fraction of a turn.
PREFILL_CHUNK_TOKENS = 32
# Store IDs: `org/name`, each part at most this many characters.
MAX_STORE_NAME_LEN = 96

# Search harness.
# Tokens of search results appended per search when the LLM is not given a
# budget; always clamped to SEARCH_BUDGET_CONTEXT_FRACTION of the context window.
DEFAULT_SEARCH_TOKEN_BUDGET = 512
SEARCH_BUDGET_CONTEXT_FRACTION = 0.25
# Searches one turn may run before the harness stops obeying <search> tags.
MAX_SEARCH_ROUNDS = 3
MAX_SEARCH_QUERY_CHARS = 256
MAX_SEARCH_RESULTS = 5
SEARCH_HTTP_TIMEOUT_S = 10.0
SEARCH_MAX_RESPONSE_BYTES = 2 * 1024 * 1024
