"""The one place that joins chunks: the equal-power crossfade at each seam.

Geometry, in samples of one chunk's decoded audio (see generator/chunks.py for why):
  e    edge: audio this close to the end of a decode lacks right context and is dropped
  x    the crossfade length
The first chunk's decode starts at its frame 0; every later decode starts 2e + x before the
end of its overlap, so that its first e samples (no left context) are dropped too and its
crossfade region [e, e + x) lines up with the previous chunk's held tail.
Per chunk we emit exactly the new audio (hop samples, the first chunk a little more): the
crossfaded x samples, then the chunk's middle; x samples wait for the next chunk and the
last e are dropped. Nothing is played twice and nothing is skipped. With e = 0 and x = the
whole overlap this is the whole-chunk join of soundscape 0.1.

Notation for the crossfade, u = (n + 1/2) / x for n in [0, x):
  a(u) = cos(πu/2), b(u) = sin(πu/2)          equal-power fade out / fade in
  r    = corr(tail, head) clipped to [0, 1]   the two sides decode the same latents,
                                              so they are strongly correlated
  y    = (a·tail + b·head) / sqrt(a² + b² + 2ab·r)
With r = 0 this is the plain equal-power fade; with r = 1 it becomes an equal-gain fade,
so correlated material does not swell by up to 3 dB in the middle of the seam.
Level is not the joiner's job: audio/loudness.py follows it with a slow gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class JoinState:
    tail: np.ndarray | None = None  # the previous chunk's held x samples


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
    def __init__(self, xfade_samples: int, edge_samples: int = 0):
        if xfade_samples < 1 or edge_samples < 0:
            raise ValueError(f"Joiner: expected xfade_samples >= 1 and edge_samples >= 0, "
                             f"got {xfade_samples} and {edge_samples}")
        self.x, self.e = xfade_samples, edge_samples

    def join(self, audio: np.ndarray, state: JoinState) -> tuple[np.ndarray, JoinState]:
        """Emit this chunk's new audio and hold its tail for the next seam.

        `audio` is the chunk's decode: from frame 0 for the first chunk, else from 2e + x before
        the end of the overlap.
        """
        audio = _finite(audio)
        x, e = self.x, self.e
        end = len(audio) - e - x  # the held tail starts here
        if state.tail is None:
            new = audio[:end]
        else:
            new = np.concatenate([crossfade(state.tail, audio[e:e + x]), audio[e + x:end]])
        return new, JoinState(tail=audio[end:end + x].copy())

    # A loop file is a cycle: its first chunk's seam is the wrap seam, made last. --------------------
    def open_cycle(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, JoinState]:
        """A loop's first chunk, decoded like a later one: (new audio, head, state).

        The loop starts just after the wrap seam, so the chunk's crossfade region [e, e + x) is held
        back as `head` for `close_cycle`, and its new audio starts after it.
        """
        audio = _finite(audio)
        x, e = self.x, self.e
        end = len(audio) - e - x
        return audio[e + x:end], audio[e:e + x].copy(), JoinState(tail=audio[end:end + x].copy())

    def close_cycle(self, state: JoinState, head: np.ndarray) -> np.ndarray:
        """The wrap seam: the last chunk's held tail crossfaded into the first chunk's head (x samples)."""
        return crossfade(state.tail, head)


def _finite(audio) -> np.ndarray:
    """float32, with NaN and infinities (a diverged decode) as silence."""
    return np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
