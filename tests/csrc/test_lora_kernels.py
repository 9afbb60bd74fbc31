"""The quantized-LoRA kernels (lora_quant "int8" / "int4") on every path this
CPU can run, through the test hook engine.llm._native.lora_kernel_run.

The codes and their packing come from engine.llm.lora (the code the engine is
fed with), the expected result from NumPy unpacking the bytes itself (the
layout of csrc/include/bv_format.h, BV_LORA_I4_*). Every path compiles the
same C source (csrc/kernels/lora_rows.h) with its own flags, so its float
results must equal the scalar reference bit for bit; all of them lie within
LORA_RTOL of an exact float64 product.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from engine.llm.lora import QMAX, pack_int4, quantize_lora, quantize_lora_codes

_native = pytest.importorskip(
    "engine.llm._native",
    reason="C extension not built: run `python setup.py build_ext --inplace`",
)

ALL_PATHS = ("ref", "avx2", "avx512", "amx")
COLS = (1, 3, 7, 31, 33, 127, 129, 4097)
ROWS = (1, 3, 7, 31, 33, 127, 129)
SEED = 20251202
# float32 sums over up to 4097 products, against float64: relative to the
# sum of the magnitudes of the products of each row
LORA_RTOL = 1e-5

F32 = npt.NDArray[np.float32]


def _require(path: str) -> None:
    have = _native.supported_kernels()
    if path not in have:
        pytest.skip(f"this CPU cannot run the {path} kernels (it supports {have})")


def _unpack_int4(packed: npt.NDArray[np.uint8], cols: int) -> npt.NDArray[np.int64]:
    """The bytes read back by hand: low nibble = even column, stored as code + 8."""
    lo = (packed & 15).astype(np.int64) - 8
    hi = (packed >> 4).astype(np.int64) - 8
    both = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int64)
    both[:, 0::2], both[:, 1::2] = lo, hi
    return both[:, :cols]


def _case(rows: int, cols: int, quant: str) -> tuple[bytes, F32, F32, npt.NDArray[np.int64]]:
    rng = np.random.default_rng(SEED + rows * 7919 + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[0, :] = 0.0  # an all-zero row (step 1, codes 0)
    codes, step = quantize_lora_codes(w, quant)
    if quant == "int4":
        packed = pack_int4(codes)
        assert packed.shape == (rows, (cols + 1) // 2)
        got_codes = _unpack_int4(packed, cols)
        assert np.array_equal(got_codes, codes)  # the layout is what bv_format.h says
        if cols % 2:
            assert np.all(packed[:, -1] >> 4 == 8)  # the pad nibble is a zero code
        data = packed.tobytes()
    else:
        data = codes.tobytes()
        got_codes = codes.astype(np.int64)
    assert np.abs(got_codes).max() <= QMAX[quant]
    x = (rng.standard_normal(cols) * 3).astype(np.float32)
    return data, step, x, got_codes


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_lora_kernel_matches_numpy_and_ref(path: str, quant: str) -> None:
    _require(path)
    for rows in ROWS:
        for cols in COLS:
            data, step, x, codes = _case(rows, cols, quant)
            args = (quant, data, step.tobytes(), cols, x.tobytes(), rows)
            got = np.frombuffer(_native.lora_kernel_run(path, *args), dtype=np.float32)
            ref = np.frombuffer(_native.lora_kernel_run("ref", *args), dtype=np.float32)
            products = codes * x.astype(np.float64)
            want = step.astype(np.float64) * products.sum(axis=1)
            bound = LORA_RTOL * step * np.abs(products).sum(axis=1) + 1e-30
            assert np.all(np.abs(got - want) <= bound), (path, quant, rows, cols)
            assert got.tobytes() == ref.tobytes(), (path, quant, rows, cols)


def test_codes_times_steps_are_the_reference_grid() -> None:
    rng = np.random.default_rng(SEED)
    w = rng.standard_normal((9, 33)).astype(np.float32)
    for quant in ("int8", "int4"):
        codes, step = quantize_lora_codes(w, quant)
        assert np.array_equal(codes.astype(np.float32) * step[:, None], quantize_lora(w, quant))
        # symmetric per-row grid: the largest magnitude of each row is a full code
        assert np.all(np.abs(codes).max(axis=1) == QMAX[quant])


def test_lora_kernel_rejects_bad_buffers() -> None:
    with pytest.raises(ValueError, match="rows/cols"):
        _native.lora_kernel_run("ref", "int4", b"\x88" * 3, b"\0" * 8, 7, b"\0" * 28, 2)
    with pytest.raises(ValueError, match="quant"):
        _native.lora_kernel_run("ref", "int2", b"", b"", 1, b"", 1)
