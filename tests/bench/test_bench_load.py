"""bench/bench_load.py --quick with tiny settings: one conversation, real speech clips, the
demo LLM and Whisper tiny.en; the table and the JSON come out and the latencies are measured.
(No timing is asserted: the numbers are the lead's to take on a quiet machine.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_load
from engine.stt import TINY_EN_STT_MODEL


def test_quick_load_bench_measures_first_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BITVOICE_HOME", str(tmp_path / "home"))
    out = tmp_path / "load.json"
    rc = bench_load.main(
        [
            "--quick",
            "--levels",
            "1",
            "--seconds",
            "4",
            "--period",
            "3",
            "--max-tokens",
            "8",
            "--stt-model",
            TINY_EN_STT_MODEL,
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    (row,) = result["levels"]
    assert row["conversations"] == 1 and row["clips"] >= 1 and not row["failures"]
    assert row["client_first_audio_s"] and row["server_first_audio_s"]
    assert row["client_p90_ms"] is not None and row["server_p90_ms"] is not None
    assert result["machine"]["logical_cpus"] and result["engines"]["model"]
    printed = capsys.readouterr().out
    assert "largest N with p90 first audio" in printed and "client p50" in printed
