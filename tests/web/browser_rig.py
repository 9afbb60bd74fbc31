"""What the browser tests of the web client share: the real server in a subprocess, a TCP
relay in front of it that can take it away (an outage, as a restart looks to the page), and
Debian's Chromium opened on the page with its console watched.

Imported by name (like `chromium_launch`): `tests/web` is on sys.path under pytest's
rootdir-relative import mode.
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
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
from chromium_launch import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"  # git-ignored: screenshots and the server's log
AXE_JS = REPO / "web" / "node_modules" / "axe-core" / "axe.min.js"

SERVER_START_TIMEOUT_S = 240.0  # Whisper, the TTS voice and the LLM load on a shared machine
DESKTOP = {"width": 1200, "height": 860}
PHONE = {"width": 390, "height": 844}
FAKE_MIC_RATE = 48_000
# Headless has no person to click: the playback context may start without a gesture
# (a kiosk's Chromium is started the same way).
BROWSER_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
# What Chromium itself logs while the server is away; the page's own code logs nothing.
OUTAGE_CONSOLE = re.compile(r"^WebSocket connection to '.*' failed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as res:
            return isinstance(json.loads(res.read()), dict)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def run_server(
    home: Path,
    port: int,
    *args: str,
    stt_model: str | None = "Systran/faster-whisper-tiny.en",
    log_name: str = "web_client_server.log",
) -> Iterator[int]:
    """`bitvoice serve` on loopback `port` with BITVOICE_HOME=`home`; yields the port.
    Whisper tiny.en keeps the turns short (None: the server's default Whisper); `args` are
    more `bitvoice serve` options. The server's log is kept as ARTIFACTS/`log_name`."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (CI installs it)")
    log = home / "server.log"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from realtime.server import main; sys.exit(main(sys.argv[1:]))",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(["--stt-model", stt_model] if stt_model else []),
        *args,
    ]
    env = {**os.environ, "BITVOICE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(port):
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy in time:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            (ARTIFACTS / log_name).write_bytes(log.read_bytes())


class Outage:
    """A TCP relay to the server on a port of its own. `cut()` drops every connection and
    refuses new ones, as a server that went away (or restarts) does; `restore()` lets
    connections through again. The page is loaded through it, so to the page it *is* the
    server. `close()` stops it."""

    def __init__(self, target_port: int) -> None:
        # The server must allow this relay's origin (`--allow-origin`): to the browser the
        # page comes from the relay's port.
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._down = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="outage-relay", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> int:
        return self._target

    def cut(self) -> None:
        with self._lock:
            self._down = True
            victims, self._open = self._open, set()
        for s in victims:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                down = self._down
            if down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def silent_wav(path: Path, seconds: float = 30.0) -> Path:
    """A WAV of digital silence for Chromium's fake microphone (its default is a beep)."""
    sf.write(path, np.zeros(int(seconds * FAKE_MIC_RATE), dtype=np.float32), FAKE_MIC_RATE)
    return path


def speech_wav(text: str, path: Path, *, lead_s: float = 1.0, trail_s: float = 4.0) -> Path:
    """`text` spoken by espeak-ng as a 48 kHz mono WAV for Chromium's fake microphone, with
    `lead_s` of silence before (the page starts capturing first) and `trail_s` after (the
    server's VAD sees the end of speech; a file played once then stays silent)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is missing (apt-get install -y espeak-ng)")
    raw = path.with_suffix(".raw.wav")
    subprocess.run([espeak, "-v", "en-us", "-s", "140", "-w", str(raw), text], check=True)
    audio, rate = sf.read(raw, dtype="float32", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    audio = soxr.resample(audio, rate, FAKE_MIC_RATE).astype(np.float32)
    audio *= 0.7 / (float(np.max(np.abs(audio))) or 1.0)
    lead = np.zeros(int(lead_s * FAKE_MIC_RATE), dtype=np.float32)
    trail = np.zeros(int(trail_s * FAKE_MIC_RATE), dtype=np.float32)
    sf.write(path, np.concatenate([lead, audio, trail]), FAKE_MIC_RATE, subtype="PCM_16")
    return path


class PageErrors:
    """Uncaught errors and console errors of a page (`allowed` patterns excepted)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def console(self, msg: Any) -> None:
        if msg.type == "error" and not any(p.search(msg.text) for p in self.allowed):
            self.seen.append(f"console: {msg.text}")


@contextlib.contextmanager
def browser(
    playwright: Any,
    *,
    mic: Path | None = None,
    loop: bool = False,
    allow_mic: bool = True,
) -> Iterator[Any]:
    """Chromium with `mic` as its microphone (played once, or looped); `allow_mic=False`
    denies the microphone as a person clicking Block would."""
    args = [a for a in BROWSER_ARGS if allow_mic or a != "--use-fake-ui-for-media-stream"]
    if mic is not None:
        args.append(f"--use-file-for-fake-audio-capture={mic}{'' if loop else '%noloop'}")
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    try:
        yield b
    finally:
        b.close()


@contextlib.contextmanager
def page_on(
    b: Any,
    url: str,
    *,
    viewport: dict[str, int] = DESKTOP,
    color_scheme: str = "light",
    wait_started: bool = True,
    allowed: tuple[re.Pattern[str], ...] = (),
) -> Iterator[Any]:
    """A page of browser `b` on `url`; fails the test on an uncaught error or a console
    error the page logged (other than `allowed`). Waits for the session to start."""
    context = b.new_context(viewport=viewport, color_scheme=color_scheme, accept_downloads=True)
    pg = context.new_page()
    errors = PageErrors()
    errors.allowed = list(allowed)
    pg.on("pageerror", lambda exc: errors.seen.append(f"uncaught: {exc}"))
    pg.on("console", errors.console)
    pg.goto(url)
    if wait_started:
        pg.wait_for_function("window.bitvoice && window.bitvoice.state.started", timeout=60_000)
    try:
        yield pg
        assert errors.seen == [], f"errors in the page: {errors.seen}"
    finally:
        context.close()


def axe_violations(pg: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run `make web-deps` (npm ci in web/)")
    pg.add_script_tag(path=str(AXE_JS))
    result = pg.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(pg: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    pg.screenshot(path=str(path))
    return path
