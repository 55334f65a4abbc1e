"""A preallocated single-producer/single-consumer ring buffer of audio frames.

Contract (the PortAudio callback is the consumer):
  - `read_into(out)` always fills `out` completely, never blocks, never allocates;
    if fewer frames are buffered it pads with zeros and returns how many were missing
    (an underrun), so the caller can count it.
  - `write(frames)` copies what fits and returns how many frames it took; the producer
    waits (backpressure) and retries with the rest.
  - Only the producer moves `_w`, only the consumer moves `_r`; each is a Python int
    assigned in one step, so no lock is needed between the two threads.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    def __init__(self, capacity: int, channels: int):
        if capacity <= 0:
            raise ValueError(f"RingBuffer capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.channels = channels
        self._buf = np.zeros((capacity, channels), dtype=np.float32)
        self._r = 0  # total frames read (consumer)
        self._w = 0  # total frames written (producer)

    @property
    def frames_read(self) -> int:
        """Frames the consumer has taken so far (its position in the stream it is playing)."""
        return self._r

    def level(self) -> int:
        return max(0, self._w - self._r)

    def free(self) -> int:
        return self.capacity - self.level()

    def write(self, frames: np.ndarray) -> int:
        n = min(len(frames), self.free())
        if n <= 0:
            return 0
        start = self._w % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start:start + first] = frames[:first]
        self._buf[: n - first] = frames[first:n]
        self._w += n  # publish only after the data is in place
        return n

    def read_into(self, out: np.ndarray) -> int:
        want = len(out)
        n = min(want, self.level())
        start = self._r % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._buf[start:start + first]
        out[first:n] = self._buf[: n - first]
        if n < want:
            out[n:] = 0.0
        self._r += n
        return want - n

    def peek_ahead(self, offset: int, n: int) -> np.ndarray:
        """A copy of `n` buffered frames starting `offset` frames after the read position (producer side)."""
        idx = (self._r + offset + np.arange(n)) % self.capacity
        return self._buf[idx].copy()

    def truncate(self, keep: int) -> int:
        """Producer side: drop buffered frames beyond the first `keep`; returns how many were dropped.

        Safe while the consumer reads as long as `keep` exceeds one callback block.
        """
        level = self.level()
        if level <= keep:
            return 0
        self._w = self._r + keep
        return level - keep
