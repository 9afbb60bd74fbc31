"""The bounded hand-off between a session's synthesis side and its reader (internal).

`SpeechBuffer` holds items in order: raw float32 audio (counted in samples against its bound)
and markers (counted as zero). The synthesis side waits for room *between* segments
(`wait_for_room`) and puts a segment's audio without waiting (`put_nowait`, scheduled onto the
loop from the TTS worker thread), so synthesis runs ahead of the reader by at most
`max_samples` plus one segment and the shared worker never waits on a slow reader; `put()`
waits while full, for items made on the loop. `close()` drops what is held and wakes both
sides at once: the reader's `get()` returns `CLOSED`, a waiting `put()` returns False.
Everything runs on the loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

__all__ = ["CLOSED", "END", "SEGMENT_END", "SpeechBuffer", "SynthesisCancelled"]


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<{self._name}>"


#: The synthesis of every segment is done; nothing follows.
END: Final = _Marker("END")
#: The current segment's audio is complete (the reader flushes its time-stretcher).
SEGMENT_END: Final = _Marker("SEGMENT_END")
#: Returned by `get()` once the buffer is closed (close() or TTS.stop()).
CLOSED: Final = _Marker("CLOSED")

#: How often a worker thread blocked on a full buffer checks its stop flag (seconds).


class SynthesisCancelled(Exception):
    """Raised on the worker thread when its synthesis was cancelled (stop flag or closed)."""


class SpeechBuffer:
    """Bounded by audio samples; one writer and one reader at a time (not thread-safe)."""

    def __init__(self, max_samples: int) -> None:
        self._items: deque[tuple[object, int]] = deque()
        self._samples = 0
        self._max = max_samples
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self.closed = False

    @property
    def samples(self) -> int:
        """Audio samples held (synthesized, not yet taken by the reader)."""
        return self._samples

    async def put(self, item: object, samples: int = 0) -> bool:
        """Append `item` (holding `samples` samples); wait while full. False once closed."""
        while not self.closed and self._samples and self._samples + samples > self._max:
            self._writable.clear()
            await self._writable.wait()
        return self.put_nowait(item, samples)

    def put_nowait(self, item: object, samples: int = 0) -> bool:
        """Append `item` whatever the bound (a segment already made goes in whole; the bound
        is kept between segments by `wait_for_room`). False once closed."""
        if self.closed:
            return False
        self._items.append((item, samples))
        self._samples += samples
        self._readable.set()
        return True

    async def wait_for_room(self) -> bool:
        """Wait until the buffer holds less than its bound. False once closed."""
        while not self.closed and self._samples >= self._max:
            self._writable.clear()
            await self._writable.wait()
        return not self.closed

    async def get(self) -> object:
        """The next item, waiting for one; `CLOSED` once closed (held items are dropped)."""
        while not self._items and not self.closed:
            self._readable.clear()
            await self._readable.wait()
        if self.closed:
            return CLOSED
        item, samples = self._items.popleft()
        self._samples -= samples
        self._writable.set()
        return item

    def close(self) -> None:
        """Drop everything held; wake the reader (-> CLOSED) and a waiting writer (-> False)."""
        self.closed = True
        self._items.clear()
        self._samples = 0
        self._readable.set()
        self._writable.set()
