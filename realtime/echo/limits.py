"""Echo-cancellation limits: frame size, reference buffering, alignment."""

from __future__ import annotations

from typing import Final

RATE: Final = 16_000  # the microphone rate: the canceller works at it
FRAME_SAMPLES: Final = RATE // 100  # WebRTC's audio processing takes 10 ms frames
REFERENCE_RATE: Final = 24_000  # the reply audio as the server sends it
# The played reference is kept this long (seconds of server time): the echo of a sample reaches
# the microphone after the client's output latency, the room and the uplink, all well below it.
REFERENCE_KEEP_S: Final = 2.0
# How the arrival of microphone audio is mapped to the time it was captured: the earliest
# arrival seen (least network and buffering delay) defines it, and that estimate rises by this
# much per second so that it follows a client clock running slow against the server's.
CAPTURE_CLOCK_LEAK: Final = 0.002

# --- the barge-in guard ----------------------------------------------------------------------
# While reply audio plays, a speech start must be louder than what the echo leaves after
# cancelling. The canceller learns that residue as it goes: a slow average
# (per 10 ms frame: ECHO_RESIDUE_RISE / _FALL) of the cleaned level over the reference level, in dB,
# measured on frames where the reference plays. Before it has converged the residue is high, so
# the guard is too. The reference level is held at its peak, falling ECHO_PEAK_FALL_DB_PER_S,
# to cover the room's delay and reverberation tail. Guard = peak + residue + ECHO_GUARD_MARGIN_DB.
# Below ECHO_ACTIVE_DB (PCM16 units, ~-60 dBFS) no echo is playing.
ECHO_ACTIVE_DB: Final = 30.0
# the residue follows a louder measurement fast and a quieter one slowly: an echo path that is
# not yet learnt (the first echo of a connection arrives after the room's delay, unconverged)
# must not find the guard already lowered
ECHO_RESIDUE_RISE: Final = 0.2
ECHO_RESIDUE_FALL: Final = 0.004
ECHO_RESIDUE_START_DB: Final = 0.0  # before any measurement: assume nothing is cancelled
ECHO_PEAK_FALL_DB_PER_S: Final = 20.0
ECHO_GUARD_MARGIN_DB: Final = 10.0
