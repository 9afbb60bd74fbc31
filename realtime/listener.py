"""The listening socket: one ASGI app served by uvicorn's protocols on the running loop.

uvicorn parses HTTP/1.1 (h11) and hands WebSocket upgrades to its `websockets-sansio`
protocol (the `websockets` library's own sans-I/O state machine: frame limits, pings, the
close handshake), so the REST routes, server-sent events, multipart uploads and the realtime
WebSocket share one port and one well-kept stack. The legacy `ws="websockets"` protocol is not
used: it runs on `websockets.legacy`, deprecated (a DeprecationWarning, an error in the tests).

We do not run `uvicorn.Server` (it installs signal handlers, exits the process when the port
is taken and owns the drain); `Listener` creates the server socket itself with uvicorn's
protocol classes, so the owner keeps its drain order: refuse, finish turns, close, stop.

What this module adds to uvicorn: `HandshakeGuard` (a cap on connections whose first request
has not been read yet, and a deadline for it), a refusal of an upgrade that repeats a security
header (before the websockets handshake, which refuses some repeats itself in plain text), and
a JSON body on h11's own 400 answers (h11 refuses a repeated Host before any app code runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

__all__ = ["HandshakeGuard", "Listener", "repeated_headers"]

log = logging.getLogger("bitvoice.realtime")


class HandshakeGuard:
    """Caps the connections whose first request is not read yet (TCP accepted, no request).

    Past `limit` the oldest is dropped (its transport aborted): a flood of half-open
    connections then holds at most `limit` file descriptors, and a new request (a probe of
    /healthz, a real client) still gets in. One still waiting after `timeout_s` is dropped
    too. `opened` is called when a connection is accepted, `done` when its request was read
    or it closed (either may come twice: harmless).
    """

    def __init__(self, limit: int, timeout_s: float) -> None:
        self.limit = limit
        self.timeout_s = timeout_s
        self.shed = 0  # connections dropped so far
        self._pending: dict[asyncio.Transport, asyncio.TimerHandle] = {}  # order = age

    def __len__(self) -> int:
        return len(self._pending)

    def opened(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        self._pending[transport] = loop.call_later(self.timeout_s, self._drop, transport)
        while len(self._pending) > self.limit:
            self._drop(next(iter(self._pending)))

    def done(self, transport: asyncio.Transport) -> None:
        timer = self._pending.pop(transport, None)
        if timer is not None:
            timer.cancel()

    def _drop(self, transport: asyncio.Transport) -> None:
        if transport in self._pending:
            self.done(transport)
            self.shed += 1
            transport.abort()


def repeated_headers(names: list[str], single: tuple[str, ...]) -> list[str]:
    """Which of the `single` headers (any case) occur more than once among `names`."""
    lower = [n.lower() for n in names]
    return [h for h in single if lower.count(h.lower()) > 1]


def _guarded_protocol(guard: HandshakeGuard, single: tuple[str, ...]) -> type[H11Protocol]:
    """uvicorn's h11 protocol that reports its first request to `guard`, refuses an upgrade
    that repeats one of the `single` headers, and answers h11's own protocol errors with a
    JSON body (`{"code": "bad_request", "message": ...}`)."""

    class GuardedH11Protocol(H11Protocol):
        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            # before the websockets handshake: it refuses some repeats itself, in plain text
            names = [k.decode("latin-1") for k, _ in self.headers]
            repeated = repeated_headers(names, single)
            if repeated:
                self.send_400_response(f"repeated header: {', '.join(repeated)}")
                return
            super().handle_websocket_upgrade(event)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            guard.opened(transport)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
                guard.done(self.transport)  # a request line and headers were read

        def connection_lost(self, exc: Exception | None) -> None:
            guard.done(self.transport)
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"code": "bad_request", "message": msg}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            with contextlib.suppress(h11.LocalProtocolError):
                for event in (
                    h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                ):
                    self.transport.write(self.conn.send(event) or b"")
            self.transport.close()

    return GuardedH11Protocol


class _WsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, failing a connection the way the `websockets`
    server does: on a protocol error (a frame over the size limit, invalid UTF-8) it sends
    its close frame and half-closes (EOF), then discards what the client still sends until
    the client closes or `close_timeout` passes. uvicorn's own closes the socket at once,
    so a client still writing gets a reset instead of our close frame (and it logs a
    client's invalid UTF-8 as a server exception)."""

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.frames = []
                self.conn.fail(1007, "invalid UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        if self.close_timer is not None or self.transport.is_closing():
            return  # already failed: discarding until the client closes
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)


class Listener:
    """Serves `app` on `host:port` with uvicorn's protocols, on the running loop.

    `await start()` binds (OSError when the port is taken); `port` is then the bound port.
    `await close(timeout_s)` stops accepting, asks every connection to shut down (an idle
    keep-alive closes, a running response finishes), waits up to `timeout_s` for the apps'
    tasks and then cancels what is left. Call both on the same loop.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        guard: HandshakeGuard,
        single_headers: tuple[str, ...] = (),
        **uv: Any,
    ) -> None:
        self.guard = guard
        self.config = Config(
            app,
            host=host,
            port=port,
            http=_guarded_protocol(guard, single_headers),
            ws=_WsProtocol,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            log_config=None,
            access_log=False,
            **uv,
        )
        self.config.load()
        self.state = ServerState()
        self.state.default_headers = list(self.config.encoded_headers)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        http_class = self.config.http_protocol_class

        def protocol() -> asyncio.Protocol:
            return http_class(  # type: ignore[call-arg]
                config=self.config, server_state=self.state, app_state={}, _loop=loop
            )

        self._server = await loop.create_server(protocol, self.config.host, self.config.port)

    async def close(self, timeout_s: float) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.state.connections):
            connection.shutdown()
        if self.state.tasks:
            await asyncio.wait(list(self.state.tasks), timeout=timeout_s)
        for task in list(self.state.tasks):
            task.cancel()
        for connection in list(self.state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await self._server.wait_closed()
