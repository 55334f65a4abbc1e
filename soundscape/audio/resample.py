"""Streaming polyphase resampling that equals one-shot resampling of the whole stream.

scipy's resample_poly is linear and shift-invariant for shifts that are a multiple of
`down` input samples, and its zero-phase filter reaches `radius` samples either side.
So each call resamples [history | block | lookahead] and keeps only the block's part:
no edge effects at block boundaries, hence no clicks, at the cost of `lookahead` samples
of latency (a few ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd

import numpy as np
from scipy.signal import firwin, resample_poly


@dataclass
class ResamplerState:
    history: np.ndarray | None = None  # the last `context` input samples already emitted
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


class StreamResampler:
    def __init__(self, in_rate: int, out_rate: int):
        g = gcd(in_rate, out_rate)
        self.up, self.down = out_rate // g, in_rate // g
        if self.up == self.down:  # same rate: push() passes audio through
            self.taps, self.context = None, 0
            return
        half_len = 10 * max(self.up, self.down)
        # The same Kaiser-windowed FIR that resample_poly designs by default.
        self.taps = firwin(2 * half_len + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0))
        radius = half_len // self.up + 2
        self.context = -(-radius // self.down) * self.down  # rounded up to a multiple of `down`

    def push(self, x: np.ndarray, state: ResamplerState) -> tuple[np.ndarray, ResamplerState]:
        """Resample what can be finished now; keep the rest pending."""
        if self.up == self.down:
            return np.asarray(x, np.float32), state
        history = state.history if state.history is not None else np.zeros(self.context, np.float32)
        pending = np.concatenate([state.pending, np.asarray(x, np.float32)])
        n = (len(pending) - self.context) // self.down * self.down
        if n <= 0:
            return np.zeros(0, np.float32), ResamplerState(history, pending)
        window = np.concatenate([history, pending[: n + self.context]])
        y = resample_poly(window, self.up, self.down, window=self.taps)
        start = self.context * self.up // self.down
        out = y[start: start + n * self.up // self.down].astype(np.float32)
        new_history = np.concatenate([history, pending[:n]])[-self.context:]
        return out, ResamplerState(new_history, pending[n:].copy())
