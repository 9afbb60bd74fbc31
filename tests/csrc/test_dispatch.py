"""The one kernel table and its choice: the AMX file builds on its own with
its flags, and the "amx" path is offered only where the CPU has AMX-INT8."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engine.llm import _native

ROOT = Path(__file__).resolve().parents[2]
AVX512_FLAGS = [
    "-mavx512f",
    "-mavx512bw",
    "-mavx512vl",
    "-mavx512vnni",
    "-mavx2",
    "-mfma",
    "-mf16c",
]
AMX_FLAGS = ["-mamx-tile", "-mamx-int8"]


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _compile(cc: str, flags: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
           "-DBV_HAVE_X86_SIMD=1", "-DBV_HAVE_AMX=1", f"-I{ROOT / 'csrc/include'}", *flags,
           "-c", str(ROOT / "csrc/kernels/x86_amx.c"), "-o", str(out)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64", reason="x86-64 Linux"
)
def test_amx_file_compiles_alone_with_its_flags(tmp_path: Path) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.c"
        probe.write_text("#include <immintrin.h>\nvoid probe(void) { _tile_release(); }\n")
        if subprocess.run([cc, *AMX_FLAGS, "-c", str(probe), "-o", os.devnull]).returncode:
            pytest.skip("this compiler does not know AMX (setup.py then leaves x86_amx.c out)")
    done = _compile(cc, AVX512_FLAGS + AMX_FLAGS, tmp_path / "amx.o")
    assert done.returncode == 0, done.stderr
    # without the AMX flags it refuses to build rather than emit nothing
    refused = _compile(cc, AVX512_FLAGS, tmp_path / "no.o")
    assert refused.returncode != 0 and "x86_amx.c must be compiled" in refused.stderr


def test_amx_is_offered_only_where_the_cpu_has_it() -> None:
    flags = _cpu_flags()
    have = _native.supported_kernels()
    if not {"amx_tile", "amx_int8"} <= flags:
        assert "amx" not in have
        env = {**os.environ, "BITVOICE_KERNEL": "amx"}
        res = subprocess.run(
            [sys.executable, "-c", "import engine.llm._native"],
            capture_output=True, text=True, env=env, cwd=ROOT, check=False,
        )  # fmt: skip
        assert res.returncode != 0 and "BITVOICE_KERNEL=amx" in res.stderr
        with pytest.raises(ValueError):
            _native.select_kernel("amx")
    else:  # the CPU has it; the OS may still refuse the tile state
        assert "avx512" in have
