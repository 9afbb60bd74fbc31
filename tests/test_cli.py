"""The `bitvoice` command line, run in-process through `main(argv)` and once as a console
program, against a temporary store and the tiny seeded model."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.llm import store
from engine.llm.importer import import_hf_model
from engine.llm.tiny import write_tiny_hf_model


@pytest.fixture(scope="module")
def hf_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny", seed=0)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BITVOICE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("command", ["pull", "import", "list", "chat", "serve", "bench"])
def test_help_of_every_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: bitvoice {command}" in capsys.readouterr().out


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("pull", "import", "list", "chat", "serve", "bench"):
        assert command in out


def test_import_then_list(home: Path, hf_src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert "local/tiny" not in capsys.readouterr().out
    assert main(["import", str(hf_src), "--as", "local/tiny"]) == 0
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "local/tiny" in out and "model" in out


def test_errors_are_one_line_and_non_zero(
    home: Path, hf_src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(hf_src), "--as", "bad id"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid store ID" in err
    assert main(["chat", "nobody/none"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bitvoice pull nobody/none" in err
    assert main(["import", "/no/such/dir", "--as", "a/b"]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["import", "somewhere"])  # --as is required
    assert exit_.value.code == 2


def test_pull_from_a_local_hugging_face_cache(
    home: Path, hf_src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "hf-cache"
    repo = cache / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("1" * 40)
    shutil.copytree(hf_src, repo / "snapshots" / ("1" * 40))
    code = main(["pull", "org/tiny", "--cache-dir", str(cache), "--offline"])
    assert code == 0, capsys.readouterr().err
    assert store.resolve("org/tiny").is_dir()


def test_chat_streams_replies_with_new_and_quit(home: Path, hf_src: Path) -> None:
    store.publish("local/tiny", lambda d: import_hf_model(hf_src, d))
    stdin = io.StringIO("Hello\n/new\nAgain\nq\nnever read\n")
    stdout = io.StringIO()
    code = main(
        ["chat", "local/tiny", "--max-tokens", "5", "--temperature", "0"],
        stdin=stdin,
        stdout=stdout,
    )
    assert code == 0
    lines = stdout.getvalue().split("\n")
    assert "(new chat)" in lines
    assert len(lines) == 4  # reply, "(new chat)", reply, trailing ""


def test_bench_quick_llm(home: Path, hf_src: Path) -> None:
    store.publish("local/tiny", lambda d: import_hf_model(hf_src, d))
    out = io.StringIO()
    assert (
        main(["bench", "--model", "local/tiny", "--tokens", "8", "--repeat", "1"], stdout=out) == 0
    )
    text = out.getvalue()
    assert "kernel" in text and "decode_tok_s" in text


def test_console_entry_point(home: Path) -> None:
    # The real program: `python -m engine.cli` as the console script runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "chat", "nobody/none"],
        capture_output=True,
        text=True,
        env={**os.environ, "BITVOICE_HOME": str(home)},
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("bitvoice chat: error: unknown model 'nobody/none'")
