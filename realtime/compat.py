"""OpenAI Realtime (GA) compatibility for the protocol core: pure functions, no I/O.

A client written for the OpenAI Realtime API speaks a nested `session.update`
(`session.type`, `output_modalities`, `audio.input.format`, `audio.output.format`,
`audio.input.turn_detection`, `audio.output.voice`), sends audio at 24 kHz, reads reply audio
as base64 `delta` fields (it cannot take our binary frames) and expects conversation item
events. `realtime.protocol.RealtimeProtocol` calls in here; a session that never uses the GA
shape sees no difference. What is supported and how it differs: realtime/PROTOCOL.md,
"OpenAI compatibility".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr

from realtime import limits
from realtime import messages as m

__all__ = [
    "GA_FIELDS",
    "INPUT_24K",
    "InputResampler",
    "assistant_item",
    "session_changes",
    "user_item",
]

GA_FIELDS = frozenset({"type", "output_modalities", "audio"})  # not SessionState fields
INPUT_16K = "pcm16le/16000/mono"
INPUT_24K = "pcm16le/24000/mono"


def session_changes(
    cfg: m.SessionUpdateConfig,
) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """The flat SessionState changes that the GA fields of `cfg` ask for, or a problem
    (error code, message) when they ask for what this server cannot do."""
    changes: dict[str, Any] = {}
    if cfg.type == "realtime":
        changes["type"] = "realtime"
        changes["output_audio_transport"] = "json"  # an OpenAI client reads JSON frames only
    if isinstance(cfg.output_modalities, list) and "audio" not in cfg.output_modalities:
        return {}, ("invalid_field", "output_modalities must include audio: replies are spoken")
    audio = cfg.audio
    if isinstance(audio, m.AudioConfig):
        if isinstance(audio.input, m.AudioInputConfig):
            if isinstance(audio.input.format, m.AudioFormat):
                changes["input_audio_format"] = (
                    INPUT_24K if audio.input.format.rate == 24_000 else INPUT_16K
                )
            if audio.input.turn_detection is not m.UNSET:
                changes["turn_detection"] = audio.input.turn_detection
        out = audio.output
        if isinstance(out, m.AudioOutputConfig):
            if isinstance(out.format, m.AudioFormat) and out.format.rate != limits.OUTPUT_RATE:
                return {}, ("invalid_field", f"output audio is {limits.OUTPUT_RATE} Hz PCM16 only")
            if isinstance(out.voice, str):
                # OpenAI's names have no voice of their own here: the server's default
                changes["voice"] = None if out.voice.lower() in m.OPENAI_VOICES else out.voice
            if isinstance(out.speed, float | int):
                changes["speed"] = float(out.speed)
    return changes, None


class InputResampler:
    """24 kHz PCM16 microphone audio to the 16 kHz the VAD and Whisper take, streamed (the
    filter state carries over between frames, so frame edges leave no clicks)."""

    def __init__(self) -> None:
        self._stream = soxr.ResampleStream(24_000, limits.INPUT_RATE, 1, dtype="int16")

    def feed(self, pcm: bytes, *, last: bool = False) -> bytes:
        """The 16 kHz audio of `pcm` so far: the filter holds back ~20 ms until the next
        frame, or `last` flushes it (a whole item)."""
        x = np.frombuffer(pcm, dtype="<i2")
        y: np.ndarray[Any, Any] = self._stream.resample_chunk(x, last=last)
        return y.astype("<i2").tobytes()


def assistant_item(response_id: str, status: str, transcript: str | None) -> m.ItemInfo:
    content = [] if transcript is None else [m.ItemContent("output_audio", transcript=transcript)]
    return m.ItemInfo(
        id=m.assistant_item_id(response_id),
        role="assistant",
        status=status,  # type: ignore[arg-type]
        content=content,
    )


def user_item(
    item_id: str, *, text: str | None = None, transcript: str | None = None
) -> m.ItemInfo:
    if text is not None:
        part = m.ItemContent("input_text", text=text)
    else:
        part = m.ItemContent("input_audio", transcript=transcript)
    return m.ItemInfo(id=item_id, role="user", content=[part])
