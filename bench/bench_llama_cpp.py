"""bitvoice against llama.cpp, side by side, on the same random-ternary model.

    python -m bench.bench_llama_cpp [--threads 2] [--quants TQ2_0,TQ1_0] [--runs 2] [--quick]
    python -m bench.bench_llm --llama-cpp        (the same, from the LLM benchmark)

What it does, each step cached under ~/.cache/bitvoice-bench/llama-cpp
(BITVOICE_BENCH_CACHE moves the parent folder); nothing here is committed:
  1. `pip download --no-binary :all: --no-deps llama-cpp-python` (the sdist
     vendors llama.cpp with TQ1_0/TQ2_0 and the `bitnet` architecture), unpack.
  2. Build only `llama-bench` and `llama-quantize` with CMake: CPU only,
     GGML_NATIVE=ON, Release, -j2, no curl/OpenSSL. Takes minutes on 2 cores.
  3. Convert bench_llm's model.bvm (the BitNet-b1.58-2B-4T shapes, random
     ternary weights) to an F16 GGUF of architecture `bitnet`, tensor by
     tensor: each ternary matrix decoded exactly and multiplied by its
     per-tensor scale (what llama.cpp's own BitNet converter writes), the same
     f16 embedding, tied head, vocabulary type "none" with the vocab size.
  4. `llama-quantize` it to each of --quants, then drop the F16 file (5 GB).
  5. Measure both engines `--runs` times, interleaved, on the same machine
     state: bitvoice through bench_llm's own measurement (one child process
     per run) and `llama-bench -t T -p 128 -n 128 -r 1 -o json`. The best run
     of each counts: the cores are shared, so noise only ever slows a run.

Prints a table (prefill and decode tokens/s, GB/s streamed per decoded token,
% of the measured memory bandwidth, and bitvoice/llama.cpp ratios) and writes
bench/results/llama_cpp.json (llama_cpp-quick.json with --quick).

`python -m bench` (every benchmark) skips this one unless
BITVOICE_BENCH_LLAMA_CPP=1: the first run builds llama.cpp.
"""

from __future__ import annotations

import argparse
import importlib
import json
import mmap
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from bench.bench_llm import (
    CACHE,
    DECODE_TOKENS,
    PROMPT_TOKENS,
    RESULTS,
    SHAPES_2B,
    SHAPES_QUICK,
    machine,
    memory_bandwidth_gb_s,
    model_path,
)
from engine.llm.importer import BV_MAGIC, BV_VERSION, ENTRY, HEADER
from engine.llm.reference import unpack_ternary

LLAMA_CACHE = CACHE / "llama-cpp"
PACKAGE = "llama-cpp-python"  # its sdist vendors llama.cpp under vendor/llama.cpp
TARGETS = ("llama-bench", "llama-quantize")
BUILD_JOBS = 2  # the machine's core count; more only thrashes
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DGGML_CUDA=OFF",
    "-DGGML_METAL=OFF",
    "-DGGML_OPENMP=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_APP=OFF",
)
DEFAULT_QUANTS = ("TQ2_0", "TQ1_0")
DEFAULT_RUNS = 2
DEFAULT_HEAD = "int4"  # closest to llama.cpp's choice for TQ models: a Q4_K token embedding/head
F16_SLICE_ROWS = 8192  # embedding rows per write: bounded memory, not the whole 650 MB
BUILD_INFO = "bitvoice-build.json"
ENV_OPT_IN = "BITVOICE_BENCH_LLAMA_CPP"
# The cores are shared. llama.cpp's threadpool meets at a barrier after every op
# (hundreds per token), so one other busy process at the same priority can cut its
# decode rate tenfold; bitvoice syncs far less often. Each run therefore waits (up
# to --wait-quiet seconds) until other processes use at most QUIET_CORES of CPU,
# and records what they used, so a reader can tell a slow engine from a busy machine.
QUIET_CORES = 0.3
DEFAULT_WAIT_QUIET_S = 90.0
PROBE_S = 1.0

# bv_format.h tensor names -> llama.cpp's (LLM_ARCH_BITNET, src/models/bitnet.cpp)
GGUF_LINEARS = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
GGUF_NORMS = {n: n for n in ("attn_norm", "ffn_norm", "attn_sub_norm", "ffn_sub_norm")}


class LlamaCppError(RuntimeError):
    """A step of the llama.cpp side (download, build, convert, quantize, run) failed;
    the message says which and where its log is."""


# ---- the model: model.bvm -> GGUF ---------------------------------------------------


class BvmTensor(NamedTuple):
    name: str
    dtype: int  # bv_format.h enum bv_dtype: 0 f32, 1 f16, 2 ternary
    rows: int
    cols: int
    scale: float
    offset: int
    nbytes: int


class BvmHeader(NamedTuple):
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn: int
    vocab: int
    max_ctx: int
    head_dim: int
    rope_theta: float
    rms_eps: float


def read_bvm(path: Path) -> tuple[BvmHeader, list[BvmTensor]]:
    """Header and tensor table of a model.bvm. Raises LlamaCppError if it is not one."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER.size)
        if len(head) != HEADER.size:
            raise LlamaCppError(f"{path}: too short for a model.bvm header")
        magic, version, n_tensors, _hsize, _fsize, *dims, theta, eps = HEADER.unpack(head)
        if magic != BV_MAGIC or version != BV_VERSION:
            raise LlamaCppError(f"{path}: not a model.bvm v{BV_VERSION} (magic {magic:#x})")
        table = fh.read(ENTRY.size * n_tensors)
        if len(table) != ENTRY.size * n_tensors:
            raise LlamaCppError(f"{path}: tensor table truncated")
    tensors = []
    for i in range(n_tensors):
        raw, dtype, rows, cols, scale, offset, nbytes = ENTRY.unpack_from(table, i * ENTRY.size)
        name = raw.split(b"\0", 1)[0].decode()
        tensors.append(BvmTensor(name, dtype, rows, cols, scale, offset, nbytes))
    hidden, n_layers, n_heads, n_kv, ffn, vocab, max_ctx, head_dim = dims
    header = BvmHeader(hidden, n_layers, n_heads, n_kv, ffn, vocab, max_ctx, head_dim, theta, eps)
    return header, tensors


def gguf_name(bvm_name: str) -> str:
    """bv_format.h tensor name -> llama.cpp's GGUF name for the bitnet architecture."""
    if bvm_name == "embed":
        return "token_embd.weight"  # tied: llama.cpp's bitnet graph reuses it as the head
    if bvm_name == "norm":
        return "output_norm.weight"
    if bvm_name == "lm_head":
        raise LlamaCppError("llama.cpp's bitnet graph ties the head to the embedding; "
                            "a model.bvm with its own lm_head cannot be compared")  # fmt: skip
    parts = bvm_name.split(".")
    if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit():
        ours = parts[2]
        theirs = GGUF_LINEARS.get(ours) or GGUF_NORMS.get(ours)
        if theirs is not None:
            return f"blk.{parts[1]}.{theirs}.weight"
    raise LlamaCppError(f"no GGUF name for model.bvm tensor {bvm_name!r}")


def gguf_shape(t: BvmTensor) -> tuple[int, ...]:
    """numpy shape of the GGUF tensor (GGUF stores it reversed: ne0 = cols)."""
    return (t.cols,) if t.dtype == 0 else (t.rows, t.cols)


def gguf_dtype(t: BvmTensor) -> np.dtype[Any]:
    return np.dtype(np.float32) if t.dtype == 0 else np.dtype(np.float16)


def gguf_slices(buf: mmap.mmap, t: BvmTensor) -> Iterator[npt.NDArray[Any]]:
    """The tensor's GGUF data in row slices: norms as f32, the embedding as its f16
    rows, a ternary matrix decoded exactly (engine.llm.reference.unpack_ternary)
    times its per-tensor scale, as f16 (ternary * 0.02 is exact enough in f16 that
    llama-quantize's TQ blocks recover the ternary codes)."""
    if t.dtype == 0:
        yield np.frombuffer(buf, "<f4", t.cols, t.offset).copy()
        return
    if t.dtype == 1:
        data = np.frombuffer(buf, "<f2", t.rows * t.cols, t.offset).reshape(t.rows, t.cols)
        for r0 in range(0, t.rows, F16_SLICE_ROWS):
            yield data[r0 : r0 + F16_SLICE_ROWS].copy()
        return
    if t.dtype != 2:
        raise LlamaCppError(f"tensor {t.name}: unknown bv dtype {t.dtype}")
    row_bytes = t.nbytes // t.rows
    packed = np.frombuffer(buf, np.uint8, t.nbytes, t.offset).reshape(t.rows, row_bytes)
    step = max(1, (F16_SLICE_ROWS * 256) // max(t.cols, 1))
    for r0 in range(0, t.rows, step):
        tern = unpack_ternary(packed[r0 : r0 + step], t.cols)
        yield (tern.astype(np.float32) * np.float32(t.scale)).astype(np.float16)


def load_gguf_py(src: Path) -> Any:
    """The `gguf` package vendored in the llama.cpp sources (matches the tools we build)."""
    gguf_py = src / "gguf-py"
    if not (gguf_py / "gguf" / "__init__.py").exists():
        raise LlamaCppError(f"{gguf_py}: no gguf-py package in the llama.cpp sources")
    if str(gguf_py) not in sys.path:
        sys.path.insert(0, str(gguf_py))
    return importlib.import_module("gguf")


def write_gguf(bvm: Path, out: Path, gguf: Any) -> None:
    """Write `bvm` as an F16 GGUF of architecture `bitnet`, streaming tensor by tensor
    (peak memory is one slice, not the model). Atomic: `out` appears only when complete."""
    h, tensors = read_bvm(bvm)
    tmp = out.with_suffix(".tmp")
    w = gguf.GGUFWriter(tmp, "bitnet")
    w.add_name(f"bitvoice random ternary {bvm.stem}")
    w.add_context_length(h.max_ctx)
    w.add_embedding_length(h.hidden)
    w.add_block_count(h.n_layers)
    w.add_feed_forward_length(h.ffn)
    w.add_head_count(h.n_heads)
    w.add_head_count_kv(h.n_kv_heads)
    w.add_rope_dimension_count(h.head_dim)
    w.add_rope_freq_base(h.rope_theta)
    w.add_layer_norm_rms_eps(h.rms_eps)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # No tokenizer text: llama-bench feeds random token ids. Vocabulary type "none"
    # plus the vocab size gives the loader n_vocab dummy tokens (llama-vocab.cpp).
    w.add_tokenizer_model("none")
    w.add_vocab_size(h.vocab)
    for t in tensors:
        dt = gguf_dtype(t)
        shape = gguf_shape(t)
        w.add_tensor_info(gguf_name(t.name), shape, dt, int(np.prod(shape)) * dt.itemsize)
    w.write_header_to_file(tmp)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    with open(bvm, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for t in tensors:
            # write_tensor_data wants the whole tensor at once; write its slices
            # ourselves with the same alignment padding it would add.
            fout = w.fout[0]
            w.write_padding(fout, fout.tell())
            nbytes = 0
            for part in gguf_slices(buf, t):
                part.tofile(fout)
                nbytes += part.nbytes
            w.write_padding(fout, nbytes)
            del w.tensors[0][gguf_name(t.name)]
    w.close()
    tmp.rename(out)


# ---- the tools: registry sdist -> llama-bench, llama-quantize ---------------------


def _run_logged(cmd: list[str], log: Path, what: str, **kw: Any) -> None:
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False, **kw).returncode
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise LlamaCppError(f"{what} failed (exit {rc}); full log: {log}\n{tail}")


def _version_key(name: str) -> tuple[int, ...]:
    """`llama_cpp_python-0.3.36.tar.gz`, `build-0.3.36` -> (0, 3, 36); () if none."""
    m = re.search(r"-(\d+(?:\.\d+)*)(?:\.tar\.gz)?$", name)
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


def fetch_sources(version: str | None) -> tuple[str, Path]:
    """(llama-cpp-python version, vendor/llama.cpp folder), downloading the sdist from
    the package registry once. With no version, the newest cached sdist is reused."""
    LLAMA_CACHE.mkdir(parents=True, exist_ok=True)
    pattern = f"llama_cpp_python-{version or '*'}.tar.gz"
    found = sorted(LLAMA_CACHE.glob(pattern), key=lambda p: _version_key(p.name))
    if not found:
        spec = f"{PACKAGE}=={version}" if version else PACKAGE
        print(f"downloading the {spec} sdist (llama.cpp sources) ...", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        _run_logged(
            [*cmd, "-d", str(LLAMA_CACHE), spec], LLAMA_CACHE / "download.log", "pip download"
        )
        found = sorted(LLAMA_CACHE.glob(pattern), key=lambda p: _version_key(p.name))
        if not found:
            raise LlamaCppError(f"pip download left no {pattern} in {LLAMA_CACHE}")
    tarball = found[-1]
    ver = ".".join(str(p) for p in _version_key(tarball.name))
    root = LLAMA_CACHE / f"llama_cpp_python-{ver}"
    src = root / "vendor" / "llama.cpp"
    if not (src / "CMakeLists.txt").exists():
        with tarfile.open(tarball) as tf:
            tf.extractall(LLAMA_CACHE, filter="data")
    if not (src / "CMakeLists.txt").exists():
        raise LlamaCppError(f"{tarball}: no vendor/llama.cpp/CMakeLists.txt inside")
    return ver, src


def cached_sources() -> Path | None:
    """vendor/llama.cpp of the newest unpacked sdist in the cache, or None (no download)."""
    found = sorted(
        LLAMA_CACHE.glob("llama_cpp_python-*/vendor/llama.cpp/CMakeLists.txt"),
        key=lambda p: _version_key(p.parents[2].name),
    )
    return found[-1].parent if found else None


def cached_tools() -> dict[str, Path] | None:
    """llama-bench and llama-quantize of the newest cached build, or None (no build)."""
    builds = sorted(LLAMA_CACHE.glob("build-*"), key=lambda p: _version_key(p.name), reverse=True)
    for build in builds:
        tools = {t: build / "bin" / t for t in TARGETS}
        if all(p.exists() for p in tools.values()):
            return tools
    return None


def build_tools(ver: str, src: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """Build llama-bench and llama-quantize once per version (cached); returns their
    paths and the build record (seconds taken, flags). Raises LlamaCppError with the
    log tail if CMake or the compiler is missing or fails."""
    build = LLAMA_CACHE / f"build-{ver}"
    tools = {t: build / "bin" / t for t in TARGETS}
    info_path = build / BUILD_INFO
    if all(p.exists() for p in tools.values()):
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        return tools, {**info, "cached": True}
    missing = [t for t in ("cmake", "cc", "c++") if shutil.which(t) is None]
    if missing:
        raise LlamaCppError(
            f"cannot build llama.cpp: {', '.join(missing)} not found "
            "(Debian: apt-get install cmake g++)"
        )
    build.mkdir(parents=True, exist_ok=True)
    print(f"building {', '.join(TARGETS)} from llama.cpp ({PACKAGE} {ver}); "
          f"minutes on {BUILD_JOBS} cores, log in {build} ...", file=sys.stderr)  # fmt: skip
    t0 = time.perf_counter()
    configure = ["cmake", "-S", str(src), "-B", str(build), *CMAKE_FLAGS]
    _run_logged(configure, build / "configure.log", "cmake configure")
    compile_ = ["cmake", "--build", str(build), "--target", *TARGETS, "-j", str(BUILD_JOBS)]
    _run_logged(compile_, build / "build.log", "cmake build")
    info = {
        "package": f"{PACKAGE}=={ver}",
        "build_s": round(time.perf_counter() - t0, 1),
        "jobs": BUILD_JOBS,
        "cmake_flags": list(CMAKE_FLAGS),
    }
    info_path.write_text(json.dumps(info, indent=2))
    return tools, {**info, "cached": False}


def quantize_gguf(quantize: Path, f16: Path, out: Path, qtype: str) -> None:
    """`llama-quantize f16 out qtype`, atomic; the log lands beside `out`."""
    tmp = out.with_suffix(".tmp")
    cmd = [str(quantize), str(f16), str(tmp), qtype, str(os.cpu_count() or 1)]
    _run_logged(cmd, out.with_suffix(".quantize.log"), f"llama-quantize {qtype}")
    tmp.rename(out)


def quantized_models(
    bvm: Path, src: Path, quantize: Path, quants: list[str], keep_f16: bool
) -> dict[str, Path]:
    """{quant type: GGUF path}, converting and quantizing once (cached)."""
    models = LLAMA_CACHE / "models"
    models.mkdir(parents=True, exist_ok=True)
    out = {q: models / f"{bvm.stem}-{q.lower()}.gguf" for q in quants}
    f16 = models / f"{bvm.stem}-f16.gguf"
    todo = [q for q, p in out.items() if not p.exists()]
    if todo and not f16.exists():
        print(f"writing {f16} (F16, once) ...", file=sys.stderr)
        write_gguf(bvm, f16, load_gguf_py(src))
    for q in todo:
        print(f"llama-quantize -> {q} ...", file=sys.stderr)
        quantize_gguf(quantize, f16, out[q], q)
    if f16.exists() and not keep_f16:
        f16.unlink()  # 2 bytes a weight: 5 GB of disk for a file we no longer read
    return out


# ---- measuring ------------------------------------------------------------------------


def run_llama_bench(bench: Path, model: Path, threads: int) -> dict[str, Any]:
    """One llama-bench run (pp and tg, one repetition each after its warm-up):
    {"prefill_tok_s", "decode_tok_s", "model_size", "build_commit", "cpu_info", ...}."""
    cmd = [str(bench), "-m", str(model), "-t", str(threads), "-p", str(PROMPT_TOKENS),
           "-n", str(DECODE_TOKENS), "-r", "1", "-o", "json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LlamaCppError(f"llama-bench failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return parse_llama_bench(proc.stdout)


def parse_llama_bench(stdout: str) -> dict[str, Any]:
    """llama-bench `-o json` output -> prefill and decode tokens/s of one run.
    Raises LlamaCppError if either test is missing."""
    try:
        entries = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise LlamaCppError(f"llama-bench printed no JSON: {stdout[:300]!r}") from exc
    pp = [e for e in entries if e.get("n_prompt", 0) > 0 and e.get("n_gen", 0) == 0]
    tg = [e for e in entries if e.get("n_gen", 0) > 0 and e.get("n_prompt", 0) == 0]
    if not pp or not tg:
        raise LlamaCppError("llama-bench JSON lacks a prompt or a generation test")
    return {
        "prefill_tok_s": round(float(pp[0]["avg_ts"]), 1),
        "decode_tok_s": round(float(tg[0]["avg_ts"]), 1),
        "model_size": int(tg[0]["model_size"]),
        "model_type": tg[0].get("model_type"),
        "build_commit": tg[0].get("build_commit"),
        "cpu_info": tg[0].get("cpu_info"),
        "n_threads": tg[0].get("n_threads"),
    }


def run_bitvoice(threads: int, head: str, quick: bool) -> dict[str, Any]:
    """bench_llm's own measurement, in a child process as bench_llm runs it."""
    cmd = [sys.executable, "-m", "bench.bench_llm", "--threads", str(threads), "--child", head]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_llm child failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy_cores(window_s: float = PROBE_S) -> float:
    """CPU used by every process on the machine over `window_s`, in cores (0..nproc)."""
    b0, t0 = _cpu_times()
    time.sleep(window_s)
    b1, t1 = _cpu_times()
    return round((b1 - b0) / max(t1 - t0, 1) * (os.cpu_count() or 1), 2)


def wait_quiet(max_wait_s: float) -> float:
    """Wait until the machine is nearly idle (<= QUIET_CORES busy) or `max_wait_s`
    passed; returns the busy cores of the last probe (recorded with the run)."""
    deadline = time.monotonic() + max_wait_s
    busy = cpu_busy_cores()
    while busy > QUIET_CORES and time.monotonic() < deadline:
        busy = cpu_busy_cores()
    return busy


def others_during(run: Any, *args: Any) -> dict[str, Any]:
    """`run(*args)` (which measures in child processes), plus "others_cores": the CPU
    that every other process on the machine used meanwhile, in cores (all CPU time
    from /proc/stat minus our children's own, over the wall time)."""
    b0, _ = _cpu_times()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    result: dict[str, Any] = run(*args)
    wall = time.perf_counter() - w0
    b1, _ = _cpu_times()
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    total = (b1 - b0) / os.sysconf("SC_CLK_TCK")
    return {**result, "others_cores": round(max(total - ours, 0.0) / wall, 2)}


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best prefill and best decode over runs (noise on a shared machine only slows)."""
    return {
        "prefill_tok_s": max(r["prefill_tok_s"] for r in runs),
        "decode_tok_s": max(r["decode_tok_s"] for r in runs),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b > 0 else float("nan")


def main(argv: list[str] | None = None, *, asked: bool = False) -> int:
    """Run the comparison. `python -m bench` calls main([]) with asked=False: then it
    only runs when BITVOICE_BENCH_LLAMA_CPP=1, because the first run builds llama.cpp."""
    if not asked and os.environ.get(ENV_OPT_IN) != "1":
        print(f"skipped: the llama.cpp comparison runs only when asked "
              f"(python -m bench.bench_llama_cpp, python -m bench.bench_llm --llama-cpp, "
              f"or {ENV_OPT_IN}=1)")  # fmt: skip
        return 0
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_llama_cpp",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quants", default=",".join(DEFAULT_QUANTS), help="llama.cpp types")
    ap.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per side; best counts")
    ap.add_argument("--head", default=DEFAULT_HEAD, help="bitvoice LM head: none, int8, int4")
    ap.add_argument("--quick", action="store_true", help="bench_llm's small model")
    ap.add_argument("--version", help=f"{PACKAGE} version (default: cached, else newest)")
    ap.add_argument("--keep-f16", action="store_true", help="keep the 5 GB F16 GGUF")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=DEFAULT_WAIT_QUIET_S,
        help="seconds to wait, before each run, for other processes to leave the cores",
    )
    ap.add_argument(
        "--prepare-only", action="store_true", help="download, build, convert; measure nothing"
    )
    args = ap.parse_args(argv)
    quants = [q.strip().upper() for q in args.quants.split(",") if q.strip()]
    shapes = SHAPES_QUICK if args.quick else SHAPES_2B

    try:
        ver, src = fetch_sources(args.version)
        tools, build_info = build_tools(ver, src)
        bvm = model_path(shapes)
        models = quantized_models(bvm, src, tools["llama-quantize"], quants, args.keep_f16)
    except LlamaCppError as exc:
        print(f"llama.cpp side unavailable: {exc}", file=sys.stderr)
        return 1
    if args.prepare_only:
        print(
            f"ready: {', '.join(str(p) for p in tools.values())}; {', '.join(map(str, models.values()))}"
        )
        return 0

    bv_runs: list[dict[str, Any]] = []
    ll_runs: dict[str, list[dict[str, Any]]] = {q: [] for q in quants}
    loads: list[float] = []
    for i in range(args.runs):
        busy = wait_quiet(args.wait_quiet)
        print(f"run {i + 1}/{args.runs}: bitvoice (others busy {busy} cores) ...", file=sys.stderr)
        loads.append(os.getloadavg()[0])
        r = others_during(run_bitvoice, args.threads, args.head, args.quick)
        bv_runs.append({**r, "busy_before": busy})
        for q in quants:
            busy = wait_quiet(args.wait_quiet)
            print(f"run {i + 1}/{args.runs}: llama.cpp {q} (others busy {busy} cores) ...",
                  file=sys.stderr)  # fmt: skip
            loads.append(os.getloadavg()[0])
            try:
                r = others_during(run_llama_bench, tools["llama-bench"], models[q], args.threads)
                ll_runs[q].append({**r, "busy_before": busy})
            except LlamaCppError as exc:
                print(f"llama.cpp {q}: {exc}", file=sys.stderr)
    loads.append(os.getloadavg()[0])
    all_runs = bv_runs + [r for rs in ll_runs.values() for r in rs]
    busies = [r["busy_before"] for r in all_runs]
    others = [r["others_cores"] for r in all_runs]

    wait_quiet(args.wait_quiet)
    bw = memory_bandwidth_gb_s(args.threads)
    info = machine()
    bv = {**best(bv_runs), "bytes_per_token_mb": bv_runs[0]["bytes_per_token_mb"]}
    rows: list[dict[str, Any]] = [{"engine": f"bitvoice ({args.head} head)", **bv}]
    for q in quants:
        if not ll_runs[q]:
            continue
        mb = ll_runs[q][0]["model_size"] / 1e6
        rows.append(
            {"engine": f"llama.cpp {q}", **best(ll_runs[q]), "bytes_per_token_mb": round(mb, 1)}
        )
    for r in rows:
        r["decode_gb_s"] = round(r["decode_tok_s"] * r["bytes_per_token_mb"] / 1e3, 1)
        r["pct_of_bw"] = round(100 * r["decode_gb_s"] / bw, 1) if bw > 0 else float("nan")
    ratios = {
        r["engine"]: {
            "prefill": ratio(bv["prefill_tok_s"], r["prefill_tok_s"]),
            "decode": ratio(bv["decode_tok_s"], r["decode_tok_s"]),
        }
        for r in rows[1:]
    }

    label = "quick shapes" if args.quick else "BitNet-b1.58-2B-4T shapes"
    commit = next((r[0]["build_commit"] for r in ll_runs.values() if r), "?")
    print(f"\nbitvoice vs llama.cpp ({PACKAGE} {ver}, build {commit}) - "
          f"{label}, {args.threads} threads, prompt {PROMPT_TOKENS}, decode {DECODE_TOKENS}; "
          f"best of {args.runs} runs each")  # fmt: skip
    print(f"{info['cpu']} ({info['logical_cpus']} CPUs), bitvoice kernel {info['kernel_path']}; "
          f"memory read bandwidth ({args.threads} threads) {bw} GB/s; "
          f"1-min load average during the runs {min(loads):.2f}..{max(loads):.2f}; "
          f"other processes' CPU just before each run {min(busies)}..{max(busies)} cores, "
          f"during each run {min(others)}..{max(others)} cores")  # fmt: skip
    header = f"{'engine':<24} {'prefill t/s':>12} {'decode t/s':>11} {'MB/tok':>7} {'GB/s':>6} {'% bw':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['engine']:<24} {r['prefill_tok_s']:>12} {r['decode_tok_s']:>11} "
              f"{r['bytes_per_token_mb']:>7} {r['decode_gb_s']:>6} {r['pct_of_bw']:>6}")  # fmt: skip
    per_run = {
        f"bitvoice ({args.head} head)": bv_runs,
        **{f"llama.cpp {q}": ll_runs[q] for q in quants},
    }
    for name, runs in per_run.items():
        cells = ", ".join(
            f"{r['prefill_tok_s']}/{r['decode_tok_s']} ({r['others_cores']})" for r in runs
        )
        print(f"  runs of {name}, prefill/decode t/s (others' cores): {cells}")
    for name, rt in ratios.items():
        print(f"bitvoice / {name}: prefill x{rt['prefill']}, decode x{rt['decode']}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("llama_cpp-quick.json" if args.quick else "llama_cpp.json")
    out.write_text(json.dumps({
        "machine": info, "shapes": shapes, "threads": args.threads,
        "prompt_tokens": PROMPT_TOKENS, "decode_tokens": DECODE_TOKENS,
        "memory_bandwidth_gb_s": bw, "load_average_1min": loads,
        "busy_cores_before_runs": busies, "others_cores_during_runs": others,
        "quiet_cores": QUIET_CORES,
        "llama_cpp": {"package": f"{PACKAGE}=={ver}", "build": build_info,
                      "quants": quants, "runs": ll_runs},
        "bitvoice": {"head": args.head, "runs": bv_runs},
        "best": rows, "ratio_bitvoice_over_llama_cpp": ratios,
    }, indent=2))  # fmt: skip
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:], asked=True))
