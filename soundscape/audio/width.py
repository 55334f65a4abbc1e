"""Width: the model's mono stream as a stereo image, in mid/side form.

  m[n] = x[n]                        the mid is the input itself, so the mono sum (L + R)/2 = x exactly:
                                     no comb colouring in mono, and every transient is in both channels
                                     at the same sample
  s[n] = g[n] · D(H(x))[n]           the side: H, a 4th-order Linkwitz-Riley high-pass at CROSSOVER_HZ
                                     (two 2nd-order Butterworths), keeps the bass centred; D, a velvet-noise
                                     decorrelator (below), makes it a signal uncorrelated with x
  L = m + s,  R = m - s

Why velvet noise: a sparse FIR of TAPS impulses ±a_k at positions d_k, one in each of TAPS equal
segments of DECOR_S, decaying exponentially. Its magnitude response is flat on average (unit energy)
and it is cheap: TAPS shifted adds per sample, in a fixed order, so the output does not depend on how
the stream is cut into blocks. It is a fixed filter (a constant seed), so no noise is drawn at run time.

Coherence: with s uncorrelated with x and S = g²|H D|² the side-to-mid power ratio at a frequency,
L and R have magnitude-squared coherence ((1 - S)/(1 + S))². `width` w in 0..1 sets g = w: 0 is the
dual mono of old, 0.5 puts S at about 0.25 above the crossover (coherence about 0.36, a wide image
that is still anchored in the middle), 1 makes L and R nearly uncorrelated. Below CROSSOVER_HZ, |H|²
falls at 24 dB/octave, so the bass stays coherent (>= 0.9 below 150 Hz at the default).

Live changes: g ramps linearly to the new w over RAMP_S (state `g` is where it is), so moving the
width slider never steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

CROSSOVER_HZ = 180.0
DECOR_S = 0.030  # the decorrelator's length: diffuse, well under an echo
TAPS = 24  # impulses in each (800 a second)
FILTERS = 4
ROTATE_MHZ = (230, 370, 170)  # the mixing angles' rates, mHz: a slow drift, never a swirl
GRID = 64
DECAY_DB = 12.0  # its envelope falls this much over DECOR_S
DECOR_SEED = 0x5EED_57E2  # a constant: the same image for every stream and every run
RAMP_S = 0.25


@dataclass
class WidthState:
    hp_zi: np.ndarray  # (2, 2) sosfilt state of the Linkwitz-Riley high-pass
    history: np.ndarray  # the last `reach` high-passed samples (the decorrelator's memory)
    g: float  # the side gain at the last sample
    n: int  # samples processed (the weights' clock)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + "hp_zi": self.hp_zi, prefix + "history": self.history, prefix + "g": np.array(self.g),
                prefix + "n": np.array(self.n)}

    @classmethod
    def from_arrays(cls, d, prefix: str = "") -> "WidthState":
        return cls(hp_zi=np.array(d[prefix + "hp_zi"]), history=np.array(d[prefix + "history"]),
                   g=float(d[prefix + "g"]), n=int(d[prefix + "n"]))


def velvet(rate: int, j: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(delays in samples, gains) of decorrelator `j` at `rate`, unit energy."""
    rng = np.random.default_rng([DECOR_SEED, j])
    seg = DECOR_S * rate / TAPS
    delays = np.floor((np.arange(TAPS) + rng.random(TAPS)) * seg).astype(np.int64)
    signs = np.where(rng.random(TAPS) < 0.5, -1.0, 1.0)
    env = 10.0 ** (-DECAY_DB / 20.0 * delays / (DECOR_S * rate))
    gains = signs * env
    return delays, (gains / np.sqrt(np.sum(gains * gains))).astype(np.float32)


class Width:
    def __init__(self, rate: int, width: float, period: int | None = None):
        """`period`: for a loop file, the cycle's length in samples; the weights then turn a whole number of
        times per cycle, so the cycle's end runs into its start (stream mode: None)."""
        if not 0.0 <= width <= 1.0:
            raise ValueError(f"width: expected a number from 0 to 1, got {width!r}")
        self.rate, self.width, self.period = int(rate), float(width), period
        hp = butter(2, CROSSOVER_HZ, "highpass", fs=self.rate, output="sos")
        self._sos = np.concatenate([hp, hp])  # Linkwitz-Riley: the Butterworth twice
        self._filters = [velvet(self.rate, j) for j in range(FILTERS)]
        self.reach = int(max(d.max() for d, _ in self._filters))
        self._ramp = max(1, round(RAMP_S * self.rate))

    def set_target(self, width: float) -> None:
        """A live change: from the next block the side ramps from where it is to `width` (see `process`)."""
        if not 0.0 <= width <= 1.0:
            raise ValueError(f"width: expected a number from 0 to 1, got {width!r}")
        self.width = float(width)

    def initial_state(self) -> WidthState:
        return WidthState(hp_zi=np.zeros((2, 2)), history=np.zeros(self.reach), g=self.width, n=0)

    def weights(self, start: int, n: int) -> np.ndarray:
        """(FILTERS, n) mixing weights for stream samples start..start+n-1: a point on the unit sphere that
        wanders slowly. Exact at every GRID-th sample of the stream, linear between (an angle moves
        < 0.002 rad in GRID samples), so the weights do not depend on how the stream is cut into blocks."""
        first = start // GRID * GRID
        grid = np.arange(first, start + n + GRID, GRID, dtype=np.int64)
        if self.period is None:  # turns per 1000 s over samples per 1000 s, in integers: exact for any length
            cycles = [(mhz, 1000 * self.rate) for mhz in ROTATE_MHZ]
        else:  # whole turns per cycle, the nearest to the stream's rates
            cycles = [(max(1, round(mhz * self.period / (1000 * self.rate))), self.period) for mhz in ROTATE_MHZ]
        a, b, c = (2 * np.pi * ((grid * turns) % length) / length for turns, length in cycles)
        points = (np.cos(c) * np.cos(a), np.cos(c) * np.sin(a), np.sin(c) * np.cos(b), np.sin(c) * np.sin(b))
        at = np.arange(start, start + n, dtype=np.float64)
        return np.stack([np.interp(at, grid, p) for p in points])

    def process(self, x: np.ndarray, state: WidthState | None) -> tuple[np.ndarray, WidthState]:
        """Mono (n,) in -> (n, 2) float32 out, and the new state."""
        st = self.initial_state() if state is None else state
        x = np.asarray(x, np.float64)
        n = len(x)
        u, zi = sosfilt(self._sos, x, zi=st.hp_zi)
        ext = np.concatenate([st.history, u])  # ext[reach + i] = u[i]
        still = self.width == 0 and st.g == 0  # dual mono: no side to make (the state still follows)
        ext32 = ext.astype(np.float32) if not still else None
        side, d = np.zeros(n, np.float32), np.empty(n if not still else 0, np.float32)
        for wj, (delays, gains) in zip(self.weights(st.n, n).astype(np.float32) if not still else (), self._filters):
            d[:] = 0.0
            for k, a in zip(delays, gains):  # in place, in float32: the adds are most of this stage's cost
                d += a * ext32[self.reach - k: self.reach - k + n]
            d *= wj
            side += d
        delta = self.width - st.g
        if delta:  # toward the new width at full scale per RAMP_S, whatever the block sizes
            g = st.g + np.sign(delta) * np.minimum(np.arange(1, n + 1) / self._ramp, abs(delta))
        else:
            g = np.full(n, self.width)
        side *= g
        out = np.empty((n, 2), np.float32)
        out[:, 0] = x + side
        out[:, 1] = x - side
        return out, WidthState(hp_zi=zi, history=ext[len(ext) - self.reach:].copy(),
                               g=float(g[-1]) if n else st.g, n=st.n + n)
