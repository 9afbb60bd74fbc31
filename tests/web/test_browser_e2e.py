"""The web client in a real Chromium against the real server on loopback.

Chromium (Debian's, at /usr/bin/chromium; never a downloaded browser) runs headless with a
fake microphone that plays a speech WAV made by espeak-ng at test time. The server runs in a
subprocess with real components (Whisper STT, a Piper voice, the tiny seeded LLM bundle) and a
temporary BITVOICE_HOME. The page is driven the way a person drives it: clicks and keys.

What is asserted: the transcript of the spoken WAV appears; the reply text streams; reply
audio frames are played (counted in the playback worklet); the speed slider sends
`bitvoice.set_speed` and the server acknowledges it; Stop silences playback within 100 ms
and cancels the reply; Pause holds playback and Resume continues it. A screenshot of the
finished turn is saved to tests/artifacts/web_turn.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
import soundfile as sf
import soxr
from chromium_launch import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"

SPOKEN = "What is the capital of France?"
MAX_WER = 0.5
# Chromium's fake capture device reads the WAV at its own rate; 48 kHz mono PCM16 is the
# format it handles everywhere. Leading silence lets the page start capturing first;
# trailing silence lets the server's VAD see the end of speech (the file plays once).
FAKE_MIC_RATE = 48_000
LEAD_SILENCE_S = 1.0
TRAIL_SILENCE_S = 4.0

SERVER_START_TIMEOUT_S = 240.0  # Whisper, Piper and the LLM load on a shared 2-core machine
TURN_TIMEOUT_MS = 180_000
STOP_DEADLINE_MS = 100.0

# Headless has no person to click: let the playback context start without a gesture
# as well (the page still asks for one, as browsers require).
E2E_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_speech_wav(text: str, path: Path) -> Path:
    """Speak `text` with espeak-ng and write it as 48 kHz mono PCM16 with silence around it."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is missing (apt-get install -y espeak-ng)")
    raw = path.with_suffix(".raw.wav")
    subprocess.run([espeak, "-v", "en-us", "-s", "140", "-w", str(raw), text], check=True)
    audio, rate = sf.read(raw, dtype="float32", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    audio = soxr.resample(audio, rate, FAKE_MIC_RATE).astype(np.float32)
    peak = float(np.max(np.abs(audio))) or 1.0
    audio = audio * (0.7 / peak)
    lead = np.zeros(int(LEAD_SILENCE_S * FAKE_MIC_RATE), dtype=np.float32)
    trail = np.zeros(int(TRAIL_SILENCE_S * FAKE_MIC_RATE), dtype=np.float32)
    sf.write(path, np.concatenate([lead, audio, trail]), FAKE_MIC_RATE, subtype="PCM_16")
    return path


def _server_command(port: int) -> list[str]:
    """The real server, as `bitvoice serve` runs it, on loopback."""
    return [
        sys.executable,
        "-c",
        "import sys; from realtime.server import main; sys.exit(main(sys.argv[1:]))",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def _healthy(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as res:
            body = json.loads(res.read())
            return body if isinstance(body, dict) else None
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the real server on a free loopback port; yields its base URL."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (CI installs it)")
    try:
        import realtime.server  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"realtime.server is not importable: {exc}")
    home = tmp_path_factory.mktemp("bitvoice_home")
    port = _free_port()
    log = home / "server.log"
    env = {**os.environ, "BITVOICE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _server_command(port), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            if _healthy(port) is not None:
                break
            time.sleep(0.5)
        else:
            pytest.fail(
                f"server not healthy in {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}"
            )
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Keep the server's log next to the screenshot: it explains a failure.
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy(log, ARTIFACTS / "web_server.log")


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_speech_wav(SPOKEN, tmp_path_factory.mktemp("fake_mic") / "speech.wav")


@pytest.fixture(scope="module")
def playwright(server: str) -> Iterator[Any]:
    """One Playwright driver for the module (the sync API allows one per thread)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        yield pw


@contextlib.contextmanager
def open_page(playwright: Any, server: str, wav: Path, *, loop: bool) -> Iterator[Any]:
    """Chromium with `wav` as its microphone (played once, or looped), on the web client.

    Fails the test on any uncaught error in the page.
    """
    mic = f"{wav}" if loop else f"{wav}%noloop"
    args = [*E2E_ARGS, f"--use-file-for-fake-audio-capture={mic}"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    try:
        pg = browser.new_page(viewport={"width": 1200, "height": 860})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(server)
        pg.wait_for_function("window.bitvoice && window.bitvoice.state.started", timeout=30_000)
        yield pg
        assert errors == [], f"uncaught errors in the page: {errors}"
    finally:
        browser.close()


@pytest.fixture(scope="module")
def page(playwright: Any, server: str, speech_wav: Path) -> Iterator[Any]:
    """The page with the speech WAV played once as its microphone (hands-free mode)."""
    with open_page(playwright, server, speech_wav, loop=False) as pg:
        yield pg


@pytest.fixture(scope="module")
def measured() -> Iterator[dict[str, Any]]:
    """Figures the tests record; written to tests/artifacts/web_e2e.json at the end."""
    figures: dict[str, Any] = {}
    yield figures
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "web_e2e.json").write_text(json.dumps(figures, indent=2))


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z']+", text.lower()))


def _js(page: Any, expr: str) -> Any:
    return page.evaluate(expr)


def _assistant_items(page: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _js(
        page, "window.bitvoice.conversation.items.filter(i => i.kind === 'assistant')"
    )
    return items


def _heard_transcript(page: Any) -> tuple[str, float]:
    """Wait for the final user transcript; check it against the spoken WAV.
    Whisper base hears espeak-ng's robot voice well but not perfectly ("capital on friends")."""
    page.wait_for_function(
        "window.bitvoice.conversation.items.some(i => i.kind === 'user' && !i.partial)",
        timeout=TURN_TIMEOUT_MS,
    )
    user_text = page.locator("li.msg.user .body").first.inner_text()
    error_rate = jiwer.wer(_words(SPOKEN), _words(user_text))
    assert error_rate <= MAX_WER, f"transcript was {user_text!r} (WER {error_rate:.2f})"
    return user_text, error_rate


def test_a_spoken_turn_end_to_end(page: Any, measured: dict[str, Any]) -> None:
    # A person presses the microphone button; the fake microphone then plays the WAV.
    page.get_by_role("button", name="Start microphone").click()
    page.wait_for_function("window.bitvoice.state.framesSent > 25", timeout=20_000)

    # The final transcript of the spoken WAV appears in the conversation view.
    user_text, error_rate = _heard_transcript(page)

    # The reply text streams: several deltas arrive before the reply is done.
    page.wait_for_function(
        "window.bitvoice.conversation.items.some(i => i.kind === 'assistant' && i.status !== 'in_progress')",
        timeout=TURN_TIMEOUT_MS,
    )
    received = _js(page, "window.bitvoice.received.map(r => r.type)")
    deltas = [t for t in received if t == "response.output_text.delta"]
    assert len(deltas) >= 2, received
    assert received.index("response.output_text.delta") < received.index("response.done")
    (reply,) = _assistant_items(page)
    assert reply["status"] == "completed", reply
    assert reply["text"].strip()
    shown = page.locator("li.msg.assistant .body").first.inner_text()
    assert shown.strip() == reply["text"].strip()

    # Reply audio frames were played: the playback worklet counted them leaving the speaker.
    page.wait_for_function(
        "window.bitvoice.playback && window.bitvoice.playback.queuedSamples === 0"
        " && !window.bitvoice.playback.playing",
        timeout=60_000,
    )
    stats = _js(page, "window.bitvoice.playback")
    frames_in = _js(page, "window.bitvoice.state.framesReceived")
    assert frames_in > 0
    assert stats["chunksPlayed"] >= frames_in
    assert stats["samplesPlayed"] >= 24_000 * 0.5  # at least half a second was heard

    # Latency figures from the server's metrics are shown with the turn.
    page.wait_for_selector("li.msg.assistant .figures")
    figures = page.locator("li.msg.assistant .figures").first.inner_text()
    assert "first audio" in figures

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web_turn.png"), full_page=True)
    measured["spoken_turn"] = {
        "transcript": user_text,
        "wer": error_rate,
        "frames_received": frames_in,
        "chunks_played": stats["chunksPlayed"],
        "samples_played": stats["samplesPlayed"],
        "underruns": stats["underruns"],
        "metrics": reply["metrics"],
    }


def test_speed_pause_resume_and_stop_during_a_reply(page: Any, measured: dict[str, Any]) -> None:
    stop_button = page.get_by_role("button", name="Stop reply")
    done_before = len(_assistant_items(page))

    # A typed question starts a reply long enough to be paused and stopped.
    page.get_by_label("Type a message").fill("Tell me a long story about the sea and the ships.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        f"window.bitvoice.conversation.items.filter(i => i.kind === 'assistant').length > {done_before}",
        timeout=TURN_TIMEOUT_MS,
    )
    page.wait_for_function(
        "window.bitvoice.playback && window.bitvoice.playback.playing"
        " && window.bitvoice.playback.turnPlayed > 2400",
        timeout=TURN_TIMEOUT_MS,
    )

    # The speed slider sends bitvoice.set_speed live; the server acknowledges it.
    slider = page.get_by_label("Speaking speed")
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")  # 1.00 -> 1.20 in steps of 0.05
    page.wait_for_function(
        "window.bitvoice.received.some(r => r.type === 'bitvoice.speed_set')", timeout=10_000
    )
    sent_speeds = _js(
        page,
        "window.bitvoice.sent.filter(m => m.type === 'bitvoice.set_speed').map(m => m.speed)",
    )
    assert sent_speeds and sent_speeds[-1] == pytest.approx(1.2)
    acked = _js(
        page,
        "window.bitvoice.received.filter(r => r.type === 'bitvoice.speed_set').map(r => r.msg.speed)",
    )
    assert acked[-1] == pytest.approx(1.2)

    # Pause holds playback (no sample leaves the worklet) and the server confirms it.
    page.get_by_role("button", name="Pause").click()
    page.wait_for_function(
        "window.bitvoice.received.some(r => r.type === 'bitvoice.paused')", timeout=10_000
    )
    page.wait_for_timeout(100)
    held = _js(page, "window.bitvoice.playback.samplesPlayed")
    page.wait_for_timeout(600)
    assert _js(page, "window.bitvoice.playback.samplesPlayed") == held
    # a toggle's label says what a press does (issue 14: not a label and aria-pressed both)
    assert page.get_by_role("button", name="Resume").is_enabled()

    # Resume continues from where it stopped.
    page.get_by_role("button", name="Resume").click()
    page.wait_for_function(
        f"window.bitvoice.playback.samplesPlayed > {held} + 2400", timeout=15_000
    )
    assert _js(page, "window.bitvoice.received.some(r => r.type === 'bitvoice.resumed')")

    # Stop (keyboard: Escape) silences playback within 100 ms and cancels the reply.
    assert stop_button.is_enabled()
    page.keyboard.press("Escape")
    page.wait_for_function("window.bitvoice.lastStop !== null", timeout=5_000)
    stop = _js(page, "window.bitvoice.lastStop")
    assert stop["acked"], stop
    assert stop["flushedAt"] - stop["clickAt"] < STOP_DEADLINE_MS, stop
    page.wait_for_timeout(500)
    after = _js(page, "window.bitvoice.playback")
    assert after["samplesPlayed"] == stop["samplesPlayedAtFlush"], (stop, after)
    assert after["queuedSamples"] == 0
    sent = _js(page, "window.bitvoice.sent")
    if stop["serverRunning"]:
        # the usual case: the server is still making the reply, so the page cancels it
        assert "response.cancel" in [m["type"] for m in sent]
        page.wait_for_function(
            "window.bitvoice.conversation.items.filter(i => i.kind === 'assistant')"
            ".some(i => i.status === 'cancelled')",
            timeout=15_000,
        )
    else:
        # the demo model ended this reply early (its length follows the transcripts before
        # it) and the server had sent all of it: nothing to cancel, so the page trims the
        # server's history to what was heard instead
        assert "response.cancel" not in [m["type"] for m in sent[-3:]]
        [truncate] = [m for m in sent if m["type"] == "conversation.item.truncate"]
        assert truncate["item_id"] == f"item_resp_{stop['turn']}"
        assert truncate["audio_end_ms"] == stop["heardSamples"] * 1000 // 24_000
        page.wait_for_function(
            "window.bitvoice.received.some(r => r.type === 'conversation.item.truncated')",
            timeout=15_000,
        )
    assert page.locator("li.msg.assistant .status").last.inner_text().startswith("Reply stopped")
    measured["controls"] = {
        "stop_click_to_silence_ms": stop["flushedAt"] - stop["clickAt"],
        "paused_hold_samples": _js(page, "window.bitvoice.playback.samplesPlayed") - held,
        "speed_sent": sent_speeds[-1],
    }


def test_push_to_talk(
    playwright: Any, server: str, speech_wav: Path, measured: dict[str, Any]
) -> None:
    # Looping speech is harmless here: with push to talk only held audio is sent.
    with open_page(playwright, server, speech_wav, loop=True) as page:
        page.get_by_label("Push to talk").check()
        page.wait_for_function(
            "window.bitvoice.received.some(r => r.type === 'session.updated'"
            " && r.msg.session.turn_detection === null)",
            timeout=10_000,
        )
        talk = page.get_by_role("button", name="Hold to talk")
        assert talk.is_visible()
        # Hold Space on the talk button through the lead silence and the sentence.
        talk.focus()
        page.keyboard.down("Space")
        page.wait_for_timeout(int((LEAD_SILENCE_S + 2.8) * 1000))
        page.keyboard.up("Space")
        page.wait_for_function(
            "window.bitvoice.sent.some(m => m.type === 'input_audio_buffer.commit')", timeout=5_000
        )
        sent = _js(page, "window.bitvoice.sent.map(m => m.type)")
        assert sent.index("input_audio_buffer.commit") < sent.index("response.create")
        user_text, error_rate = _heard_transcript(page)
        page.wait_for_function(
            "window.bitvoice.received.some(r => r.type === 'response.created')",
            timeout=TURN_TIMEOUT_MS,
        )
        # No speech was sent between turns: nothing was committed twice, no VAD turn started.
        received = _js(page, "window.bitvoice.received.map(r => r.type)")
        assert "input_audio_buffer.speech_started" not in received
        measured["push_to_talk"] = {"transcript": user_text, "wer": error_rate}
