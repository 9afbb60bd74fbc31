"""Keys from the terminal: cbreak mode (one key at a time, no Enter), restored on exit.

Disabled when stdin is not a TTY (a service, a pipe, a test): the kiosk then runs on voice
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import tty
from collections.abc import Callable, Iterator

__all__ = ["HELP", "terminal_keys"]

HELP = "keys: s stop the reply, p pause/resume, space push-to-talk (with --push-to-talk), q quit"


@contextlib.contextmanager
def terminal_keys(on_key: Callable[[str], None], *, enabled: bool = True) -> Iterator[bool]:
    """While inside, every key typed on stdin calls `on_key(char)` on the running loop.
    Yields whether keys are on (False when stdin is not a TTY or `enabled` is False)."""
    stdin = sys.stdin
    if not enabled or stdin is None or not stdin.isatty():
        yield False
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        for char in os.read(fd, 64).decode(errors="ignore"):
            on_key(char)

    tty.setcbreak(fd)
    loop.add_reader(fd, readable)
    try:
        yield True
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
