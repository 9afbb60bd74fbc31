"""Silero VAD as the barge-in gate's second opinion (realtime/vad/speech_model.py): the real
model that faster-whisper ships, streamed chunk by chunk, and what it changes in the segmenter.

Real recorded speech (the pytest-audioeval clips) and the echo rooms' clicks, coughs and
noise bursts (bench/echo_rooms.py)."""

from __future__ import annotations

import numpy as np
import pytest
from rt_helpers import noise_pcm16k

from bench.echo_rooms import click, cough, noise_burst
from bench.speech_clips import load_clips
from realtime.vad import SpeechStarted, VadSegmenter, limits, speech_model
from realtime.vad.speech_model import SpeechProbability, load_speech_model

FRAME_BYTES = 960  # 30 ms at 16 kHz


def _pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()


def _with_floor(sound: np.ndarray, lead_s: float = 1.0, tail_s: float = 0.6) -> bytes:
    """`sound` (float, 16 kHz) after `lead_s` of a quiet room, and `tail_s` of it after."""
    floor = np.frombuffer(noise_pcm16k(lead_s + len(sound) / 16_000 + tail_s), "<i2")
    x = floor.astype(np.float64)
    at = int(lead_s * 16_000)
    x[at : at + len(sound)] += sound * 32767.0
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def test_streaming_in_odd_pieces_gives_the_model_s_own_probabilities() -> None:
    """Fed 700 bytes at a time, each chunk gets exactly what faster-whisper's batch call of
    the same model gives it (state and context carried from chunk to chunk)."""
    from faster_whisper.vad import SileroVADModel

    clip = load_clips()[0]
    pcm = clip.pcm[: len(clip.pcm) - len(clip.pcm) % (2 * limits.SPEECH_CHUNK_SAMPLES)]
    model = SpeechProbability()
    got = [p for k in range(0, len(pcm), 700) for p, _ in model.feed(pcm[k : k + 700])]
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
    want = SileroVADModel(str(speech_model.speech_model_path()))(audio).reshape(-1)
    assert len(got) == len(want)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert max(got) >= 0.9  # and it is speech


@pytest.mark.parametrize("name", ["click", "double_click", "burst", "cough"])
def test_clicks_bursts_and_coughs_are_not_speech(name: str) -> None:
    sounds = {
        "click": click(),
        "double_click": np.concatenate([click(), np.zeros(1600), click()]),
        "burst": noise_burst(),
        "cough": cough(),
    }
    probs = [p for p, _ in SpeechProbability().feed(_with_floor(sounds[name]))]
    assert max(probs) < limits.BARGE_IN_SPEECH_PROB, probs


def _start_ms(seg: VadSegmenter, pcm: bytes) -> int | None:
    """When (ms of audio fed) the segmenter starts a turn, fed 30 ms at a time."""
    for k in range(0, len(pcm), FRAME_BYTES):
        if any(isinstance(e, SpeechStarted) for e in seg.feed(pcm[k : k + FRAME_BYTES])):
            return seg.position_ms
    return None


def _replying(model: SpeechProbability | None) -> VadSegmenter:
    seg = VadSegmenter(speech_model=model)
    seg.barge_in = True
    seg.echo_guard_db = 45.0  # a reply's echo residue, well under the clips' speech
    return seg


def test_a_barge_in_starts_on_the_first_chunk_of_clear_speech() -> None:
    """Over a playing reply, webrtcvad alone needs 90 ms of voiced, pitched frames; the model
    starts the barge-in on the first chunk it hears as speech over the guard. Measured here
    (ms after the energy onset, alone -> with the model): counting 100 -> 70, hello world
    130 -> 130 (the model crosses 0.5 only on its fourth chunk), the quick brown fox's soft
    onset 220 -> 70."""
    earlier = 0
    for clip in load_clips():
        pcm = _with_floor(np.frombuffer(clip.pcm, "<i2") / 32768.0)
        onset_ms = 1000 + clip.onset_frame * 20
        alone = _start_ms(_replying(None), pcm)
        heard = _start_ms(_replying(SpeechProbability()), pcm)
        assert alone is not None and heard is not None, clip.name
        assert heard <= alone, (clip.name, heard, alone)  # never later
        assert heard - onset_ms <= 150, (clip.name, heard, onset_ms)
        earlier += heard <= alone - 30
    assert earlier >= 2


def test_speech_under_the_echo_guard_does_not_start_a_barge_in() -> None:
    """The model says what is speech, not whose: the assistant's own echo is speech too, so
    the level must still be over the guard."""
    clip = load_clips()[0]
    pcm = _with_floor(np.frombuffer(clip.pcm, "<i2") / 32768.0)
    seg = _replying(SpeechProbability())
    seg.echo_guard_db = 120.0  # louder than any PCM16 audio
    assert _start_ms(seg, pcm) is None


class _CountingModel(SpeechProbability):
    """The real model, counting the chunks it is given."""

    def __init__(self) -> None:
        self.chunks = 0
        super().__init__()

    def feed(self, pcm: bytes) -> list[tuple[float, float]]:
        out = super().feed(pcm)
        self.chunks += len(out)
        return out


def test_the_model_listens_only_while_a_reply_plays() -> None:
    """Outside a reply a turn starts on webrtcvad's evidence as before, and the model costs
    nothing; once the reply plays it follows every chunk."""
    clip = load_clips()[0]
    pcm = _with_floor(np.frombuffer(clip.pcm, "<i2") / 32768.0)
    model = _CountingModel()
    seg = VadSegmenter(speech_model=model)
    assert _start_ms(seg, pcm) == _start_ms(VadSegmenter(), pcm)
    assert model.chunks == 0
    seg = _replying(model)
    assert _start_ms(seg, _with_floor(np.zeros(16_000))) is None
    assert model.chunks >= 2.5 * 16_000 // limits.SPEECH_CHUNK_SAMPLES - 1


def test_without_the_model_the_server_still_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """A missing model file: no model, a warning, and barge-in on webrtcvad alone."""
    speech_model._session.cache_clear()
    monkeypatch.setattr(speech_model, "speech_model_path", lambda: tmp_path / "gone.onnx")  # type: ignore[operator]
    try:
        assert load_speech_model() is None
    finally:
        monkeypatch.undo()
        speech_model._session.cache_clear()
    assert load_speech_model() is not None
