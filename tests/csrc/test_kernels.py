"""The integer kernels of the C engine (csrc/kernels/*.c) on every path this
CPU can run, through the test hook engine.llm._native.kernel_run.

Each result must equal two things exactly: the scalar reference path ("ref")
and an independent NumPy computation that unpacks the packed bytes itself
(the layouts of csrc/include/bv_format.h). Shapes sweep the odd sizes of the
house style, so every SIMD tail (row groups, K chunks, token tiles) is hit;
extreme activations and weights catch int16 saturation and the int8 -128
corner; row sub-ranges [r0, r1) check that a kernel writes only its rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

_native = pytest.importorskip(
    "engine.llm._native",
    reason="C extension not built: run `python setup.py build_ext --inplace`",
)

QK = 128  # weights per ternary block / int4 group (BV_QK)
BLOCK_BYTES = 32  # one ternary block (BV_BLOCK_BYTES)
GROUP_BYTES = 64  # one int4 group (BV_I4_GROUP_BYTES)

ALL_PATHS = ("ref", "avx2", "avx512", "amx")
SIMD_PATHS = ("avx2", "avx512", "amx")
OPS = ("ternary_gemv", "ternary_gemm", "int8_gemv", "int8_gemm", "int4_gemv")
# the ops that take n tokens (int8_gemm: the LM head of a batch of concurrent sessions)
GEMM_OPS = ("ternary_gemm", "int8_gemm")
COLS = (1, 3, 7, 31, 33, 127, 129, 4097)
ROWS = (1, 3, 7, 31, 33, 127, 129)
TOKENS = (1, 2, 3, 4, 5, 7, 8, 17, 33)
SEED = 20240611

I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]


def _require(path: str) -> None:
    have = _native.supported_kernels()
    if path not in have:
        pytest.skip(f"this CPU cannot run the {path} kernels (it supports {have})")


# ---- packing and unpacking in NumPy (the layouts of bv_format.h) ----------


def n_blocks(cols: int) -> int:
    return (cols + QK - 1) // QK


def pad_cols(a: npt.NDArray[np.integer], cols_padded: int) -> I64:
    out = np.zeros((a.shape[0], cols_padded), dtype=np.int64)
    out[:, : a.shape[1]] = a
    return out


def pack_ternary(w: I8) -> bytes:
    """rows x cols in {-1, 0, 1} -> rows of nb 32-byte blocks; byte j of a
    block holds weights j, j+32, j+64, j+96 as code w+1 in bits [1:0].. [7:6]."""
    rows, cols = w.shape
    nb = n_blocks(cols)
    codes = (pad_cols(w, nb * QK) + 1).astype(np.uint8).reshape(rows, nb, 4, 32)
    packed = codes[:, :, 0] | codes[:, :, 1] << 2 | codes[:, :, 2] << 4 | codes[:, :, 3] << 6
    return packed.astype(np.uint8).tobytes()


def unpack_ternary(buf: bytes, rows: int, nb: int) -> I64:
    b = np.frombuffer(buf, dtype=np.uint8).reshape(rows, nb, 1, 32)
    codes = (b >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
    return codes.reshape(rows, nb * QK).astype(np.int64) - 1


def pack_int4(v: I8) -> bytes:
    """rows x cols in [-7, 7] -> rows of nb 64-byte groups; byte j holds column
    j (low nibble) and j+64 (high nibble) as code v+8."""
    rows, cols = v.shape
    nb = n_blocks(cols)
    codes = (pad_cols(v, nb * QK) + 8).astype(np.uint8).reshape(rows, nb, 2, 64)
    return (codes[:, :, 0] | codes[:, :, 1] << 4).astype(np.uint8).tobytes()


def unpack_int4(buf: bytes, rows: int, nb: int) -> I64:
    b = np.frombuffer(buf, dtype=np.uint8).reshape(rows, nb, 1, 64)
    codes = np.concatenate([b & 15, b >> 4], axis=2)
    return codes.reshape(rows, nb * QK).astype(np.int64) - 8


def pack_int8(q: I8) -> bytes:
    return pad_cols(q, n_blocks(q.shape[1]) * QK).astype(np.int8).tobytes()


def unpack_int8(buf: bytes, rows: int, nb: int) -> I64:
    return np.frombuffer(buf, dtype=np.int8).reshape(rows, nb * QK).astype(np.int64)


def pack_x(x: I8) -> bytes:
    """n x cols int8 activations, zero-padded to whole blocks."""
    return pad_cols(x, n_blocks(x.shape[1]) * QK).astype(np.int8).tobytes()


PACK: dict[str, Callable[[I8], bytes]] = {
    "ternary_gemv": pack_ternary,
    "ternary_gemm": pack_ternary,
    "int8_gemv": pack_int8,
    "int8_gemm": pack_int8,
    "int4_gemv": pack_int4,
}
UNPACK: dict[str, Callable[[bytes, int, int], I64]] = {
    "ternary_gemv": unpack_ternary,
    "ternary_gemm": unpack_ternary,
    "int8_gemv": unpack_int8,
    "int8_gemm": unpack_int8,
    "int4_gemv": unpack_int4,
}
WEIGHT_RANGE = {  # inclusive value range of each weight type
    "ternary_gemv": (-1, 1),
    "ternary_gemm": (-1, 1),
    "int8_gemv": (-128, 127),
    "int8_gemm": (-128, 127),
    "int4_gemv": (-7, 7),
}


# ---- running one kernel ------------------------------------------------------


def run(
    path: str, op: str, w: bytes, nb: int, x: bytes, n: int, rows: int, r0: int = 0, r1: int = -1
) -> I64:
    """The kernel's int32 results as [n][rows] (gemm) or [1][rows] (gemv)."""
    out = _native.kernel_run(path, op, w, nb, x, n, rows, r0=r0, r1=r1)
    n_out = n if op in GEMM_OPS else 1
    return np.frombuffer(out, dtype="<i4").reshape(n_out, rows).astype(np.int64)


def expected(op: str, w: bytes, nb: int, x: I8, rows: int, r0: int, r1: int) -> I64:
    """NumPy: unpack the bytes and multiply in int64; rows outside [r0, r1)
    stay 0 (the hook zero-fills its output)."""
    wm = UNPACK[op](w, rows, nb)
    xm = pad_cols(x, nb * QK)
    full = xm @ wm.T
    out = np.zeros_like(full)
    out[:, r0:r1] = full[:, r0:r1]
    return out


def check(path: str, op: str, wv: I8, x: I8, r0: int = 0, r1: int = -1) -> None:
    rows, cols = wv.shape
    nb = n_blocks(cols)
    n = x.shape[0]
    w = PACK[op](wv)
    assert np.array_equal(UNPACK[op](w, rows, nb)[:, :cols], wv), "NumPy packer round trip"
    stop = rows if r1 < 0 else r1
    want = expected(op, w, nb, x, rows, r0, stop)
    got = run(path, op, w, nb, pack_x(x), n, rows, r0, r1)
    where = f"{path} {op} rows={rows} cols={cols} n={n} r0={r0} r1={stop}"
    assert np.array_equal(got, want), f"{where}: differs from NumPy"
    if path != "ref":
        ref = run("ref", op, w, nb, pack_x(x), n, rows, r0, r1)
        assert np.array_equal(got, ref), f"{where}: differs from the ref path"


def random_weights(rng: np.random.Generator, op: str, rows: int, cols: int) -> I8:
    lo, hi = WEIGHT_RANGE[op]
    return rng.integers(lo, hi + 1, size=(rows, cols), dtype=np.int8)


def random_x(rng: np.random.Generator, n: int, cols: int) -> I8:
    return rng.integers(-128, 128, size=(n, cols), dtype=np.int8)


# ---- the sweeps --------------------------------------------------------------


@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("path", ALL_PATHS)
def test_random_shapes_match_numpy_and_ref(path: str, op: str, cols: int) -> None:
    _require(path)
    rng = np.random.default_rng([SEED, COLS.index(cols), OPS.index(op)])
    tokens = TOKENS if op in GEMM_OPS else (1,)
    for rows in ROWS:
        wv = random_weights(rng, op, rows, cols)
        for n in tokens:
            check(path, op, wv, random_x(rng, n, cols))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("path", ALL_PATHS)
def test_row_subranges_write_only_their_rows(path: str, op: str) -> None:
    _require(path)
    rng = np.random.default_rng([SEED, 1, OPS.index(op)])
    n = 5 if op in GEMM_OPS else 1
    for rows, cols in ((129, 300), (33, 4097), (7, 129)):
        wv = random_weights(rng, op, rows, cols)
        x = random_x(rng, n, cols)
        # a thread pool splits rows at arbitrary points, not at SIMD tile edges
        for r0, r1 in ((1, rows), (0, rows - 1), (3, min(rows, 20)), (rows // 2, rows), (2, 2)):
            check(path, op, wv, x, r0, r1)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("path", ALL_PATHS)
def test_extreme_values_do_not_saturate(path: str, op: str) -> None:
    """All weights at one end of their range times activations all -128 or all
    127: the largest int16 pair sums (vpmaddubsw) and int32 lane sums, and the
    int8 -128 x -128 corner that the abs/sign trick gets wrong."""
    _require(path)
    lo, hi = WEIGHT_RANGE[op]
    n = 17 if op in GEMM_OPS else 1
    for rows, cols in ((33, 4097), (9, 2560)):
        for wval in (lo, hi):
            for xval in (-128, 127):
                wv = np.full((rows, cols), wval, dtype=np.int8)
                x = np.full((n, cols), xval, dtype=np.int8)
                check(path, op, wv, x)
        # alternating extremes: every pair in a vpmaddubsw sees +/- extremes
        wv = np.where(np.arange(cols) % 3 == 0, lo, hi).astype(np.int8)[None, :].repeat(rows, 0)
        x = np.where(np.arange(cols) % 2 == 0, -128, 127).astype(np.int8)[None, :].repeat(n, 0)
        check(path, op, wv, x)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_gemm_many_tokens_and_long_rows(path: str) -> None:
    """More tokens than one per-call token group (240) and rows longer than one
    K chunk, with a row range that starts inside a SIMD row tile."""
    _require(path)
    rng = np.random.default_rng([SEED, 2])
    wv = random_weights(rng, "ternary_gemm", 21, 6912)
    x = random_x(rng, 3, 6912)
    check(path, "ternary_gemm", wv, x, 5, 21)
    wv = random_weights(rng, "ternary_gemm", 19, 129)
    check(path, "ternary_gemm", wv, random_x(rng, 245, 129), 2, 19)


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_simd_gemm_equals_simd_gemv_per_token(path: str) -> None:
    """The prefill tile path and the decode path of one ISA agree token by token."""
    _require(path)
    rng = np.random.default_rng([SEED, 3])
    rows, cols, n = 40, 2560, 7
    wv = random_weights(rng, "ternary_gemm", rows, cols)
    w = pack_ternary(wv)
    x = random_x(rng, n, cols)
    nb = n_blocks(cols)
    gemm = run(path, "ternary_gemm", w, nb, pack_x(x), n, rows)
    for t in range(n):
        gemv = run(path, "ternary_gemv", w, nb, pack_x(x[t : t + 1]), 1, rows)
        assert np.array_equal(gemm[t], gemv[0])


def test_supported_paths_are_known_and_include_ref() -> None:
    have = _native.supported_kernels()
    assert "ref" in have
    assert set(have) <= set(ALL_PATHS)
