"""A gain that glides in a straight line from one value to another, applied by the PortAudio callback.

The main thread publishes a glide as one tuple (first frame, gain before, gain after, length in
frames), replaced whole and never mutated, so the callback reads a consistent glide without a lock.
The callback multiplies its block in place with preallocated scratch arrays: no allocation, and once
a glide has ended at gain 1 no work at all. Frames count what the callback has played
(Player.frames_played), so a glide is sample-accurate whatever the device's block size.
"""

from __future__ import annotations

import numpy as np

MAX_BLOCK = 1 << 15  # scratch size; a larger callback block just gets the target gain at once


class GainRamp:
    def __init__(self, gain: float = 1.0):
        self._idx = np.arange(MAX_BLOCK, dtype=np.float64)
        self._scratch = np.empty(MAX_BLOCK, np.float64)
        self._out = np.empty(MAX_BLOCK, np.float32)
        self.glide_now: tuple[int, float, float, int] = (0, float(gain), float(gain), 1)

    def at(self, frame: int) -> float:
        start, g0, g1, n = self.glide_now
        return g0 + (g1 - g0) * min(max((frame - start) / n, 0.0), 1.0)

    @property
    def target(self) -> float:
        return self.glide_now[2]

    def ends_at(self) -> int:
        start, _, _, n = self.glide_now
        return start + n

    def glide(self, start_frame: int, gain: float, frames: int) -> None:
        """Main thread: from the gain at `start_frame` (whatever glide is under way) to `gain` over `frames`."""
        self.glide_now = (int(start_frame), self.at(start_frame), float(gain), max(1, int(frames)))

    def apply(self, out: np.ndarray, first: int) -> None:
        """Callback: multiply `out` (frames, channels), whose first frame is `first`, by the gain in place."""
        start, g0, g1, n = self.glide_now
        frames = len(out)
        if first >= start + n or frames > MAX_BLOCK:
            if g1 != 1.0:
                np.multiply(out, g1, out=out)
            return
        if first + frames <= start and g0 == 1.0:
            return
        # g[i] = g0 + (g1 - g0) * clip((first + i - start) / n, 0, 1), built in the scratch arrays
        # (float64: a wake-up glide is tens of millions of frames long).
        g = self._scratch[:frames]
        np.add(self._idx[:frames], first - start, out=g)
        np.multiply(g, 1.0 / n, out=g)
        np.clip(g, 0.0, 1.0, out=g)
        np.multiply(g, g1 - g0, out=g)
        np.add(g, g0, out=g)
        g32 = self._out[:frames]
        g32[:] = g
        np.multiply(out, g32[:, None], out=out)
