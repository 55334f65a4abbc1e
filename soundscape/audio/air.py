"""Air: the spectrum above 8 kHz, continued from the signal's own 4-7 kHz band (envelope-driven
bandwidth extension, the idea of HE-AAC's spectral band replication, with noise as the source).

The model's audio ends at 8 kHz (16 kHz sampling; the resampler's filter is flat to 7 kHz and
-6 dB at 8 kHz). At the output rate, for one block x[n]:

  1. lo, hi   x band-passed to LO = 4.0-5.3 kHz and HI = 5.3-7.0 kHz (4th-order Butterworths)
  2. Pf[n]    HI's power followed fast (one-pole, TAU_FAST = 2 ms): the band's envelope over time,
              so a raindrop or a crackle in 4-7 kHz brings its own burst of air
     Ph, Pl   HI's and LO's power followed slowly (TAU_SLOW = 0.3 s): the spectral slope
  3. r[n]     = (Ph / Bh) / (Pl / Bl), at most 1     the PSD ratio HI : LO (B: the filters' noise
              bandwidths). Continued as a power law: band i, centred f_i, gets the PSD
              (Pf / Bh) · r^k_i,  k_i = SLOPE_WEIGHT · log2(f_i / f_HI) / log2(f_HI / f_LO)
              so rain (flat) keeps its hiss, wind (falling 12 dB/octave) gets a whisper, and a sound
              low-passed at 4 kHz (HI empty, r ~ 0) gets nothing: the stage adds nothing where the top
              of the band is empty. r <= 1: never a spectrum that rises past 8 kHz.
  4. y[n]     = x[n] + 2·air · Σ_i BAND_i(noise)[n] · sqrt(PSD_i[n] · R_i)
              R_i: a natural roll-off, ROLL_DB_PER_OCT per octave above 8 kHz. air = 0.5 (the default)
              is the level the extension estimates, 1 is 6 dB brighter, 0 is off.
              noise: white, unit PSD, one per band, from a counter-based hash of (seed, band, sample index), so the same
              stream gets the same air in play, render, a resumed render and any segmented render.
  Bands: 7.6-10, 10-12.6, 12.6-16 and 16-19 kHz (4th-order Butterworths), those below 0.45 of the
  output rate: at 16 kHz the stage is off (nothing above 8 kHz to fill), at 22.05/24 kHz it fills
  the first band. Above 19 kHz nothing: the roll-off of a real microphone and of the air itself.

What it cannot do: invent detail the 4-7 kHz band does not carry. A bird's overtones above 8 kHz
are not there to follow; it gets a breath of noise in time with its song, not its harmonics.
Every stage state is explicit (AirState), with the filters' states and the sample counter.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.signal import butter, lfilter, sosfilt, sosfreqz

LO_HZ = (4000.0, 5300.0)
HI_HZ = (5300.0, 7000.0)
BANDS_HZ = ((7600.0, 10000.0), (10000.0, 12600.0), (12600.0, 16000.0), (16000.0, 19000.0))
TAU_FAST = 0.002
TAU_SLOW = 0.3
# Tuned on 13 real recordings (scripts/air_real.py, docs/air-real.md): the 4-7 kHz slope, continued at full
# weight, overshoots on falling spectra (up to +10 dB at 16 kHz) and undershoots on flat ones, because the
# slope measured over one third of an octave is noisy and steep; at SLOPE_WEIGHT of it, plus a fixed
# roll-off of ROLL_DB_PER_OCT per octave above 8 kHz, the median error fell from 3.2 to 1.8 dB.
SLOPE_WEIGHT = 0.6
ROLL_DB_PER_OCT = 3.0
MIN_RATE = 22050  # below this there is no room above 8 kHz


@dataclass
class AirState:
    lo_zi: np.ndarray  # sosfilt states of the analysis band-passes
    hi_zi: np.ndarray
    env_zi: np.ndarray  # (3,) one-pole states: Pf, Ph, Pl
    band_zi: np.ndarray  # (bands, 2, 2) sosfilt states of the synthesis band-passes
    n: int  # samples processed: the noise's counter

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, d, prefix: str = "") -> "AirState":
        kw = {f.name: np.array(d[prefix + f.name]) for f in fields(cls)}
        kw["n"] = int(kw["n"])
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


def _noise_bandwidth(sos: np.ndarray, rate: int) -> float:
    """∫|H(f)|² df over 0..rate/2, Hz: the power a unit-PSD white noise has after the filter."""
    f, h = sosfreqz(sos, worN=1 << 14, fs=rate)
    return float(np.trapezoid(np.abs(h) ** 2, f))


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
        # 8th-order: what leaks in from below 4 kHz must not pass for 4-7 kHz content (a low-passed sound)
        self._lo = butter(4, LO_HZ, "bandpass", fs=self.rate, output="sos")
        self._hi = butter(4, HI_HZ, "bandpass", fs=self.rate, output="sos")
        self._band_sos = [butter(2, b, "bandpass", fs=self.rate, output="sos") for b in self._bands]
        bl, bh = _noise_bandwidth(self._lo, self.rate), _noise_bandwidth(self._hi, self.rate)
        self._bh = bh
        # Unit-PSD noise has variance rate/2; through band i it has power B_i. The gain that gives band i
        # the PSD P is sqrt(P · rate/2 / ...): with unit-variance noise scaled by sqrt(rate/2), just sqrt(P).
        self._scale = np.sqrt(nyquist)
        f_lo, f_hi = np.sqrt(np.prod(LO_HZ)), np.sqrt(np.prod(HI_HZ))
        centres = np.sqrt(np.prod(np.array(self._bands), axis=1))
        self._k = SLOPE_WEIGHT * np.log2(centres / f_hi) / np.log2(f_hi / f_lo)
        # The natural roll-off: ROLL_DB_PER_OCT more per octave above 8 kHz, as a power factor per band.
        self._roll = 10.0 ** (-ROLL_DB_PER_OCT * np.log2(np.maximum(centres, 8000.0) / 8000.0) / 10.0)
        self._ratio_norm = bl / bh  # r = (Ph / Bh) / (Pl / Bl) = Ph / Pl · Bl / Bh
        self._fast = 1.0 - np.exp(-1.0 / (TAU_FAST * self.rate))
        self._slow = 1.0 - np.exp(-1.0 / (TAU_SLOW * self.rate))

    def initial_state(self) -> AirState:
        return AirState(lo_zi=np.zeros((4, 2)), hi_zi=np.zeros((4, 2)), env_zi=np.zeros(3),
                        band_zi=np.zeros((len(self._bands), 2, 2)), n=0)

    def _follow(self, p: np.ndarray, alpha: float, zi: float) -> tuple[np.ndarray, float]:
        y, z = lfilter([alpha], [1.0, alpha - 1.0], p, zi=[zi])
        return y, float(z[0])

    def process(self, x: np.ndarray, state: AirState | None) -> tuple[np.ndarray, AirState]:
        """Mono (n,) in -> mono (n,) float32 out with the air added, and the new state."""
        x = np.asarray(x, np.float32)
        if not self.active:
            return x, state
        st = self.initial_state() if state is None else state
        n = len(x)
        if n == 0:
            return x, st
        xd = x.astype(np.float64)
        lo, lo_zi = sosfilt(self._lo, xd, zi=st.lo_zi)
        hi, hi_zi = sosfilt(self._hi, xd, zi=st.hi_zi)
        hi2 = hi * hi
        fast, z0 = self._follow(hi2, self._fast, st.env_zi[0])
        ph, z1 = self._follow(hi2, self._slow, st.env_zi[1])
        pl, z2 = self._follow(lo * lo, self._slow, st.env_zi[2])
        tiny = 1e-30
        log_r = np.minimum(np.log((ph + tiny) / (pl + tiny) * self._ratio_norm), 0.0)
        psd_hi = np.maximum(fast, 0.0) / self._bh
        add = np.zeros(n)
        band_zi = st.band_zi.copy()
        for i, (sos, k, roll) in enumerate(zip(self._band_sos, self._k, self._roll)):
            # Each band its own noise: bands of one noise overlap in their skirts and partly cancel there.
            src = noise(self.seed * len(BANDS_HZ) + i, st.n, n, self.period) * self._scale
            band, band_zi[i] = sosfilt(sos, src, zi=st.band_zi[i])
            add += band * np.sqrt(psd_hi * (np.exp(k * log_r) * roll))
        out = (xd + self.gain * add).astype(np.float32)
        return out, AirState(lo_zi=lo_zi, hi_zi=hi_zi, env_zi=np.array([z0, z1, z2]), band_zi=band_zi, n=st.n + n)
