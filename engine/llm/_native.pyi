# Type stub of the C extension engine.llm._native (csrc/pymodule.c).
# The contract the Python SDK builds on. Every call that computes releases the
# GIL; eval() checks the cancel flag between layers and returns False when it
# was cancelled (the KV cache then holds only the prefix before this call).
from collections.abc import Sequence

from typing_extensions import Buffer

class BundleError(ValueError):
    """A bundle file is truncated, corrupt, or has unsupported shapes."""

def kernel_backend() -> str:
    """The kernel path in use: 'ref', 'avx2' or 'avx512'."""

def select_kernel(name: str) -> None:
    """Force a path ('ref', 'avx2', 'avx512', 'amx', 'auto'); ValueError if this CPU lacks it."""

def supported_kernels() -> list[str]:
    """The paths this CPU can run, e.g. ['ref', 'avx2', 'avx512', 'amx']."""

def kernel_run(
    path: str, op: str, w: Buffer, nb: int, x: Buffer, n: int, rows: int, r0: int = 0, r1: int = -1
) -> bytes:
    """Test hook: run one integer kernel ('ternary_gemv', 'ternary_gemm', 'int8_gemv',
    'int4_gemv', 't1_gemv', 't1_gemm') of one path on rows [r0, r1); int32 results."""

def lora_kernel_run(
    path: str, quant: str, q: Buffer, step: Buffer, cols: int, x: Buffer, rows: int
) -> bytes:
    """Test hook: y[r] = step[r] * (Q[r] . x) for every row, by one path's quantized-LoRA
    kernel ('int8' codes, or 'int4' packed); float32 results."""

def attn_kernel_run(
    path: str,
    q: Buffer,
    group: int,
    k: Buffer,
    v: Buffer,
    n: int,
    hd: int,
    scale: float,
    ks: Buffer | None = None,
    vs: Buffer | None = None,
) -> bytes:
    """Test hook: one attention span of one path (bv_kernels.h attn_span; attn_span_i8
    when ks / vs, the int8 rows' float32 steps, are given). q: [group][hd] float32;
    k, v: [n][hd] float16 or int8 codes. Returns float32 bytes: m [group], l [group],
    then o [group][hd] (unnormalized)."""

class KVCache:
    """One sequence's KV cache and sampler state, for the model it was made for.

    Empty when made; memory grows as positions are written (nbytes). Independent
    of the model's own cache and of every other KVCache: evals on one never
    change another. Freed when dropped (it may outlive Model.close()).
    """

    n_cached: int  # positions valid
    n_ctx: int  # positions it can hold (the model's n_ctx)
    nbytes: int  # bytes it holds: every position ever written, keys and values

    def __init__(self, model: Model) -> None: ...
    def set_seed(self, seed: int) -> None:
        """Seed this sequence's sampler (Model.sample(cache=this))."""

class Model:
    """One loaded bundle with its own KV cache (used when a call names no KVCache).

    path: the model.bvm file of a bundle (config.json sits beside it).
    n_threads: worker threads, 0 = physical cores.
    n_ctx: KV cache length, 0 = the bundle's max context.
    unembed_quant: None (keep the stored f16 head), 'int8' or 'int4'.
    """

    n_vocab: int
    n_ctx: int
    n_threads: int
    n_cached: int  # tokens currently valid in the KV cache
    tokens_evaluated: int  # total tokens run through forward since load (for reuse tests)
    eval_calls: int
    ternary_layout: str  # in-memory layout of the layer matrices: "t1" or "2bit"
    lora_bytes: int  # bytes the attached LoRA factors hold (codes or floats, and steps)
    kv_bytes_per_token: int  # bytes one position takes in a KV cache (keys and values)
    kv_quant: str  # KV cache storage: "f16" or "int8" (codes and a float step per row)

    def __init__(
        self,
        path: str,
        n_threads: int = 0,
        n_ctx: int = 0,
        unembed_quant: str | None = None,
        ternary_layout: str | None = None,
        kv_quant: str | None = None,
    ) -> None:
        """ternary_layout: None/'auto' (the kernel path's preference), '2bit' or 't1'.
        kv_quant: None/'f16' (the KV cache in float16) or 'int8' (per position and KV
        head, int8 codes with one float step: half the bytes). ValueError otherwise."""
    def eval(
        self,
        tokens: Sequence[int],
        n_past: int,
        all_logits: bool = False,
        *,
        cache: KVCache | None = None,
    ) -> bool:
        """Truncate the cache (this model's own when None) to n_past, run tokens
        at positions n_past.., keep logits.

        Raises ValueError when n_past > n_cached or n_past + len(tokens) > n_ctx,
        or when the cache belongs to another model.
        Returns False if cancel() was called while it ran.
        """
    def eval_batch(self, caches: Sequence[KVCache], tokens: Sequence[int]) -> bool:
        """Batched decode: tokens[i] runs at the end of caches[i] (position
        caches[i].n_cached), every row in one pass over the weights; logits()
        then holds one row per token. Each row gets the same bits as eval() of
        that token alone on its cache. 1..64 tokens, distinct caches, none full
        (ValueError). Returns False if cancel() was called while it ran (no
        cache changed)."""
    def logits(self) -> memoryview:
        """float32 logits of the last evaluated token ([n_vocab]), or of every
        token of the last eval with all_logits=True, or of eval_batch
        ([n_rows * n_vocab])."""
    def sample(
        self,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        history: Sequence[int] = (),
        lookback: int = 64,
        *,
        cache: KVCache | None = None,
        row: int = -1,
    ) -> int:
        """Sample the next token from row `row` of the current logits (-1: the
        last row; greedy when temperature == 0), with the sampler state of
        `cache` (this model's own when None).

        repetition_penalty applies to the last `lookback` tokens of `history`."""
    def set_seed(self, seed: int) -> None:
        """Seed the sampler of the model's own cache (KVCache.set_seed for others)."""
    def clear_cancel(self) -> None:
        """Drop a pending cancel request (one that no eval() has consumed)."""
    def cancel(self) -> None:
        """Thread-safe: ask a running eval() to stop at the next layer boundary."""
    def set_lora(
        self,
        name: str,
        a: Buffer,
        b: Buffer,
        rank: int,
        scale: float,
        *,
        quant: str | None = None,
        a_step: Buffer | None = None,
        b_step: Buffer | None = None,
    ) -> None:
        """Attach a LoRA delta to one linear ('layers.3.q_proj'): y += scale * B @ (A @ x),
        A [rank, in], B [out, rank], replacing any there. quant None: a, b float32.
        'int8': int8 codes; 'int4': codes packed two per byte (engine.llm.lora.pack_int4);
        then a_step / b_step are float32 per-row steps (value = code * step).
        ValueError when a buffer does not match its shape and storage."""
    def clear_lora(self) -> None: ...
    def close(self) -> None: ...
