"""`bitvoice kiosk`'s command line without a server: bad arguments, bad files, no server, no
sound card. Each is one clear line and its exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.app import normalize_url
from kiosk.errors import KioskError

REPO = Path(__file__).resolve().parents[2]


def kiosk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BITVOICE_TOKEN", "BITVOICE_URL")}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "kiosk", *args, "--no-keys"],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def clip() -> Path:
    import pytest_audioeval

    root = Path(next(iter(pytest_audioeval.__path__)))
    return root / "samples" / "audio" / "en" / "hello_world.wav"


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("ws://pi.local:8765", "ws://pi.local:8765/v1/realtime"),
        ("wss://box:443/", "wss://box:443/v1/realtime"),
        ("http://10.0.0.2:8765/v1/realtime?token=t", "ws://10.0.0.2:8765/v1/realtime?token=t"),
        ("https://box/custom", "wss://box/custom"),
    ],
)
def test_server_urls_get_the_documented_path_and_a_websocket_scheme(given: str, url: str) -> None:
    assert normalize_url(given) == url


@pytest.mark.parametrize("bad", ["ftp://box", "box:8765", "ws://"])
def test_a_url_that_is_no_server_is_refused(bad: str) -> None:
    with pytest.raises(KioskError):
        normalize_url(bad)


def test_input_without_output_is_a_command_line_error(tmp_path: Path) -> None:
    run = kiosk("--input", str(clip()))
    assert run.returncode == 2 and "--input and --output go together" in run.stderr


def test_an_input_that_is_not_audio_is_one_clear_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    run = kiosk("--input", str(text), "--output", str(tmp_path / "o.wav"))
    assert run.returncode == 1 and run.stderr.startswith("bitvoice kiosk: error: cannot use")
    assert "Traceback" not in run.stderr


def test_no_server_is_retried_with_backoff_then_given_up(tmp_path: Path) -> None:
    out = tmp_path / "o.wav"
    run = kiosk(
        "--url",
        "ws://127.0.0.1:9",
        "--retry-for",
        "1",
        "--input",
        str(clip()),
        "--output",
        str(out),
    )
    assert run.returncode == 1, run.stderr
    assert run.stderr.count("reconnecting in") >= 2  # it retried, waiting longer each time
    assert "giving up" in run.stderr and "Traceback" not in run.stderr


def test_without_a_sound_card_the_kiosk_says_so() -> None:
    sd = pytest.importorskip("sounddevice")  # raises OSError without libportaudio2: a failure
    if len(sd.query_devices()):
        pytest.skip("this machine has audio devices")
    listed = kiosk("--list-devices")
    assert listed.returncode == 0 and "no audio devices found" in listed.stdout
    run = kiosk("--retry-for", "1")
    assert (
        run.returncode == 1 and "no input device" in run.stderr and "--list-devices" in run.stderr
    )
    assert "Traceback" not in run.stderr
