"""Text-to-speech: pocket-tts (voice cloning) or the offline Piper voice, one surface.

Public surface:

- `TTS()`: `await start()`, `await stop()`, `await list_voices()`,
  `await register_voice(name, audio)`, `await delete_voice(name)`,
  `open_session(voice=None, speed=None)` -> `TTSSession`, `health()`, `state`, `backend_name`.
- `TTSSession`: `await collect(text) -> bytes`, `synthesize(text)` (async iterator of 24 kHz
  mono s16le chunks), `speak(text_deltas)` (async iterator of `SpeechSegment` /
  `SpeechAudio` items, float32), `await set_voice()`, `await set_speed()`, `await pause()`,
  `await resume()`, `await close()`; see `engine.tts.session` for the rules.
- `StreamingStretcher(sample_rate, speed)` / `time_stretch()`: pitch-keeping time-stretch,
  usable on audio already being played (`engine.tts.stretch`).
- `TextSegmenter` (`feed(delta)`, `flush()`) / `segment_text(text)`: the one streaming text
  segmentation (`engine.tts.segment`).
- `MIN_SPEED`, `MAX_SPEED`, `validate_speed()`: the one owner of the speed range.
- `pull_tts_model()`: fetch the pocket-tts weights for users with internet.
- `OUTPUT_RATE` (24000).
"""

from __future__ import annotations

from engine.tts.component import TTS
from engine.tts.limits import MAX_CHUNK_SAMPLES, MAX_SPEED, MIN_SPEED, OUTPUT_RATE, validate_speed
from engine.tts.models import POCKET_TTS_MODEL, pull_tts_model
from engine.tts.segment import TextSegmenter, segment_text
from engine.tts.session import SpeechAudio, SpeechItem, SpeechSegment, TTSSession
from engine.tts.stretch import StreamingStretcher, time_stretch
from engine.tts.voices import VoiceStoreWarning, validate_voice_name

__all__ = [
    "MAX_CHUNK_SAMPLES",
    "MAX_SPEED",
    "MIN_SPEED",
    "OUTPUT_RATE",
    "POCKET_TTS_MODEL",
    "TTS",
    "SpeechAudio",
    "SpeechItem",
    "SpeechSegment",
    "StreamingStretcher",
    "TTSSession",
    "TextSegmenter",
    "VoiceStoreWarning",
    "pull_tts_model",
    "segment_text",
    "time_stretch",
    "validate_speed",
    "validate_voice_name",
]
