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
# While reply audio plays, a speech start must be louder than what the echo can leave after
# cancelling: guard = the reference's recent peak + min(residue, coupling) + ECHO_GUARD_MARGIN_DB.
# - The peak falls ECHO_PEAK_FALL_DB_PER_S, to cover the room's delay and reverberation tail.
# - coupling / residue: the raw / cleaned microphone level over that peak, the loudest of the
#   last ECHO_WINDOW_S of frames. A prior of ECHO_PRIOR_DB fills both windows until that much
#   reply has been heard (longer than any room's delay: a connection's first echo arrives late
#   and before AEC3 has converged). A client with no echo path at all (headphones, its own AEC)
#   thus gets a low guard two seconds into the first reply. 2 s, not 1: with
#   1 s, espeak's reply in 0.4 s-RT60 rooms held itself 3 times at 1.1-1.5 s (AEC3 not yet
#   converged); 3 s missed 9 of 15 barge-ins (tests/realtime/test_echo.py's rooms).
# Only echo may teach them, never the user's voice (else it would raise the guard against
# itself): a frame counts when AEC3 took at least ECHO_REMOVED_DB out of it and left no more
# than ECHO_DOUBLE_TALK_DB over the residue learnt so far, or when its raw level is
# ECHO_QUIET_DB or more below the peak (noise, or an echo too faint to matter).
# A client with no echo path at all (headphones, its own AEC, a file) need not wait out the
# prior: once ECHO_NO_PATH_S of loud reply (within ECHO_LOUD_DB of its peak) has played with
# every microphone frame quiet, no echo can be on its way (longer than any output latency and
# room delay, ~0.3 s), and the prior goes. A frame that is not quiet (echo, or the user)
# voids that evidence: the count starts again.
# Below ECHO_ACTIVE_DB (PCM16 units, ~-60 dBFS) no echo is playing.
ECHO_ACTIVE_DB: Final = 30.0
ECHO_PEAK_FALL_DB_PER_S: Final = 20.0
ECHO_WINDOW_S: Final = 2.0
ECHO_PRIOR_DB: Final = 0.0
ECHO_REMOVED_DB: Final = 6.0
ECHO_QUIET_DB: Final = -30.0
ECHO_DOUBLE_TALK_DB: Final = 6.0
ECHO_GUARD_MARGIN_DB: Final = 6.0
ECHO_NO_PATH_S: Final = 0.6
ECHO_LOUD_DB: Final = -10.0
