"""`SpeechProbability`: a neural second opinion on speech for the barge-in gate.

Silero VAD (v6) gives the probability that each 32 ms of a 16 kHz stream is speech. It runs
on the ONNX model that faster-whisper ships among its assets, with onnxruntime: both already
come with the STT, so the server gains no dependency and no download. One inference session
per process serves every stream (onnxruntime's `run` is thread-safe); each stream keeps its
own LSTM state and the 64 samples of context the model reads before each chunk.

Why: webrtcvad needs three 30 ms frames in a row to tell a voice from a click, and a soft
onset ("the quick...") keeps it under the echo guard for longer still. Silero tells speech
from clicks, coughs and noise bursts within one chunk. Measured offline on the echo rooms
(bench/echo_rooms.py, 18 rooms x 3 pytest-audioeval clips, Intel Xeon VM): the first chunk
over the echo guard with a probability >= 0.5 came 104 ms (p50) after the speech's energy
onset, 77% within 200 ms, 53 of 54 found; no echo-only reply and none of 54 clicks, coughs and
bursts triggered it. Cost: 0.2 ms of CPU per chunk for the model, 9.5 ms per second of audio
with this glue (Intel Xeon VM, 2 GHz), and it runs only while a reply plays.

Sans-I/O and synchronous, like the segmenter that owns it:

    model = load_speech_model()          # None when the model cannot be loaded
    for probability, level_db in model.feed(pcm16_bytes):   # one pair per complete chunk
        ...
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from realtime.vad import limits

__all__ = ["SpeechProbability", "load_speech_model", "speech_model_path"]

log = logging.getLogger("bitvoice.realtime")


def speech_model_path() -> Path:
    """Silero VAD v6 as faster-whisper ships it."""
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


@functools.cache
def _session() -> Any:
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    # one chunk at a time: a thread pool would only add hand-offs, and the CPU is the LLM's
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(
        str(speech_model_path()), providers=["CPUExecutionProvider"], sess_options=opts
    )


def load_speech_model() -> SpeechProbability | None:
    """A fresh stream on the process's model; None (logged once) when it cannot be loaded,
    and barge-in then waits for webrtcvad's evidence alone."""
    try:
        return SpeechProbability()
    # onnxruntime raises its own classes (NoSuchFile, InvalidProtobuf, ...), straight from
    # Exception; a server without the model must still serve, with webrtcvad alone
    except Exception as exc:
        _warn_once(f"{type(exc).__name__}: {exc}")
        return None


@functools.cache
def _warn_once(reason: str) -> None:
    log.warning(
        "the Silero speech model is unavailable (%s): barge-in uses webrtcvad alone", reason
    )


class SpeechProbability:
    """Speech probability per `limits.SPEECH_CHUNK_SAMPLES` of one PCM16 stream."""

    def __init__(self) -> None:
        self._session = _session()
        self.reset()

    def reset(self) -> None:
        """Forget the stream (its state, context and any partial chunk)."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, limits.SPEECH_CONTEXT_SAMPLES), dtype=np.float32)
        self._carry = b""

    def feed(self, pcm: bytes) -> list[tuple[float, float]]:
        """(probability, level in dB of PCM16 units) for each chunk that `pcm` completes."""
        data = self._carry + pcm
        chunk_bytes = 2 * limits.SPEECH_CHUNK_SAMPLES
        usable = len(data) - len(data) % chunk_bytes
        self._carry = data[usable:]
        out = []
        for off in range(0, usable, chunk_bytes):
            samples = np.frombuffer(data[off : off + chunk_bytes], dtype="<i2").astype(np.float32)
            level = 10.0 * math.log10(float(np.mean(samples * samples)) + 1.0)
            chunk = (samples / 32768.0)[None, :]
            prob, self._h, self._c = self._session.run(
                None,
                {
                    "input": np.concatenate([self._context, chunk], axis=1),
                    "h": self._h,
                    "c": self._c,
                },
            )
            self._context = chunk[:, -limits.SPEECH_CONTEXT_SAMPLES :]
            out.append((float(np.asarray(prob).reshape(-1)[0]), level))
        return out
