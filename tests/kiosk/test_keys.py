"""Keys from a real pseudo-terminal: cbreak while the kiosk runs, restored after."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
import termios
from pathlib import Path

import pytest

from kiosk.keys import terminal_keys


async def test_keys_arrive_one_at_a_time_and_the_terminal_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, encoding="utf-8") as tty_in:  # a pty: no disk I/O
            monkeypatch.setattr(sys, "stdin", tty_in)
            before = termios.tcgetattr(slave)
            got: list[str] = []
            three = asyncio.Event()

            def on_key(char: str) -> None:
                got.append(char)
                if len(got) == 3:
                    three.set()

            with terminal_keys(on_key) as on:
                assert on
                lflag = termios.tcgetattr(slave)[3]
                assert not lflag & termios.ICANON and not lflag & termios.ECHO  # no Enter needed
                os.write(master, b"sp ")  # no newline: cooked mode would deliver nothing
                async with asyncio.timeout(5):
                    await three.wait()
            assert got == ["s", "p", " "]
            assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)


def test_keys_are_off_when_stdin_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with (tmp_path / "stdin").open("w+") as not_a_tty:
        monkeypatch.setattr(sys, "stdin", not_a_tty)
        with terminal_keys(lambda _c: None) as on:
            assert not on
