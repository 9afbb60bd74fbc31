"""The attention span kernels (bv_kernels.h attn_span and attn_span_i8) on
every path this CPU can run, through the test hook _native.attn_kernel_run.

Float kernels: each path's softmax partials (m, l, o) must equal a float64
NumPy computation of the same span within ATTN_RTOL, and the scalar
reference path within the same. Shapes are odd on purpose: head dims that
are not a multiple of 16 or 8 (the AVX2 tails), multiples of 16 that are not of 64
(the AVX-512 full tile's values pass, 64 floats at a time, ends part-filled), groups 1..5 (a partial head
tile, a full one, one and a bit), and spans of 1, 7, 64 and 513 positions
(a partial block, whole blocks, a long span past the prefetch distances).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

_native = pytest.importorskip(
    "engine.llm._native",
    reason="C extension not built: run `python setup.py build_ext --inplace`",
)

ALL_PATHS = ("ref", "avx2", "avx512", "amx")
HEAD_DIMS = (8, 12, 16, 20, 48, 64, 80, 100, 128)
GROUPS = (1, 2, 3, 4, 5)
SPANS = (1, 7, 64, 513)
# float32 sums in a different order, and a polynomial exp on the SIMD paths
ATTN_RTOL = 2e-5
SEED = 20261202

F32 = npt.NDArray[np.float32]


def _require(path: str) -> None:
    have = _native.supported_kernels()
    if path not in have:
        pytest.skip(f"this CPU cannot run the {path} kernels (it supports {have})")


def _span_inputs(
    group: int, n: int, hd: int, seed: int
) -> tuple[F32, F32, F32, npt.NDArray[np.int8], F32, npt.NDArray[np.int8], F32]:
    """q [group][hd]; k, v [n][hd] as floats; and int8 codes with per-row steps."""
    rng = np.random.default_rng(seed)
    q = (rng.standard_normal((group, hd)) * 2.0).astype(np.float32)
    k = rng.standard_normal((n, hd)).astype(np.float32)
    v = rng.standard_normal((n, hd)).astype(np.float32)
    k8 = rng.integers(-127, 128, size=(n, hd)).astype(np.int8)
    v8 = rng.integers(-127, 128, size=(n, hd)).astype(np.int8)
    ks = (rng.uniform(0.2, 2.0, size=n) / 127.0).astype(np.float32)
    vs = (rng.uniform(0.2, 2.0, size=n) / 127.0).astype(np.float32)
    return q, k, v, k8, ks, v8, vs


def _expected(q: F32, k: npt.NDArray[np.float64], v: npt.NDArray[np.float64], scale: float) -> F32:
    """m, l, o (undivided) in float64, flattened as the hook returns them."""
    s = (q.astype(np.float64) @ k.T) * scale  # [group][n]
    m = s.max(axis=1)
    p = np.exp(s - m[:, None])
    out = np.concatenate([m, p.sum(axis=1), (p @ v).ravel()])
    return out.astype(np.float32)


def _check(got: F32, want: F32, group: int, what: str) -> None:
    # m is a max of scores and l a sum of weights <= n: compare each against its
    # own magnitude; o against the largest |o| of the span
    np.testing.assert_allclose(got[:group], want[:group], rtol=ATTN_RTOL, atol=1e-5, err_msg=what)
    np.testing.assert_allclose(
        got[group : 2 * group], want[group : 2 * group], rtol=ATTN_RTOL, err_msg=what
    )
    o_got, o_want = got[2 * group :], want[2 * group :]
    tol = ATTN_RTOL * max(1.0, float(np.abs(o_want).max()))
    np.testing.assert_allclose(o_got, o_want, atol=tol, rtol=0, err_msg=what)


def _run(path: str, q: F32, group: int, k: bytes, v: bytes, n: int, hd: int, **steps: bytes) -> F32:
    raw = _native.attn_kernel_run(path, q.tobytes(), group, k, v, n, hd, 1.0 / np.sqrt(hd), **steps)
    return np.frombuffer(raw, dtype=np.float32)


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("hd", HEAD_DIMS)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("n", SPANS)
def test_int8_span_matches_numpy_and_ref(path: str, hd: int, group: int, n: int) -> None:
    _require(path)
    q, _, _, k8, ks, v8, vs = _span_inputs(group, n, hd, SEED + hd * 1000 + group * 10 + n)
    scale = 1.0 / np.sqrt(hd)
    k = k8.astype(np.float64) * ks[:, None]
    v = v8.astype(np.float64) * vs[:, None]
    want = _expected(q, k, v, scale)
    steps = {"ks": ks.tobytes(), "vs": vs.tobytes()}
    got = _run(path, q, group, k8.tobytes(), v8.tobytes(), n, hd, **steps)
    _check(got, want, group, f"{path} int8")
    ref = _run("ref", q, group, k8.tobytes(), v8.tobytes(), n, hd, **steps)
    _check(got, ref, group, f"{path} int8 against ref")


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("hd", (12, 16, 48, 80, 128))
@pytest.mark.parametrize("group", (3, 4, 5, 8))
@pytest.mark.parametrize("n", SPANS)
def test_f16_span_matches_numpy(path: str, hd: int, group: int, n: int) -> None:
    """The f16 span through the same hook: the generic blocks (groups of 1-3 heads, head
    dims off 16) and the full 4-head tiles (group 4 and 8, hd % 16 == 0)."""
    _require(path)
    q, k, v, *_ = _span_inputs(group, n, hd, SEED + n)
    k16, v16 = k.astype(np.float16), v.astype(np.float16)
    want = _expected(q, k16.astype(np.float64), v16.astype(np.float64), 1.0 / np.sqrt(hd))
    got = _run(path, q, group, k16.tobytes(), v16.tobytes(), n, hd)
    _check(got, want, group, f"{path} f16")


def test_bad_buffers_raise() -> None:
    q = np.zeros((2, 8), dtype=np.float32).tobytes()
    rows = np.zeros((3, 8), dtype=np.int8).tobytes()
    with pytest.raises(ValueError, match="buffer sizes"):  # int8 rows but no steps: read as f16
        _native.attn_kernel_run("ref", q, 2, rows, rows, 3, 8, 0.5)
    with pytest.raises(ValueError, match="buffer sizes"):  # steps for 2 rows, not 3
        _native.attn_kernel_run("ref", q, 2, rows, rows, 3, 8, 0.5, ks=b"\0" * 8, vs=b"\0" * 8)
    with pytest.raises(ValueError, match="not available"):
        _native.attn_kernel_run("neon", q, 2, rows, rows, 3, 8, 0.5)
