"""The capture worklet in a real Chromium: what it makes from a known microphone signal.

Chromium's fake microphone plays a 440 Hz tone (48 kHz WAV). The page is served by a plain
static file server with no WebSocket behind it, so this also checks what a person reads when
the server cannot be reached. Frames are read through `window.bitvoice.captureTap`.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from chromium_launch import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WEB = Path(__file__).resolve().parents[2] / "web"
TONE_HZ = 440.0
CAPTURE_RATE = 16_000
FRAME_SAMPLES = 320  # 20 ms at 16 kHz


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def static_url() -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(WEB))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _tone_wav(path: Path) -> Path:
    rate = 48_000
    t = np.arange(rate * 6) / rate
    sf.write(path, 0.5 * np.sin(2 * np.pi * TONE_HZ * t), rate, subtype="PCM_16")
    return path


def test_capture_makes_16k_pcm16_frames_of_the_microphone_signal(
    static_url: str, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    wav = _tone_wav(tmp_path / "tone.wav")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(static_url)

            # No realtime server here: the page says so in words and plans a retry.
            status = page.locator("#conn")
            page.wait_for_function(
                "document.getElementById('conn').dataset.state === 'waiting'", timeout=10_000
            )
            assert "Cannot reach the server" in status.inner_text()
            assert "Retrying in" in status.inner_text()
            assert page.get_by_role("button", name="Retry now").is_visible()

            page.evaluate("window.bitvoice.captureTap = []")
            page.get_by_role("button", name="Start microphone").click()
            page.wait_for_function("window.bitvoice.captureTap.length >= 100", timeout=15_000)
            t0 = page.evaluate("performance.now()")
            n0 = page.evaluate("window.bitvoice.captureTap.length")
            page.wait_for_timeout(1000)
            n1 = page.evaluate("window.bitvoice.captureTap.length")
            elapsed_s = (page.evaluate("performance.now()") - t0) / 1000
            frames = page.evaluate("window.bitvoice.captureTap")
            level = float(page.get_by_role("meter").get_attribute("aria-valuenow") or "-100")
            # live: the toggle's label offers Mute (and sets no aria-pressed on top of it)
            assert page.get_by_role("button", name="Mute").get_attribute("aria-pressed") is None
            assert errors == []
        finally:
            browser.close()

    # 20 ms frames of 320 samples, produced in real time (50 a second).
    assert {len(f) for f in frames} == {FRAME_SAMPLES}
    rate = (n1 - n0) / elapsed_s
    assert 40 <= rate <= 60, f"{rate:.1f} frames/s"
    # The signal is the tone, resampled to 16 kHz: its spectrum peaks at 440 Hz.
    pcm = np.concatenate([np.asarray(f, dtype=np.float32) for f in frames[-50:]]) / 32768.0
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    peak_hz = float(np.argmax(spectrum)) * CAPTURE_RATE / len(pcm)
    assert abs(peak_hz - TONE_HZ) < 5.0, peak_hz
    # Noise suppression (on, as the page asks) damps a steady tone a lot; it is still far
    # above silence and never clipped.
    rms = float(np.sqrt(np.mean(pcm**2)))
    assert 0.005 < rms < 0.6, rms
    # The level meter shows it too.
    assert level > -50, level
