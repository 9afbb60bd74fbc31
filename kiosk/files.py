"""File mode: a WAV stands in for the microphone, another WAV records the speaker.

The input is read whole, mixed to mono and resampled to the server's 16 kHz, then streamed
paced at real time in `MIC_CHUNK_MS` chunks (the server refuses audio much faster than real
time), followed by silence until the conversation is over. Every chunk of microphone audio is
matched by a block the speaker would have played at the same moment, so the output WAV
(24 kHz, the server's rate) lines up with the input: a reply sits in it where it was heard.

Time is the file's own: it stands still while the kiosk is not connected (a file has nothing
to say to a server that is not there), so a reconnect shifts nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from engine.audio import decode_pcm16
from engine.errors import InvalidRequestError
from kiosk import limits
from kiosk.errors import ConversationTimeoutError, KioskError
from kiosk.player import Int16Array

if TYPE_CHECKING:
    from kiosk.app import Kiosk
    from kiosk.core import KioskCore

__all__ = ["FileAudio", "read_input"]

STEP_S = limits.MIC_CHUNK_MS / 1000


def read_input(path: Path) -> Int16Array:
    """The WAV (any rate, width, channels) as PCM16 mono at the server's input rate."""
    try:
        data = path.read_bytes()
        return decode_pcm16(data, target_rate=limits.INPUT_RATE, max_seconds=limits.MAX_INPUT_S)
    except OSError as exc:
        raise KioskError(f"cannot read {path}: {exc.strerror or exc}") from None
    except InvalidRequestError as exc:
        raise KioskError(f"cannot use {path}: {exc.message}") from None


class FileAudio:
    """Microphone from `input_path`, speaker into `output_path`.

    Done when the input and `tail_s` of silence after it have been sent and the
    conversation is idle (every turn answered and played out), or, with `turns`, once that
    many replies have completed and played out. Raises `ConversationTimeoutError` when the
    conversation is not idle `max_wait_s` after the input; the output is written in every case
    (an interrupted run writes what was played so far).
    """

    def __init__(
        self,
        input_path: Path,
        output_path: Path,
        *,
        tail_s: float = limits.TAIL_SILENCE_S,
        max_wait_s: float = limits.DEFAULT_FILE_WAIT_S,
        turns: int | None = None,
    ) -> None:
        self.samples = read_input(input_path)
        self.output_path = output_path
        self.tail_samples = int(tail_s * limits.INPUT_RATE)
        self.max_wait_s = max_wait_s
        self.turns = turns
        self.position = 0  # microphone samples consumed
        self.played: list[Int16Array] = []
        self._t = 0.0  # the file's clock: seconds of input consumed

    def clock(self) -> float:
        return self._t

    async def run(self, kiosk: Kiosk) -> None:
        """Stream, pace, record; returns when done (see the class docstring)."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        over_at: float | None = None  # file time when the input and its tail ended
        try:
            while not self._done(kiosk, over_at):
                if not kiosk.core.session_sent:
                    deadline = None  # not connected: the file's time stands still
                    await asyncio.sleep(STEP_S)
                    continue
                self._step(kiosk)
                await kiosk.flush()
                if over_at is None and self.position >= len(self.samples) + self.tail_samples:
                    over_at = self._t
                now = loop.time()
                deadline = now + STEP_S if deadline is None else deadline + STEP_S
                # behind (a loaded machine): catch up without sleeping; the server's rate
                # check allows a burst, and the file's clock is what the latency uses
                await asyncio.sleep(max(0.0, deadline - now))
        finally:
            self._write()

    def _step(self, kiosk: Kiosk) -> None:
        chunk = self.samples[self.position : self.position + limits.MIC_CHUNK_SAMPLES]
        if len(chunk) < limits.MIC_CHUNK_SAMPLES:
            chunk = np.concatenate(
                [chunk, np.zeros(limits.MIC_CHUNK_SAMPLES - len(chunk), dtype=np.int16)]
            )
        t = self._t
        out: list[Int16Array] = []

        def both(core: KioskCore) -> None:
            core.mic_audio(chunk.astype("<i2").tobytes(), t)
            out.append(core.render(limits.OUT_CHUNK_SAMPLES, t))

        kiosk.call(both)
        self.played += out
        self.position += limits.MIC_CHUNK_SAMPLES
        self._t += STEP_S

    def _done(self, kiosk: Kiosk, over_at: float | None) -> bool:
        core = kiosk.core
        if self.turns is not None and core.completed_replies >= self.turns and core.player.idle:
            return True
        if over_at is None:
            return False
        if self.turns is None and core.idle:
            return True
        if self._t - over_at > self.max_wait_s:
            raise ConversationTimeoutError(
                f"the conversation did not finish {self.max_wait_s:.0f} s after the input "
                f"({core.completed_replies} replies completed)"
            )
        return False

    def _write(self) -> None:
        pcm = np.concatenate(self.played) if self.played else np.zeros(0, dtype=np.int16)
        try:
            sf.write(self.output_path, pcm, limits.OUTPUT_RATE, subtype="PCM_16")
        except (OSError, sf.LibsndfileError) as exc:
            raise KioskError(f"cannot write {self.output_path}: {exc}") from None
