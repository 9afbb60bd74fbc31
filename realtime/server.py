"""`bitvoice serve`: the realtime WebSocket server, /healthz and the web client on one port.

Thin glue around `realtime.pipeline.Conversation`: a Starlette app on uvicorn's protocols
(`realtime.listener`, on uvloop from `main`) serving the realtime WebSocket, plain HTTP
(GET /healthz, GET /v1/voices, static files from `web/`) and the OpenAI-compatible REST routes
(`realtime.openai`); `_Gate` makes the checks before any route runs (one copy of each security
header, the token, the Origin); admission control, and a graceful drain on SIGTERM. The heavy
engines (one LLM, one STT, one TTS) are started once and shared.

Entry point for the CLI: `main(argv: list[str] | None = None) -> int` (options: `--help`).
Embedding: `await serve(ServerConfig(...), ready=callback)` runs until `request_shutdown()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import http
import ipaddress
import logging
import mimetypes
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.errors import AdmissionRejectedError, BitvoiceError, InvalidRequestError
from engine.llm.limits import DEFAULT_KV_CACHE_BYTES
from realtime import limits
from realtime import messages as m
from realtime.admission import AdmissionConfig, AdmissionPolicy
from realtime.listener import HandshakeGuard, Listener, repeated_headers
from realtime.openai import openai_routes
from realtime.openai.errors import openai_error
from realtime.pipeline import Conversation, Engines
from realtime.vad import load_speech_model

__all__ = ["RealtimeServer", "ServerConfig", "load_engines", "main", "resolve_llm_model", "serve"]

log = logging.getLogger("bitvoice.realtime")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DEMO_NOTICE = (
    "demo model: a tiny seeded model that strings words together without meaning; "
    "import or pull a real model for real answers (bitvoice pull / bitvoice import)"
)
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
# Origins with these names (and the server's own port) are this machine's own pages.
_TRUSTED_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
# A request that repeats one of these is refused (400): which copy a proxy, websockets and we
# would each read is unclear, and that ambiguity is how checks get bypassed.
_SINGLE_HEADERS = (
    "Host",
    "Origin",
    "Authorization",
    "Upgrade",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
)


def is_loopback(host: str) -> bool:
    """True for localhost names and loopback addresses."""
    host = host.strip("[]")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    """Everything `bitvoice serve` takes (see `main --help`)."""

    host: str = "127.0.0.1"
    port: int = 8765
    model: str | None = None  # LLM store ID; None = best bundle in the store, else the demo
    voice: str | None = None
    token: str | None = None
    stt_model: str | None = None  # None = the STT default (Whisper base)
    max_conversations: int = limits.DEFAULT_MAX_CONVERSATIONS  # the hard cap
    # admission by measured load (realtime.admission); None = the hard cap only
    first_audio_budget_s: float | None = limits.DEFAULT_FIRST_AUDIO_BUDGET_S
    max_handshakes: int = limits.DEFAULT_MAX_HANDSHAKES  # opening handshakes in progress
    open_timeout_s: float = limits.OPEN_TIMEOUT_S
    idle_timeout_s: float = limits.DEFAULT_IDLE_TIMEOUT_S
    max_session_s: float = limits.DEFAULT_MAX_SESSION_S
    allow_origins: tuple[str, ...] = ()
    web_dir: Path = field(default_factory=lambda: WEB_DIR)
    llm_threads: int = 0
    # The LM head quantized at load: the head as stored decodes ~17 tok/s on the 2B shapes
    # here, int8 ~45, int4 ~48 (bench_llm --heads); int8 is the server's default because it
    # is near-lossless, and the voice loop's first words wait for every decoded token.
    unembed_quant: str | None = "int8"
    kv_cache_bytes: int = DEFAULT_KV_CACHE_BYTES  # the LLM's KV caches, all conversations together
    kv_cache_quant: str | None = None  # None: f16 caches; "int8": half the bytes (LLM's option)
    trace: bool = False  # keep a per-conversation send trace (tests, benchmarks)

    def check(self) -> None:
        """Raises `InvalidRequestError` for unsafe or impossible settings."""
        if not is_loopback(self.host) and not self.token:
            raise InvalidRequestError(
                f"binding to {self.host} exposes the server beyond this machine; pass --token"
            )
        if self.max_conversations < 1:
            raise InvalidRequestError("--max-conversations must be at least 1")
        if self.max_handshakes < 1:
            raise InvalidRequestError("--max-handshakes must be at least 1")
        if self.kv_cache_bytes < 0:
            raise InvalidRequestError("--kv-cache-bytes must be at least 0")
        if self.first_audio_budget_s is not None and not self.first_audio_budget_s > 0:
            raise InvalidRequestError("--first-audio-budget must be positive (0 turns it off)")


def _demo_store_id() -> str:
    from engine.llm import tiny

    return tiny.DEMO_STORE_ID


def resolve_llm_model(requested: str | None) -> tuple[str, str | None]:
    """(store ID, notice): the requested model, else the largest model bundle in the store,
    else the seeded demo bundle (built on first use) with a notice that its replies have no meaning."""
    from engine.llm import store, tiny

    if requested:
        return requested, (DEMO_NOTICE if requested == tiny.DEMO_STORE_ID else None)
    models = [
        e for e in store.list_store() if e.kind == "model" and e.store_id != tiny.DEMO_STORE_ID
    ]
    if models:
        return max(models, key=lambda e: e.size_bytes).store_id, None
    return tiny.ensure_demo_bundle(), DEMO_NOTICE


async def load_engines(config: ServerConfig) -> Engines:
    """Start the LLM, STT and TTS (in that order); stops those started if one fails."""
    from engine.llm import LLM
    from engine.stt import STT
    from engine.tts import TTS

    model_id, notice = await asyncio.to_thread(resolve_llm_model, config.model)
    llm = LLM(
        model_id,
        num_threads=config.llm_threads,
        unembed_quant=config.unembed_quant,
        kv_cache_bytes=config.kv_cache_bytes,
        kv_cache_quant=config.kv_cache_quant,
    )
    stt = STT(config.stt_model) if config.stt_model else STT()
    tts = TTS()
    started: list[Any] = []
    try:
        for component in (llm, stt, tts):
            await component.start()
            started.append(component)
        if config.voice is not None:
            voices = await tts.list_voices()
            if config.voice not in voices:
                raise InvalidRequestError(
                    f"unknown voice {config.voice!r}; available: {', '.join(voices)}"
                )
    except BaseException:
        for component in reversed(started):
            with contextlib.suppress(Exception):
                await component.stop()
        raise
    if notice:
        log.warning("%s (%s)", notice, model_id)
    engines = Engines(
        llm=llm, stt=stt, tts=tts, model_id=model_id, notice=notice, default_voice=config.voice
    )
    await warm_up_stt(engines)
    # the barge-in gate's Silero session (~0.2 s to load): here, once, rather than inside the
    # first connection's turn of the event loop
    await asyncio.to_thread(load_speech_model)
    return engines


async def warm_up_stt(engines: Engines) -> None:
    """Decode a short silence once: the first real turn then does not pay Whisper's first-call
    cost, and the measured time seeds the decode estimate that schedules partial transcripts."""
    loop = asyncio.get_running_loop()
    silence = bytes(int(limits.INPUT_BYTES_PER_SECOND * limits.STT_WARMUP_S))
    async with engines.stt.open_session() as session:
        await session.transcribe(silence)  # the first call pays one-time set-up costs
        t0 = loop.time()
        await session.transcribe(silence)
        engines.decode_timer.observe(loop.time() - t0)


class _WsTransport:
    """The pipeline's view of a Starlette WebSocket (uvicorn's websockets-sansio protocol)."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send(self, message: str | bytes) -> None:
        # a client gone meanwhile: its receive loop ends the conversation
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            if isinstance(message, str):
                await self._ws.send_text(message)
            else:
                await self._ws.send_bytes(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        # bounded: a client that does not read keeps uvicorn's send waiting for the socket
        # to drain, and the conversation must free its slot all the same
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError, TimeoutError):
            async with asyncio.timeout(limits.CLOSE_TIMEOUT_S):
                await self._ws.close(code, reason)


class _LoadSampler:
    """How busy the engines were between two calls: the process's CPU seconds (every thread:
    the LLM's pool, Whisper's and the TTS's) per wall second, over the CPUs it may use."""

    def __init__(self) -> None:
        self._cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        self._last = (time.monotonic(), time.process_time())

    def sample(self) -> float:
        now, cpu = time.monotonic(), time.process_time()
        (t0, c0), self._last = self._last, (now, cpu)
        return (cpu - c0) / max(now - t0, 1e-6) / max(self._cpus, 1)


class RealtimeServer:
    """The running server: conversations, admission, health, static files and drain."""

    def __init__(self, config: ServerConfig, engines: Engines) -> None:
        self.config = config
        self.engines = engines
        self.conversations: set[Conversation] = set()
        self.draining = False
        self.rejected = 0
        self.admission = AdmissionPolicy(
            AdmissionConfig(
                max_conversations=config.max_conversations,
                first_audio_budget_s=config.first_audio_budget_s,
            )
        )
        self.handshakes = HandshakeGuard(config.max_handshakes, config.open_timeout_s)
        self._listener: Listener | None = None
        self._transports: dict[Conversation, _WsTransport] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown = asyncio.Event()
        self._sampler_task: asyncio.Task[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server (and its engines) run on; `start()` must have run."""
        assert self._loop is not None
        return self._loop

    def find_conversation(self, session_id: str) -> Conversation | None:
        """The open conversation with this session id (from `session.created`), if any."""
        return next((c for c in self.conversations if c.session_id == session_id), None)

    def model_swapped(self, model_id: str) -> None:
        """The LLM was swapped to `model_id` (POST /v1/bitvoice/model): /healthz and new
        sessions report it, with the demo model's notice when it is the demo."""
        self.engines.model_id = model_id
        self.engines.notice = DEMO_NOTICE if model_id == _demo_store_id() else None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._listener is not None
        return self._listener.port

    async def start(self) -> None:
        """Listen (on the running loop) and start measuring load; `drain()` undoes both."""
        self._loop = asyncio.get_running_loop()
        self._listener = Listener(
            _Gate(self, Starlette(routes=self._routes())),
            self.config.host,
            self.config.port,
            self.handshakes,
            _SINGLE_HEADERS,
            ws_max_size=limits.HARD_MAX_FRAME_BYTES,
            ws_ping_interval=limits.PING_INTERVAL_S,
            ws_ping_timeout=limits.PING_INTERVAL_S,
            headers=[("server", "bitvoice")],
        )
        await self._listener.start()
        self._sampler_task = asyncio.ensure_future(self._sample_load())

    async def _sample_load(self) -> None:
        """Feed the admission policy how busy the engines are, once a LOAD_SAMPLE_INTERVAL_S."""
        sampler = _LoadSampler()
        while True:
            await asyncio.sleep(limits.LOAD_SAMPLE_INTERVAL_S)
            self.admission.observe_load(time.monotonic(), sampler.sample(), len(self.conversations))

    def _turn_done(self, metrics: m.TurnMetrics) -> None:
        """A conversation's response finished: its first-audio latency feeds admission."""
        if metrics.first_audio_ms is not None:
            self.admission.observe_turn(
                time.monotonic(), metrics.first_audio_ms / 1000.0, len(self.conversations)
            )

    def request_shutdown(self) -> None:
        """Begin the graceful drain; safe to call from any thread or a signal handler."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._shutdown.set)

    async def run_until_shutdown(self) -> None:
        """Wait for `request_shutdown()`, then drain: refuse new conversations, let running
        turns finish (up to DRAIN_TIMEOUT_S), close every connection (1001), stop engines."""
        await self._shutdown.wait()
        await self.drain()

    async def drain(self, *, stop_engines: bool = True) -> None:
        """Refuse new conversations, let running turns finish (up to DRAIN_TIMEOUT_S), close
        every connection (1001) and the listener, then stop the engines (unless told not to:
        a second server sharing them)."""
        self.draining = True
        turns = [t for c in self.conversations if (t := c.turn_task) is not None and not t.done()]
        if turns:
            await asyncio.wait(turns, timeout=limits.DRAIN_TIMEOUT_S)
        if self._sampler_task is not None:
            self._sampler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler_task
        for transport in list(self._transports.values()):
            await transport.close(1001, "server shutting down")
        if self._listener is not None:
            await self._listener.close(limits.CLOSE_TIMEOUT_S)
        if stop_engines:
            for component in (self.engines.llm, self.engines.stt, self.engines.tts):
                with contextlib.suppress(Exception):
                    await component.stop()

    def health(self, *, detailed: bool = True) -> dict[str, Any]:
        """GET /healthz. Without `detailed` (a server with a token, asked without it): only
        the status and whether a new conversation would be admitted, no model IDs and no
        counts."""
        now = time.monotonic()
        active = len(self.conversations)
        status = "draining" if self.draining else "ok"
        if not detailed:
            return {
                "status": status,
                "accepting": not self.draining and self.admission.admit(now, active),
            }
        e = self.engines

        def component(c: Any) -> Any:
            h = getattr(c, "health", None)
            return h() if callable(h) else {"state": c.state.value}

        admission = self.admission.snapshot(now, active)
        if self.draining:
            admission["headroom"], admission["capacity"] = 0, active
        return {
            "status": status,
            "model": e.model_id,
            "notice": e.notice,
            "conversations": active,
            "max_conversations": self.config.max_conversations,
            "headroom": admission["headroom"],
            "capacity": admission["capacity"],
            "admission": admission,
            "rejected": self.rejected,
            "handshakes": {"in_progress": len(self.handshakes), "shed": self.handshakes.shed},
            "components": {
                "llm": component(e.llm),
                "stt": component(e.stt),
                "tts": component(e.tts),
            },
        }

    # ---- HTTP ----------------------------------------------------------------------------

    def _routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute("/v1/realtime", self._ws_endpoint),
            Route("/healthz", self._healthz),
            Route("/v1/voices", self._voices, methods=["GET"]),
            *openai_routes(self),
            Route("/{path:path}", self._static),
        ]

    def authorized(self, scope: Scope) -> bool:
        """The request carries the server's token (`Authorization: Bearer` or `?token=`),
        or the server has none."""
        if not self.config.token:
            return True
        headers = dict(scope["headers"])
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.config.token.encode())

    async def _healthz(self, request: Request) -> Response:
        return _json_response(
            http.HTTPStatus.OK, self.health(detailed=self.authorized(request.scope))
        )

    async def _voices(self, request: Request) -> Response:
        """GET /v1/voices: the voice picker's list, {"voices": [...], "default": name}."""
        try:
            voices = await self.engines.tts.list_voices()
        except BitvoiceError as exc:
            return _json_response(
                http.HTTPStatus.SERVICE_UNAVAILABLE, {"code": exc.code, "message": exc.message}
            )
        return _json_response(
            http.HTTPStatus.OK, {"voices": voices, "default": self.config.voice or None}
        )

    def origin_allowed(self, origin: str, local_host: str) -> bool:
        """Only `--allow-origin` values and this server's own pages: http(s) on the server's
        port, at a loopback name, the bound address, or the address this connection reached
        (`local_host`). Never the request's Host header: after DNS rebinding an attacker's
        page sends its own name in both Host and Origin."""
        if origin in self.config.allow_origins:
            return True
        try:
            parts = urlsplit(origin)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:  # a port that is not a number, or out of range
            return False
        if parts.scheme not in ("http", "https") or port != self.port or not parts.hostname:
            return False
        trusted = {*_TRUSTED_LOOPBACK_HOSTS, local_host}
        if self.config.host not in _WILDCARD_HOSTS:
            trusted.add(self.config.host)
        want = _normal_host(parts.hostname)
        return any(_normal_host(h) == want for h in trusted)

    async def _static(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _text_response(http.HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
        root = self.config.web_dir.resolve()
        rel = request.url.path.lstrip("/") or "index.html"
        if "\x00" in rel or any(part in ("..", "") for part in rel.split("/")):
            return _text_response(http.HTTPStatus.NOT_FOUND, "not found")
        target = (root / rel).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return _text_response(http.HTTPStatus.NOT_FOUND, f"not found: /{rel}")
        if target.stat().st_size > limits.STATIC_MAX_BYTES:
            return _text_response(http.HTTPStatus.NOT_FOUND, "not found")
        ctype = (
            {
                ".js": "text/javascript",
                ".mjs": "text/javascript",
                ".wasm": "application/wasm",
            }.get(target.suffix)
            or mimetypes.guess_type(target.name)[0]
            or "application/octet-stream"
        )
        if ctype.startswith("text/") or ctype == "application/json":
            ctype += "; charset=utf-8"
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return FileResponse(target, media_type=ctype, headers=headers)

    # ---- WebSocket ---------------------------------------------------------------------------

    async def _ws_endpoint(self, ws: WebSocket) -> None:
        await ws.accept()
        refusal = self._refusal()
        if refusal is not None:
            err = m.Error(
                error=m.ErrorInfo(code=refusal.code, message=refusal.message, type="server_error"),
                event_id="evt_0",
            )
            transport = _WsTransport(ws)
            await transport.send(m.encode(err).decode())
            await transport.close(1013, "busy")
            return
        transport = _WsTransport(ws)
        conv = Conversation(
            self.engines,
            transport,
            f"sess_{uuid.uuid4().hex[:12]}",
            idle_timeout_s=self.config.idle_timeout_s,
            max_session_s=self.config.max_session_s,
            trace=self.config.trace,
            on_turn_done=self._turn_done,
        )
        self.conversations.add(conv)  # no await since the check: admission is atomic
        self._transports[conv] = transport
        try:
            await conv.start()
            await _pump(ws, conv)
        finally:
            await conv.aclose()
            self.conversations.discard(conv)
            self._transports.pop(conv, None)

    def _refusal(self) -> AdmissionRejectedError | None:
        """Admission: None to admit, else why not (counted in `rejected`): draining, the hard
        cap, or the measured load says the conversations already running would miss their
        first-audio budget with one more."""
        active = len(self.conversations)
        if not self.draining and self.admission.admit(time.monotonic(), active):
            return None
        self.rejected += 1
        if self.draining:
            return AdmissionRejectedError("the server is draining")
        if active >= self.config.max_conversations:
            return AdmissionRejectedError(
                f"the server is busy ({active} conversations, the most it takes); try later"
            )
        return AdmissionRejectedError(
            f"the server is busy ({active} conversations): one more would push replies past "
            f"{self.config.first_audio_budget_s} s to first audio; try later"
        )


def _normal_host(host: str) -> str:
    """A host name or address in one spelling (lower case; IPv6 compressed, IPv4-mapped
    IPv6 as IPv4), so that equal addresses compare equal."""
    host = host.strip("[]").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


async def _pump(ws: WebSocket, conv: Conversation) -> None:
    """Feed the client's frames to `conv` until the client leaves or `conv` closes (it may
    close a client that keeps sending, e.g. one that does not read: no frame ends that wait)."""
    closed = asyncio.ensure_future(conv.closed.wait())
    try:
        while not conv.closed.is_set():
            receive = asyncio.ensure_future(ws.receive())
            await asyncio.wait((receive, closed), return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                conv.on_text(text)
            else:
                conv.on_binary(message.get("bytes") or b"")
    finally:
        closed.cancel()


class _Gate:
    """The checks every request passes before a route runs (pure ASGI, so that it sees the
    WebSocket upgrade too):

    - one copy of each security header, else 400: which copy a proxy, the HTTP parser and we
      would each read is unclear, and that ambiguity is how checks get bypassed;
    - the WebSocket upgrade: the token (401), then the Origin (403);
    - the REST routes under /v1/ (all but the web client's GET /v1/voices): the same token and
      Origin checks, answered in OpenAI's error shape (`realtime.openai.errors`).
    """

    def __init__(self, server: RealtimeServer, app: ASGIApp) -> None:
        self.server = server
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        repeated = repeated_headers(
            [k.decode("latin-1") for k, _ in scope["headers"]], _SINGLE_HEADERS
        )
        if repeated:
            return _bad_request(f"repeated header: {', '.join(repeated)}")
        websocket = scope["type"] == "websocket"
        rest = scope["path"].startswith("/v1/") and not (
            scope["path"] == "/v1/voices" and scope.get("method") in ("GET", "HEAD")
        )
        if not (websocket or rest):
            return None
        if not self.server.authorized(scope):
            if websocket:
                return _json_response(
                    http.HTTPStatus.UNAUTHORIZED,
                    {"code": "unauthorized", "message": "missing or wrong token"},
                )
            return openai_error(401, "missing or wrong token", code="invalid_api_key")
        origin = dict(scope["headers"]).get(b"origin")
        local = (scope.get("server") or ("",))[0] or ""
        if origin is not None and not self.server.origin_allowed(origin.decode("latin-1"), local):
            message = f"origin {origin.decode('latin-1')} is not allowed"
            if websocket:
                return _json_response(
                    http.HTTPStatus.FORBIDDEN, {"code": "origin_forbidden", "message": message}
                )
            return openai_error(403, message, code="origin_forbidden")
        return None


def _bad_request(message: str) -> Response:
    return _json_response(http.HTTPStatus.BAD_REQUEST, {"code": "bad_request", "message": message})


def _json_response(status: http.HTTPStatus, body: dict[str, Any]) -> Response:
    return JSONResponse(body, status.value, headers={"Cache-Control": "no-cache"})


def _text_response(status: http.HTTPStatus, text: str) -> Response:
    return PlainTextResponse(text, status.value)


async def serve(
    config: ServerConfig,
    *,
    ready: Callable[[RealtimeServer], None] | None = None,
    engines: Engines | None = None,
    install_signals: bool = False,
) -> None:
    """Start engines (unless given) and the server; run until `request_shutdown()` (or
    SIGTERM/SIGINT with `install_signals`), then drain. `ready(server)` runs once listening."""
    config.check()
    engines = engines or await load_engines(config)
    server = RealtimeServer(config, engines)
    await server.start()
    if install_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.request_shutdown)
    if ready is not None:
        ready(server)
    await server.run_until_shutdown()


def build_parser() -> argparse.ArgumentParser:
    """The options of `bitvoice serve`; every help line states its default."""
    p = argparse.ArgumentParser(prog="bitvoice serve", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="port (default %(default)s; 0 = any)")
    p.add_argument("--model", help="LLM store ID (default: best model in the store, else demo)")
    p.add_argument("--voice", help="TTS voice name (default: the engine's default voice)")
    p.add_argument(
        "--token",
        default=os.environ.get("BITVOICE_TOKEN"),
        help="required token (?token= or Bearer); required beyond loopback; /healthz "
        "without it shows only the status (default: $BITVOICE_TOKEN, else none)",
    )
    p.add_argument("--stt-model", help="Whisper store ID (default: Whisper base)")
    p.add_argument(
        "--max-conversations",
        type=int,
        default=limits.DEFAULT_MAX_CONVERSATIONS,
        help="hard cap on open conversations (default %(default)s)",
    )
    p.add_argument(
        "--first-audio-budget",
        type=float,
        default=limits.DEFAULT_FIRST_AUDIO_BUDGET_S,
        help="refuse a new conversation when the measured load says the running ones would "
        "then wait longer than this many seconds (p90) from end of speech to first reply "
        "audio; 0 = the hard cap only (default %(default)s)",
    )
    p.add_argument(
        "--max-handshakes",
        type=int,
        default=limits.DEFAULT_MAX_HANDSHAKES,
        help="opening handshakes in progress at once; past it the oldest is dropped "
        "(default %(default)s)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=limits.DEFAULT_IDLE_TIMEOUT_S,
        help="seconds without a client message before closing (default %(default)s)",
    )
    p.add_argument(
        "--max-session",
        type=float,
        default=limits.DEFAULT_MAX_SESSION_S,
        help="longest conversation in seconds (default %(default)s)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="extra browser Origin allowed, e.g. http://example.com:8080 (repeatable; "
        "default: only this server's own pages)",
    )
    p.add_argument(
        "--web-dir", type=Path, default=WEB_DIR, help="static web client folder (default: web/)"
    )
    _add_llm_options(p)
    return p


def _add_llm_options(p: argparse.ArgumentParser) -> None:
    """The LLM's options of `bitvoice serve` (LLM(...) takes them)."""
    p.add_argument(
        "--threads", type=int, default=0, help="LLM threads (default 0 = the engine's choice)"
    )
    p.add_argument(
        "--unembed-quant",
        choices=("int8", "int4", "none"),
        default="int8",
        help="quantize the LLM's LM head at load (default int8; none = as stored)",
    )
    p.add_argument(
        "--kv-cache-bytes",
        type=int,
        default=DEFAULT_KV_CACHE_BYTES,
        help="bytes the conversations' KV caches may hold together; past it the least "
        "recently used idle one is dropped (default %(default)s)",
    )
    p.add_argument(
        "--kv-cache-quant",
        choices=("f16", "int8"),
        default="f16",
        help="the LLM's KV cache format: f16, or int8 codes with a float step per "
        "position and KV head (half the bytes; default %(default)s)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run `bitvoice serve` with `argv` (without the program name). Returns an exit code."""
    args = build_parser().parse_args(argv)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        voice=args.voice,
        token=args.token,
        stt_model=args.stt_model,
        max_conversations=args.max_conversations,
        first_audio_budget_s=args.first_audio_budget or None,
        max_handshakes=args.max_handshakes,
        idle_timeout_s=args.idle_timeout,
        max_session_s=args.max_session,
        allow_origins=tuple(args.allow_origin),
        web_dir=args.web_dir,
        llm_threads=args.threads,
        unembed_quant=None if args.unembed_quant == "none" else args.unembed_quant,
        kv_cache_bytes=args.kv_cache_bytes,
        kv_cache_quant=None if args.kv_cache_quant == "f16" else args.kv_cache_quant,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # uvicorn logs every accepted WebSocket and refused request at INFO: per-connection noise
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    try:
        config.check()
    except InvalidRequestError as exc:
        print(f"bitvoice serve: {exc.message}", file=sys.stderr)
        return 2

    def announce(server: RealtimeServer) -> None:
        print(
            f"bitvoice: listening on http://{config.host}:{server.port} "
            f"(model {server.engines.model_id})",
            flush=True,
        )

    try:
        import uvloop

        uvloop.run(serve(config, ready=announce, install_signals=True))
    except InvalidRequestError as exc:
        print(f"bitvoice serve: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
