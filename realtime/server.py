"""`bitvoice serve`: the realtime WebSocket server, /healthz and the web client on one port.

Thin glue around `realtime.pipeline.Conversation`: websockets' asyncio server (on uvloop from
`main`), `process_request` for plain HTTP (GET /healthz, static files from `web/`) and for the
checks made before an upgrade (token, Origin), admission control, and a graceful drain on
SIGTERM. The heavy engines (one LLM, one STT, one TTS) are started once and shared.

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
import json
import logging
import mimetypes
import os
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from engine.errors import BitvoiceError, InvalidRequestError
from realtime import limits
from realtime import messages as m
from realtime.pipeline import Conversation, Engines

__all__ = ["RealtimeServer", "ServerConfig", "load_engines", "main", "resolve_llm_model", "serve"]

log = logging.getLogger("bitvoice.realtime")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DEMO_NOTICE = (
    "demo model: a tiny seeded model that strings words together without meaning; "
    "import or pull a real model for real answers (bitvoice pull / bitvoice import)"
)
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


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
    max_conversations: int = limits.DEFAULT_MAX_CONVERSATIONS
    idle_timeout_s: float = limits.DEFAULT_IDLE_TIMEOUT_S
    max_session_s: float = limits.DEFAULT_MAX_SESSION_S
    allow_origins: tuple[str, ...] = ()
    web_dir: Path = field(default_factory=lambda: WEB_DIR)
    llm_threads: int = 0
    trace: bool = False  # keep a per-conversation send trace (tests, benchmarks)

    def check(self) -> None:
        """Raises `InvalidRequestError` for unsafe or impossible settings."""
        if not is_loopback(self.host) and not self.token:
            raise InvalidRequestError(
                f"binding to {self.host} exposes the server beyond this machine; pass --token"
            )
        if self.max_conversations < 1:
            raise InvalidRequestError("--max-conversations must be at least 1")


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
    llm = LLM(model_id, num_threads=config.llm_threads)
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
    """The pipeline's view of a websockets connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws

    async def send(self, message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._ws.close(code, reason)


class RealtimeServer:
    """The running server: conversations, admission, health, static files and drain."""

    def __init__(self, config: ServerConfig, engines: Engines) -> None:
        self.config = config
        self.engines = engines
        self.conversations: set[Conversation] = set()
        self.draining = False
        self.rejected = 0
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown = asyncio.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server (and its engines) run on; `start()` must have run."""
        assert self._loop is not None
        return self._loop

    def find_conversation(self, session_id: str) -> Conversation | None:
        """The open conversation with this session id (from `session.created`), if any."""
        return next((c for c in self.conversations if c.session_id == session_id), None)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await ws_serve(
            self._handler,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=limits.HARD_MAX_FRAME_BYTES,
            ping_interval=limits.PING_INTERVAL_S,
            close_timeout=limits.CLOSE_TIMEOUT_S,
            server_header="bitvoice",
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
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if stop_engines:
            for component in (self.engines.llm, self.engines.stt, self.engines.tts):
                with contextlib.suppress(Exception):
                    await component.stop()

    def health(self) -> dict[str, Any]:
        e = self.engines

        def component(c: Any) -> Any:
            h = getattr(c, "health", None)
            return h() if callable(h) else {"state": c.state.value}

        return {
            "status": "draining" if self.draining else "ok",
            "model": e.model_id,
            "notice": e.notice,
            "conversations": len(self.conversations),
            "max_conversations": self.config.max_conversations,
            "rejected": self.rejected,
            "components": {
                "llm": component(e.llm),
                "stt": component(e.stt),
                "tts": component(e.tts),
            },
        }

    # ---- HTTP ----------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if not upgrade:
            if url.path == "/healthz":
                return _json_response(http.HTTPStatus.OK, self.health())
            if url.path == "/v1/voices":
                return await self._voices()
            return self._static(url.path)
        if self.config.token:
            given = parse_qs(url.query).get("token", [""])[0]
            auth = request.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.config.token.encode()):
                return _json_response(
                    http.HTTPStatus.UNAUTHORIZED,
                    {"code": "unauthorized", "message": "missing or wrong token"},
                )
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request.headers.get("Host", "")):
            return _json_response(
                http.HTTPStatus.FORBIDDEN,
                {"code": "origin_forbidden", "message": f"origin {origin} is not allowed"},
            )
        return None

    async def _voices(self) -> Response:
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

    def _origin_allowed(self, origin: str, host_header: str) -> bool:
        if origin in self.config.allow_origins:
            return True
        parts = urlsplit(origin)
        if parts.netloc and parts.netloc == host_header:
            return True  # the page this server itself served
        return is_loopback(self.config.host) and is_loopback(parts.hostname or "")

    def _static(self, path: str) -> Response:
        root = self.config.web_dir.resolve()
        rel = path.lstrip("/") or "index.html"
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
        headers = Headers(
            {
                "Content-Type": ctype,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            }
        )
        return Response(200, "OK", headers, target.read_bytes())

    # ---- WebSocket ---------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        if self.draining or len(self.conversations) >= self.config.max_conversations:
            self.rejected += 1
            why = (
                "the server is draining"
                if self.draining
                else (
                    f"the server is busy ({self.config.max_conversations} conversations); try later"
                )
            )
            err = m.Error(
                error=m.ErrorInfo(code="admission_rejected", message=why, type="server_error"),
                event_id="evt_0",
            )
            with contextlib.suppress(ConnectionClosed):
                await ws.send(m.encode(err).decode())
                await ws.close(1013, "busy")
            return
        conv = Conversation(
            self.engines,
            _WsTransport(ws),
            f"sess_{uuid.uuid4().hex[:12]}",
            idle_timeout_s=self.config.idle_timeout_s,
            max_session_s=self.config.max_session_s,
            trace=self.config.trace,
        )
        self.conversations.add(conv)
        try:
            await conv.start()
            async for message in ws:
                if conv.closed.is_set():
                    break
                if isinstance(message, str):
                    conv.on_text(message)
                else:
                    conv.on_binary(message)
        except ConnectionClosed:
            pass
        finally:
            await conv.aclose()
            self.conversations.discard(conv)


def _json_response(status: http.HTTPStatus, body: dict[str, Any]) -> Response:
    headers = Headers({"Content-Type": "application/json", "Cache-Control": "no-cache"})
    return Response(status.value, status.phrase, headers, json.dumps(body).encode())


def _text_response(status: http.HTTPStatus, text: str) -> Response:
    headers = Headers({"Content-Type": "text/plain; charset=utf-8"})
    return Response(status.value, status.phrase, headers, text.encode())


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
    p = argparse.ArgumentParser(prog="bitvoice serve", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    p.add_argument("--model", help="LLM store ID (default: best model in the store, else demo)")
    p.add_argument("--voice", help="TTS voice name (default: the engine's default voice)")
    p.add_argument(
        "--token",
        default=os.environ.get("BITVOICE_TOKEN"),
        help="required token (?token= or Bearer); required beyond loopback; "
        "default $BITVOICE_TOKEN",
    )
    p.add_argument("--stt-model", help="Whisper store ID (default: Whisper base)")
    p.add_argument("--max-conversations", type=int, default=limits.DEFAULT_MAX_CONVERSATIONS)
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=limits.DEFAULT_IDLE_TIMEOUT_S,
        help="seconds without a client message before closing",
    )
    p.add_argument(
        "--max-session",
        type=float,
        default=limits.DEFAULT_MAX_SESSION_S,
        help="longest conversation in seconds",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="extra browser Origin allowed (repeatable)",
    )
    p.add_argument("--web-dir", type=Path, default=WEB_DIR, help="static web client folder")
    p.add_argument("--threads", type=int, default=0, help="LLM threads (0 = engine default)")
    return p


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
        idle_timeout_s=args.idle_timeout,
        max_session_s=args.max_session,
        allow_origins=tuple(args.allow_origin),
        web_dir=args.web_dir,
        llm_threads=args.threads,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
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
