"""The engine built for a CPU with no x86 SIMD at all: the C sources compiled
without the AVX files (as setup.py does off x86-64), loaded as a separate
extension, must offer only the scalar path and compute the same logits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from engine.llm import _native
from engine.llm.importer import import_hf_model
from engine.llm.tiny import write_tiny_hf_model

ROOT = Path(__file__).resolve().parents[2]
BASE_SOURCES = [
    "forward.c",
    "model.c",
    "threadpool.c",
    "sampler.c",
    "dispatch.c",
    "kernels/ref.c",
    "pymodule.c",
]

PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("scalaronly._native", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
m = mod.Model(sys.argv[2], n_threads=2)
m.eval([5, 17, 33, 2, 250, 100, 7], 0, all_logits=True)
print(json.dumps({"paths": mod.supported_kernels(), "backend": mod.kernel_backend(),
                  "layout": m.ternary_layout, "logits": list(m.logits())}))
"""


@pytest.mark.slow
def test_build_without_x86_simd(tmp_path: Path) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    tiny_bundle = tmp_path / "bundle"
    import_hf_model(write_tiny_hf_model(tmp_path / "hf", seed=0), tiny_bundle)
    out = tmp_path / f"_native{sysconfig.get_config_var('EXT_SUFFIX')}"
    cmd = [
        cc, "-O2", "-std=c11", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unused-parameter",
        f"-I{ROOT / 'csrc/include'}", f"-I{sysconfig.get_paths()['include']}",
        *(str(ROOT / "csrc" / s) for s in BASE_SOURCES), "-o", str(out), "-lpthread", "-lm",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    # no BITVOICE_KERNEL: a forced SIMD path is (rightly) an import error in this build
    env = {k: v for k, v in os.environ.items() if k != "BITVOICE_KERNEL"}
    res = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), str(tiny_bundle / "model.bvm")],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    got = json.loads(res.stdout)
    assert got["paths"] == ["ref"] and got["backend"] == "ref" and got["layout"] == "2bit"
    m = _native.Model(str(tiny_bundle / "model.bvm"), n_threads=2, ternary_layout="2bit")
    m.eval([5, 17, 33, 2, 250, 100, 7], 0, all_logits=True)
    np.testing.assert_allclose(np.array(got["logits"]), np.array(m.logits()), atol=1e-4)
