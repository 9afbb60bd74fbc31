"""Every number the kiosk client works with, in one place.

The wire rates come from the server's own limits (one owner); the rest are the kiosk's:
how it chops the microphone, how much reply audio it holds before playing, how often it
reports what was played, and how it backs off when the server is gone.
"""

from __future__ import annotations

from typing import Final

from realtime import limits as rt_limits

# --- the wire (owned by the server) -----------------------------------------------------------
INPUT_RATE: Final = rt_limits.INPUT_RATE  # microphone PCM16 LE mono the server expects
OUTPUT_RATE: Final = rt_limits.OUTPUT_RATE  # reply PCM16 LE mono the server sends
# The formats a session declares (`session.created`); a server that declares others is one
# this kiosk cannot talk to, and it says so instead of playing noise.
INPUT_FORMAT: Final = f"pcm16le/{INPUT_RATE}/mono"
OUTPUT_FORMAT: Final = f"pcm16le/{OUTPUT_RATE}/mono"

# --- microphone ---------------------------------------------------------------------------------
MIC_CHUNK_MS: Final = 20  # one binary frame of microphone audio (the web client's size too)
MIC_CHUNK_SAMPLES: Final = INPUT_RATE * MIC_CHUNK_MS // 1000
OUT_CHUNK_SAMPLES: Final = OUTPUT_RATE * MIC_CHUNK_MS // 1000  # speaker block, same period
# Microphone chunks waiting to be sent. Past it the oldest is dropped: after a network stall,
# seconds of stale speech would only make a late, wrong turn (the web client drops too).
MIC_QUEUE_CHUNKS: Final = 50  # 1 s
# Capture times kept to map the server's `audio_end_ms` back onto the client's clock: one per
# chunk, so 30 s of history, far more than a turn's end can lag behind the microphone.
MIC_ANCHORS: Final = 1500

# --- playback -----------------------------------------------------------------------------------
# Held before a reply starts playing: smooths network jitter at little latency. The server
# paces at real time plus at most 250 ms (PLAYBACK_LEAD_MS), so this never waits long.
PREBUFFER_SAMPLES: Final = OUTPUT_RATE * 60 // 1000
MAX_QUEUED_SAMPLES: Final = OUTPUT_RATE * 60  # a runaway sender cannot exhaust memory
# How often `bitvoice.playback` reports the played position while a reply plays. The server
# takes the smaller of its own estimate and the last report, so a stale report only ever
# shortens what the history keeps as heard by at most this much.
PLAYBACK_REPORT_INTERVAL_S: Final = 0.2
# A kiosk in push-to-talk sends nothing while nobody talks; the server closes a connection
# with no client message for --idle-timeout (default 300 s), so a `bitvoice.ping` goes out
# after this long without any frame sent.
KEEPALIVE_S: Final = 60.0
TICK_S: Final = 0.05  # the async side's housekeeping period (reports, logs, key effects)

# --- connection ---------------------------------------------------------------------------------
DEFAULT_URL: Final = "ws://127.0.0.1:8765/v1/realtime"
REALTIME_PATH: Final = "/v1/realtime"
RECONNECT_FIRST_S: Final = 0.5  # first retry after a lost or refused connection
RECONNECT_MAX_S: Final = 10.0  # backoff doubles up to this
RECONNECT_JITTER: Final = 0.2  # +-20 %, so a room of kiosks does not reconnect in lockstep
OPEN_TIMEOUT_S: Final = 10.0  # TCP + TLS + upgrade
CLOSE_TIMEOUT_S: Final = 2.0
# A connection that lived this long counts as healthy: the next loss starts the backoff over.
HEALTHY_AFTER_S: Final = 5.0

# --- file mode ----------------------------------------------------------------------------------
TAIL_SILENCE_S: Final = 1.0  # silence after the input file so that its last turn can end
# After the input (and its tail) is over, how long the conversation may take to finish.
DEFAULT_FILE_WAIT_S: Final = 60.0
# File mode gives up connecting after this long by default (devices retry forever).
DEFAULT_FILE_RETRY_S: Final = 60.0
MAX_INPUT_S: Final = 600.0  # longest input file read
