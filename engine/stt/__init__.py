"""Speech-to-text: Whisper (faster-whisper, CTranslate2 int8 on CPU).

Public surface:

- `STT(model_id=DEFAULT_STT_MODEL, *, num_threads=0, encoder_window="auto")`: `await start()`,
  `await stop()`, `open_session()` -> `STTSession`, `open_stream(language=None)` ->
  `StreamingTranscriber`, `health()`, `busy`, `state`. `encoder_window="full"` forces
  Whisper's 30 s window; "auto" encodes only the audio, guarded (see `engine.stt.whisper`).
- `STTSession.transcribe(audio, language=None) -> str` (PCM16 16 kHz mono, whatever its first
  bytes, or WAV/FLAC/OGG of any common format); see `engine.stt.session`.
- `StreamingTranscriber.feed(pcm)`, `await transcribe_buffer(language=None)`,
  `await finalize(language=None)` -> `Transcript`, `reset()`, `audio_seconds`; see
  `engine.stt.streaming`.
- Weights: `resolve_stt_model(model_id) -> Path`, `pull_stt_model(repo_id, *, revision=None)
  -> Path` (for `bitvoice pull`), `installed_stt_models()`, `verify_stt_model(model_id)`;
  see `engine.stt.models`.
"""

from __future__ import annotations

from engine.stt.component import STT
from engine.stt.core import validate_language
from engine.stt.models import (
    DEFAULT_STT_MODEL,
    TINY_EN_STT_MODEL,
    installed_stt_models,
    pull_stt_model,
    resolve_stt_model,
    stt_model_dir,
    verify_stt_model,
)
from engine.stt.session import STTSession
from engine.stt.streaming import StreamingTranscriber, Transcript

__all__ = [
    "DEFAULT_STT_MODEL",
    "STT",
    "TINY_EN_STT_MODEL",
    "STTSession",
    "StreamingTranscriber",
    "Transcript",
    "installed_stt_models",
    "pull_stt_model",
    "resolve_stt_model",
    "stt_model_dir",
    "validate_language",
    "verify_stt_model",
]
