"""`bitvoice`: the command line.

    bitvoice pull ORG/NAME [--as ID] [--kind llm|stt]   download from Hugging Face and import
    bitvoice import PATH --as ORG/NAME [--base ID]      import a local HF BitNet or PEFT LoRA folder
    bitvoice list                                       what the store holds
    bitvoice chat ORG/NAME                              terminal chat (/new resets, q quits)
    bitvoice serve ...                                  the realtime WebSocket server
    bitvoice kiosk ...                                  headless client: microphone, speaker
    bitvoice bench [--model ID]                         benchmarks (LLM quick bench, or bench/)

Errors print one line on stderr and exit non-zero (1: bad request or
failure, 2: bad command line, 130: interrupted).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from engine.errors import BitvoiceError, InvalidRequestError

__all__ = ["main"]

QUIT_WORDS = {"q", "/q", "/quit", "/exit"}


def _is_stt_repo(repo_id: str) -> bool:
    return "whisper" in repo_id.lower()


def cmd_pull(args: argparse.Namespace) -> int:
    kind = args.kind or ("stt" if _is_stt_repo(args.repo_id) else "llm")
    if kind == "stt":
        from engine.stt import pull_stt_model

        path = pull_stt_model(args.repo_id, revision=args.revision)
    else:
        from engine.llm import store

        path = store.pull(
            args.repo_id,
            args.store_id,
            revision=args.revision,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            local_files_only=args.offline,
            force=args.force,
        )
    print(f"pulled {args.repo_id} ({kind}) -> {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from engine.llm import store

    path = store.import_local(Path(args.path), args.store_id, base_id=args.base, force=args.force)
    print(f"imported {args.path} as {args.store_id} -> {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from engine.llm import store

    rows = [(e.store_id, e.kind, f"{e.size_bytes / 1e6:.1f} MB") for e in store.list_store()]
    try:
        from engine.stt import installed_stt_models

        rows += [(m, "stt", "") for m in installed_stt_models()]
    except ImportError:
        pass  # the voice extras are not installed
    if not rows:
        print("the store is empty; add a model with `bitvoice pull ORG/NAME`")
        return 0
    width = max(len(r[0]) for r in rows)
    for store_id, kind, size in rows:
        print(f"{store_id:<{width}}  {kind:<7}  {size}".rstrip())
    return 0


def _sampling(args: argparse.Namespace) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for key in ("temperature", "top_k", "top_p", "max_tokens", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def cmd_chat(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    from engine.llm import LLM, ChatTokenEvent
    from engine.runtime import Runtime

    llm = LLM(
        args.model_id,
        num_threads=args.threads,
        lora_dir=args.lora,
        harness_name=args.harness,
        search_provider=args.search_provider,
    )
    interactive = stdin.isatty()
    with Runtime(llm) as rt:
        session = rt.llm.open_session()
        with session:
            if args.system:
                session.append_message("system", args.system)
            if interactive:
                stdout.write("bitvoice chat: /new starts over, q quits\n")
            while True:
                if interactive:
                    stdout.write("> ")
                    stdout.flush()
                line = stdin.readline()
                if not line:
                    break
                text = line.strip()
                if not text:
                    continue
                if text in QUIT_WORDS:
                    break
                if text == "/new":
                    session.new_chat()
                    if args.system:
                        session.append_message("system", args.system)
                    stdout.write("(new chat)\n")
                    continue
                for event in session.generate(text, **_sampling(args)):
                    if isinstance(event, ChatTokenEvent):
                        stdout.write(event.text)
                        stdout.flush()
                stdout.write("\n")
                stdout.flush()
    return 0


def cmd_serve(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        server = importlib.import_module("realtime.server")
    except ImportError as exc:
        raise InvalidRequestError(f"the realtime server is not available: {exc}") from None
    code = server.main(rest)
    return int(code or 0)


def cmd_kiosk(args: argparse.Namespace, rest: list[str]) -> int:
    kiosk = importlib.import_module("kiosk.cli")
    return int(kiosk.main(rest))


def _bench_llm(args: argparse.Namespace, stdout: TextIO) -> int:
    """Prefill and decode speed of one model on this machine (greedy, fixed prompt)."""
    import platform

    from engine.llm import LLM, ChatDoneEvent
    from engine.runtime import Runtime

    rows = []
    with Runtime(LLM(args.model, num_threads=args.threads)) as rt:
        model = rt.llm.native_model
        backend = importlib.import_module("engine.llm._native").kernel_backend()
        for _ in range(args.repeat):
            with rt.llm.open_session() as s:
                t0 = time.perf_counter()
                prompt = "Tell me a story about a robot. " * args.prompt_words
                usage = None
                for event in s.generate(prompt, temperature=0.0, max_tokens=args.tokens):
                    if isinstance(event, ChatDoneEvent):
                        usage = event.usage
                assert usage is not None
                rows.append((usage, time.perf_counter() - t0))
        threads = model.n_threads
    stdout.write(
        f"machine: {platform.processor() or platform.machine()}, kernel {backend}, {threads} threads\n"
    )
    stdout.write(f"{'prompt':>7} {'gen':>5} {'ttft_ms':>8} {'decode_tok_s':>12} {'total_s':>8}\n")
    for usage, total in rows:
        ttft = (usage.time_to_first_token_s or 0) * 1000
        tps = usage.tokens_per_second or 0.0
        stdout.write(
            f"{usage.prompt_tokens:>7} {usage.completion_tokens:>5} {ttft:>8.1f} {tps:>12.1f} {total:>8.2f}\n"
        )
    return 0


def cmd_bench(args: argparse.Namespace, rest: list[str], stdout: TextIO) -> int:
    if args.model:
        return _bench_llm(args, stdout)
    root = Path(__file__).resolve().parents[1]
    if not (root / "bench").is_dir():
        raise InvalidRequestError(
            "bench/ not found (run from a source checkout), or pass --model ORG/NAME"
        )
    return subprocess.call([sys.executable, "-m", "bench", *rest], cwd=root)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bitvoice", description="bitvoice: CPU-only voice assistant")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pull = sub.add_parser("pull", help="download a model from Hugging Face into the store")
    pull.add_argument("repo_id", help="Hugging Face repository, org/name")
    pull.add_argument("--as", dest="store_id", help="store ID (default: the repo ID)")
    pull.add_argument("--kind", choices=["llm", "stt"], help="default: stt for *whisper* repos")
    pull.add_argument("--revision", help="branch, tag or commit")
    pull.add_argument("--cache-dir", help="Hugging Face cache to use and keep")
    pull.add_argument("--offline", action="store_true", help="only use the cache (no network)")
    pull.add_argument("--force", action="store_true", help="replace an existing bundle")

    imp = sub.add_parser("import", help="import a local HF BitNet folder or PEFT LoRA adapter")
    imp.add_argument(
        "path", help="folder with config.json + model.safetensors (or adapter_config.json)"
    )
    imp.add_argument("--as", dest="store_id", required=True, help="store ID, org/name")
    imp.add_argument("--base", help="for a LoRA adapter: the base model's store ID")
    imp.add_argument("--force", action="store_true", help="replace an existing bundle")

    sub.add_parser("list", help="list the models and adapters in the store")

    chat = sub.add_parser("chat", help="chat with a model in the terminal (/new, q)")
    chat.add_argument("model_id", help="store ID, org/name")
    chat.add_argument("--system", help="system message")
    chat.add_argument("--lora", help="LoRA adapter store ID")
    chat.add_argument("--threads", type=int, default=0, help="engine threads (0: physical cores)")
    chat.add_argument("--harness", choices=["default", "search"], default="default")
    chat.add_argument("--search-provider", choices=["ddgs", "brave"], default="ddgs")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--top-k", type=int)
    chat.add_argument("--top-p", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--seed", type=int)

    sub.add_parser(
        "serve", help="run the realtime WebSocket server (options: bitvoice serve --help)",
        add_help=False,
    )  # fmt: skip

    sub.add_parser(
        "kiosk", help="headless client for a box with a microphone and a loudspeaker "
        "(options: bitvoice kiosk --help)", add_help=False,
    )  # fmt: skip

    bench = sub.add_parser("bench", help="run benchmarks (LLM quick bench with --model)")
    bench.add_argument("--model", help="store ID: quick prefill/decode bench of this LLM")
    bench.add_argument("--threads", type=int, default=0)
    bench.add_argument("--tokens", type=int, default=64, help="tokens to generate")
    bench.add_argument("--prompt-words", type=int, default=8, help="prompt length (sentences)")
    bench.add_argument("--repeat", type=int, default=3)
    return p


def main(
    argv: Sequence[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    parser = build_parser()
    # `serve`, `kiosk` and `bench` pass what they do not know to the program behind them.
    if args_list[:1] in (["serve"], ["kiosk"]):
        args, rest = parser.parse_args(args_list[:1]), args_list[1:]
    elif args_list[:1] == ["bench"]:
        args, rest = parser.parse_known_args(args_list)
    else:
        args, rest = parser.parse_args(args_list), []
    try:
        if args.command == "pull":
            return cmd_pull(args)
        if args.command == "import":
            return cmd_import(args)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "chat":
            return cmd_chat(args, stdin, stdout)
        if args.command == "serve":
            return cmd_serve(args, rest)
        if args.command == "kiosk":
            return cmd_kiosk(args, rest)
        return cmd_bench(args, rest, stdout)
    except BitvoiceError as exc:
        print(f"bitvoice {args.command}: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"bitvoice {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
