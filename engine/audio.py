"""Shared audio decoding and validation for STT, TTS voice registration and the realtime server.

Calling contract:

- `decode_audio(data, target_rate=..., max_seconds=...)` takes either raw PCM (signed 16-bit
  little-endian, mono, at `RAW_PCM_RATE`) or a container that libsndfile reads (WAV of any
  common rate, sample width 8/16/24/32-bit int or float, any channel count; also FLAC/OGG),
  and returns float32 mono samples in [-1, 1] at `target_rate`. Channels are averaged,
  resampling uses soxr (band-limited, high quality), never nearest-sample.
- `decode_pcm16(...)` is the same but returns int16 samples (what Whisper and the wire use).
- `resample(samples, from_rate, to_rate)` resamples float32 mono (used for Piper 22.05 kHz ->
  24 kHz and by the realtime server).
- `float_to_pcm16_bytes` / `pcm16_bytes_to_float` convert between float32 and s16le bytes.

Sniffing: a container is recognised only by its magic (RIFF/RIFX/RF64, fLaC, OggS, FORM); a
few binary non-audio files by magics of 4 bytes or more (PDF, PNG, GIF, zip, ELF); text only
by a long printable run (`TEXT_RUN_BYTES` of printable UTF-8 at the start). Everything else is
raw PCM16, whatever its first bytes. Callers that already hold raw PCM (the realtime path) skip
sniffing altogether and use `pcm16_bytes_to_float` or `np.frombuffer`.

Every failure is an `InvalidRequestError` with a message that says what was wrong: empty audio,
text or a non-audio file, a WAV with a broken header, audio longer than `max_seconds`,
odd-length PCM. Nothing here touches disk.
"""

from __future__ import annotations

import codecs
import io
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from engine.errors import InvalidRequestError

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "RAW_PCM_RATE",
    "decode_audio",
    "decode_pcm16",
    "float_to_int16",
    "float_to_pcm16_bytes",
    "pcm16_bytes_to_float",
    "resample",
]

#: Rate assumed for raw (headerless) PCM16 input: what Whisper wants and what the wire carries.
RAW_PCM_RATE: Final = 16_000
#: Longest audio accepted unless a caller passes its own bound (about 20 MB of 16 kHz PCM16).
DEFAULT_MAX_SECONDS: Final = 600.0
#: Sample rates below or above this range are not "common" and are refused with a clear error.
MIN_INPUT_RATE: Final = 4_000
MAX_INPUT_RATE: Final = 384_000
#: Channel counts above this are refused (nobody sends 64-channel speech).
MAX_INPUT_CHANNELS: Final = 16

# Magic numbers of containers libsndfile reads (4 bytes each: a raw PCM16 stream starts with
# one by chance about once in 2**32 turns).
_CONTAINER_MAGIC: Final = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM")
# Binary files that are clearly not audio. Only magics of 4 bytes or more: a shorter one
# (`{`, `[`, gzip's 2 bytes, JPEG's 3) is also the first bytes of about one raw PCM turn in a
# few hundred to a few million, and such turns were refused (issue 15). Text is caught by
# `_looks_like_text` instead.
_NOT_AUDIO_MAGIC: Final = (
    b"%PDF",
    b"\x89PNG",
    b"GIF87a",
    b"GIF89a",
    b"PK\x03\x04",  # zip
    b"\x7fELF",
)
#: Input is text (refused) when its first `TEXT_RUN_BYTES` bytes, or all of it when shorter
#: (but at least `MIN_TEXT_BYTES`), decode as printable UTF-8. Raw PCM of real audio almost
#: never does: each sample's low byte is close to uniform, so 32 samples would all have to
#: land in the printable range (odds about 0.4**32, 1e-13).
TEXT_RUN_BYTES: Final = 64
MIN_TEXT_BYTES: Final = 8

Float32Array = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


def _looks_like_text(data: bytes) -> bool:
    """True when `data` starts with a long printable run (ASCII or UTF-8 text, e.g. JSON)."""
    head = data[:TEXT_RUN_BYTES]
    if len(head) < MIN_TEXT_BYTES:
        return False
    try:
        # A multi-byte character cut at the end of the run is still text (`final=False`).
        decoder = codecs.getincrementaldecoder("utf-8")()
        text = decoder.decode(head, final=len(data) <= TEXT_RUN_BYTES)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\n\r" for ch in text)


def _decode_container(data: bytes, max_seconds: float) -> tuple[Float32Array, int]:
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InvalidRequestError(
            f"audio container could not be read (broken or unsupported header): {exc}"
        ) from None
    if not MIN_INPUT_RATE <= info.samplerate <= MAX_INPUT_RATE:
        raise InvalidRequestError(
            f"audio sample rate {info.samplerate} Hz is outside the supported "
            f"{MIN_INPUT_RATE}..{MAX_INPUT_RATE} Hz"
        )
    if not 1 <= info.channels <= MAX_INPUT_CHANNELS:
        raise InvalidRequestError(
            f"audio has {info.channels} channels; at most {MAX_INPUT_CHANNELS}"
        )
    if info.frames > max_seconds * info.samplerate:
        raise InvalidRequestError(
            f"audio is {info.frames / info.samplerate:.1f} s long; the limit is {max_seconds:.0f} s"
        )
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InvalidRequestError(f"audio data could not be decoded: {exc}") from None
    if samples.shape[0] == 0:
        raise InvalidRequestError("audio is empty (the container holds no samples)")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def _decode_raw(data: bytes, max_seconds: float) -> tuple[Float32Array, int]:
    if len(data) % 2:
        raise InvalidRequestError(
            f"raw audio must be PCM16 little-endian (an even number of bytes); got {len(data)} bytes"
        )
    if len(data) / 2 > max_seconds * RAW_PCM_RATE:
        raise InvalidRequestError(
            f"audio is {len(data) / 2 / RAW_PCM_RATE:.1f} s of 16 kHz PCM16; "
            f"the limit is {max_seconds:.0f} s"
        )
    return pcm16_bytes_to_float(data), RAW_PCM_RATE


def decode_audio(
    data: bytes,
    *,
    target_rate: int = RAW_PCM_RATE,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> Float32Array:
    """Decode PCM16 (16 kHz mono) or container bytes to float32 mono at `target_rate`.

    Raises `InvalidRequestError` for empty input, non-audio bytes, a broken header, an
    unsupported rate/channel count, or audio longer than `max_seconds`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidRequestError(f"audio must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise InvalidRequestError("audio is empty")
    if data.startswith(_CONTAINER_MAGIC):
        samples, rate = _decode_container(data, max_seconds)
    elif data.startswith(_NOT_AUDIO_MAGIC) or _looks_like_text(data):
        raise InvalidRequestError(
            "audio is neither 16 kHz mono PCM16 nor a WAV/FLAC/OGG file "
            "(the bytes look like another file type or text)"
        )
    else:
        samples, rate = _decode_raw(data, max_seconds)
    if not np.all(np.isfinite(samples)):
        raise InvalidRequestError("audio contains NaN or infinite samples")
    return resample(samples, rate, target_rate)


def decode_pcm16(
    data: bytes,
    *,
    target_rate: int = RAW_PCM_RATE,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> Int16Array:
    """Like `decode_audio` but returns int16 samples (the Whisper and wire format)."""
    samples = decode_audio(data, target_rate=target_rate, max_seconds=max_seconds)
    return float_to_int16(samples)


def resample(samples: Float32Array, from_rate: int, to_rate: int) -> Float32Array:
    """Band-limited resampling of float32 mono audio (soxr HQ); a no-op at equal rates."""
    if from_rate == to_rate or samples.size == 0:
        return np.ascontiguousarray(samples, dtype=np.float32)
    out = soxr.resample(samples.astype(np.float32, copy=False), from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def float_to_int16(samples: Float32Array) -> Int16Array:
    """Scale by 32768 (the inverse of `pcm16_bytes_to_float`, so raw PCM16 survives a round
    trip bit for bit), round to nearest and clip to the int16 range."""
    scaled = np.rint(samples.astype(np.float32, copy=False) * np.float32(32768.0))
    out: Int16Array = np.clip(scaled, -32768, 32767).astype(np.int16)
    return out


def float_to_pcm16_bytes(samples: Float32Array) -> bytes:
    """float32 mono -> s16le bytes."""
    return float_to_int16(samples).astype("<i2", copy=False).tobytes()


def pcm16_bytes_to_float(data: bytes) -> Float32Array:
    """s16le bytes -> float32 mono in [-1, 1). `len(data)` must be even."""
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)
