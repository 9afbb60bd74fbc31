"""POST /v1/audio/transcriptions (Whisper) and POST /v1/audio/speech (the TTS engine).

Transcriptions: a multipart upload (`file`, `model`, optional `language`, `prompt`,
`response_format` json | text | verbose_json). The file may be WAV, FLAC or OGG of any common
rate and width (converted to 16 kHz mono), or raw PCM16 16 kHz. `prompt` is accepted and not
used: our STT session takes no prompt.

Speech: `input`, `voice`, `speed` (our range, 0.5-2.0), `response_format` wav | pcm (24 kHz
mono s16le) | flac | opus (Ogg) | mp3. `wav` and `pcm` are streamed while they are made (the
WAV header says "unknown length", as a live stream's does); flac, opus and mp3 are encoded
when the audio is whole. OpenAI's voice names map to the server's default voice (see
`voice_for`); our own voice names are used as they are.
"""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from engine.errors import BitvoiceError, InvalidRequestError
from realtime import limits as rt_limits
from realtime.messages import OPENAI_VOICES  # each is the server's default voice here
from realtime.openai import limits
from realtime.openai.body import read_body, read_form
from realtime.openai.context import Context
from realtime.openai.errors import APIError, from_bitvoice
from realtime.openai.schema import SpeechRequest, decode

__all__ = [
    "OPENAI_VOICES",
    "SPEECH_MODELS",
    "TRANSCRIPTION_MODELS",
    "speech",
    "transcriptions",
    "voice_for",
]

# Model names an OpenAI client sends, accepted beside our own IDs (/v1/models lists them).
TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
SPEECH_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "bitvoice-tts")
_MEDIA = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "mp3": "audio/mpeg",
}
# soundfile (libsndfile) format and subtype of the formats encoded whole
_ENCODED = {"flac": ("FLAC", "PCM_16"), "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, str):
        return value
    raise APIError(400, f"{name} must be a text field", code="invalid_value", param=name)


async def transcriptions(ctx: Context, request: Request) -> Response:
    async with read_form(request, limits.MAX_UPLOAD_BYTES) as form:
        model = _field(form, "model")
        if model is None:
            raise APIError(
                400, "the model field is required", code="missing_required_parameter", param="model"
            )
        if model not in TRANSCRIPTION_MODELS and model != ctx.server.config.stt_model:
            raise APIError(
                404,
                f"the model {model!r} does not exist here",
                code="model_not_found",
                param="model",
            )
        fmt = _field(form, "response_format") or "json"
        if fmt not in ("json", "text", "verbose_json"):
            raise APIError(
                400,
                f"response_format {fmt!r} is not supported (json, text, verbose_json)",
                code="unsupported_value",
                param="response_format",
            )
        language = _field(form, "language") or None
        _field(form, "prompt")  # accepted, not used (see the module docstring)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise APIError(
                400, "the file field is required", code="missing_required_parameter", param="file"
            )
        audio = await upload.read()
    ctx.admit()
    async with ctx.server.engines.stt.open_session() as session:
        text = await session.transcribe(audio, language=language)
        seconds, lang = session.last_audio_seconds, session.last_language
    if fmt == "text":
        return PlainTextResponse(text + "\n")
    if fmt == "json":
        return JSONResponse({"text": text})
    duration = round(seconds, 3)
    segment = {"id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text}
    return JSONResponse(
        {
            "task": "transcribe",
            "language": lang,
            "duration": duration,
            "text": text,
            "segments": [segment],
        }
    )


async def voice_for(ctx: Context, requested: str) -> str | None:
    """Our voice for `requested`: one of ours by its name, an OpenAI voice name -> the server's
    default voice (None: the engine's default); `APIError(400)` for any other name."""
    voices = await ctx.server.engines.tts.list_voices()
    if requested in voices:
        return requested
    if requested.lower() in OPENAI_VOICES:
        return ctx.server.engines.default_voice
    raise APIError(
        400,
        f"unknown voice {requested!r}; ours: {', '.join(voices)}; OpenAI's names map to the default",
        code="invalid_value",
        param="voice",
    )


def _wav_header(rate: int) -> bytes:
    """A PCM16 mono WAV header whose sizes say "unknown" (0xFFFFFFFF), for a stream."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", unknown)
    )


def _encode(pcm: bytes, fmt: str) -> bytes:
    import soundfile

    container, subtype = _ENCODED[fmt]
    out = io.BytesIO()
    samples = np.frombuffer(pcm, dtype="<i2")
    soundfile.write(out, samples, rt_limits.OUTPUT_RATE, format=container, subtype=subtype)
    return out.getvalue()


async def speech(ctx: Context, request: Request) -> Response:
    req = decode(await read_body(request, limits.MAX_JSON_BODY_BYTES), SpeechRequest)
    if req.model not in SPEECH_MODELS:
        raise APIError(
            404,
            f"the model {req.model!r} does not exist here",
            code="model_not_found",
            param="model",
        )
    fmt = req.response_format
    if fmt not in _MEDIA:
        raise APIError(
            400,
            f"response_format {fmt!r} is not supported ({', '.join(_MEDIA)})",
            code="unsupported_value",
            param="response_format",
        )
    if not req.input.strip():
        raise APIError(400, "input is empty", code="invalid_value", param="input")
    requested = req.voice if isinstance(req.voice, str) else req.voice.id
    voice = await voice_for(ctx, requested)
    ctx.admit()
    if ctx.speech_busy:
        raise from_bitvoice(_busy())
    try:
        session = ctx.server.engines.tts.open_session(voice=voice, speed=req.speed)
    except InvalidRequestError as exc:
        param = "speed" if "speed" in exc.message else None
        raise APIError(400, exc.message, code="invalid_value", param=param) from exc
    ctx.speech_busy = True
    chunks = _claimed(ctx, session, req.input)
    try:
        first = await anext(chunks, b"")  # the engine's refusals become statuses, not streams
    except BaseException:
        await chunks.aclose()
        raise
    if fmt in _ENCODED:
        rest = b"".join([c async for c in chunks])
        data = await asyncio.to_thread(_encode, first + rest, fmt)
        return Response(data, media_type=_MEDIA[fmt])
    head = _wav_header(rt_limits.OUTPUT_RATE) if fmt == "wav" else b""
    return StreamingResponse(_stream(head + first, chunks), media_type=_MEDIA[fmt])


def _busy() -> BitvoiceError:
    from engine.errors import AdmissionRejectedError

    return AdmissionRejectedError(
        "the speech engine is busy with another request; try again shortly"
    )


async def _claimed(ctx: Context, session: Any, text: str) -> AsyncGenerator[bytes, None]:
    """The session's chunks; the speech slot is freed when this ends or is closed."""
    try:
        async for chunk in session.synthesize(text):
            yield chunk
    finally:
        ctx.speech_busy = False
        await session.close()


async def _stream(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()
