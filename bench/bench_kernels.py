"""Single-thread speed of the integer kernels, per path, on the BitNet-b1.58-2B
shapes, through the test hook engine.llm._native.kernel_run.

    python -m bench.bench_kernels [--paths amx,avx512,avx2,ref] [--seconds 0.5]

Prints the machine, then a table (path, op, shape, time, GB/s of weights for
the GEMVs, GOPS for the prefill GEMM, % of a nominal peak) and writes
bench/results/kernels.json.

What the numbers mean:
- GEMV GB/s: packed weight bytes read per second (t1_* rows: the same shapes
  in the 1.6 bit/weight T1 layout). The 2.0 bit/weight
  matrices (1.6 to 4.4 MB) stay in L2/L3 between calls, so these are
  warm-cache rates; the int8/int4 LM heads (328 / 164 MB) stream from memory.
  % peak is against the single-thread read bandwidth measured here (NumPy).
- GEMM GOPS: 2 * rows * padded cols * tokens per second (a MAC is 2 ops).
  % peak is against the nominal issue rate of the path at the "cpu MHz" of
  /proc/cpuinfo: avx512 = 2 vpdpbusd zmm per cycle (128 MAC), avx2 =
  2 vpmaddubsw ymm per cycle (64 MAC). Turbo clocks can exceed it.
Buffers are 64-byte aligned like the engine's. Timing is the best of
repeated calls, in CPU time of the calling thread (the hook runs the kernel
on it, GIL released): on a shared machine that ignores time spent
preempted, and the minimum is the least disturbed run. The
hook's own cost per call (measured with a 1-row call, reported in the JSON)
is subtracted. Never used as a test assertion.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.llm import _native

# kernel_run is the extension's test hook; typed as Any until the stub
# (engine/llm/_native.pyi) declares it.
_hook: Any = _native
RESULTS = Path(__file__).parent / "results"
QK = 128
T1_QK, T1_BLOCK = 320, 64  # T1 layout: weights and bytes per block (bv_format.h)
PREFILL_TOKENS = 128
# (name, rows, cols) of the 2B model's linears, and its vocab x hidden head
TERNARY_SHAPES = (
    ("q/o proj", 2560, 2560),
    ("k/v proj", 640, 2560),
    ("gate/up", 6912, 2560),
    ("down", 2560, 6912),
)
HEAD_SHAPE = ("lm head", 128256, 2560)
# nominal multiply-accumulates per cycle of the inner-loop instruction
# (no meaningful figure for the scalar path)
MAC_PER_CYCLE = {"amx": 1024, "avx512": 128, "avx2": 64, "ref": 0}  # amx: one TDPBUSD per 16 cycles


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": "unknown",
        "mhz": 0.0,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel_paths": _native.supported_kernels(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and info["cpu"] == "unknown":
                info["cpu"] = value.strip()
            elif key == "cpu MHz" and not info["mhz"]:
                info["mhz"] = float(value)
            elif key == "flags" and "isa" not in info:
                wanted = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni")
                info["isa"] = [f for f in value.split() if f in wanted]
    except OSError:
        pass
    caches = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(caches.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            info[f"L{level}{'d' if kind == 'Data' else ''}"] = (index / "size").read_text().strip()
        except OSError:
            continue
    return info


def read_bandwidth_gb_s(seconds: float) -> float:
    """Single-thread read bandwidth: NumPy int64 sum over 256 MB (a roofline)."""
    a = np.ones(256 * 1024 * 1024 // 8, dtype=np.int64)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return a.nbytes / best / 1e9


def best_time(seconds: float, min_reps: int, *hook_args: Any) -> float:
    """Best thread CPU time of kernel_run(*hook_args) over `seconds` (at least min_reps calls)."""
    best = float("inf")
    reps = 0
    deadline = time.perf_counter() + seconds
    while reps < min_reps or time.perf_counter() < deadline:
        t0 = time.thread_time()
        _hook.kernel_run(*hook_args)
        best = min(best, time.thread_time() - t0)
        reps += 1
    return best


def aligned(data: bytes) -> npt.NDArray[np.uint8]:
    """A 64-byte aligned copy (the engine's weights are BV_ALIGN-aligned; a
    bytes object's data is only 16-aligned, which splits SIMD loads)."""
    raw = np.empty(len(data) + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    out = raw[start : start + len(data)]
    out[:] = np.frombuffer(data, dtype=np.uint8)
    return out


def ternary_bytes(rng: np.random.Generator, rows: int, nb: int) -> npt.NDArray[np.uint8]:
    """Random codes 0..2 in every bit pair (code 3 is never written)."""
    codes = rng.integers(0, 3, size=(rows * nb * 32, 4), dtype=np.uint8)
    return aligned((codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6).tobytes())


def t1_bytes(rng: np.random.Generator, rows: int, nb1: int) -> npt.NDArray[np.uint8]:
    """Random T1 bytes: five random codes per byte, encoded as bv_format.h says."""
    v = rng.integers(0, 243, size=rows * nb1 * T1_BLOCK, dtype=np.int64)
    return aligned(((v * 256 + 242) // 243).astype(np.uint8).tobytes())


def hook_overhead(path: str, seconds: float) -> float:
    """Seconds per kernel_run call spent outside the kernel: a 1-row, 1-block
    GEMV. (It includes the hook's per-call CPU feature check, which in a VM
    can cost tens of microseconds.) Subtracted from every measurement."""
    w = aligned(bytes(32))
    x = aligned(bytes(QK))
    return best_time(seconds, 20, path, "ternary_gemv", w, 1, x, 1, 1)


def bench_path(path: str, seconds: float, mhz: float, bw: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out: list[dict[str, Any]] = []
    peak_gops = 2 * MAC_PER_CYCLE[path] * mhz / 1e3
    overhead = hook_overhead(path, 0.2)

    def record(op: str, name: str, rows: int, cols: int, n: int, call: float, wbytes: int) -> None:
        t = max(call - overhead, 1e-9)
        row: dict[str, Any] = {"path": path, "op": op, "shape": f"{rows}x{cols}", "name": name}
        row |= {"tokens": n, "seconds": t, "call_seconds": call, "hook_overhead_s": overhead}
        row["weight_bytes"] = wbytes
        if op in ("ternary_gemm", "t1_gemm"):
            row["gops"] = 2.0 * rows * cols * n / t / 1e9
            row["pct_peak"] = 100.0 * row["gops"] / peak_gops if peak_gops else None
        else:
            row["gb_s"] = wbytes / t / 1e9
            row["pct_peak"] = 100.0 * row["gb_s"] / bw if bw else None
        out.append(row)

    # the scalar path is ~30x slower: fewer seconds per case, same shapes
    budget = seconds if path != "ref" else seconds / 4
    # each shape in the 2-bit layout, then in T1 (1.6 bits/weight; cols padded to 320)
    layouts = (("ternary", QK, ternary_bytes), ("t1", T1_QK, t1_bytes))
    for name, rows, cols in TERNARY_SHAPES:
        for layout, block, packed_bytes in layouts:
            nb = (cols + block - 1) // block
            w = packed_bytes(rng, rows, nb)
            x1 = aligned(rng.bytes(nb * block))
            xn = aligned(rng.bytes(PREFILL_TOKENS * nb * block))
            t = best_time(budget, 2, path, f"{layout}_gemv", w, nb, x1, 1, rows)
            record(f"{layout}_gemv", name, rows, cols, 1, t, len(w))
            t = best_time(budget, 2, path, f"{layout}_gemm", w, nb, xn, PREFILL_TOKENS, rows)
            record(f"{layout}_gemm", name, rows, cols, PREFILL_TOKENS, t, len(w))
    name, rows, cols = HEAD_SHAPE
    nb = cols // QK
    x1 = aligned(rng.bytes(nb * QK))
    for op, row_bytes in (("int8_gemv", nb * QK), ("int4_gemv", nb * 64)):
        q = aligned(rng.bytes(rows * row_bytes))  # any byte is a valid int8 or int4 pair
        t = best_time(budget, 1, path, op, q, nb, x1, 1, rows)
        record(op, name, rows, cols, 1, t, len(q))
        del q
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default=",".join(reversed(_native.supported_kernels())))
    parser.add_argument("--seconds", type=float, default=0.5, help="timing budget per case")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    unknown = [p for p in paths if p not in _native.supported_kernels()]
    if unknown:
        parser.error(f"this CPU cannot run {unknown}; it supports {_native.supported_kernels()}")

    info = machine()
    bw = read_bandwidth_gb_s(1.0)
    info["read_bandwidth_gb_s"] = round(bw, 2)
    print(
        f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, {info['mhz']:.0f} MHz, "
        f"L2 {info.get('L2', '?')}, L3 {info.get('L3', '?')}, ISA {' '.join(info.get('isa', []))}"
    )
    print(f"single-thread read bandwidth (NumPy sum): {bw:.1f} GB/s; 1 thread, best of repeats")
    print(f"{'path':7} {'op':13} {'shape':12} {'name':9} {'ms':>9} {'rate':>14} {'% peak':>7}")
    results: list[dict[str, Any]] = []
    for path in paths:
        for r in bench_path(path, args.seconds, info["mhz"], bw):
            results.append(r)
            rate = f"{r['gops']:8.1f} GOPS" if "gops" in r else f"{r['gb_s']:8.2f} GB/s"
            pct = f"{r['pct_peak']:6.1f}%" if r["pct_peak"] is not None else "    n/a"
            print(
                f"{r['path']:7} {r['op']:13} {r['shape']:12} {r['name']:9} "
                f"{r['seconds'] * 1e3:9.3f} {rate:>14} {pct:>7}"
            )
    RESULTS.mkdir(exist_ok=True)
    dest = RESULTS / "kernels.json"
    payload = {"machine": info, "prefill_tokens": PREFILL_TOKENS, "results": results}
    dest.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
