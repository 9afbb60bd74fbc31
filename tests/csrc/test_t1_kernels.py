"""The T1 (1.6 bits/weight) ternary layout: the NumPy packer round-trips, and
every kernel path's t1_gemv / t1_gemm equal an integer NumPy matmul exactly,
over odd shapes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.llm import _native
from engine.llm.reference import T1_QK, pack_t1, unpack_t1

PATHS = _native.supported_kernels()
COLS = (1, 3, 7, 31, 33, 127, 129, 319, 321, 4097)
ROWS = (1, 3, 7, 33, 129)


def test_every_five_trit_byte_decodes() -> None:
    """All 243 digit combinations survive the ceil(v*256/243) encoding."""
    codes = np.array(list(itertools.product((-1, 0, 1), repeat=5)), dtype=np.int8)  # [243, 5]
    t = np.zeros((243, T1_QK), dtype=np.int8)
    for i in range(5):
        t[:, 64 * i] = codes[:, i]
    np.testing.assert_array_equal(unpack_t1(pack_t1(t), T1_QK), t)


@pytest.mark.parametrize("cols", COLS)
def test_pack_roundtrip(cols: int) -> None:
    t = np.random.default_rng(cols).integers(-1, 2, size=(4, cols)).astype(np.int8)
    np.testing.assert_array_equal(unpack_t1(pack_t1(t), cols), t)


def run(
    path: str, op: str, t: np.ndarray, x: np.ndarray, n: int, r0: int = 0, r1: int = -1
) -> np.ndarray:
    rows, cols = t.shape
    nb1 = (cols + T1_QK - 1) // T1_QK
    xp = np.zeros((n, nb1 * T1_QK), dtype=np.int8)
    xp[:, :cols] = x
    out = _native.kernel_run(path, op, pack_t1(t).tobytes(), nb1, xp.tobytes(), n, rows, r0, r1)
    return np.frombuffer(out, dtype="<i4").reshape(n, rows)


def random_case(seed: int, rows: int, cols: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ternary weights [rows, cols] and int8 activations [n, cols] from `seed`."""
    rng = np.random.default_rng(seed)
    t = rng.integers(-1, 2, size=(rows, cols)).astype(np.int8)
    x = rng.integers(-128, 128, size=(n, cols)).astype(np.int8)
    return t, x


def matmul(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x.astype(np.int32) @ t.T.astype(np.int32)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("rows", "cols"), [(r, c) for r in ROWS for c in COLS])
def test_t1_gemv_exact(path: str, rows: int, cols: int) -> None:
    t, x = random_case(rows * 10007 + cols, rows, cols, 1)
    x[0, : min(cols, 4)] = (-128, 127, -128, 127)[: min(cols, 4)]  # saturation extremes
    np.testing.assert_array_equal(run(path, "t1_gemv", t, x, 1), matmul(t, x))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 17])
@pytest.mark.parametrize(("rows", "cols"), [(7, 33), (33, 321), (129, 4097)])
def test_t1_gemm_exact(path: str, n: int, rows: int, cols: int) -> None:
    t, x = random_case(n * 31 + rows + cols, rows, cols, n)
    np.testing.assert_array_equal(run(path, "t1_gemm", t, x, n), matmul(t, x))


@pytest.mark.parametrize("path", PATHS)
def test_t1_row_subrange(path: str) -> None:
    t, x = random_case(5, 40, 700, 1)
    got = run(path, "t1_gemv", t, x, 1, 9, 31)
    np.testing.assert_array_equal(got[0, 9:31], matmul(t, x)[0, 9:31])
    assert not got[0, :9].any() and not got[0, 31:].any(), "rows outside [r0, r1) are not written"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cols", [10240, 10241, 20481])
def test_t1_gemv_wide_rows(path: str, cols: int) -> None:
    """Rows wider than one stack slice of prepared activations (10240 columns
    on avx512) add the slices' partial sums; all-extreme values check range."""
    t, x = random_case(cols, 9, cols, 1)
    t[0] = 1
    x[0, ::2] = -128
    np.testing.assert_array_equal(run(path, "t1_gemv", t, x, 1), matmul(t, x))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [2, 4, 8])
def test_t1_gemm_few_tokens_extremes(path: str, n: int) -> None:
    """A few tokens (concurrent sessions' decode steps: avx512 unpacks each block once for all
    of them) over rows wider than one activation slice, at the value extremes."""
    t, x = random_case(n + 1000, 11, 20481, n)
    t[0] = 1
    t[1] = -1
    x[:, ::2] = -128
    x[-1, 1::2] = 127
    np.testing.assert_array_equal(run(path, "t1_gemm", t, x, n), matmul(t, x))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [4, 12, 13, 16, 28, 40, 49])
def test_t1_gemm_token_tiles(path: str, n: int) -> None:
    """Every mix of 12- and 4-token tiles (on amx: 32-token tile blocks, then
    those zmm tiles for the rest), a row tail past a 32-row tile and
    K chunks of 960 columns with a short last one (4097 -> 13 blocks)."""
    t, x = random_case(n, 45, 4097, n)
    np.testing.assert_array_equal(run(path, "t1_gemm", t, x, n), matmul(t, x))


@pytest.mark.parametrize("path", PATHS)
def test_t1_gemm_row_subrange(path: str) -> None:
    t, x = random_case(6, 80, 700, 6)
    got = run(path, "t1_gemm", t, x, 6, 7, 71)
    np.testing.assert_array_equal(got[:, 7:71], matmul(t, x)[:, 7:71])
    assert not got[:, :7].any() and not got[:, 71:].any(), "rows outside [r0, r1) are not written"
