"""Real recorded speech for the realtime benchmark, and where its speech ends.

    load_clips() -> list[Clip]                the English clips of `pytest-audioeval`
    join(a, b, pause_ms) -> Clip              two clips' speech with a silent pause between

Every clip is 16 kHz mono PCM16 (resampled and down-mixed when needed), cut into 20 ms frames
(320 samples, 640 bytes): the frames a microphone client sends.

The end of speech is found in the clip's own audio by energy, per 20 ms frame:
level = 10*log10(mean(x^2)) in dBFS; peak = the loudest frame; floor = the 10th percentile of
the frames; threshold = max(peak - 35 dB, floor + 12 dB). The first frame at or above the
threshold is the speech onset, the last one the end of speech. (35 dB below the peak keeps a
word's audible decay; 12 dB above the floor keeps room noise out on noisy recordings.)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "RATE",
    "Clip",
    "audioeval_dir",
    "join",
    "load_clip",
    "load_clips",
    "speech_bounds",
]

RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
FRAME_BYTES = 2 * FRAME_SAMPLES
PEAK_DROP_DB = 35.0
FLOOR_RISE_DB = 12.0
FLOOR_PERCENTILE = 10


@dataclass(frozen=True)
class Clip:
    """Speech to stream: PCM16 LE bytes (a whole number of 20 ms frames), its reference
    text, and the frame indices of the speech onset and of the last speech frame.
    `pause_frames` is the (first, end) frame range of an inserted mid-utterance pause."""

    name: str
    source: str
    reference: str
    pcm: bytes
    onset_frame: int
    end_frame: int
    pause_frames: tuple[int, int] | None = None

    @property
    def n_frames(self) -> int:
        return len(self.pcm) // FRAME_BYTES

    @property
    def duration_s(self) -> float:
        return self.n_frames * FRAME_MS / 1000


def audioeval_dir() -> Path:
    """pytest-audioeval's English samples folder (.wav + .txt reference per clip)."""
    spec = importlib.util.find_spec("pytest_audioeval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pytest-audioeval is not installed (pip install pytest-audioeval)")
    return Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio" / "en"


def _to_pcm16_16k(path: Path) -> np.ndarray:
    """int16 mono at 16 kHz, padded with zeros to whole 20 ms frames."""
    import soundfile as sf

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = x.mean(axis=1)
    if rate != RATE:
        from scipy.signal import resample_poly

        g = np.gcd(int(rate), RATE)
        mono = resample_poly(mono, RATE // g, int(rate) // g).astype(np.float32)
    pcm = np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)
    pad = -len(pcm) % FRAME_SAMPLES
    return np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])


def frame_levels_db(pcm: np.ndarray) -> np.ndarray:
    """dBFS of each 20 ms frame of int16 samples (a whole number of frames)."""
    frames = pcm.astype(np.float64).reshape(-1, FRAME_SAMPLES) / 32768.0
    return np.asarray(10.0 * np.log10((frames**2).mean(axis=1) + 1e-12))


def speech_bounds(pcm: np.ndarray) -> tuple[int, int]:
    """(onset frame, last speech frame) by the energy rule in the module docstring."""
    db = frame_levels_db(pcm)
    threshold = max(
        float(db.max()) - PEAK_DROP_DB, float(np.percentile(db, FLOOR_PERCENTILE)) + FLOOR_RISE_DB
    )
    voiced = np.flatnonzero(db >= threshold)
    return int(voiced[0]), int(voiced[-1])


def load_clip(wav: Path, reference: str, source: str) -> Clip:
    pcm = _to_pcm16_16k(wav)
    onset, end = speech_bounds(pcm)
    return Clip(wav.stem, source, reference.strip(), pcm.tobytes(), onset, end)


def load_clips() -> list[Clip]:
    """The English clips of pytest-audioeval, sorted by name."""
    root = audioeval_dir()
    return [
        load_clip(wav, wav.with_suffix(".txt").read_text(encoding="utf-8"), "pytest-audioeval")
        for wav in sorted(root.glob("*.wav"))
        if wav.with_suffix(".txt").is_file()
    ]


def join(a: Clip, b: Clip, pause_ms: int) -> Clip:
    """a's audio up to its last speech frame, `pause_ms` of digital silence, then b from its
    onset: one utterance with a mid-sentence pause. The reference is both texts."""
    fa, fb = a.pcm[: (a.end_frame + 1) * FRAME_BYTES], b.pcm[b.onset_frame * FRAME_BYTES :]
    pause = pause_ms // FRAME_MS
    first = a.end_frame + 1
    pcm = fa + bytes(pause * FRAME_BYTES) + fb
    return Clip(
        name=f"{a.name}+{pause_ms}ms+{b.name}",
        source=f"{a.source} (joined)",
        reference=f"{a.reference} {b.reference}",
        pcm=pcm,
        onset_frame=a.onset_frame,
        end_frame=first + pause + (b.end_frame - b.onset_frame),
        pause_frames=(first, first + pause),
    )
