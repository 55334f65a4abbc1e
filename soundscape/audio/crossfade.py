"""The one place that joins chunks: level matching and the equal-power crossfade.

Each decoded chunk (16 kHz, T*640 samples) overlaps the previous one by N samples
(the O latent frames both share). Per chunk we emit exactly hop = T*640 - N new
samples: the crossfaded overlap, then the chunk's middle; its last N samples wait
for the next chunk. Nothing is played twice and nothing is skipped.

Notation for the crossfade over the overlap, x = (n + 1/2) / N for n in [0, N):
  a(x) = cos(πx/2), b(x) = sin(πx/2)          equal-power fade out / fade in
  r    = corr(tail, head) clipped to [0, 1]   the overlap is the same latents decoded twice,
                                              so the two sides are strongly correlated
  y    = (a·tail + b·head) / sqrt(a² + b² + 2ab·r)
With r = 0 this is the plain equal-power fade; with r = 1 it becomes an equal-gain fade,
so correlated material does not swell by up to 3 dB in the middle of the seam.

Level: each chunk is scaled by g = min(target_rms / rms, max_gain, ceiling / peak), so the
scene sits at a steady level; max_gain caps the boost so near-silence is not blown up.
The gain changes only inside the crossfade, never as a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class JoinState:
    tail: np.ndarray | None = None  # the previous chunk's last N samples, gain applied


def equal_power_curves(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.cos(0.5 * np.pi * x), np.sin(0.5 * np.pi * x)


def crossfade(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Correlation-aware equal-power crossfade from `tail` into `head`: same shape, (n,) or (n, channels)."""
    a, b = equal_power_curves(len(tail))
    t, h = tail.astype(np.float64).ravel(), head.astype(np.float64).ravel()
    denom = float(np.sqrt(np.dot(t, t) * np.dot(h, h)))
    r = float(np.clip(np.dot(t, h) / denom, 0.0, 1.0)) if denom > 0 else 0.0
    g = np.sqrt(a * a + b * b + 2 * a * b * r)
    if tail.ndim == 2:
        a, b, g = a[:, None], b[:, None], g[:, None]
    return ((a * tail + b * head) / g).astype(np.float32)


class Joiner:
    def __init__(self, overlap_samples: int, target_db: float = -20.0, max_gain_db: float = 12.0,
                 ceiling: float = 0.95):
        self.n = overlap_samples
        self.target_rms = 10 ** (target_db / 20)
        self.max_gain = 10 ** (max_gain_db / 20)
        self.ceiling = ceiling

    def gain(self, audio: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if rms <= 0 or not np.isfinite(rms):
            return 0.0
        return min(self.target_rms / rms, self.max_gain, self.ceiling / peak)

    def join(self, audio: np.ndarray, state: JoinState, presence: float = 1.0) -> tuple[np.ndarray, JoinState]:
        """Emit this chunk's new audio (hop samples) and keep its tail for the next seam.

        `presence` (0..1) scales the chunk: 0 when every layer is at weight 0.
        """
        audio = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        scaled = audio * np.float32(self.gain(audio) * presence)
        n = self.n
        if state.tail is None:
            new = scaled[: len(scaled) - n]
        else:
            new = np.concatenate([crossfade(state.tail, scaled[:n]), scaled[n: len(scaled) - n]])
        return new, JoinState(tail=scaled[len(scaled) - n:].copy())
