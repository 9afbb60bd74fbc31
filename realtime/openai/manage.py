"""GET /v1/models and the runtime's management routes.

- `GET /v1/models`, `GET /v1/models/{id}`: the running LLM, the STT model and the model names
  an OpenAI client sends for transcription and speech (accepted as aliases).
- `POST /v1/bitvoice/model` `{"model": "org/name"}`: swap the LLM (`LLM.swap_model`). 409 while
  a generation runs or a conversation is open (its chat session would go stale), 404 for a
  store ID that is not installed; 503 meanwhile for chat requests.
- `POST /v1/voices` (multipart `name` + `file`): register a cloned voice, 201;
  `DELETE /v1/voices/{name}`: delete a custom voice. (GET /v1/voices is the web client's list.)
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.errors import InvalidRequestError
from realtime.openai import limits
from realtime.openai.audio import SPEECH_MODELS, TRANSCRIPTION_MODELS
from realtime.openai.body import read_body, read_form
from realtime.openai.context import Context
from realtime.openai.errors import APIError
from realtime.openai.schema import ModelLoadRequest, decode

__all__ = ["delete_voice", "get_model", "list_models", "load_model", "register_voice"]


def _model_ids(ctx: Context) -> list[str]:
    stt = ctx.server.config.stt_model
    ids = [ctx.llm.model_id, *([stt] if stt else []), *TRANSCRIPTION_MODELS, *SPEECH_MODELS]
    return list(dict.fromkeys(ids))


def _model(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "bitvoice"}


async def list_models(ctx: Context, request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [_model(i) for i in _model_ids(ctx)]})


async def get_model(ctx: Context, request: Request) -> Response:
    model_id = request.path_params["model"]
    if model_id not in _model_ids(ctx):
        raise APIError(404, f"the model {model_id!r} does not exist here", code="model_not_found")
    return JSONResponse(_model(model_id))


async def load_model(ctx: Context, request: Request) -> Response:
    req = decode(await read_body(request, limits.MAX_JSON_BODY_BYTES), ModelLoadRequest)
    if ctx.swapping or ctx.generation_running():
        raise APIError(
            409, "a generation is running; swap the model when it is done", code="conflict"
        )
    if ctx.server.conversations:
        raise APIError(
            409,
            f"{len(ctx.server.conversations)} conversations are open; their chat sessions "
            "would go stale",
            code="conflict",
        )
    ctx.swapping = True
    try:
        try:
            await ctx.llm.swap_model(req.model, unembed_quant=ctx.server.config.unembed_quant)
        except InvalidRequestError as exc:
            raise APIError(404, exc.message, code="model_not_found", param="model") from exc
        ctx.server.model_swapped(req.model)
    finally:
        ctx.swapping = False
    return JSONResponse(_model(req.model))


async def register_voice(ctx: Context, request: Request) -> Response:
    async with read_form(request, limits.MAX_UPLOAD_BYTES) as form:
        name, upload = form.get("name"), form.get("file")
        if not isinstance(name, str):
            raise APIError(
                400, "the name field is required", code="missing_required_parameter", param="name"
            )
        if not isinstance(upload, UploadFile):
            raise APIError(
                400, "the file field is required", code="missing_required_parameter", param="file"
            )
        audio = await upload.read()
    await ctx.server.engines.tts.register_voice(name, audio)
    return JSONResponse({"name": name, "object": "voice"}, status_code=201)


async def delete_voice(ctx: Context, request: Request) -> Response:
    name = request.path_params["name"]
    tts = ctx.server.engines.tts
    if name not in await tts.list_voices():
        raise APIError(404, f"no voice named {name!r}", code="voice_not_found")
    await tts.delete_voice(name)
    return JSONResponse({"name": name, "object": "voice", "deleted": True})
