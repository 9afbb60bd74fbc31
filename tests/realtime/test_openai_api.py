"""The OpenAI-compatible REST routes, driven by the official `openai` client (only its
`base_url` changed) against the real server on loopback (`rt_server`: the seeded demo LLM,
Whisper tiny.en, the offline TTS voice), and by raw requests for every error path."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from rt_helpers import extra_server
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from realtime.openai import limits as oa_limits
from realtime.openai.chat import StopScanner
from realtime.server import RealtimeServer


def _audioeval_en() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pytest_audioeval")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio" / "en"


CLIPS = _audioeval_en()
TOKEN = "openai-token"


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def base(server: RealtimeServer) -> str:
    return f"http://127.0.0.1:{server.port}/v1"


@pytest.fixture
async def client(rt_server: RealtimeServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=base(rt_server), api_key="unused", max_retries=0) as c:
        yield c


# ---- models and chat ----------------------------------------------------------------------------


async def test_models_list(client: openai.AsyncOpenAI, rt_server: RealtimeServer) -> None:
    ids = [m.id async for m in client.models.list()]
    assert rt_server.engines.llm.model_id in ids
    assert "whisper-1" in ids and "tts-1" in ids
    model = await client.models.retrieve("whisper-1")
    assert model.id == "whisper-1" and model.owned_by == "bitvoice"


async def test_chat_completion_with_usage_seed_and_max_tokens(
    client: openai.AsyncOpenAI, rt_server: RealtimeServer
) -> None:
    model = rt_server.engines.llm.model_id

    async def ask(seed: int) -> Any:
        return await client.chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say something."},
            ],
            temperature=1.0,
            max_tokens=6,
            seed=seed,
        )

    first, again, other = await ask(7), await ask(7), await ask(8)
    choice = first.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = first.usage
    assert usage is not None and 0 < usage.completion_tokens <= 6
    assert usage.prompt_tokens > 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # the seed makes sampling repeatable; another seed samples something else
    assert again.choices[0].message.content == choice.message.content
    assert other.choices[0].message.content != choice.message.content
    # max_completion_tokens is the newer name of the same cap
    capped = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Go on."}],
        max_completion_tokens=2,
        temperature=0,
    )
    assert capped.usage is not None and capped.usage.completion_tokens <= 2


async def test_streamed_chat_matches_the_whole_answer_and_reports_usage(
    client: openai.AsyncOpenAI, rt_server: RealtimeServer
) -> None:
    model = rt_server.engines.llm.model_id
    messages: Any = [{"role": "user", "content": "Tell me a story."}]
    whole = await client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=12
    )
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,
        temperature=0,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas: list[str] = []
    finish: list[str] = []
    usage: Any = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            deltas.append(c.delta.content or "")
            if c.finish_reason:
                finish.append(c.finish_reason)
    assert "".join(deltas) == whole.choices[0].message.content
    assert finish == [whole.choices[0].finish_reason]
    assert whole.usage is not None and usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


async def test_stop_strings_cut_the_reply_in_both_shapes(
    client: openai.AsyncOpenAI, rt_server: RealtimeServer
) -> None:
    model = rt_server.engines.llm.model_id
    messages: Any = [{"role": "user", "content": "Tell me a story."}]
    full = await client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=24
    )
    text = full.choices[0].message.content or ""
    assert len(text) > 8, text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    want = text[: text.index(stop)]
    cut = await client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=24, stop=[stop]
    )
    assert cut.choices[0].message.content == want
    assert cut.choices[0].finish_reason == "stop"
    stream = await client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=24, stop=stop, stream=True
    )
    got = "".join([c.delta.content or "" async for ch in stream for c in ch.choices])
    assert got == want


def test_stop_scanner_holds_back_what_may_become_a_stop_string() -> None:
    s = StopScanner(["END", "xy"])
    assert s.feed("abc E") == "abc "  # "E" may start "END"
    assert s.feed("N") == ""
    assert s.feed("Dmore") == ""  # "END" complete: nothing from it on
    assert s.stopped and s.flush() == ""
    t = StopScanner(["END"])
    assert t.feed("a E") == "a " and t.feed("x") == "Ex" and t.feed("EN") == ""
    assert t.flush() == "EN" and not t.stopped


# ---- audio ----------------------------------------------------------------------------------------


async def test_transcription_of_a_recorded_clip(client: openai.AsyncOpenAI) -> None:
    clip = CLIPS / "hello_world.wav"
    reference = words((CLIPS / "hello_world.txt").read_text())
    with clip.open("rb") as f:
        result = await client.audio.transcriptions.create(model="whisper-1", file=f)
    assert words(result.text) == reference
    with clip.open("rb") as f:
        text = await client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="text", language="en", prompt="greeting"
        )
    assert words(str(text)) == reference
    with clip.open("rb") as f:
        verbose = await client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json"
        )
    info = sf.info(str(clip))
    assert words(verbose.text) == reference and verbose.language == "en"
    assert abs(verbose.duration - info.frames / info.samplerate) < 0.05


async def test_speech_is_read_back_by_whisper(client: openai.AsyncOpenAI) -> None:
    said = "The weather is nice today."
    wav = await client.audio.speech.create(
        model="tts-1", voice="alloy", input=said, response_format="wav"
    )
    data = wav.content
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 24_000 and samples.size > rate // 2
    heard = await client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", data, "audio/wav")
    )
    assert {"weather", "nice", "today"} <= set(words(heard.text)), heard.text
    pcm = await client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello.", response_format="pcm"
    )
    assert len(pcm.content) % 2 == 0 and len(pcm.content) > 24_000 // 4
    flac = await client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello.", response_format="flac", speed=1.5
    )
    decoded, rate = sf.read(io.BytesIO(flac.content), dtype="int16")
    assert rate == 24_000 and decoded.size > 0


# ---- errors, raw ---------------------------------------------------------------------------------


def _err(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


async def test_error_paths_are_openai_shaped(rt_server: RealtimeServer) -> None:
    model = rt_server.engines.llm.model_id
    url = base(rt_server)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        chat = "/chat/completions"
        headers = {"Content-Type": "application/json"}
        _err(await http.post(chat, content=b"{not json", headers=headers), 400, "invalid_json")
        error = _err(await http.post(chat, json={"model": model}), 400)
        assert error["param"] == "messages" and error["type"] == "invalid_request_error"
        bad_type = {"model": model, "messages": [], "max_tokens": "ten"}
        assert _err(await http.post(chat, json=bad_type), 400)["param"] == "max_tokens"
        no_user = {"model": model, "messages": [{"role": "assistant", "content": "hi"}]}
        assert _err(await http.post(chat, json=no_user), 400)["param"] == "messages"
        huge = b'{"model": "' + b"x" * oa_limits.MAX_JSON_BODY_BYTES + b'"}'
        _err(await http.post(chat, content=huge, headers=headers), 413, "request_too_large")

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(oa_limits.MAX_JSON_BODY_BYTES // 65536 + 2):
                yield b" " * 65536

        _err(await http.post(chat, content=chunked(), headers=headers), 413)
        unknown = {"model": "no/such-model", "messages": [{"role": "user", "content": "hi"}]}
        assert _err(await http.post(chat, json=unknown), 404, "model_not_found")["param"] == "model"
        speech = {"model": "tts-1", "input": "hi", "voice": "nobody-at-all"}
        assert _err(await http.post("/audio/speech", json=speech), 400)["param"] == "voice"
        speech = {"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "aac"}
        _err(await http.post("/audio/speech", json=speech), 400, "unsupported_value")
        speech = {"model": "tts-1", "input": "hi", "voice": "alloy", "speed": 9}
        assert _err(await http.post("/audio/speech", json=speech), 400)["param"] == "speed"
        form = {"model": "whisper-1"}
        _err(await http.post("/audio/transcriptions", data=form), 400)
        files = {"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}
        _err(await http.post("/audio/transcriptions", data={"model": "nope"}, files=files), 404)
        _err(await http.post("/audio/transcriptions", data=form, files=files), 400)
    # the official client raises its typed errors for the same answers
    async with openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0) as c:
        with pytest.raises(openai.NotFoundError):
            await c.chat.completions.create(
                model="no/such-model", messages=[{"role": "user", "content": "hi"}]
            )


async def test_token_and_origin_rules_hold_for_rest(rt_server: RealtimeServer) -> None:
    async with extra_server(rt_server, token=TOKEN) as server:
        url = base(server)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            _err(await http.get("/models"), 401, "invalid_api_key")
            bad = {"Authorization": "Bearer wrong"}
            _err(await http.get("/models", headers=bad), 401, "invalid_api_key")
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert (await http.get("/models", headers=good)).status_code == 200
            evil = {**good, "Origin": "https://evil.example"}
            _err(await http.get("/models", headers=evil), 403, "origin_forbidden")
            # the web client's routes are as they were: /healthz and GET /v1/voices open
            assert (await http.get("/voices")).status_code == 200
        # an upgrade on a REST path: refused (no WebSocket there), never a server error
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{server.port}/v1/voices?token={TOKEN}"):
                pass
        assert info.value.response.status_code == 403
        async with openai.AsyncOpenAI(base_url=url, api_key="wrong", max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError):
                await c.models.list()
        async with openai.AsyncOpenAI(base_url=url, api_key=TOKEN, max_retries=0) as c:
            assert [m.id async for m in c.models.list()]


async def _until_not(
    status: int, call: Callable[[], Awaitable[httpx.Response]], tries: int = 200
) -> httpx.Response:
    """`call()` again (every 0.1 s) while it answers `status`: a client that closed a stream
    early is seen gone by the server asynchronously."""
    for _ in range(tries):
        resp = await call()
        if resp.status_code != status:
            break
        await asyncio.sleep(0.1)
    return resp


# ---- management -------------------------------------------------------------------------------


async def test_a_second_speech_request_is_429_while_one_streams(rt_server: RealtimeServer) -> None:
    long_text = " ".join(["This sentence is here to keep the speech engine busy."] * 6)
    async with httpx.AsyncClient(base_url=base(rt_server), timeout=60) as http:
        body = {"model": "tts-1", "input": long_text, "voice": "alloy", "response_format": "pcm"}
        async with http.stream("POST", "/audio/speech", json=body) as first:
            assert first.status_code == 200
            chunks = first.aiter_bytes()
            assert await anext(chunks)
            second = await http.post("/audio/speech", json={**body, "input": "Hi."})
            _err(second, 429, "admission_rejected")
            assert int(second.headers["Retry-After"]) >= 1
        # the first one closed early: once the server saw it go (asynchronously), the engine
        # takes the next request
        again = await _until_not(
            429, lambda: http.post("/audio/speech", json={**body, "input": "Hi."})
        )
        assert again.status_code == 200 and again.content


async def test_model_swap_is_409_while_a_generation_runs(rt_server: RealtimeServer) -> None:
    model = rt_server.engines.llm.model_id
    async with httpx.AsyncClient(base_url=base(rt_server), timeout=60) as http:
        _err(await http.post("/bitvoice/model", json={"model": "no/such-model"}), 404)
        chat = {
            "model": model,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 400,
            "stream": True,
        }
        async with http.stream("POST", "/chat/completions", json=chat) as running:
            lines = running.aiter_lines()
            assert (await anext(lines)).startswith("data: ")
            busy = await http.post("/bitvoice/model", json={"model": model})
            _err(busy, 409, "conflict")
        # the stream closed early: 409 until the server saw it go (asynchronously)
        swapped = await _until_not(409, lambda: http.post("/bitvoice/model", json={"model": model}))
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["id"] == model
        health = (await http.get(f"http://127.0.0.1:{rt_server.port}/healthz")).json()
        assert health["model"] == model and health["notice"] == rt_server.engines.notice
        assert (health["notice"] is not None) == (model == "local/tiny-demo")
        after = await http.post(
            "/chat/completions", json={**chat, "stream": False, "max_tokens": 3}
        )
        assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"]


async def test_voices_list_register_and_delete(rt_server: RealtimeServer) -> None:
    async with httpx.AsyncClient(base_url=base(rt_server), timeout=60) as http:
        listed = (await http.get("/voices")).json()["voices"]
        assert listed
        _err(await http.delete("/voices/NoSuchVoice1"), 404, "voice_not_found")
        _err(await http.delete(f"/voices/{listed[0]}"), 400)  # a built-in voice stays
        tone = (np.sin(np.arange(24_000 * 2) * 0.05) * 8000).astype("<i2")
        buf = io.BytesIO()
        sf.write(buf, tone, 24_000, format="WAV")
        files = {"file": ("me.wav", buf.getvalue(), "audio/wav")}
        made = await http.post("/voices", data={"name": "TestVoice1"}, files=files)
        if made.status_code == 400:  # a TTS backend without voice cloning says so
            assert "clon" in made.json()["error"]["message"].lower()
            return
        assert made.status_code == 201, made.text
        assert "TestVoice1" in (await http.get("/voices")).json()["voices"]
        assert (await http.delete("/voices/TestVoice1")).status_code == 200
        assert "TestVoice1" not in (await http.get("/voices")).json()["voices"]


async def test_health_still_answers_during_a_streamed_reply(rt_server: RealtimeServer) -> None:
    """The REST routes share the loop with the voice loop: nothing of theirs blocks it."""
    model = rt_server.engines.llm.model_id
    async with httpx.AsyncClient(base_url=base(rt_server), timeout=60) as http:
        chat = {
            "model": model,
            "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": 64,
            "stream": True,
        }
        async with http.stream("POST", "/chat/completions", json=chat) as running:
            lines = running.aiter_lines()
            await anext(lines)
            health = await asyncio.wait_for(
                http.get(f"http://127.0.0.1:{rt_server.port}/healthz"), 10
            )
            assert health.status_code == 200
            rest = [line async for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert all(json.loads(x[6:])["object"] == "chat.completion.chunk" for x in rest[:-1])
