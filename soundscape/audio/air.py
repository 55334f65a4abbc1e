"""Air: the spectrum above 8 kHz, continued from the noise-like part of the signal's own 4-7 kHz band
(bandwidth extension in the spirit of HE-AAC's spectral band replication, with noise as the source).

The model's audio ends at 8 kHz (16 kHz sampling; the resampler's filter is flat to 7 kHz and
-6 dB at 8 kHz). What lies above 8 kHz in real ambience is mostly its noise (rain's hiss, wind, a
room's or a forest's background), not the continuation of what is loud at 4-7 kHz: birdsong, a trill or
a cricket's band stop near 8 kHz. So air follows the band's noise floor, measured per frame:

  1. P[k, b]   periodogram of frame k (N ~ 21 ms Hann, hop H = N/4, the last N samples before k·H),
               one-sided PSD per bin b, for the bins of TOP = 6.2-7.0 kHz and REF = 2.5-4.0 kHz
  2. S[k, b]   P smoothed over frames (TAU_BIN), and its minimum over the last MIN_WINDOW_S of frames
     F[k, b]   (minimum statistics), times MIN_BIAS, at most S: the stationary noise floor per bin, which
               a song or a trill lasting less than the window does not lift
  3. X[k]      max(QUANTILE_b P / c - mean_b F, 0): what rises above the floor now across the bins (c
               turns a noise bin's QUANTILE into its mean): a raindrop or a crackle lifts every bin, a tonal
               peak only a few, which the quantile passes over
  4. est[k]    = min(mean_b F_TOP, mean_b F_REF) + g · X_TOP,   g = min(1, X_REF / X_TOP)
               The floor is capped by the band below (a floor that peaks at 4-7 kHz, an insect's band, does
               not go on upward), and the broadband rise counts only as far as it also reaches 2.5-4 kHz:
               a raindrop does, a trill confined to 4-8 kHz does not.
  5. est       smoothed over frames (TAU_EST) and ramped linearly across each hop from the previous frame's
               value: a frame's figure holds from one hop after its last sample on (causal, ~5 ms late)
  6. y[n]      = x[n] + 2·air · Σ_i BAND_i(noise)[n] · sqrt(est[n] · R_i)
               R_i: a roll-off of ROLL_DB_PER_OCT per octave above 8 kHz. air = 0.5 (the default) is the level
               the extension estimates, 1 is 6 dB brighter, 0 is off.
               noise: white, unit PSD, one per band, from a counter-based hash of (seed, band, sample index), so
               the same stream gets the same air in play, render, a resumed render and any segmented render.
  Bands: 7.6-10, 10-12.6, 12.6-16 and 16-19 kHz (4th-order Butterworths), those below 0.45 of the
  output rate: at 16 kHz the stage is off (nothing above 8 kHz to fill), at 22.05/24 kHz it fills
  the first band. Above 19 kHz nothing: the roll-off of a real microphone and of the air itself.

Tuned on 13 real recordings (scripts/air_real.py, docs/air-real.md). The 4-7 kHz slope is no longer
continued: real ambience that falls 6-20 dB from 4 to 7 kHz (rain, wind, birds' background) is about
flat above it, and the slope's estimate made birds and rain worse than none; TOP (the band's upper edge)
is where the continuation starts, so a band that has already fallen by 7 kHz (the forest at night) gets
little. What it cannot do: invent detail the band does not carry. A bird's overtones above 8 kHz are not
there to follow; it gets the background's breath, not its harmonics.
Every stage state is explicit (AirState): the frame history, the window of S, the smoothers, the
filters' states and the sample counter (which also places the frames).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import butter, lfilter, sosfilt

TOP_HZ = (6200.0, 7000.0)
REF_HZ = (2500.0, 4000.0)
BANDS_HZ = ((7600.0, 10000.0), (10000.0, 12600.0), (12600.0, 16000.0), (16000.0, 19000.0))
FRAME_48K = 1024  # samples per frame at 48 kHz (21 ms, 47 Hz bins); scaled with the rate
TAU_BIN = 0.02  # s: each bin's power smoothed before its minimum is taken
MIN_WINDOW_S = 2.0  # s: a floor is the minimum over the frames of this long
MIN_BIAS = 5.0  # the minimum of a smoothed noise bin lies ~7 dB under its mean
QUANTILE = 0.25  # of the rise over the bins: a peak filling three quarters of them does not count
TAU_EST = 0.03
# Tuned on 13 real recordings (scripts/air_real.py, docs/air-real.md): above 8 kHz real ambience rolls
# off by about this much per octave, whatever its slope at 4-7 kHz (fires faster, wind slower: 4.8 leaves
# both within 4 dB).
ROLL_DB_PER_OCT = 4.8
MIN_RATE = 22050  # below this there is no room above 8 kHz


@dataclass
class AirState:
    hist: np.ndarray  # (N,) the last N input samples: the next frame's start
    frames: int  # frames analysed so far (0: nothing yet)
    smooth: np.ndarray  # (bins,) S of the last frame
    recent: np.ndarray  # (W - 1, bins) S of the frames before, oldest first (inf: none yet)
    est_zi: np.ndarray  # (1,) the est smoother's state
    ramp: np.ndarray  # (2,) est of the frame before last and of the last frame: this hop ramps between them
    band_zi: np.ndarray  # (bands, 2, 2) sosfilt states of the synthesis band-passes
    n: int  # samples processed: the noise's counter

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, d, prefix: str = "") -> "AirState":
        """A state saved before the noise-floor analysis (other keys) keeps its noise counter and filters;
        the analysis starts afresh (fields None, filled in by `process`)."""
        kw = {f.name: np.array(d[prefix + f.name]) if prefix + f.name in d else None for f in fields(cls)}
        for name in ("frames", "n"):
            kw[name] = int(kw[name]) if kw[name] is not None else None
        return cls(**kw)


def noise(seed: int, start: int, n: int, period: int | None = None) -> np.ndarray:
    """White noise for stream samples start..start+n-1, uniform with unit variance: splitmix64 of
    (seed, index), so any stretch of the stream can be made on its own and always comes out the same.
    With a `period` (a loop file's cycle), the index counts modulo it."""
    idx = np.arange(start, start + n, dtype=np.uint64)
    if period:
        idx %= np.uint64(period)
    z = idx + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    z = z * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)  # [0, 1)
    return (u - 0.5) * np.sqrt(12.0)


class Air:
    def __init__(self, rate: int, air: float, seed: int = 0, period: int | None = None):
        """`period`: for a loop file, the cycle's length in samples (the noise repeats with it)."""
        if not 0.0 <= air <= 1.0:
            raise ValueError(f"air: expected a number from 0 to 1, got {air!r}")
        self.rate, self.air, self.seed, self.period = int(rate), float(air), int(seed), period
        nyquist = self.rate / 2
        self._bands = [b for b in BANDS_HZ if b[1] <= 0.9 * nyquist] if self.rate >= MIN_RATE else []
        if self.rate >= MIN_RATE and not self._bands and BANDS_HZ[0][0] < 0.9 * nyquist:
            self._bands = [(BANDS_HZ[0][0], 0.9 * nyquist)]
        self.gain = 2.0 * self.air  # 0.5: the estimated level; 1: 6 dB brighter; 0.25: 6 dB darker
        self.active = self.air > 0 and bool(self._bands)
        if not self.active:
            return
        # 1. Frames: about 21 ms at any rate (a power of two), a quarter of one per hop.
        self._n = int(2 ** round(np.log2(FRAME_48K * self.rate / 48000)))
        self._hop = self._n // 4
        self._win = np.hanning(self._n)
        self._psd = 1.0 / (nyquist * np.sum(self._win**2))  # |X|² -> one-sided PSD
        f = np.fft.rfftfreq(self._n, 1.0 / self.rate)
        top = np.flatnonzero((f >= TOP_HZ[0]) & (f < TOP_HZ[1]))
        ref = np.flatnonzero((f >= REF_HZ[0]) & (f < REF_HZ[1]))
        self._bins = np.concatenate([top, ref])
        self._top = len(top)
        frame_rate = self.rate / self._hop
        self._a_bin = 1.0 - np.exp(-1.0 / (TAU_BIN * frame_rate))
        self._a_est = 1.0 - np.exp(-1.0 / (TAU_EST * frame_rate))
        self._window = max(2, round(MIN_WINDOW_S * frame_rate))  # frames
        self._q_norm = -np.log(1.0 - QUANTILE)  # the QUANTILE of an exponential of unit mean
        # 6. Synthesis: one band-pass per band; unit-variance noise scaled by sqrt(rate/2) has unit PSD.
        self._band_sos = [butter(2, b, "bandpass", fs=self.rate, output="sos") for b in self._bands]
        self._scale = np.sqrt(nyquist)
        centres = np.sqrt(np.prod(np.array(self._bands), axis=1))
        self._roll = 10.0 ** (-ROLL_DB_PER_OCT * np.log2(np.maximum(centres, 8000.0) / 8000.0) / 10.0)

    def initial_state(self) -> AirState:
        bins = len(self._bins)
        return AirState(hist=np.zeros(self._n), frames=0, smooth=np.zeros(bins),
                        recent=np.full((self._window - 1, bins), np.inf), est_zi=np.zeros(1), ramp=np.zeros(2),
                        band_zi=np.zeros((len(self._bands), 2, 2)), n=0)

    def _completed(self, st: AirState) -> AirState:
        """A copy of `st` (the caller's stays as it was), with what a state from an older file lacks (the
        analysis) started afresh."""
        fresh = self.initial_state()
        kw = {f.name: getattr(st, f.name) if getattr(st, f.name) is not None else getattr(fresh, f.name)
              for f in fields(AirState)}
        return AirState(**kw)

    def _floors(self, s: np.ndarray, st: AirState) -> np.ndarray:
        """2. Each frame's floor: the minimum of S over its window (the frames before it and itself).
        Exact, not in sub-windows: the floor depends on the last frames only, so a loop's cycle warmed on
        its own end comes out as the endless repeat does."""
        seen = np.concatenate([st.recent, s])
        st.recent = seen[len(s):].copy()
        return sliding_window_view(seen, self._window, axis=0).min(axis=-1)

    def _estimates(self, frames: np.ndarray, st: AirState) -> np.ndarray:
        """Steps 1-5 for whole frames (F, N): est per frame, one-sided PSD at the band's top."""
        spec = np.fft.rfft(frames * self._win, axis=1)[:, self._bins]
        p = (spec.real**2 + spec.imag**2) * self._psd
        if st.frames == 0:
            st.smooth = p[0]  # the first frame is its own history: no climb from silence
        s, _ = lfilter([self._a_bin], [1.0, self._a_bin - 1.0], p, axis=0, zi=((1 - self._a_bin) * st.smooth)[None])
        st.smooth, st.frames = s[-1], st.frames + len(p)
        floor = np.minimum(self._floors(s, st) * MIN_BIAS, s)
        t = self._top
        f_top, f_ref = floor[:, :t].mean(axis=1), floor[:, t:].mean(axis=1)
        # 3. The broadband rise of each group: its bins' QUANTILE, as a mean, above its floor; and 4. how
        # far the top's also reaches down to REF.
        x_top = np.maximum(np.quantile(p[:, :t], QUANTILE, axis=1) / self._q_norm - f_top, 0.0)
        x_ref = np.maximum(np.quantile(p[:, t:], QUANTILE, axis=1) / self._q_norm - f_ref, 0.0)
        g = np.minimum(1.0, (x_ref + 1e-30) / (x_top + 1e-30))
        est = np.minimum(f_top, f_ref) + g * x_top
        est, st.est_zi = lfilter([self._a_est], [1.0, self._a_est - 1.0], est, zi=st.est_zi)
        return est

    def _envelope(self, xd: np.ndarray, st: AirState) -> np.ndarray:
        """est at every sample of the block: the frames that end in it, ramped hop by hop (step 5)."""
        n, hop = len(xd), self._hop
        phase = st.n % hop  # frames lie on the stream's clock: a loop's cycle (n from 0) on the repeat's
        hist = np.concatenate([st.hist, xd])
        ends = np.arange(hop - phase, n + 1, hop)  # where in the block a frame ends (it holds xd[e-N:e])
        new = self._estimates(sliding_window_view(hist, self._n)[ends], st) if len(ends) else np.zeros(0)
        vals = np.concatenate([st.ramp, new])
        idx = phase + np.arange(n)
        h, frac = idx // hop, (idx % hop) / hop
        env = vals[h] + (vals[h + 1] - vals[h]) * frac
        st.ramp, st.hist = vals[-2:].copy(), hist[-self._n:].copy()
        return np.maximum(env, 0.0)

    def process(self, x: np.ndarray, state: AirState | None) -> tuple[np.ndarray, AirState]:
        """Mono (n,) in -> mono (n,) float32 out with the air added, and the new state."""
        x = np.asarray(x, np.float32)
        if not self.active:
            return x, state
        st = self.initial_state() if state is None else self._completed(state)
        n = len(x)
        if n == 0:
            return x, st
        xd = x.astype(np.float64)
        env = self._envelope(xd, st)
        add = np.zeros(n)
        band_zi = st.band_zi.copy()
        for i, (sos, roll) in enumerate(zip(self._band_sos, self._roll)):
            # Each band its own noise: bands of one noise overlap in their skirts and partly cancel there.
            src = noise(self.seed * len(BANDS_HZ) + i, st.n, n, self.period) * self._scale
            band, band_zi[i] = sosfilt(sos, src, zi=st.band_zi[i])
            add += band * np.sqrt(roll)
        out = (xd + self.gain * add * np.sqrt(env)).astype(np.float32)
        st.band_zi, st.n = band_zi, st.n + n
        return out, st
