"""The importer and the bundle loader: format agreement with the C header,
bad input as typed errors, and a fuzz of the loader's header parsing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from engine.errors import InvalidRequestError
from engine.llm import _native
from engine.llm.importer import (
    BV_MAGIC,
    BV_VERSION,
    ENTRY,
    HEADER,
    import_hf_model,
    pack_ternary,
    quantize_absmean,
    unpack_hf_ternary,
)  # fmt: skip
from engine.llm.reference import unpack_ternary
from engine.llm.tiny import write_tiny_hf_model

ROOT = Path(__file__).resolve().parents[2]


def test_python_mirrors_the_c_format_header() -> None:
    header = (ROOT / "csrc/include/bv_format.h").read_text()
    assert int(re.search(r"#define BV_MAGIC (0x[0-9a-fA-F]+)u", header)[1], 16) == BV_MAGIC  # type: ignore[index]
    assert int(re.search(r"#define BV_VERSION (\d+)u", header)[1]) == BV_VERSION  # type: ignore[index]
    assert "sizeof(bv_file_header) == 64" in header and HEADER.size == 64
    assert "sizeof(bv_tensor_entry) == 80" in header and ENTRY.size == 80


def test_pack_roundtrip_over_odd_widths() -> None:
    rng = np.random.default_rng(0)
    for cols in (1, 3, 7, 31, 33, 127, 129, 4097):
        t = rng.integers(-1, 2, size=(5, cols)).astype(np.int8)
        packed = pack_ternary(t)
        assert packed.shape == (5, (cols + 127) // 128 * 32)
        np.testing.assert_array_equal(unpack_ternary(packed, cols), t)


def test_absmean_rule() -> None:
    w = np.array([[0.5, -0.1, 0.02, -2.0]], dtype=np.float32)
    t, scale = quantize_absmean(w)
    assert scale == pytest.approx(np.abs(w).mean())
    np.testing.assert_array_equal(t, [[1, 0, 0, -1]])


def hf(tmp_path: Path, **kw: object) -> Path:
    return write_tiny_hf_model(tmp_path / "hf", seed=1, **kw)  # type: ignore[arg-type]


def test_unsupported_architecture(tmp_path: Path) -> None:
    src = hf(tmp_path)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRequestError, match="unsupported architecture"):
        import_hf_model(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_key_value_heads": 3}, "multiple of num_key_value_heads"),
        ({"hidden_size": -64}, "hidden_size=-64"),
        ({"hidden_act": "silu"}, "hidden_act"),
        ({"vocab_size": 10}, "tokenizer has"),
        ({"intermediate_size": 200}, "shape|values"),
    ],
)
def test_bad_config_is_a_typed_error(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    src = hf(tmp_path)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(change)
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRequestError, match=message):
        import_hf_model(src, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "a failed import leaves nothing behind"


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    src = hf(tmp_path)
    with pytest.raises(InvalidRequestError, match=r"no config.json"):
        import_hf_model(tmp_path / "nowhere", tmp_path / "o1")
    st_file = src / "model.safetensors"
    st_file.write_bytes(st_file.read_bytes()[:-1000])
    with pytest.raises(InvalidRequestError, match=r"truncated|corrupt"):
        import_hf_model(src, tmp_path / "o2")
    st_file.write_bytes(b"\xff" * 16)
    with pytest.raises(InvalidRequestError, match=r"corrupt|JSON"):
        import_hf_model(src, tmp_path / "o3")
    (src / "tokenizer.json").unlink()
    with pytest.raises(InvalidRequestError, match="tokenizer"):
        import_hf_model(src, tmp_path / "o4")


@pytest.fixture(scope="module")
def bvm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    tmp = tmp_path_factory.mktemp("fz")
    import_hf_model(write_tiny_hf_model(tmp / "hf", seed=2), tmp / "b")
    return (tmp / "b" / "model.bvm").read_bytes()


def load(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    m = _native.Model(str(path), n_threads=1, n_ctx=8)
    m.eval([1, 2], 0)  # if it loaded, it must also run without reading out of bounds
    m.close()


def test_truncated_bundle(tmp_path: Path, bvm: bytes) -> None:
    for cut in (0, 10, 63, 64, 500, len(bvm) // 2, len(bvm) - 1):
        with pytest.raises(_native.BundleError):
            load(tmp_path / "m.bvm", bvm[:cut])


def test_version_and_magic_are_checked(tmp_path: Path, bvm: bytes) -> None:
    with pytest.raises(_native.BundleError, match="magic"):
        load(tmp_path / "m.bvm", b"XXXX" + bvm[4:])
    with pytest.raises(_native.BundleError, match="version"):
        load(tmp_path / "m.bvm", bvm[:4] + (99).to_bytes(4, "little") + bvm[8:])


def test_missing_bundle_file(tmp_path: Path) -> None:
    with pytest.raises(_native.BundleError, match="cannot open"):
        _native.Model(str(tmp_path / "absent.bvm"))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_header_and_table(tmp_path: Path, bvm: bytes, data: st.DataObject) -> None:
    """Random byte edits in the header and tensor table: the loader either
    rejects the file with BundleError or loads something it can run safely."""
    table_end = HEADER.size + ENTRY.size * int.from_bytes(bvm[8:12], "little")
    raw = bytearray(bvm)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, table_end - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        load(tmp_path / "f.bvm", bytes(raw))
    except (_native.BundleError, ValueError):
        pass


def test_requires_remote_code_is_recorded(tmp_path: Path) -> None:
    src = hf(tmp_path)
    cfg = json.loads((src / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "custom.Config"}
    (src / "config.json").write_text(json.dumps(cfg))
    import_hf_model(src, tmp_path / "out")
    assert (
        json.loads((tmp_path / "out" / "bundle.json").read_text())["requires_remote_code"] is True
    )
    shutil.rmtree(tmp_path / "out")


@pytest.mark.slow
def test_import_streams_tensor_by_tensor(tmp_path: Path) -> None:
    """Importing ~400 MB of float32 weights must not hold them all in memory:
    the importer's peak RSS grows by far less than the checkpoint's size."""
    import subprocess
    import sys

    src = write_tiny_hf_model(
        tmp_path / "hf", seed=4, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=8,
    )  # fmt: skip
    size_mb = (src / "model.safetensors").stat().st_size / 1e6
    assert size_mb > 350
    # VmHWM (peak RSS, file pages of the mmap included) reset through
    # clear_refs just before the import; ru_maxrss would carry the parent's peak
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from engine.llm.importer import import_hf_model\n"
        "def kb(field):\n"
        "    line = [x for x in open('/proc/self/status') if x.startswith(field)][0]\n"
        "    return int(line.split()[1])\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = kb('VmRSS')\n"
        "import_hf_model(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "print((kb('VmHWM') - before) / 1000)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(src), str(tmp_path / "b")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    grew_mb = float(out.stdout.strip())
    assert grew_mb < size_mb / 4, f"peak RSS grew {grew_mb:.0f} MB importing {size_mb:.0f} MB"
    assert (tmp_path / "b" / "model.bvm").stat().st_size < size_mb * 1e6 / 8


def _edit_config(
    src: Path, drop: str = "", quant: dict[str, object] | None = None, **changes: object
) -> None:
    cfg = json.loads((src / "config.json").read_text())
    cfg.pop(drop, None)
    cfg.update(changes)
    if quant is None:
        del cfg["quantization_config"]
    else:
        cfg["quantization_config"].update(quant)
    (src / "config.json").write_text(json.dumps(cfg))


def _float_linears(src: Path) -> None:
    """Packed linears -> float32 ternary, one of them no longer ternary."""
    tensors = load_file(str(src / "model.safetensors"))
    for name in [n for n, t in tensors.items() if t.dtype == np.uint8]:
        tensors[name] = unpack_hf_ternary(tensors[name]).astype(np.float32)
    up = tensors["model.layers.1.mlp.up_proj.weight"]
    up *= np.linspace(1, 2, up.shape[1], dtype=np.float32)
    save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("form", "key"),
    [
        ("rope-linear", "rope_parameters.rope_type"),
        ("rope-scaling-linear", "rope_scaling.rope_type"),
        ("use-rms-norm", "quantization_config.use_rms_norm"),
        ("offline-float-not-ternary", "quantization_config.quantization_mode"),
        ("no-quantization-config", "quantization_config"),
        ("lm-head-quantized", "quantization_config.modules_to_not_convert"),
        ("no-tie-key-no-head", "tie_word_embeddings"),
    ],
)
def test_refuses_what_it_cannot_honour(tmp_path: Path, form: str, key: str) -> None:
    """Configs transformers computes in a way the engine cannot are refused before
    anything is written, with an error that names the key (tests/llm/
    test_reference_hf.py checks the forms that are honoured against transformers)."""
    src = hf(tmp_path, packed=form.startswith("offline"))
    linear = {"rope_type": "linear", "factor": 2.0}
    quant: dict[str, object] | None = {}
    changes: dict[str, object] = {}
    if form == "rope-linear":
        changes["rope_parameters"] = linear
    elif form == "rope-scaling-linear":
        changes["rope_scaling"] = linear
    elif form == "use-rms-norm":
        quant = {"use_rms_norm": True}
    elif form == "offline-float-not-ternary":
        _float_linears(src)
    elif form == "no-quantization-config":
        quant = None
    elif form == "lm-head-quantized":  # an explicit list drops transformers' default skip
        quant = {"modules_to_not_convert": []}
    _edit_config(src, "tie_word_embeddings" if form == "no-tie-key-no-head" else "", quant,
                 **changes)  # fmt: skip
    with pytest.raises(InvalidRequestError) as err:
        import_hf_model(src, tmp_path / "out")
    assert key in str(err.value)
    assert not (tmp_path / "out").exists()
