"""VAD limits: the frame sizes and ranges webrtcvad accepts."""

from __future__ import annotations

from typing import Final

SAMPLE_RATE: Final = 16_000
FRAME_MS_CHOICES: Final = (10, 20, 30)
AGGRESSIVENESS_RANGE: Final = (0, 3)
# Consecutive voiced frames (at any frame size, converted from ms) needed to start speech.
START_SPEECH_MS: Final = 90
MAX_PREFIX_PADDING_MS: Final = 2000
# Inside a turn, a frame this far below the turn's loudest frame counts as silence even when
# webrtcvad calls it voiced (its hangover on the fading tail of a word; see the segmenter).
END_DROP_DB: Final = 35.0

# --- evidence of speech -----------------------------------------------------------------------
# A fresh webrtcvad calls the first 3-4 frames of any noise voiced (measured: white noise from
# -64 to -30 dBFS), which made every connection start with a false turn. Its first
# WARMUP_MS of audio only train it; no turn can start in them.
WARMUP_MS: Final = 150
# A frame counts towards a speech start only this far above the room's noise floor (the
# quietest recent frames outside speech; it falls at once and rises FLOOR_RISE_DB_PER_S).
START_OVER_FLOOR_DB: Final = 9.0
FLOOR_RISE_DB_PER_S: Final = 3.0
# The floor's start (dB in PCM16 units: -60 dBFS), not the stream's first frame: a stream that
# begins with speech ("What time is it?" sent from its first sample) would otherwise take the
# speech for the floor and lose its first word.
FLOOR_START_DB: Final = 30.0
# While the assistant is speaking, a start is a barge-in and needs more evidence: this much
# voiced, loud audio in a row, above the echo guard, with at least BARGE_IN_PERIODIC_FRAMES
# frames that have a pitch (normalised autocorrelation >= PERIODICITY_MIN at a lag of
# 2.5-16 ms, 60-400 Hz). Measured on 30 ms frames: voiced speech 0.8-1.0, white noise
# 0.12-0.17, a click 0.08. Clicks, noise bursts and coughs have no pitch; webrtcvad's hangover
# turned a 3 ms click into 3-4 voiced frames, which met the plain 90 ms rule. Chosen by a sweep
# in simulated rooms (bench/echo_rooms.py; 36 echo-only replies, 30 short sounds, 12 barge-ins,
# under load, AMD EPYC): 90 ms with 3 pitched frames gave 1 hold from echo, 0 from the sounds,
# hold latency p50 160 / p90 238 ms; 60 ms with 2 gave 5 holds from echo, and 8 dB of guard
# margin (realtime.echo.limits) 4-6.
BARGE_IN_START_MS: Final = 90
BARGE_IN_PERIODIC_FRAMES: Final = 2
PERIODICITY_MIN: Final = 0.5
PITCH_RANGE_HZ: Final = (60.0, 400.0)
# A second opinion for barge-in (`realtime.vad.speech_model`: Silero VAD on 32 ms chunks with
# 64 samples of context). While a reply plays, one chunk with a speech probability of at
# least BARGE_IN_SPEECH_PROB whose level is over the echo guard and START_OVER_FLOOR_DB over
# the floor starts the barge-in at once; webrtcvad's rule above still starts it where the
# model hears no speech. Silero scores clicks, coughs and noise bursts 0.03-0.42 (max over
# the sound; 54 of each in the echo rooms), speech 0.67-0.99 from its first chunk or two.
SPEECH_CHUNK_SAMPLES: Final = 512
SPEECH_CONTEXT_SAMPLES: Final = 64
BARGE_IN_SPEECH_PROB: Final = 0.5
