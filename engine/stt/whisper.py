"""Blocking Whisper decodes: a short encoder window with guards, and the full 30 s window.

faster-whisper always pads the encoder input to Whisper's 30 s window, so a 1 s utterance
costs as much as a 30 s one (Whisper base: ~0.5-0.9 s on two cores). CTranslate2's encoder
accepts fewer mel frames, and the cost falls with them, but on a short window the decoder
sometimes repeats the transcript in a loop. `WhisperDecoder.decode` therefore:

1. encodes the audio's mel frames plus `SHORT_PAD_S` of zero frames (what the full window
   pads with), at least `SHORT_MIN_WINDOW_S` (measured: with less, short clips loop more);
2. detects the language on that encoding when none is given, and refuses the short window
   below `SHORT_LANGUAGE_MIN_PROBABILITY`;
3. decodes with a token budget from the duration (`SHORT_TOKENS_PER_SECOND` * s +
   `SHORT_TOKENS_BASE`): a transcript that reaches it is a loop;
4. checks the text for repetition (`is_repetitive`), the average log-probability, and
   coverage: too few tokens for the seconds of voiced audio (`voiced_seconds`) means the
   decoder stopped early and dropped the end (seen with base on joined clips: "Ciao mondo!"
   for 3.2 voiced seconds of "Ciao mondo! Uno, due, ...");
5. falls back to faster-whisper's full-window `transcribe` when any guard trips, and counts
   the fallback by reason (`stats`).

Audio longer than one window, or `encoder_window="full"`, always takes the full window.
Everything here blocks: call it from the STT worker thread only (CTranslate2 releases the
GIL while it computes).
"""

from __future__ import annotations

import re
import time
import zlib
from collections import Counter
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidRequestError
from engine.stt import limits
from engine.stt.core import Decoded, Int16Array

__all__ = ["WhisperDecoder", "is_repetitive", "token_budget", "voiced_seconds"]

_WORD_RE: Final = re.compile(r"\w+")


def token_budget(seconds: float) -> int:
    """Most tokens a transcript of `seconds` of speech may take on the short window."""
    return int(limits.SHORT_TOKENS_PER_SECOND * seconds + limits.SHORT_TOKENS_BASE)


def voiced_seconds(audio: npt.NDArray[np.float32]) -> float:
    """Seconds of `audio` (16 kHz float) in frames within `VOICED_RELATIVE_DB` of its loud
    frames (the 95th percentile of frame RMS): speech time, not counting pauses."""
    frame = int(limits.VOICED_FRAME_S * limits.SAMPLE_RATE)
    count = audio.size // frame
    if count == 0:
        return 0.0
    rms = np.sqrt(np.mean(np.square(audio[: count * frame].reshape(count, frame)), axis=1))
    floor = float(np.percentile(rms, 95)) * 10 ** (limits.VOICED_RELATIVE_DB / 20)
    return float(np.count_nonzero(rms > floor)) * limits.VOICED_FRAME_S


def is_repetitive(text: str) -> bool:
    """True when `text` looks like a decoder loop rather than speech.

    Trips on: a phrase of 2+ words said twice in a row ("turn it off turn it off"), a word
    three times in a row, a 4-word phrase twice anywhere (a transcript that starts over), or
    a high zlib compression ratio (loops in scripts without spaces). A false trip costs one
    full-window decode, never a wrong transcript.
    """
    words = _WORD_RE.findall(text.lower())
    count = len(words)
    for n in range(1, count // 2 + 1):
        for i in range(count - 2 * n + 1):
            if words[i : i + n] != words[i + n : i + 2 * n]:
                continue
            if n >= 2 or words[i : i + 3] == [words[i]] * 3:
                return True
    seen: set[tuple[str, ...]] = set()
    for i in range(count - 3):
        phrase = tuple(words[i : i + 4])
        if phrase in seen:
            return True
        seen.add(phrase)
    raw = text.encode("utf-8")
    if len(raw) < limits.SHORT_COMPRESSION_MIN_BYTES:
        return False
    return len(raw) / len(zlib.compress(raw)) > limits.SHORT_COMPRESSION_RATIO_MAX


class WhisperDecoder:
    """Decodes for one loaded `faster_whisper.WhisperModel`; worker thread only.

    `encoder_window` is "auto" (short window with guards and fallback) or "full".
    `stats` counts decodes per window and fallbacks per reason ("fallback_budget", ...).
    """

    def __init__(self, model: Any, *, model_id: str, encoder_window: str) -> None:
        self._model = model
        self._model_id = model_id
        self._encoder_window = encoder_window
        self.stats: Counter[str] = Counter()

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def decode(self, pcm: Int16Array, language: str | None) -> Decoded:
        """Transcribe int16 16 kHz mono samples. Raises `InvalidRequestError` for a language
        the model does not support (English-only models accept only "en")."""
        language = self._check_language(language)
        t0 = time.perf_counter()
        audio = pcm.astype(np.float32) / np.float32(32768.0)
        fallback = ""
        if self._encoder_window == "auto" and audio.size <= limits.SHORT_MAX_SAMPLES:
            short = self._decode_short(audio, language)
            if not short.fallback:
                self.stats["short"] += 1
                return short._replace(seconds=time.perf_counter() - t0)
            fallback = short.fallback
            self.stats["fallback_" + fallback] += 1
        full = self._decode_full(audio, language)
        self.stats["full"] += 1
        return full._replace(seconds=time.perf_counter() - t0, fallback=fallback)

    def _check_language(self, language: str | None) -> str | None:
        if language is not None and language not in self._model.supported_languages:
            raise InvalidRequestError(
                f"language {language!r} is not supported by STT model {self._model_id!r}"
            )
        if not self.multilingual:
            return "en"
        return language

    def _decode_full(self, audio: npt.NDArray[np.float32], language: str | None) -> Decoded:
        """faster-whisper's own path: the 30 s window, its temperature fallback, its
        no-speech skip."""
        segments, info = self._model.transcribe(
            audio,
            language=language,
            beam_size=limits.BEAM_SIZE,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        text = " ".join(seg.text.strip() for seg in segments).strip()
        probability = 1.0 if language is not None else float(info.language_probability)
        return Decoded(text, 0.0, info.language, probability, "full")

    def _encode_short(self, audio: npt.NDArray[np.float32]) -> Any:
        """Encode the audio's mel frames, then `SHORT_PAD_S` of padding, at least
        `SHORT_MIN_WINDOW_S` in all. The padding is zero mel frames, exactly what the full
        path pads with (faster-whisper pads features, not audio), so the short input is the
        full window's input cut short (measured: padding audio with silence instead gave
        tiny.en a WER of 0.13-0.16 against 0.095 on the same clips)."""
        features = self._model.feature_extractor(audio)
        frames = max(
            features.shape[-1] + int(limits.SHORT_PAD_S * limits.MEL_FRAMES_PER_SECOND),
            int(limits.SHORT_MIN_WINDOW_S * limits.MEL_FRAMES_PER_SECOND),
        )
        # The encoder's first convolution has stride 2: keep an even frame count.
        frames = min(frames + frames % 2, limits.WHISPER_WINDOW_FRAMES)
        window = np.zeros((features.shape[0], frames), dtype=np.float32)
        used = min(features.shape[-1], frames)
        window[:, :used] = features[:, :used]
        return self._model.encode(window)

    def _decode_short(self, audio: npt.NDArray[np.float32], language: str | None) -> Decoded:
        """One greedy/beam decode on the short encoding; `fallback` names a tripped guard."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        encoded = self._encode_short(audio)
        probability = 1.0
        if language is None:
            token, probability = self._model.model.detect_language(encoded)[0][0]
            language = str(token)[2:-2]  # "<|en|>" -> "en"
            if probability < limits.SHORT_LANGUAGE_MIN_PROBABILITY:
                return Decoded("", 0.0, language, probability, "short", "language")
        tokenizer = Tokenizer(
            self._model.hf_tokenizer, self.multilingual, task="transcribe", language=language
        )
        prompt = self._model.get_prompt(tokenizer, [], without_timestamps=True)
        budget = token_budget(audio.size / limits.SAMPLE_RATE)
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=limits.BEAM_SIZE,
            # CTranslate2's Whisper stops after about max_length / 2 new tokens (measured);
            # the budget check below uses the real count, so this only has to be enough.
            max_length=min(limits.WHISPER_MAX_LENGTH, len(prompt) + 2 * budget),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        ids = result.sequences_ids[0]
        text = tokenizer.decode(ids).strip()
        # faster-whisper's average log-probability (length_penalty 1).
        avg_logprob = float(result.scores[0]) * len(ids) / (len(ids) + 1)
        decoded = Decoded(text, 0.0, language, float(probability), "short")
        if (
            result.no_speech_prob > limits.NO_SPEECH_THRESHOLD
            and avg_logprob < limits.LOG_PROB_THRESHOLD
        ):
            return decoded._replace(text="")  # silence: faster-whisper drops it too
        if len(ids) >= budget:
            return decoded._replace(fallback="budget")
        if avg_logprob < limits.LOG_PROB_THRESHOLD:
            return decoded._replace(fallback="logprob")
        if is_repetitive(text):
            return decoded._replace(fallback="repetition")
        voiced = voiced_seconds(audio)
        if (
            voiced >= limits.SHORT_COVERAGE_MIN_VOICED_S
            and len(ids) < limits.SHORT_MIN_TOKENS_PER_VOICED_S * voiced
        ):
            return decoded._replace(fallback="coverage")  # the decoder stopped early
        return decoded
