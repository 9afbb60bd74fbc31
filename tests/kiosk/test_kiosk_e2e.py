"""`bitvoice kiosk` end to end: the real command in a subprocess against a real
`bitvoice serve` subprocess (the seeded demo LLM, Whisper tiny.en, the offline TTS voice) on
loopback, with the kiosk's file mode standing in for the microphone and loudspeaker (there is
no sound card here) and real recorded speech from pytest-audioeval.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest
import soundfile as sf

from engine.stt import TINY_EN_STT_MODEL

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TOKEN = "kiosk-test-token"
LATENCY = re.compile(r"resp_\d+: latency (-?\d+) ms \(end of speech -> first reply audio")


def audioeval_clip(name: str) -> Path:
    import pytest_audioeval

    return Path(next(iter(pytest_audioeval.__path__))) / "samples" / "audio" / "en" / f"{name}.wav"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BITVOICE_TOKEN", "BITVOICE_URL")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


class Lines:
    """Every line a process writes, read by a thread (so its pipe never fills up)."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.seen.append(line)
            self._new.put(line)
        self._new.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in {timeout} s:\n{self.text}") from None
            if line is None:
                raise AssertionError(f"the process ended without {pattern!r}:\n{self.text}")
            if found := re.search(pattern, line):
                return found

    @property
    def text(self) -> str:
        self._thread.join(0.5)
        return "".join(self.seen)


class Running:
    """A subprocess and the lines it writes (stdout and stderr together)."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)

    def finish(self, sig: int | None = None, timeout: float = 30) -> int:
        """Send `sig` (if still running), wait (killing after `timeout`), close the pipe."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        _ = self.lines.text  # the reader reached the end of the pipe
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def start_server(home: Path, port: int = 0, token: str | None = None) -> tuple[Running, int]:
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", str(port)]
    cmd += ["--stt-model", TINY_EN_STT_MODEL, "--first-audio-budget", "0"]
    cmd += ["--token", token] if token else []
    server = Running(cmd, _env(BITVOICE_HOME=str(home)))
    try:
        found = server.lines.wait_for(r"listening on http://127\.0\.0\.1:(\d+)", 180)
    except BaseException:
        server.finish(signal.SIGKILL)
        raise
    return server, int(found.group(1))


def kiosk_cmd(port: int, inp: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "engine.cli", "kiosk", "--url", f"ws://127.0.0.1:{port}",
        "--input", str(inp), "--output", str(out), "--max-tokens", "12", "--retry-for", "30",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A `bitvoice serve --token` on loopback, as a kiosk on a LAN would meet it; its port."""
    server, port = start_server(tmp_path_factory.mktemp("bvhome"), token=TOKEN)
    try:
        yield port
    finally:
        server.finish(signal.SIGTERM)


def loud_ranges(pcm: np.ndarray, rate: int, threshold: int = 500) -> tuple[float, float]:
    """First and last time (s) where the audio is louder than `threshold`."""
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > threshold)[0]
    assert loud.size, "the output is silent"
    return loud[0] / rate, loud[-1] / rate


@pytest.mark.parametrize("form", ["as-recorded", "44k-stereo"])
def test_file_mode_runs_a_conversation_and_writes_the_reply_where_it_was_heard(
    served: int, tmp_path: Path, form: str
) -> None:
    clip = audioeval_clip("hello_world")  # 16 kHz mono float
    if form == "44k-stereo":  # the kiosk converts to what the session declares it takes
        from engine.audio import resample

        speech, sr = sf.read(clip, dtype="float32")
        wide = resample(speech, sr, 44_100)
        clip = tmp_path / "hello_44k_stereo.wav"
        sf.write(clip, np.stack([wide, wide * 0.5], axis=1), 44_100, subtype="PCM_16")
    out = tmp_path / "out.wav"
    cmd = kiosk_cmd(served, clip, out, "--token", TOKEN)
    run = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    log = run.stderr
    assert run.returncode == 0, log
    assert re.search(r"heard item_\d+: '.*hello", log, re.IGNORECASE), log
    assert "server metrics from end of turn" in log and "completed" in log
    [latency] = LATENCY.findall(log)
    assert int(latency) > 0  # the reply came after the words ended, on the kiosk's clock
    pcm, rate = sf.read(out, dtype="int16")
    assert rate == 24_000
    speech_s = sf.info(clip).duration
    first, last = loud_ranges(pcm, rate)
    # the reply sits on the timeline where it was heard: after the user stopped speaking,
    # and it lasts (a reply of a few words, not a click)
    assert first > speech_s and last - first > 0.3
    assert len(pcm) / rate >= speech_s  # the output covers the whole input


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_a_refused_token_ends_with_exit_code_3_and_one_clear_line(
    served: int, tmp_path: Path, token: str | None
) -> None:
    cmd = kiosk_cmd(served, audioeval_clip("hello_world"), tmp_path / "out.wav")
    cmd += ["--token", token] if token else []
    run = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stderr
    assert "refused" in run.stderr and "HTTP 401" in run.stderr
    assert "Traceback" not in run.stderr


def test_ctrl_c_exits_cleanly_and_keeps_what_was_played(served: int, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    kiosk = Running(
        kiosk_cmd(served, audioeval_clip("counting"), out, "--token", TOKEN, "--turns", "9"), _env()
    )
    try:
        kiosk.lines.wait_for("connected: session", 60)
        time.sleep(1.0)
    finally:
        code = kiosk.finish(signal.SIGINT)
    log = kiosk.lines.text
    assert code == 130, log
    assert "Traceback" not in log and "stopped (Ctrl-C)" in log
    pcm, rate = sf.read(out, dtype="int16")
    assert rate == 24_000 and len(pcm) >= rate * 0.5  # the timeline up to the interrupt


def test_the_kiosk_reconnects_by_itself_after_a_server_restart(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # hello world, a pause long enough for the reply, hello world again
    speech, sr = sf.read(audioeval_clip("hello_world"), dtype="float32")
    gap = np.zeros(int(sr * 6), dtype=np.float32)
    inp = tmp_path / "twice.wav"
    sf.write(inp, np.concatenate([speech, gap, speech]), sr, subtype="PCM_16")
    home = tmp_path_factory.mktemp("bvhome")
    server, port = start_server(home)
    servers = [server]
    kiosk = Running(kiosk_cmd(port, inp, tmp_path / "out.wav", "--turns", "2"), _env())
    try:
        kiosk.lines.wait_for(r"resp_1: completed", 120)
        server.finish(signal.SIGTERM)  # a restart: the server goes, a new one takes the port
        kiosk.lines.wait_for(r"reconnecting in", 30)
        servers.append(start_server(home, port=port)[0])
        code = kiosk.finish(timeout=180)
    finally:
        if kiosk.proc.poll() is None:
            kiosk.finish(signal.SIGKILL)
        for s in servers:
            if s.proc.poll() is None:
                s.finish(signal.SIGTERM)
    log = kiosk.lines.text
    assert code == 0, log
    assert len(re.findall(r"connected: session", log)) == 2, log
    assert len(LATENCY.findall(log)) == 2, log  # a reply from each server
    assert "Traceback" not in log


def test_speaking_over_a_reply_cuts_it_and_the_next_reply_plays(
    served: int, tmp_path: Path
) -> None:
    # a question, then (while its long reply plays) three seconds of counting: a real
    # interruption; the kiosk stops the first reply and plays the answer to the second turn.
    # The counting starts 2 s after the question, ~1.4 s into the reply: the server's echo
    # guard must have learnt by then that this client has no echo path (0.6 s of loud reply
    # with a quiet microphone: realtime/echo/limits.py). Before it could, speech had to be
    # 6 dB over the reply itself for 2 s, and this test failed whenever the counting was not.
    hello, sr = sf.read(audioeval_clip("hello_world"), dtype="float32")
    counting, _ = sf.read(audioeval_clip("counting"), dtype="float32")
    gap = np.zeros(int(sr * 2.0), dtype=np.float32)
    inp = tmp_path / "interrupt.wav"
    sf.write(inp, np.concatenate([hello, gap, counting]), sr, subtype="PCM_16")
    out = tmp_path / "out.wav"
    cmd = kiosk_cmd(served, inp, out, "--token", TOKEN, "--turns", "1")
    cmd[cmd.index("--max-tokens") + 1] = "48"  # a reply (~11 s) that outlasts the counting
    run = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    log = run.stderr
    assert run.returncode == 0, log
    # the flush stopped the first reply (what a kiosk drops after it: tests/kiosk/test_core.py)
    assert re.search(r"resp_1: cancelled \(turn_detected\), [\d.]+ s played", log), log
    assert re.search(r"resp_2: completed", log), log
    assert len(LATENCY.findall(log)) == 2, log
    assert "Traceback" not in log


@pytest.mark.parametrize("rates", [{16_000, 24_000}, {48_000}], ids=["wire-rates", "48k-only"])
async def test_device_mode_plays_the_reply_on_the_speaker_and_closes_the_devices(
    served: int, rates: set[int], caplog: pytest.LogCaptureFixture
) -> None:
    """`DeviceAudio` over a stand-in sound card (there is none here) that keeps real time;
    a card that only takes 48 kHz makes both directions go through the resamplers."""
    from fake_sounddevice import FakeSoundDevice

    from engine.audio import decode_pcm16
    from kiosk.app import Kiosk, KioskConfig
    from kiosk.core import KioskCore, SessionOptions
    from kiosk.devices import DeviceAudio

    mic_rate = min(rates)
    card = FakeSoundDevice(
        decode_pcm16(audioeval_clip("hello_world").read_bytes(), target_rate=mic_rate), rates
    )
    core = KioskCore(SessionOptions(max_output_tokens=12))
    url = f"ws://127.0.0.1:{served}"
    kiosk = Kiosk(KioskConfig(url=url, token=TOKEN, retry_for_s=30), core)
    caplog.set_level(logging.INFO, logger="bitvoice.kiosk")

    async def stop_after_the_reply() -> None:
        while not (core.completed_replies >= 1 and core.player.idle):  # noqa: ASYNC110  (state the kiosk owns)
            await asyncio.sleep(0.05)
        kiosk.request_stop()

    async with asyncio.timeout(120):
        await asyncio.gather(kiosk.run(DeviceAudio(None, None, sd=card)), stop_after_the_reply())
    assert sorted(card.opened) == sorted(card.closed) == ["input", "output"]
    assert any(LATENCY.search(r.getMessage()) for r in caplog.records), caplog.text
    played = np.concatenate(card.speaker)
    assert np.abs(played.astype(np.int32)).max() > 1000  # the reply came out of the speaker
