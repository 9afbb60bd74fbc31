"""Run every benchmark: `python -m bench` (or `make bench`).

Each bench/bench_*.py is a module with `main(argv) -> int`; each prints its
own table and writes its JSON under bench/results/."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(f"bench.{name}")
        try:
            if module.main([]) != 0:
                failed.append(name)
        except Exception as exc:  # one broken benchmark must not hide the others
            print(f"{name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
