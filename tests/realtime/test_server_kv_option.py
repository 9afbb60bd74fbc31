"""`bitvoice serve --kv-cache-bytes` / `--kv-cache-quant`: the LLM's KV-cache cap and
format from the command line."""

from __future__ import annotations

import pytest

from engine.llm.limits import DEFAULT_KV_CACHE_BYTES
from realtime.server import build_parser, main


def test_kv_cache_bytes_option_defaults_to_the_sdk_cap() -> None:
    assert build_parser().parse_args([]).kv_cache_bytes == DEFAULT_KV_CACHE_BYTES
    assert build_parser().parse_args(["--kv-cache-bytes", "12345"]).kv_cache_bytes == 12345


def test_negative_kv_cache_bytes_is_refused_before_serving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--kv-cache-bytes", "-1"]) == 2
    assert "--kv-cache-bytes must be at least 0" in capsys.readouterr().err


def test_kv_cache_quant_option_reaches_the_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser().parse_args([]).kv_cache_quant == "f16"
    assert build_parser().parse_args(["--kv-cache-quant", "int8"]).kv_cache_quant == "int8"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--kv-cache-quant", "int4"])
