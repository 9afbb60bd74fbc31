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
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jiwer
import pytest
from browser_rig import (
    ARTIFACTS,
    BROWSER_ARGS,
    CHROMIUM,
    free_port,
    run_server,
)
from browser_rig import (
    speech_wav as spoken_wav,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


SPOKEN = "What is the capital of France?"
MAX_WER = 0.5
# Leading silence lets the page start capturing first; trailing silence lets the server's
# VAD see the end of speech (the file plays once).
LEAD_SILENCE_S = 1.0
TRAIL_SILENCE_S = 4.0

TURN_TIMEOUT_MS = 180_000
REPLY_TOKENS = 40
STOP_DEADLINE_MS = 100.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the real server (its default Whisper: the WER is measured) on a free loopback
    port; yields its base URL. Its log is kept next to the screenshot: it explains a failure."""
    try:
        import realtime.server  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"realtime.server is not importable: {exc}")
    home = tmp_path_factory.mktemp("bitvoice_home")
    with run_server(home, free_port(), stt_model=None, log_name="web_server.log") as port:
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fake_mic") / "speech.wav"
    return spoken_wav(SPOKEN, path, lead_s=LEAD_SILENCE_S, trail_s=TRAIL_SILENCE_S)


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
    args = [*BROWSER_ARGS, f"--use-file-for-fake-audio-capture={mic}"]
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


def _cap_replies(page: Any, tokens: int) -> None:
    """Cap the session's replies (a test-only setting the page has no control for): the demo
    model otherwise talks for ~35 s, all of it played out in real time."""
    msg = {"type": "session.update", "session": {"sampling": {"max_output_tokens": tokens}}}
    assert _js(page, f"window.bitvoice.socket.send({json.dumps(msg)})")
    page.wait_for_function(
        "window.bitvoice.received.some(r => r.type === 'session.updated'"
        f" && r.msg.session.sampling.max_output_tokens === {tokens})",
        timeout=10_000,
    )


def test_a_spoken_turn_end_to_end(page: Any, measured: dict[str, Any]) -> None:
    # ~8 s of reply: long enough for the next test to pause, resume and stop it
    _cap_replies(page, REPLY_TOKENS)
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
