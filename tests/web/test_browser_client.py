"""The web client's state, views and accessibility in a real Chromium against the real server.

Issue 14: each of its seven state bugs has a test here that failed on the client before the
fix (bug 4's on the server before its fix), and each view (desktop, phone 390x844, kiosk) is
driven, screenshotted (tests/artifacts/web_*.png, git-ignored) and checked with axe-core.
The server runs in a subprocess (Whisper tiny.en, the offline voice, the seeded demo LLM);
an `Outage` relay in front of it takes it away and brings it back, as a restart looks to the
page. Chromium's fake microphone plays espeak-ng speech or silence. A console error or an
uncaught exception in the page fails the test (`browser_rig.page_on`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from browser_rig import (
    DESKTOP,
    FAKE_MIC_RATE,
    OUTAGE_CONSOLE,
    PHONE,
    Outage,
    axe_violations,
    browser,
    free_port,
    page_on,
    run_server,
    screenshot,
    silent_wav,
    speech_wav,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TURN_TIMEOUT_MS = 120_000
# The demo LLM strings words together up to its token cap: a short cap keeps replies (and
# the tests) to a few seconds of audio; a long one keeps a reply going for a disconnect.
SHORT_REPLY_TOKENS = 12
QUESTION = "What is the capital of France?"
LONG_SPEECH = "The quick brown fox jumps over the lazy dog, and then it runs far away."
VIEWS = {"desktop": DESKTOP, "phone": PHONE}
# The state bugs and settings are the same code in every layout: each test drives one view,
# the views alternating, so both layouts are clicked through without a browser launch per
# view and test (about a minute of the suite). The layouts themselves have their own tests.


@pytest.fixture(scope="module")
def relay() -> Iterator[Outage]:
    """The relay in front of the server (made first: the server must allow its origin)."""
    r = Outage(free_port())
    yield r
    r.close()


@pytest.fixture(scope="module")
def server_port(tmp_path_factory: pytest.TempPathFactory, relay: Outage) -> Iterator[int]:
    # two conversations at most: the busy-server test opens a third
    home = tmp_path_factory.mktemp("bitvoice_home")
    args = ["--max-conversations", "2", "--first-audio-budget", "0"]
    with run_server(home, relay.target, *args, "--allow-origin", relay.origin) as port:
        yield port


@pytest.fixture(scope="module")
def url(server_port: int) -> str:
    return f"http://127.0.0.1:{server_port}/"


@pytest.fixture
def outage(relay: Outage, server_port: int) -> Iterator[Outage]:
    """The relay, up at the start of the test and again after it."""
    relay.restore()
    yield relay
    relay.restore()


@pytest.fixture(scope="module")
def pw(server_port: int) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fake_mic")
    return {
        "silence": silent_wav(d / "silence.wav"),
        "question": speech_wav(QUESTION, d / "question.wav"),
        "long": speech_wav(LONG_SPEECH, d / "long.wav", trail_s=6.0),
    }


# ---- helpers ---------------------------------------------------------------------------------


def js(pg: Any, expr: str) -> Any:
    return pg.evaluate(expr)


def count_received(pg: Any, kind: str) -> int:
    n: int = js(pg, f"window.bitvoice.received.filter(r => r.type === '{kind}').length")
    return n


def short_replies(pg: Any, tokens: int = SHORT_REPLY_TOKENS, **session: Any) -> None:
    """Cap this session's replies (the page has no control for it: a test-only setting),
    and set any other `session` fields the same way."""
    before = count_received(pg, "session.updated")
    session["sampling"] = {"max_output_tokens": tokens}
    msg = {"type": "session.update", "session": session}
    assert js(pg, f"window.bitvoice.socket.send({json.dumps(msg)})")
    pg.wait_for_function(
        f"window.bitvoice.received.filter(r => r.type === 'session.updated').length > {before}"
    )


def wait_done(pg: Any, before: int) -> dict[str, Any]:
    """Wait for the next `response.done` after `before` of them; returns its response."""
    pg.wait_for_function(
        f"window.bitvoice.received.filter(r => r.type === 'response.done').length > {before}",
        timeout=TURN_TIMEOUT_MS,
    )
    done: dict[str, Any] = js(
        pg, "window.bitvoice.received.filter(r => r.type === 'response.done').at(-1).msg.response"
    )
    return done


def wait_quiet(pg: Any) -> None:
    """Wait until the reply audio has played out."""
    pg.wait_for_function(
        "!window.bitvoice.playback || (window.bitvoice.playback.queuedSamples === 0"
        " && !window.bitvoice.playback.playing)",
        timeout=TURN_TIMEOUT_MS,
    )


def ask(pg: Any, text: str) -> dict[str, Any]:
    """Type `text`, press Send, wait for the reply to finish; returns its response."""
    before = count_received(pg, "response.done")
    pg.get_by_label("Type a message").fill(text)
    pg.get_by_role("button", name="Send").click()
    return wait_done(pg, before)


def go_down(pg: Any, outage: Outage) -> None:
    outage.cut()
    pg.wait_for_function("window.bitvoice.state.connState === 'waiting'", timeout=10_000)


def retry_now(pg: Any) -> None:
    """Press "Retry now" if it is there (the page may be reconnecting on its own already)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    retry = pg.get_by_role("button", name="Retry now")
    with contextlib.suppress(PlaywrightTimeout):
        if retry.is_visible():
            retry.click(timeout=2_000)


def come_back(pg: Any, outage: Outage, *, click: bool = True) -> None:
    outage.restore()
    if click:
        retry_now(pg)
    pg.wait_for_function("window.bitvoice.state.started", timeout=60_000)


def hold_to_talk(pg: Any, ms: int) -> None:
    pg.get_by_label("Push to talk").check()
    pg.wait_for_function(
        "window.bitvoice.received.some(r => r.type === 'session.updated'"
        " && r.msg.session.turn_detection === null)",
        timeout=10_000,
    )
    talk = pg.get_by_role("button", name="Hold to talk")
    talk.focus()
    pg.keyboard.down("Space")
    pg.wait_for_timeout(ms)
    pg.keyboard.up("Space")


def watch(pg: Any) -> None:
    """Record in the page what a person would see change: partial transcripts, the heard
    mark of the reply, the agent states and the loudest voice level drawn."""
    js(
        pg,
        """(() => {
        const seen = {partials: [], heard: [], heardBusy: [], states: [], maxVoiceDb: -100};
        window.__seen = seen;
        new MutationObserver(() => {
          const p = document.querySelector('li.msg.user.partial .body');
          if (p && p.textContent && p.textContent !== '…') seen.partials.push(p.textContent);
          const h = document.querySelector('li.msg.assistant .heard');
          if (h) seen.heard.push(h.textContent.length);
          if (h) seen.heardBusy.push(h.closest('li').getAttribute('aria-busy'));
        }).observe(document.getElementById('conversation'),
                   {subtree: true, childList: true, characterData: true});
        const agent = document.getElementById('agent');
        new MutationObserver(() => {
          if (seen.states.at(-1) !== agent.dataset.state) seen.states.push(agent.dataset.state);
        }).observe(agent, {attributes: true, attributeFilter: ['data-state']});
        setInterval(() => {
          seen.maxVoiceDb = Math.max(seen.maxVoiceDb, window.bitvoice.state.voiceDb);
        }, 20);
      })()""",
    )


@contextlib.contextmanager
def relayed_page(
    pw: Any, outage: Outage, mic: Path, viewport: dict[str, int], query: str = ""
) -> Iterator[Any]:
    """The page loaded through the outage relay (so a test can take the server away), with
    `mic` as its microphone; Chromium's own lines about the lost socket are allowed."""
    with (
        browser(pw, mic=mic) as b,
        page_on(b, outage.url + query, viewport=viewport, allowed=(OUTAGE_CONSOLE,)) as pg,
    ):
        yield pg


def in_view(pg: Any, locator: Any, viewport: dict[str, int]) -> bool:
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    return bool(
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and box["y"] + box["height"] <= viewport["height"]
    )


# ---- the seven state bugs --------------------------------------------------------------------


@pytest.mark.parametrize("view", ["phone"])
def test_bug1_a_reply_after_a_reconnect_gets_its_own_bubble(
    pw: Any, outage: Outage, wavs: dict[str, Path], view: str
) -> None:
    with relayed_page(pw, outage, wavs["silence"], VIEWS[view]) as pg:
        short_replies(pg)
        ask(pg, "Hello")
        first = pg.locator("li.msg.assistant").first.inner_text()
        go_down(pg, outage)
        come_back(pg, outage)
        short_replies(pg)
        done = ask(pg, "Hello again")
        assert done["id"] == "resp_1"  # the new connection's ids restart
        bubbles = pg.locator("li.msg.assistant")
        assert bubbles.count() == 2
        assert bubbles.nth(0).inner_text() == first
        kinds = js(
            pg,
            "[...document.querySelectorAll('#conversation > li')].map(li =>"
            " ['divider', 'user', 'assistant'].find(k => li.classList.contains(k)))",
        )
        assert kinds == ["user", "assistant", "divider", "user", "assistant"]


@pytest.mark.parametrize("view", ["desktop"])
def test_bug2_a_disconnect_leaves_no_reply_streaming_or_speaking(
    pw: Any, outage: Outage, wavs: dict[str, Path], view: str
) -> None:
    with relayed_page(pw, outage, wavs["silence"], VIEWS[view]) as pg:
        pg.get_by_label("Type a message").fill("Tell me a long story about the sea.")
        pg.get_by_role("button", name="Send").click()
        pg.wait_for_function("window.bitvoice.state.framesReceived > 5", timeout=TURN_TIMEOUT_MS)
        assert pg.locator("li.msg.assistant.streaming").count() == 1
        go_down(pg, outage)
        pg.wait_for_timeout(1500)  # well into the outage

        def nothing_stale() -> None:
            assert pg.locator("li.msg.streaming").count() == 0
            assert pg.locator("li.msg[aria-busy='true']").count() == 0, js(
                pg,
                "[...document.querySelectorAll('li.msg')].map(li => li.cloneNode(false).outerHTML)",
            )
            assert pg.locator("#reply-state").inner_text() != "Speaking"
            assert pg.get_by_role("button", name="Stop reply").is_disabled()

        nothing_stale()
        assert pg.locator("#agent-text").inner_text() == "Offline"
        status = pg.locator("li.msg.assistant .status").last.inner_text()
        assert "lost connection" in status
        come_back(pg, outage)
        nothing_stale()


@pytest.mark.parametrize("view", ["phone"])
def test_bug3_send_is_off_while_disconnected_and_nothing_is_lost(
    pw: Any, outage: Outage, wavs: dict[str, Path], view: str
) -> None:
    with relayed_page(pw, outage, wavs["silence"], VIEWS[view]) as pg:
        short_replies(pg)
        go_down(pg, outage)
        send = pg.get_by_role("button", name="Send")
        assert send.is_disabled()
        assert "Not connected" in pg.locator("#typed-state").inner_text()
        box = pg.get_by_label("Type a message")
        box.fill("Are you there?")
        box.press("Enter")
        pg.wait_for_timeout(300)
        assert pg.locator("li.msg.user").count() == 0  # not shown as sent
        assert box.input_value() == "Are you there?"  # and not thrown away
        come_back(pg, outage)
        short_replies(pg)
        assert send.is_enabled()
        assert pg.locator("#typed-state").inner_text() == ""
        before = count_received(pg, "response.done")
        box.press("Enter")
        assert wait_done(pg, before)["status"] == "completed"
        assert pg.locator("li.msg.user .body").inner_text() == "Are you there?"


@pytest.mark.parametrize("view", ["desktop"])
def test_bug4_esc_while_the_words_are_transcribed_keeps_them(
    pw: Any, url: str, wavs: dict[str, Path], view: str
) -> None:
    # looping speech is harmless: with push to talk only held audio is sent
    with (
        browser(pw, mic=wavs["question"], loop=True) as b,
        page_on(b, url, viewport=VIEWS[view]) as pg,
    ):
        hold_to_talk(pg, 3800)
        pg.wait_for_function(
            "window.bitvoice.received.some(r => r.type === 'response.created')",
            timeout=TURN_TIMEOUT_MS,
        )
        # Stop as soon as the reply exists: Whisper is still transcribing the question.
        pg.keyboard.press("Escape")
        # (the page silences its player first, then tells the server)
        pg.wait_for_function(
            "window.bitvoice.sent.some(m => m.type === 'response.cancel')", timeout=5_000
        )
        done = wait_done(pg, 0)
        assert (done["status"], done["reason"]) == ("cancelled", "client_cancelled")
        assert count_received(pg, "conversation.item.input_audio_transcription.completed") == 1
        you = pg.locator("li.msg.user")
        pg.wait_for_function(
            "document.querySelector('li.msg.user')?.getAttribute('aria-busy') === 'false'",
            timeout=10_000,
        )
        words = you.locator(".body").inner_text().lower()
        assert "capital" in words or "france" in words, words


@pytest.mark.parametrize("view", ["phone"])
def test_bug5_push_to_talk_held_in_silence_leaves_no_bubble(
    pw: Any, url: str, wavs: dict[str, Path], view: str
) -> None:
    with browser(pw, mic=wavs["silence"]) as b, page_on(b, url, viewport=VIEWS[view]) as pg:
        hold_to_talk(pg, 1200)
        done = wait_done(pg, 0)
        heard = js(
            pg,
            "window.bitvoice.received.filter(r => r.type.startsWith('conversation.item')).map(r => r.msg)",
        )
        assert done["reason"] == "empty_transcript", heard
        pg.wait_for_timeout(200)
        assert pg.locator("#conversation li").count() == 0
        assert pg.locator("#reply-state").inner_text() == "Nothing was heard."
        assert pg.locator("#empty").is_visible()


@pytest.mark.parametrize("view", ["desktop"])
def test_bug6_errors_show_once_and_go_when_their_cause_does(
    pw: Any, url: str, wavs: dict[str, Path], view: str
) -> None:
    with browser(pw, mic=wavs["silence"]) as b, contextlib.ExitStack() as first:
        first.enter_context(page_on(b, url))
        with (
            page_on(b, url),
            page_on(b, url, wait_started=False, viewport=VIEWS[view]) as third,
        ):
            # the server holds two conversations: the third tab is refused, again and again
            third.wait_for_function(
                "window.bitvoice.received.filter(r => r.type === 'error'"
                " && r.msg.error.code === 'admission_rejected').length >= 3",
                timeout=60_000,
            )
            assert third.locator("#errors .error").count() == 1
            first.close()  # a tab closes: room for the third
            retry_now(third)
            third.wait_for_function("window.bitvoice.state.started", timeout=60_000)
            assert third.locator("#errors .error").count() == 0
    # a denied microphone, clicked twice: one explanation, not two
    with browser(pw, allow_mic=False) as b, page_on(b, url, viewport=VIEWS[view]) as pg:
        mic = pg.get_by_role("button", name="Start microphone")
        for _ in range(2):
            mic.click()
            pg.wait_for_selector("#errors .error[data-code='microphone']")
            pg.wait_for_function("!document.getElementById('mic').disabled")
        assert pg.locator("#errors .error").count() == 1


@pytest.mark.parametrize("view", ["phone"])
def test_bug7_pause_is_off_while_nothing_plays(
    pw: Any, url: str, wavs: dict[str, Path], view: str
) -> None:
    with browser(pw, mic=wavs["silence"]) as b, page_on(b, url, viewport=VIEWS[view]) as pg:
        short_replies(pg, 24)
        pause = pg.get_by_role("button", name="Pause")
        assert pause.is_disabled()
        pg.get_by_label("Type a message").fill("Hello")
        pg.get_by_role("button", name="Send").click()
        pg.wait_for_function(
            "window.bitvoice.playback && window.bitvoice.playback.playing", timeout=TURN_TIMEOUT_MS
        )
        assert pause.is_enabled()
        wait_done(pg, 0)
        wait_quiet(pg)
        pg.wait_for_function("document.getElementById('pause').disabled", timeout=5_000)
        assert not js(pg, "window.bitvoice.state.paused")


# ---- what people expect from a voice UI -------------------------------------------------------


def test_voice_turn_shows_partials_agent_states_voice_level_and_heard_words(
    pw: Any, url: str, wavs: dict[str, Path]
) -> None:
    with browser(pw, mic=wavs["long"]) as b, page_on(b, url) as pg:
        # a long end-of-turn silence leaves Whisper room for partials on a loaded machine
        vad = {"type": "server_vad", "silence_duration_ms": 1500}
        short_replies(pg, 24, turn_detection=vad)
        watch(pg)
        pg.get_by_role("button", name="Start microphone").click()
        pg.wait_for_function(
            "window.bitvoice.state.agent === 'speaking'"
            " && document.querySelector('li.msg.assistant .heard')",
            timeout=TURN_TIMEOUT_MS,
        )
        screenshot(pg, "web_desktop.png")
        wait_done(pg, 0)
        wait_quiet(pg)
        pg.wait_for_function("window.bitvoice.state.agent === 'listening'", timeout=10_000)
        seen = js(pg, "window.__seen")
        final = pg.locator("li.msg.user .body").inner_text()
        assert "quick" in final.lower() or "away" in final.lower(), final
        # live partial transcripts: the bubble showed each one before the final transcript
        sent = js(
            pg,
            "window.bitvoice.received.filter(r => r.type ==="
            " 'conversation.item.input_audio_transcription.delta').map(r => r.msg.delta)",
        )
        assert sent, "the server sent no partial transcript"
        assert set(sent) <= set(seen["partials"]), (sent, seen["partials"])
        # the agent's state followed the turn, and its voice was drawn while it spoke
        states = seen["states"]
        order = [states.index(s) for s in ("listening", "thinking", "speaking")]
        assert order == sorted(order), states
        assert seen["maxVoiceDb"] > -50, seen["maxVoiceDb"]
        # the heard words moved along with the audio, then the mark went with the audio
        heard = seen["heard"]
        assert len(set(heard)) >= 3 and heard == sorted(heard), heard
        assert pg.locator("li.msg.assistant .heard").count() == 0
        # a screen reader hears the reply once, not every move of the mark
        assert set(seen["heardBusy"]) == {"true"}, seen["heardBusy"]
        pg.wait_for_function(
            "document.querySelector('li.msg.assistant').getAttribute('aria-busy') === 'false'",
            timeout=2_000,
        )


def test_speaking_over_a_reply_holds_it_at_once_then_cuts_it_and_is_answered(
    pw: Any, url: str, tmp_path: Path
) -> None:
    """Barge-in as the page lives it (issue 13): a question, then, while its long reply
    plays, more speech. The server holds the reply (`bitvoice.audio.hold`: the page goes silent
    at once, its queue kept), then drops it (`flush`) and answers the new words. Chromium's
    fake microphone has no echo path, as a browser with its own echo cancellation has not."""
    question = sf.read(speech_wav(QUESTION, tmp_path / "q.wav", trail_s=3.5))[0]
    over = sf.read(speech_wav(LONG_SPEECH, tmp_path / "over.wav", lead_s=0.0))[0]
    mic = tmp_path / "barge_in.wav"
    sf.write(mic, np.concatenate([question, over]).astype(np.float32), FAKE_MIC_RATE)
    with browser(pw, mic=mic) as b, page_on(b, url) as pg:
        short_replies(pg, 64)  # ~15 s of reply: still playing when the second speech starts
        js(
            pg,
            """(() => {
            window.__played = [];
            setInterval(() => {
              const p = window.bitvoice.playback;
              if (p) window.__played.push([performance.now(), p.samplesPlayed]);
            }, 10);
          })()""",
        )
        pg.get_by_role("button", name="Start microphone").click()
        pg.wait_for_function(
            "window.bitvoice.received.some(r => r.type === 'bitvoice.audio.flush')",
            timeout=TURN_TIMEOUT_MS,
        )
        received = js(pg, "window.bitvoice.received.map(r => [r.type, r.t, r.msg])")
        kinds = [k for k, _, _ in received]
        hold_at = next(t for k, t, _ in received if k == "bitvoice.audio.hold")
        flush_at = next(t for k, t, _ in received if k == "bitvoice.audio.flush")
        assert kinds.index("bitvoice.audio.hold") < kinds.index("bitvoice.audio.flush")
        # silent from the hold on: the worklet played nothing more (one 10 ms tick of slack)
        played = js(pg, "window.__played")
        during = [n for t, n in played if hold_at + 30 <= t <= flush_at]
        assert during and max(during) - min(during) == 0, (during[:3], during[-3:])
        # the reply was cut for the user's turn, and the new words are answered
        pg.wait_for_function(
            "window.bitvoice.received.filter(r => r.type === 'response.created').length >= 2",
            timeout=TURN_TIMEOUT_MS,
        )
        first = js(
            pg,
            "window.bitvoice.received.find(r => r.type === 'response.done').msg.response",
        )
        assert first["status"] == "cancelled" and first["reason"] == "turn_detected", first
        pg.wait_for_function(
            "document.querySelectorAll('li.msg.user').length >= 2", timeout=TURN_TIMEOUT_MS
        )
        # the words said over the reply (one item, or two where the VAD ended a turn at the
        # comma's pause) are the user's, not the reply's
        pg.wait_for_function(
            "(() => { const n = t => window.bitvoice.received.filter(r => r.type === t).length;"
            " return n('conversation.item.input_audio_transcription.completed') >= 2"
            " && n('conversation.item.input_audio_transcription.completed')"
            " === n('input_audio_buffer.committed') && !window.bitvoice.state.userSpeaking; })()",
            timeout=TURN_TIMEOUT_MS,
        )
        said = " ".join(pg.locator("li.msg.user .body").all_inner_texts()[1:]).lower()
        assert "fox" in said or "quick" in said or "lazy" in said or "away" in said, said


@pytest.mark.parametrize("view", ["phone"])
def test_settings_and_devices_survive_a_reload(
    pw: Any, url: str, wavs: dict[str, Path], view: str
) -> None:
    with browser(pw, mic=wavs["silence"]) as b, page_on(b, url, viewport=VIEWS[view]) as pg:
        pg.get_by_label("Speaking speed").focus()
        for _ in range(4):
            pg.keyboard.press("ArrowRight")  # 1.00 -> 1.20
        voices = js(pg, "window.bitvoice.state.voices")
        assert voices, "the server lists no voice"
        pg.get_by_label("Voice", exact=True).select_option(voices[-1])
        pg.get_by_label("System prompt").fill("Answer in one word.")
        pg.get_by_role("button", name="Apply").click()
        pg.wait_for_function(
            "document.getElementById('instructions-state').textContent === 'Applied.'"
        )
        pg.get_by_label("Push to talk").check()
        # microphone and speaker: the browser's devices, listed once the microphone is allowed
        pg.get_by_role("button", name="Start microphone").click()
        pg.wait_for_function("document.getElementById('mic-device').options.length > 2")
        mic_id = js(pg, "document.getElementById('mic-device').options[2].value")
        pg.get_by_label("Microphone device").select_option(mic_id)
        pg.wait_for_function(
            "window.bitvoice.audio.stream && window.bitvoice.audio.stream.getAudioTracks()[0]"
            f".getSettings().deviceId === {json.dumps(mic_id)}"
        )
        assert js(pg, "document.getElementById('speaker-device').options.length") > 1
        speaker_id = js(pg, "document.getElementById('speaker-device').options[1].value")
        pg.get_by_label("Speaker").select_option(speaker_id)
        pg.wait_for_function(
            f"window.bitvoice.audio.playCtx && window.bitvoice.audio.playCtx.sinkId === {json.dumps(speaker_id)}"
        )
        pg.wait_for_timeout(200)  # the speed slider's debounce

        pg.reload()
        pg.wait_for_function("window.bitvoice && window.bitvoice.state.started", timeout=60_000)
        assert pg.get_by_label("Speaking speed").input_value() == "1.2"
        assert pg.locator("#speed-out").inner_text() == "1.20\u00d7"
        assert pg.get_by_label("System prompt").input_value() == "Answer in one word."
        assert pg.get_by_label("Push to talk").is_checked()
        assert pg.get_by_role("button", name="Hold to talk").is_visible()
        assert pg.get_by_label("Microphone device").input_value() in ("", mic_id)
        assert js(pg, "window.bitvoice.audio.micDeviceId") == mic_id
        assert js(pg, "window.bitvoice.audio.sinkId") == speaker_id
        # the server got them too: the first session.update carries them, the voice follows
        first = js(pg, "window.bitvoice.sent.find(m => m.type === 'session.update')")["session"]
        assert first["speed"] == pytest.approx(1.2)
        assert first["instructions"] == "Answer in one word."
        assert first["turn_detection"] is None
        pg.wait_for_function(
            f"window.bitvoice.state.session.voice === {json.dumps(voices[-1])}", timeout=10_000
        )
        assert pg.get_by_label("Voice", exact=True).input_value() == voices[-1]


def test_a_remembered_microphone_that_is_gone_falls_back_to_the_default(
    pw: Any, url: str, wavs: dict[str, Path]
) -> None:
    with browser(pw, mic=wavs["silence"]) as b, page_on(b, url) as pg:
        gone = {"micDevice": "a-microphone-unplugged-since"}
        js(pg, f"localStorage.setItem('bitvoice.settings', {json.dumps(json.dumps(gone))})")
        pg.reload()
        pg.wait_for_function("window.bitvoice && window.bitvoice.state.started", timeout=60_000)
        assert js(pg, "window.bitvoice.audio.micDeviceId") == gone["micDevice"]
        pg.get_by_role("button", name="Start microphone").click()
        pg.get_by_role("button", name="Mute").wait_for()
        assert pg.locator("#mic-state").inner_text() == "Listening"
        assert pg.locator("#errors .error").count() == 0
        assert js(pg, "window.bitvoice.audio.micDeviceId") == ""


@pytest.mark.parametrize("view", ["desktop"])
def test_event_log_clear_and_export(pw: Any, url: str, wavs: dict[str, Path], view: str) -> None:
    with browser(pw, mic=wavs["silence"]) as b, page_on(b, url, viewport=VIEWS[view]) as pg:
        short_replies(pg)
        log = pg.locator("#devlog")
        assert not log.is_visible()  # hidden by default
        pg.get_by_role("button", name="Show event log").click()
        assert log.is_visible()
        assert pg.get_by_role("button", name="Hide event log").is_visible()
        ask(pg, "Hello")
        entries = pg.locator("#devlog-list li").all_inner_texts()
        assert "→ response.create" in entries and "← response.done" in entries, entries
        with pg.expect_download() as dl:
            pg.get_by_role("button", name="Export").click()
        data = json.loads(Path(dl.value.path()).read_text())
        assert [i["role"] for i in data["items"]] == ["user", "assistant"]
        assert data["items"][0]["text"] == "Hello"
        assert data["items"][1]["text"] == pg.locator("li.msg.assistant .body").inner_text()
        pg.get_by_role("button", name="Clear").click()
        assert pg.locator("#conversation li").count() == 0
        assert pg.locator("#empty").is_visible()


# ---- phone and kiosk ------------------------------------------------------------------------


def test_phone_first_screen_has_the_main_action_stop_and_the_conversation(
    pw: Any, url: str, wavs: dict[str, Path]
) -> None:
    with browser(pw, mic=wavs["silence"]) as b, page_on(b, url, viewport=PHONE) as pg:
        short_replies(pg)
        ask(pg, "Hello")
        assert js(pg, "document.scrollingElement.scrollTop") == 0
        for control in (
            pg.get_by_role("button", name="Start microphone"),
            pg.get_by_role("button", name="Stop reply"),
            pg.locator("li.msg.assistant"),
            pg.get_by_label("Type a message"),
        ):
            assert in_view(pg, control, PHONE), control
        conv = pg.locator("#conversation").bounding_box()
        assert conv is not None and conv["height"] >= 300, conv
        screenshot(pg, "web_phone.png")
        assert axe_violations(pg) == []


@pytest.mark.parametrize("view", ["desktop", "phone"])
def test_kiosk_listens_at_once_captions_both_sides_and_recovers_alone(
    pw: Any, outage: Outage, wavs: dict[str, Path], view: str
) -> None:
    viewport = PHONE if view == "phone" else DESKTOP
    with relayed_page(pw, outage, wavs["question"], viewport, query="?kiosk") as pg:
        short_replies(pg)
        watch(pg)
        # no click anywhere: it listens on its own
        pg.wait_for_function("window.bitvoice.state.framesSent > 10", timeout=20_000)
        assert pg.locator("#agent-text").inner_text() == "Listening"
        assert not pg.get_by_label("Type a message").is_visible()
        assert not pg.locator("#controls").is_visible()
        talk = pg.locator("#talk")
        box = talk.bounding_box()
        assert box is not None and box["width"] >= 150 and box["height"] >= 75, box
        assert in_view(pg, talk, viewport)
        pg.wait_for_function(
            "document.getElementById('caption-user').textContent.length > 3"
            " && document.getElementById('caption-assistant').textContent.length > 3"
            " && window.bitvoice.state.agent === 'speaking'",
            timeout=TURN_TIMEOUT_MS,
        )
        assert talk.inner_text() == "Stop"
        assert in_view(pg, pg.locator("#caption-assistant"), viewport)
        screenshot(pg, f"web_kiosk_{view}.png")
        assert axe_violations(pg) == []
        wait_done(pg, 0)
        seen = js(pg, "window.__seen")
        assert seen["maxVoiceDb"] > -50 and "thinking" in seen["states"], seen
        heard = pg.locator("#caption-user").inner_text().lower()
        assert "capital" in heard or "france" in heard, heard
        # the server goes away and comes back: the kiosk is listening again, untouched
        go_down(pg, outage)
        pg.wait_for_function(
            "document.getElementById('agent-text').textContent === 'Offline'", timeout=5_000
        )
        sent = js(pg, "window.bitvoice.state.framesSent")
        come_back(pg, outage, click=False)
        pg.wait_for_function(
            f"window.bitvoice.state.framesSent > {sent} + 10"
            " && window.bitvoice.state.agent === 'listening'",
            timeout=20_000,
        )


# ---- accessibility ----------------------------------------------------------------------------


def test_toggles_live_regions_tab_order_and_dark_mode(
    pw: Any, url: str, wavs: dict[str, Path]
) -> None:
    with (
        browser(pw, mic=wavs["silence"]) as b,
        page_on(b, url, viewport=DESKTOP, color_scheme="dark") as pg,
    ):
        short_replies(pg, 24)
        # the keyboard reaches the microphone before the text box
        order = []
        for _ in range(12):
            pg.keyboard.press("Tab")
            order.append(js(pg, "document.activeElement.id || document.activeElement.className"))
        assert order[0] == "skip"
        assert order.index("mic") < order.index("typed-text"), order
        # dark mode: native controls follow, and the focused skip link is readable
        assert "dark" in js(pg, "getComputedStyle(document.documentElement).colorScheme")
        pg.keyboard.press("Shift+Tab")  # back to the start
        pg.locator("a.skip").focus()
        assert axe_violations(pg) == []
        # toggles: the label says what a press does; no aria-pressed on top of it
        mic = pg.get_by_role("button", name="Start microphone")
        mic.click()
        mute = pg.get_by_role("button", name="Mute")
        mute.wait_for()
        assert mute.get_attribute("aria-pressed") is None
        # live regions announce changes, not every audio frame or ping
        js(
            pg,
            """(() => {
            window.__writes = {reply: 0, conn: 0};
            const count = (id, key) => new MutationObserver((list) => {
              window.__writes[key] += list.length;
            }).observe(document.getElementById(id), {childList: true, characterData: true,
                                                     subtree: true});
            count('reply-state', 'reply');
            count('conn-text', 'conn');
          })()""",
        )
        ask(pg, "Tell me about the sea.")
        wait_quiet(pg)
        pause = pg.get_by_role("button", name="Pause")
        assert pause.get_attribute("aria-pressed") is None
        frames = js(pg, "window.bitvoice.state.framesReceived")
        writes = js(pg, "window.__writes")
        assert frames > 20 and writes["reply"] <= 6 and writes["conn"] == 0, (frames, writes)
        assert axe_violations(pg) == []
        screenshot(pg, "web_desktop_dark.png")
