#!/usr/bin/env bash
# The whole test suite, then the engine's kernel-level tests once more on each
# kernel path this CPU supports (the main run uses the best one). pytest's
# exit code 5 ("no tests collected") is a failure here, not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."

run_pytest() {
    python3 -m pytest "$@"
    local rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "run_tests: pytest collected no tests for: $*" >&2
        return 1
    fi
    return "$rc"
}

run_pytest -q tests || exit 1

paths=$(python3 -c "from engine.llm import _native; print(' '.join(_native.supported_kernels()))")
best=$(python3 -c "from engine.llm import _native; print(_native.kernel_backend())")
for path in $paths; do
    [ "$path" = "$best" ] && continue
    echo "== engine tests with BITVOICE_KERNEL=$path"
    BITVOICE_KERNEL=$path run_pytest -q tests/llm/test_native.py tests/csrc || exit 1
done
