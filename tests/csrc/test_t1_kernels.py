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


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("rows", "cols"), [(r, c) for r in ROWS for c in COLS])
def test_t1_gemv_exact(path: str, rows: int, cols: int) -> None:
    rng = np.random.default_rng(rows * 10007 + cols)
    t = rng.integers(-1, 2, size=(rows, cols)).astype(np.int8)
    x = rng.integers(-128, 128, size=(1, cols)).astype(np.int8)
    x[0, : min(cols, 4)] = (-128, 127, -128, 127)[: min(cols, 4)]  # saturation extremes
    expected = x.astype(np.int32) @ t.T.astype(np.int32)
    np.testing.assert_array_equal(run(path, "t1_gemv", t, x, 1), expected)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [1, 2, 5, 17])
@pytest.mark.parametrize(("rows", "cols"), [(7, 33), (33, 321), (129, 4097)])
def test_t1_gemm_exact(path: str, n: int, rows: int, cols: int) -> None:
    rng = np.random.default_rng(n * 31 + rows + cols)
    t = rng.integers(-1, 2, size=(rows, cols)).astype(np.int8)
    x = rng.integers(-128, 128, size=(n, cols)).astype(np.int8)
    expected = x.astype(np.int32) @ t.T.astype(np.int32)
    np.testing.assert_array_equal(run(path, "t1_gemm", t, x, n), expected)


@pytest.mark.parametrize("path", PATHS)
def test_t1_row_subrange(path: str) -> None:
    rng = np.random.default_rng(5)
    t = rng.integers(-1, 2, size=(40, 700)).astype(np.int8)
    x = rng.integers(-128, 128, size=(1, 700)).astype(np.int8)
    got = run(path, "t1_gemv", t, x, 1, 9, 31)
    expected = x.astype(np.int32) @ t.T.astype(np.int32)
    np.testing.assert_array_equal(got[0, 9:31], expected[0, 9:31])
    assert not got[0, :9].any() and not got[0, 31:].any(), "rows outside [r0, r1) are not written"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cols", [10240, 10241, 20481])
def test_t1_gemv_wide_rows(path: str, cols: int) -> None:
    """Rows wider than one stack slice of prepared activations (10240 columns
    on avx512) add the slices' partial sums; all-extreme values check range."""
    rng = np.random.default_rng(cols)
    t = rng.integers(-1, 2, size=(9, cols)).astype(np.int8)
    t[0] = 1
    x = rng.integers(-128, 128, size=(1, cols)).astype(np.int8)
    x[0, ::2] = -128
    expected = x.astype(np.int32) @ t.T.astype(np.int32)
    np.testing.assert_array_equal(run(path, "t1_gemv", t, x, 1), expected)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [4, 12, 13, 16, 28, 40, 49])
def test_t1_gemm_token_tiles(path: str, n: int) -> None:
    """Every mix of 12- and 4-token tiles (on amx: 32-token tile blocks, then
    those zmm tiles for the rest), a row tail past a 32-row tile and
    K chunks of 960 columns with a short last one (4097 -> 13 blocks)."""
    rng = np.random.default_rng(n)
    t = rng.integers(-1, 2, size=(45, 4097)).astype(np.int8)
    x = rng.integers(-128, 128, size=(n, 4097)).astype(np.int8)
    expected = x.astype(np.int32) @ t.T.astype(np.int32)
    np.testing.assert_array_equal(run(path, "t1_gemm", t, x, n), expected)


@pytest.mark.parametrize("path", PATHS)
def test_t1_gemm_row_subrange(path: str) -> None:
    rng = np.random.default_rng(6)
    t = rng.integers(-1, 2, size=(80, 700)).astype(np.int8)
    x = rng.integers(-128, 128, size=(6, 700)).astype(np.int8)
    got = run(path, "t1_gemm", t, x, 6, 7, 71)
    expected = x.astype(np.int32) @ t.T.astype(np.int32)
    np.testing.assert_array_equal(got[:, 7:71], expected[:, 7:71])
    assert not got[:, :7].any() and not got[:, 71:].any(), "rows outside [r0, r1) are not written"
