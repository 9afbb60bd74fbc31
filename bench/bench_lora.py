"""LoRA adapter memory and decode cost by `lora_quant`, on the random-ternary
model with the BitNet-b1.58-2B-4T shapes (bench/bench_llm.py writes and caches
it) and a random rank-16 adapter on all 7 linears of all 30 layers.

    python -m bench.bench_lora [--threads 2] [--rank 16] [--quick]

For float32, int8 and int4 adapters (and none), each in its own process:
the bytes the engine holds for the adapter (`Model.lora_bytes`, exact), the
resident-memory growth when it is attached (VmRSS, approximate), and decode
tokens/s with it. Prints a table and writes bench/results/lora.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_llm import (
    SHAPES_2B,
    SHAPES_QUICK,
    bitnet_shapes,
    model_path,
    rss_gb,
    timed_decode,
)
from bench.machine import describe_machine
from engine.llm.importer import LINEARS

RESULTS = Path(__file__).parent / "results"
QUANTS = ("none", "f32", "int8", "int4")  # "none": no adapter (the baseline)
PROMPT_TOKENS = 64
DECODE_TOKENS = 32
REPEATS = 3


def attach(m: Any, shapes: dict[str, int], rank: int, quant: str | None) -> None:
    """A random adapter on every linear; the float32 factors are freed after each."""
    from engine.llm.lora import set_lora_factors

    rng = np.random.default_rng(7)
    bitnet = bitnet_shapes(shapes)
    for layer in range(shapes["n_layers"]):
        for target in LINEARS.values():
            out, inp = bitnet.linear_shape(target)
            a = (rng.standard_normal((rank, inp)) * 0.02).astype(np.float32)
            b = (rng.standard_normal((out, rank)) * 0.02).astype(np.float32)
            set_lora_factors(m, f"layers.{layer}.{target}", a, b, 2.0, quant)
            del a, b
    gc.collect()


def run_one(
    path: Path, threads: int, quant: str, shapes: dict[str, int], rank: int
) -> dict[str, Any]:
    """Measure one adapter storage in this process."""
    from engine.llm import _native

    m = _native.Model(str(path), n_threads=threads, n_ctx=PROMPT_TOKENS + DECODE_TOKENS + 8)
    rng = np.random.default_rng(1)
    prompt = [int(t) for t in rng.integers(0, shapes["vocab"], PROMPT_TOKENS)]
    m.eval(prompt, 0)  # first touch of every weight page before the RSS baseline
    gc.collect()
    before, _ = rss_gb()
    if quant != "none":
        attach(m, shapes, rank, None if quant == "f32" else quant)
    after, _ = rss_gb()
    runs = []
    for _ in range(REPEATS):
        m.eval(prompt, 0)
        runs.append(DECODE_TOKENS / timed_decode(m, PROMPT_TOKENS, DECODE_TOKENS))
    return {
        "lora_quant": quant,
        "rank": rank,
        "lora_bytes": int(m.lora_bytes),
        "lora_mb": round(m.lora_bytes / 1e6, 2),
        "rss_growth_mb": round((after - before) * 1e3, 1),
        "decode_tok_s": round(statistics.median(runs), 2),
        "decode_tok_s_runs": [round(r, 2) for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="a small model instead of the 2B shapes")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    shapes = SHAPES_QUICK if args.quick else SHAPES_2B
    path = model_path(shapes)
    if args.child:
        print(json.dumps(run_one(path, args.threads, args.child, shapes, args.rank)))
        return 0
    rows = []
    for quant in QUANTS:
        cmd = [sys.executable, "-m", "bench.bench_lora", "--threads", str(args.threads),
               "--rank", str(args.rank), "--child", quant, *(["--quick"] if args.quick else [])]  # fmt: skip
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows[-1]["wall_s"] = round(time.perf_counter() - t0, 1)
    info = describe_machine()
    f32 = next(r["lora_bytes"] for r in rows if r["lora_quant"] == "f32")
    print(f"\nbitvoice LoRA adapters by lora_quant - {'quick shapes' if args.quick else 'BitNet-b1.58-2B-4T shapes'}, "
          f"rank {args.rank} on all 7 linears x {shapes['n_layers']} layers, {args.threads} threads, {info.get('cpu', '?')}")  # fmt: skip
    header = f"{'lora_quant':>10} {'adapter MB':>11} {'vs f32':>7} {'RSS +MB':>8} {'decode t/s':>11} {'range':>13}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['lora_bytes'] / f32:.3f}" if r["lora_bytes"] else "-"
        spread = f"{min(r['decode_tok_s_runs'])}-{max(r['decode_tok_s_runs'])}"
        print(f"{r['lora_quant']:>10} {r['lora_mb']:>11} {ratio:>7} {r['rss_growth_mb']:>8} "
              f"{r['decode_tok_s']:>11} {spread:>13}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = RESULTS / ("lora-quick.json" if args.quick else "lora.json")
    out_path.write_text(json.dumps({"machine": info, "shapes": shapes, "rank": args.rank,
                                    "threads": args.threads, "results": rows}, indent=2))  # fmt: skip
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
