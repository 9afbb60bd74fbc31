"""The LM head formats (unembed_quant: none = the stored f16 head, int8, int4):
what each costs in quality against the stored head, and in time in a voice turn.

    python -m bench.bench_heads [--threads 2] [--heads none,int8,int4] [--quick]

Quality, per model, over the logits of PROMPT_TOKENS positions of a seeded
random prompt (all computed by the C engine, one load per head format):
- top-1: share of positions whose greedy token is the stored head's;
- KL: mean and max KL(p_stored || p_quantized) in nats, softmax at temperature 1;
- err: max |logit - stored logit| as a share of the stored logits' range;
- p1: the stored head's mean top-1 probability (how peaked the model is).
Models: the seeded demo model (`bitvoice serve`'s fallback, real word tokenizer),
a mid-sized random ternary model with a peaked head (PEAKED_SHAPES, rows scaled
by PEAKED_ROW_SCALE: mean top-1 probability 0.81, as confident as a trained
model), and the 2B-shaped random model of bench_llm (a flat head: its random
embeddings give every token about the same probability).

Speed, on the 2B shapes (bench_llm's model): a voice turn as the server runs it
(VOICE_CACHED positions already cached, then a VOICE_TURN-token user turn and
VOICE_DECODE decoded tokens), median of REPEATS, and the decode time per token.
Timings on a shared machine drift; each head is measured in turn in one process.
Prints a table and writes bench/results/heads.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.bench_llm import SHAPES_2B, machine, model_path, write_random_model
from engine.llm.importer import HEADER

RESULTS = Path(__file__).parent / "results"
PROMPT_TOKENS = 256
PEAKED_SHAPES = dict(
    hidden=1024, n_layers=4, n_heads=8, n_kv_heads=2, ffn=2816, vocab=32000, max_ctx=1024
)
PEAKED_ROW_SCALE = 12.0  # embedding rows N(0, 0.02 * 12): logits spread ~8 over the vocabulary
VOICE_CACHED, VOICE_TURN, VOICE_DECODE = 300, 20, 12
REPEATS = 5
F64 = npt.NDArray[np.float64]


def _log_softmax(z: F64) -> F64:
    z = z - z.max(axis=-1, keepdims=True)
    out: F64 = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return out


def head_logits(bvm: Path, head: str, prompt: list[int], threads: int) -> F64:
    """[len(prompt), vocab] logits of the C engine with LM head format `head`."""
    from engine.llm import _native

    m = _native.Model(
        str(bvm), n_threads=threads, n_ctx=len(prompt) + 8, unembed_quant=_quant(head)
    )
    try:
        m.eval(prompt, 0, all_logits=True)
        return np.array(m.logits(), dtype=np.float64).reshape(len(prompt), -1)
    finally:
        m.close()


def _quant(head: str) -> str | None:
    return None if head == "none" else head


def quality(stored: F64, other: F64) -> dict[str, float]:
    """How far `other` logits are from the stored head's (see the module doc)."""
    lp, lq = _log_softmax(stored), _log_softmax(other)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    span = (stored.max(axis=-1) - stored.min(axis=-1)).max()
    return {
        "top1_agree": round(float((stored.argmax(-1) == other.argmax(-1)).mean()), 4),
        "kl_mean": float(f"{kl.mean():.3g}"),
        "kl_max": float(f"{kl.max():.3g}"),
        "max_err_of_range": round(float(np.abs(other - stored).max() / span), 4),
        "stored_top1_prob": round(float(np.exp(lp.max(axis=-1)).mean()), 3),
    }


def demo_bvm(tmp: Path) -> Path:
    """The seeded demo model, imported into `tmp` (the same bundle `bitvoice serve`
    publishes as local/tiny-demo)."""
    from engine.llm.importer import import_hf_model
    from engine.llm.tiny import DEMO_CONFIG, DEMO_EMBED_STD, write_tiny_hf_model

    src = write_tiny_hf_model(
        tmp / "hf", seed=1234, embed_std=DEMO_EMBED_STD, words=True, **DEMO_CONFIG
    )
    import_hf_model(src, tmp / "demo")
    return tmp / "demo" / "model.bvm"


def peaked_bvm(tmp: Path) -> Path:
    path = tmp / "peaked.bvm"
    scale = np.full(PEAKED_SHAPES["vocab"], PEAKED_ROW_SCALE)
    write_random_model(path, PEAKED_SHAPES, seed=3, embed_row_scale=scale)
    return path


def quality_rows(models: dict[str, Path], heads: list[str], threads: int) -> list[dict[str, Any]]:
    rows = []
    for name, bvm in models.items():
        with open(bvm, "rb") as fh:
            vocab = HEADER.unpack(fh.read(HEADER.size))[10]  # bv_file_header.vocab
        rng = np.random.default_rng(0)
        prompt = [int(t) for t in rng.integers(0, vocab, PROMPT_TOKENS)]
        stored = head_logits(bvm, "none", prompt, threads)
        for head in heads:
            if head == "none":
                continue
            q = quality(stored, head_logits(bvm, head, prompt, threads))
            rows.append({"model": name, "head": head, **q})
    return rows


def voice_turn(bvm: Path, head: str, threads: int) -> dict[str, Any]:
    """Seconds for one voice turn and ms per decoded token, median of REPEATS."""
    from engine.llm import _native

    m = _native.Model(
        str(bvm), n_threads=threads, n_ctx=VOICE_CACHED + 64, unembed_quant=_quant(head)
    )
    rng = np.random.default_rng(1)
    history = [int(t) for t in rng.integers(0, 32000, VOICE_CACHED)]
    turn = [int(t) for t in rng.integers(0, 32000, VOICE_TURN)]
    try:
        m.eval(history, 0)
        turns, per_token = [], []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            m.eval(turn, VOICE_CACHED)
            tok = m.sample()
            t1 = time.perf_counter()
            for i in range(VOICE_DECODE):
                m.eval([tok], VOICE_CACHED + VOICE_TURN + i)
                tok = m.sample()
            t2 = time.perf_counter()
            turns.append(t2 - t0)
            per_token.append((t2 - t1) / VOICE_DECODE)
    finally:
        m.close()
    return {
        "head": head,
        "voice_turn_s": round(statistics.median(turns), 3),
        "voice_turn_s_runs": [round(t, 3) for t in turns],
        "decode_ms": round(1e3 * statistics.median(per_token), 1),
        "decode_tok_s": round(1 / statistics.median(per_token), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", default="none,int8,int4")
    ap.add_argument("--quick", action="store_true", help="quality only, no 2B-shaped model")
    args = ap.parse_args(argv)
    heads = args.heads.split(",")
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        models = {"demo (seeded)": demo_bvm(Path(tmp)), "peaked 1024x4": peaked_bvm(Path(tmp))}
        if not args.quick:
            models["2B shapes (flat)"] = model_path(SHAPES_2B)
        q_rows = quality_rows(models, heads, args.threads)
    speed = (
        [] if args.quick else [voice_turn(model_path(SHAPES_2B), h, args.threads) for h in heads]
    )
    print(f"\nLM head formats against the stored f16 head - kernel {info['kernel_path']}, "
          f"{info['cpu']} ({info['logical_cpus']} CPUs), load {info['load_average']}")  # fmt: skip
    print(
        f"{'model':>18} {'head':>5} {'top-1':>7} {'KL mean':>9} {'KL max':>9} {'err/range':>10} {'p1':>6}"
    )
    for r in q_rows:
        print(f"{r['model']:>18} {r['head']:>5} {r['top1_agree']:>7} {r['kl_mean']:>9} "
              f"{r['kl_max']:>9} {r['max_err_of_range']:>10} {r['stored_top1_prob']:>6}")  # fmt: skip
    if speed:
        print(f"\n2B shapes, {args.threads} threads: voice turn = {VOICE_CACHED} cached, "
              f"{VOICE_TURN}-token turn, {VOICE_DECODE} decoded (median of {REPEATS})")  # fmt: skip
        print(f"{'head':>5} {'turn s':>7} {'decode ms':>10} {'decode t/s':>11}")
        for s in speed:
            print(
                f"{s['head']:>5} {s['voice_turn_s']:>7} {s['decode_ms']:>10} {s['decode_tok_s']:>11}"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "heads.json"
    out.write_text(json.dumps({"machine": info, "prompt_tokens": PROMPT_TOKENS,
                               "quality": q_rows, "voice_turn": speed}, indent=2))  # fmt: skip
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
