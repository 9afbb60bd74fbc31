"""The kiosk's I/O glue: one `KioskCore` over a WebSocket that reconnects by itself.

`Kiosk.run(audio)` runs until the audio side is done (file mode), `q` is pressed, or a
signal asks it to stop; the audio side is `DeviceAudio` (PortAudio) or `FileAudio` (WAV
files). Everything that touches the core holds `Kiosk.lock`: PortAudio calls its stream
callbacks on its own threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from kiosk import limits
from kiosk.core import KioskCore, describe
from kiosk.errors import KioskError, ServerRefusedError, ServerUnreachableError

__all__ = ["AudioSide", "Kiosk", "KioskConfig", "normalize_url"]

log = logging.getLogger("bitvoice.kiosk")


@dataclass(frozen=True, slots=True)
class KioskConfig:
    """How to reach the server. `retry_for_s`: give up after this long without a session
    (None: retry forever, as a kiosk on a wall should)."""

    url: str = limits.DEFAULT_URL
    token: str | None = None
    cafile: Path | None = None
    retry_for_s: float | None = None


class AudioSide(Protocol):
    """Devices or files: feeds the core's microphone and speaker on the kiosk's clock."""

    def clock(self) -> float:
        """Now, on the clock the core's times use."""
        ...

    async def run(self, kiosk: Kiosk) -> None:
        """Run until done (file mode) or cancelled (devices)."""
        ...


def normalize_url(url: str) -> str:
    """`ws://host:port` gets the documented path; http(s) becomes ws(s). Raises KioskError."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise KioskError(f"not a server URL: {url!r} (expected ws://HOST:PORT or wss://...)")
    path = parts.path if parts.path not in ("", "/") else limits.REALTIME_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


class Kiosk:
    """Connection, reconnection, housekeeping and logging around one core."""

    def __init__(self, config: KioskConfig, core: KioskCore) -> None:
        self.config = config
        self.core = core
        self.lock = threading.Lock()
        self.ws: ClientConnection | None = None
        self.url = normalize_url(config.url)
        self._stop = asyncio.Event()
        # Several tasks flush (receiver, ticker, microphone); a batch must go out whole and in
        # order (session.update before the first audio, playback report before its cancel).
        self._send_lock = asyncio.Lock()

    def request_stop(self) -> None:
        """Ask `run` to end cleanly (a signal handler calls this)."""
        self._stop.set()

    async def run(self, audio: AudioSide) -> None:
        """Run the conversation until the audio side ends, `q`, or `request_stop()`.

        Raises `ServerRefusedError` (token or Origin refused), `ServerUnreachableError`
        (no session within `retry_for_s`), or what the audio side raises.
        """
        tasks = [
            asyncio.create_task(self._connection_loop(), name="kiosk-connection"),
            asyncio.create_task(self._ticker(audio), name="kiosk-ticker"),
            asyncio.create_task(audio.run(self), name="kiosk-audio"),
            asyncio.create_task(self._stop.wait(), name="kiosk-stop"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Clean-up in every case (Ctrl-C included): the audio side closes its devices or
            # writes its file in its own `finally`, the socket closes with a close frame.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close()
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    def call(self, fn: Callable[[KioskCore], None]) -> None:
        """Run `fn(core)` under the lock, then log what it made happen."""
        with self.lock:
            fn(self.core)
            events = self.core.events_received()
        for event in events:
            log.info("%s", describe(event))

    async def flush(self) -> None:
        """Send what the core has queued, in order (dropped when there is no connection)."""
        async with self._send_lock:
            with self.lock:
                frames = self.core.data_to_send()
            ws = self.ws
            if ws is None:
                return
            with contextlib.suppress(ConnectionClosed):
                for frame in frames:
                    await ws.send(frame)

    async def _ticker(self, audio: AudioSide) -> None:
        while not self.core.quit_requested:
            self.call(lambda core: core.tick(audio.clock()))
            await self.flush()
            await asyncio.sleep(limits.TICK_S)

    async def _connection_loop(self) -> None:
        failures = 0
        since = time.monotonic()  # last time a session was up (or the start)
        while True:
            started = await self._one_connection()
            if started:
                failures, since = 0, time.monotonic()
            budget = self.config.retry_for_s
            if budget is not None and time.monotonic() - since > budget:
                raise ServerUnreachableError(
                    f"no session with {self.url} for {budget:.0f} s; giving up"
                )
            delay = min(limits.RECONNECT_MAX_S, limits.RECONNECT_FIRST_S * 2**failures)
            delay *= 1 + random.uniform(-limits.RECONNECT_JITTER, limits.RECONNECT_JITTER)
            failures += 1
            log.info("reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _one_connection(self) -> bool:
        """One connection, from connect to close; True when its session had started."""
        try:
            ws = await connect(
                self.url,
                additional_headers=self._headers(),
                ssl=self._ssl(),
                open_timeout=limits.OPEN_TIMEOUT_S,
                close_timeout=limits.CLOSE_TIMEOUT_S,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                why = "wrong or missing token" if status == 401 else "token or Origin not accepted"
                raise ServerRefusedError(
                    f"the server refused this client (HTTP {status}: {why}; "
                    "pass --token or set BITVOICE_TOKEN)"
                ) from None
            log.warning("server answered HTTP %s", status)
            return False
        except InvalidURI as exc:
            raise KioskError(f"bad server URL: {exc}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            log.warning("cannot reach %s: %s", self.url, exc or type(exc).__name__)
            return False
        log.info("connected to %s", self.url)
        self.call(lambda core: core.connection_made())
        self.ws = ws
        try:
            await self._receive(ws)
        finally:
            self.ws = None
            started = self.core.started
            self.call(lambda core: core.connection_lost())
            await ws.close()
        code = ws.close_code
        log.warning(
            "connection closed (code %s%s)", code, f": {ws.close_reason}" if ws.close_reason else ""
        )
        return started

    async def _receive(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                if isinstance(frame, bytes):
                    self.call(functools.partial(KioskCore.receive_binary, data=frame))
                else:
                    self.call(functools.partial(KioskCore.receive_text, data=frame))
                if self.core.incompatible:
                    raise KioskError(self.core.incompatible)
                await self.flush()

    async def _close(self) -> None:
        ws = self.ws
        if ws is not None:
            await ws.close()

    def _headers(self) -> dict[str, str]:
        # Bearer, not ?token=: a header does not end up in proxies' access logs.
        return {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.url.startswith("wss://"):
            return None
        cafile = str(self.config.cafile) if self.config.cafile else None
        return ssl.create_default_context(cafile=cafile)
