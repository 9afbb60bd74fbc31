"""Builds the C ternary engine (`engine.llm._native`).

Each SIMD kernel file is compiled on its own with its own ISA flags, so the
rest of the engine stays baseline x86-64 (or any CPU) and the right kernel is
picked at run time from cpuid. On a CPU that is not x86-64 the SIMD files are
left out and only the scalar reference path is built.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = Path("csrc")
IS_X86_64 = platform.machine().lower() in {"x86_64", "amd64"}

COMMON_FLAGS = ["-O3", "-std=c11", "-fno-strict-aliasing", "-Wall", "-Wextra", "-Wno-unused-parameter"]
# Per-file ISA flags: the only places where wide instructions may be emitted.
ISA_FLAGS = {
    "x86_avx2.c": ["-mavx2", "-mfma", "-mf16c"],
    "x86_avx512.c": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c"],
}

# AMX tiles (the AVX-512 path's prefill GEMMs) live in their own file, built
# with the AVX-512 flags plus these, and only when the compiler knows them
# (GCC >= 11, clang >= 12); the "amx" path is then offered where cpuid and
# the OS allow it (csrc/dispatch.c). Elsewhere the file is left out.
AMX_FLAGS = ["-mamx-tile", "-mamx-int8"]
ISA_FLAGS["x86_amx.c"] = ISA_FLAGS["x86_avx512.c"] + AMX_FLAGS
AMX_SOURCE = "csrc/kernels/x86_amx.c"

BASE_SOURCES = [
    "csrc/forward.c",
    "csrc/model.c",
    "csrc/threadpool.c",
    "csrc/sampler.c",
    "csrc/dispatch.c",
    "csrc/kernels/ref.c",
    "csrc/pymodule.c",
]
SIMD_SOURCES = (
    ["csrc/kernels/x86_avx2.c", "csrc/kernels/x86_avx512.c"]
    if IS_X86_64
    else []
)


class BuildWithIsaFlags(build_ext):
    def compiler_has_amx(self) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "amx_probe.c"
            probe.write_text("#include <immintrin.h>\nvoid probe(void) { _tile_release(); }\n")
            try:
                self.compiler.compile([str(probe)], output_dir=tmp, extra_postargs=AMX_FLAGS)
            except Exception:  # any compiler error: build without the AMX path
                return False
        return True

    def build_extension(self, ext: Extension) -> None:
        sources = list(SIMD_SOURCES)
        if SIMD_SOURCES and self.compiler_has_amx():
            sources.append(AMX_SOURCE)
            ext.define_macros = [*ext.define_macros, ("BV_HAVE_AMX", "1")]
        objects: list[str] = []
        for source in sources:
            flags = COMMON_FLAGS + ISA_FLAGS[Path(source).name]
            objects += self.compiler.compile(
                [source],
                output_dir=self.build_temp,
                include_dirs=ext.include_dirs,
                macros=ext.define_macros,
                extra_postargs=flags,
                depends=ext.depends,
            )
        ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extension(ext)


native = Extension(
    "engine.llm._native",
    sources=BASE_SOURCES,
    include_dirs=[str(CSRC / "include")],
    define_macros=[("BV_HAVE_X86_SIMD", "1")] if IS_X86_64 else [],
    extra_compile_args=COMMON_FLAGS,
    extra_link_args=["-lpthread", "-lm"],
    # the SIMD files are compiled outside `sources` (their own flags): list
    # them here so editing one of them rebuilds the extension
    depends=[str(p) for p in CSRC.rglob("*.h")] + SIMD_SOURCES + ([AMX_SOURCE] if IS_X86_64 else []),
)

setup(ext_modules=[native], cmdclass={"build_ext": BuildWithIsaFlags})
