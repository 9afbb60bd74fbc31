"""`bitvoice kiosk`: a headless client for a box with a microphone and a loudspeaker.

    bitvoice kiosk --url ws://HOST:8765 --token T                 devices (PortAudio)
    bitvoice kiosk --input in.wav --output out.wav [--turns N]    files instead of devices
    bitvoice kiosk --list-devices

Exit codes: 0 done (or SIGTERM), 1 failure, 2 bad command line, 3 refused by the server
(token/Origin), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from kiosk import limits
from kiosk.app import AudioSide, Kiosk, KioskConfig
from kiosk.core import KioskCore, SessionOptions
from kiosk.errors import KioskError
from kiosk.keys import HELP, terminal_keys

__all__ = ["build_parser", "main"]

log = logging.getLogger("bitvoice.kiosk")


def build_parser() -> argparse.ArgumentParser:
    """The options of `bitvoice kiosk`; every help line states its default."""
    p = argparse.ArgumentParser(prog="bitvoice kiosk", description=__doc__.splitlines()[0])
    p.add_argument(
        "--url",
        default=os.environ.get("BITVOICE_URL", limits.DEFAULT_URL),
        help="server, ws:// or wss:// (default: $BITVOICE_URL, else %(default)s)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("BITVOICE_TOKEN"),
        help="the server's --token, sent as a Bearer header (default: $BITVOICE_TOKEN)",
    )
    p.add_argument("--cafile", type=Path, help="CA bundle for a wss:// server's certificate")
    p.add_argument(
        "--retry-for",
        type=float,
        help="give up after this many seconds without a session (default: forever with "
        f"devices, {limits.DEFAULT_FILE_RETRY_S:.0f} s in file mode)",
    )
    dev = p.add_argument_group("devices")
    dev.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    dev.add_argument(
        "--input-device", help="microphone: index or part of the name (default: system's)"
    )
    dev.add_argument(
        "--output-device", help="loudspeaker: index or part of the name (default: system's)"
    )
    files = p.add_argument_group("files instead of devices")
    files.add_argument("--input", type=Path, help="WAV that stands in for the microphone")
    files.add_argument("--output", type=Path, help="WAV to write what the speaker played")
    files.add_argument(
        "--turns",
        type=int,
        help="stop after N completed replies (default: when the input is over and answered)",
    )
    files.add_argument(
        "--tail",
        type=float,
        default=limits.TAIL_SILENCE_S,
        help="seconds of silence after the input (default %(default)s)",
    )
    files.add_argument(
        "--max-wait",
        type=float,
        default=limits.DEFAULT_FILE_WAIT_S,
        help="seconds the conversation may take after the input (default %(default)s)",
    )
    sess = p.add_argument_group("session")
    sess.add_argument(
        "--push-to-talk", action="store_true", help="space starts and ends a turn (no server VAD)"
    )
    sess.add_argument("--voice", help="TTS voice (default: the server's)")
    sess.add_argument("--language", help="spoken language, e.g. en (default: detected)")
    sess.add_argument("--instructions", help="system prompt (default: the server's)")
    sess.add_argument(
        "--max-tokens", type=int, help="longest reply in tokens (default: the server's)"
    )
    p.add_argument("--no-keys", action="store_true", help="ignore the keyboard even on a TTY")
    return p  # fmt: skip


def _audio_side(args: argparse.Namespace) -> AudioSide:
    if args.input is not None:
        from kiosk.files import FileAudio

        return FileAudio(
            args.input, args.output, tail_s=args.tail, max_wait_s=args.max_wait, turns=args.turns
        )
    from kiosk.devices import DeviceAudio, parse_device

    return DeviceAudio(parse_device(args.input_device), parse_device(args.output_device))


async def _run(args: argparse.Namespace) -> int:
    options = SessionOptions(
        voice=args.voice,
        language=args.language,
        instructions=args.instructions,
        max_output_tokens=args.max_tokens,
        push_to_talk=args.push_to_talk,
    )
    retry = args.retry_for
    if retry is None and args.input is not None:
        retry = limits.DEFAULT_FILE_RETRY_S
    config = KioskConfig(url=args.url, token=args.token, cafile=args.cafile, retry_for_s=retry)
    kiosk = Kiosk(config, KioskCore(options))
    audio = _audio_side(args)
    got: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        got.append(sig)
        kiosk.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    def on_key(char: str) -> None:
        kiosk.call(lambda core: core.key(char, audio.clock()))

    try:
        with terminal_keys(on_key, enabled=not args.no_keys) as keys_on:
            if keys_on:
                log.info("%s", HELP)
            await kiosk.run(audio)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if signal.SIGINT in got:
        log.info("stopped (Ctrl-C)")
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `bitvoice kiosk` with `argv` (without the program name). Returns an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.input is None) != (args.output is None):
        parser.error("--input and --output go together")
    if args.turns is not None and args.turns < 1:
        parser.error("--turns must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s kiosk: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        if args.list_devices:
            from kiosk.devices import list_devices

            print(list_devices())
            return 0
        return asyncio.run(_run(args))
    except KioskError as exc:
        print(f"bitvoice kiosk: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
