#!/usr/bin/env bash
# The whole test suite, then the engine's tests once more with each other kernel
# path this CPU supports forced by BITVOICE_KERNEL (the main run uses the best one).
# tests/csrc call every kernel by name on every supported path already, so the
# rerun is the tests that go through the dispatched path: the forward pass, its
# default layout and batched decode. pytest's exit code 5 ("no tests collected")
# is a failure here, not a pass.
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
    BITVOICE_KERNEL=$path run_pytest -q tests/llm/test_native.py tests/llm/test_batch_decode.py \
        tests/csrc/test_dispatch.py || exit 1
done
