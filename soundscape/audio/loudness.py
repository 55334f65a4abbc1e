"""Streaming loudness control: a slow BS.1770 level follower, then a true-peak limiter.

Signal flow for one block x[n] (rate fs: the output rate; mono (n,) or C channels (n, C)), all state
carried between blocks, so processing a stream block by block equals processing it in one piece:

  1. k[n] = K(x)[n]                 BS.1770 K-weighting at fs: pyloudnorm's high shelf, then its
                                    high-pass, run by lfilter on each channel with the filter state carried.
  2. p_j  = mean(Σ_c k_c²) over sub-block j (BS.1770's channel sum, weight 1 for left and right),
            sub-blocks of S = 100 ms counted from the stream start.
     L_j  = -0.691 + 10·log10(mean of the last 30 p)     short-term loudness (3 s), LUFS.
  3. M    tracks L_j in dB: M += α(L_j - M), α from τ_att = 15 s when L_j > M, τ_rel = 20 s
          otherwise.  Gate: if L_j < -70 LUFS or L_j < M - 20 LU, M holds (the gain never rises
          on near-silence or a sudden fade-out, so a scene faded away stays silent; the price: a
          scene that drops by more than 20 LU within ~3 s and stays there keeps its old gain).
     G_j  = clip(target - M, -max_cut, +max_boost) dB, decided at the end of sub-block j - 1.
  4. g[n] = G ramped linearly (in dB) from G_{j-1} to G_j across sub-block j: continuous, never a step.
  5. P[n] = presence eased by a one-pole (τ = 0.5 s) toward the value given with the block.
  6. v[n] = x[n] · 10^(g[n]/20) · P[n]                   the levelled signal.
  7. a[m] = peak of v over [m, m+1]: both samples and the 4x-oversampled points m + φ/4
            (polyphase, with the 81-tap Kaiser lowpass that resample_poly uses for 4x), the
            largest over the channels: one gain for all, so the limiter never moves the image.
     r[m] = min(1, c / a[m]), c = 10^(-1/20)              the gain that keeps that span under -1 dBTP.
  8. s[m] = min r over the last W+1 samples (W = 3 ms)    hold: covers the W samples before a peak.
     e[m] = release of s: gain reduction decays exponentially in dB, τ = 200 ms.
     h[m] = mean of e over the last W samples             the attack: a smooth ramp of length W.
  9. y[t] = v[t] · h[t + W - 1], t = n - D                the output, D = W - 1 + 10 samples late.

Latency: a true-peak ceiling with a smooth attack has to see a peak before it plays it, so
the output lags the input by D = `latency` samples (57 at 16 kHz, 153 at 48 kHz: 3.2 ms), whatever the block
sizes; the first D output samples are silence. Every output sample satisfies
|y| <= c exactly (the final clip only absorbs rounding).

Priming: `process(block, None)` measures the block's first 3 s to set M, so playback starts
at the right level; a stream therefore equals one piece when both start with the same first
3 s (a first block of >= 3 s). If that start is silent, the first 3 s of non-silent sub-blocks
set M as they arrive.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np
import pyloudnorm
from scipy.ndimage import minimum_filter1d
from scipy.signal import firwin, lfilter, resample_poly

_OFFSET = -0.691  # BS.1770: LUFS = -0.691 + 10·log10(mean square of the K-weighted signal)


def _lufs(power: float) -> float:
    return _OFFSET + 10.0 * np.log10(power) if power > 0 else -np.inf


@dataclass
class LoudnessState:
    """Everything `process` carries between blocks; plain floats and arrays (npz-safe)."""

    kw_zi: np.ndarray  # (2, 2, C) lfilter states of the K-weighting shelf and high-pass, per channel
    sub_sum: float  # sum of k² over the current, unfinished sub-block
    sub_pos: int  # samples already in the current sub-block
    powers: np.ndarray  # p of the last 30 sub-blocks, oldest first (the 3 s window)
    level: float  # M, the tracked loudness, LUFS
    primed: int  # non-silent sub-blocks counted into M so far (30 = primed)
    prime_sum: float  # their summed p, while priming
    gain_from: float  # G at the start of the current sub-block, dB
    gain_to: float  # G at its end, dB
    presence: float  # eased presence at the last sample
    history: np.ndarray  # (>= D, C): the last levelled samples v (interpolator input and delay line)
    need: np.ndarray  # the last W values of r
    reduction: float  # limiter gain reduction at the last sample, dB (>= 0)
    released: np.ndarray  # the last W - 1 values of e
    loudness: float  # the latest short-term loudness L, LUFS (for display)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + f.name: np.array(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, d, prefix: str = "") -> "LoudnessState":
        kw = {}
        for f in fields(cls):
            a = np.asarray(d[prefix + f.name])
            kw[f.name] = a.copy() if a.ndim else (int(a) if f.type == "int" else float(a))
        return cls(**kw)

    def copy(self) -> "LoudnessState":
        return LoudnessState.from_arrays(self.to_arrays())


class LoudnessController:
    def __init__(self, rate: int, target_lufs: float = -23.0, *, attack_s: float = 15.0, release_s: float = 20.0,
                 max_boost_db: float = 12.0, max_cut_db: float = 30.0, gate_lufs: float = -70.0,
                 relative_gate_lu: float = 20.0, ceiling_dbtp: float = -1.0, limiter_attack_s: float = 0.003,
                 limiter_release_s: float = 0.2, presence_s: float = 0.5, channels: int = 1):
        self.rate, self.channels = int(rate), int(channels)
        self.target = float(target_lufs)
        self.max_boost, self.max_cut = float(max_boost_db), float(max_cut_db)
        self.gate, self.relative_gate = float(gate_lufs), float(relative_gate_lu)
        self.sub = max(1, round(0.1 * self.rate))  # S
        self.window = 30  # sub-blocks in the short-term window
        step_s = self.sub / self.rate
        self.alpha_att = 1.0 - np.exp(-step_s / attack_s)
        self.alpha_rel = 1.0 - np.exp(-step_s / release_s)
        # K-weighting exactly as pyloudnorm's meter builds it (its filter dict is ordered shelf, high-pass).
        meter = pyloudnorm.Meter(self.rate, filter_class="K-weighting")
        self._kw = [(f.passband_gain * f.b, f.a) for f in meter._filters.values()]
        self.ceiling = 10.0 ** (ceiling_dbtp / 20.0)
        self.w = max(1, round(limiter_attack_s * self.rate))  # W
        # 4x interpolator: the same Kaiser FIR that resample_poly(x, 4, 1) designs, so the limiter
        # sees the points a 4x true-peak meter reads; x4 restores unity gain after zero stuffing.
        self._half = 10  # taps reach this many input samples either side
        taps = 4.0 * firwin(8 * self._half + 1, 0.25, window=("kaiser", 5.0))
        taps = np.concatenate([taps, np.zeros(3)])  # 81 -> 84 = 4 phases of 21
        self._phases = taps.reshape(-1, 4).T  # phases[φ][k] = taps[4k + φ]
        self._centre = float(self._phases[0][self._half])
        self.latency = self.w - 1 + self._half  # D
        self._history = max(self.latency, self._phases.shape[1] - 1)
        self._release = np.exp(-1.0 / (limiter_release_s * self.rate))  # λ per sample
        self._presence = np.exp(-1.0 / (presence_s * self.rate))

    # State -----------------------------------------------------------------
    def initial_state(self, prime: np.ndarray | None = None, presence: float = 1.0) -> LoudnessState:
        """A fresh state; `prime` (the stream's first audio) sets the starting level from its first 3 s."""
        st = LoudnessState(
            kw_zi=np.zeros((len(self._kw), 2, self.channels)), sub_sum=0.0, sub_pos=0, powers=np.zeros(self.window),
            level=self.target, primed=0, prime_sum=0.0, gain_from=0.0, gain_to=0.0,
            presence=float(np.clip(presence, 0.0, 1.0)), history=np.zeros((self._history, self.channels)),
            need=np.ones(self.w), reduction=0.0, released=np.ones(self.w - 1), loudness=-np.inf)
        if prime is not None and len(prime):
            k = self._kweight(self._frames(prime)[: self.sub * self.window], st.kw_zi.copy())[0]
            p = float(np.mean(np.sum(k * k, axis=1)))
            if _lufs(p) >= self.gate:
                st.powers[:] = p
                st.level = st.loudness = _lufs(p)
                st.primed, st.gain_from = self.window, self._gain(st.level)
                st.gain_to = st.gain_from
        return st

    # Processing --------------------------------------------------------------
    def process(self, block: np.ndarray, state: LoudnessState | None = None,
                presence: float = 1.0) -> tuple[np.ndarray, LoudnessState]:
        """Level, ease presence and limit one block; returns (output delayed by `latency`, new state).

        The output has the block's length; float64 in gives float64 out, anything else float32. A mono
        controller takes (n,) or (n, 1) and gives (n,); one of C > 1 channels takes and gives (n, C).
        """
        out_dtype = np.float64 if np.asarray(block).dtype == np.float64 else np.float32
        x = self._frames(block)
        st = self.initial_state(x, presence) if state is None else state.copy()
        if not len(x):
            return np.zeros((0,) if self.channels == 1 else (0, self.channels), out_dtype), st
        level_db = self._level(x, st)
        gain = 10.0 ** (level_db / 20.0) * self._ease_presence(len(x), float(np.clip(presence, 0.0, 1.0)), st)
        y = self._limit(x * gain[:, None], st).astype(out_dtype)
        return y[:, 0] if self.channels == 1 else y, st

    def limit(self, block: np.ndarray, state: LoudnessState | None = None) -> tuple[np.ndarray, LoudnessState]:
        """The true-peak limiter alone (steps 7-9, no level control, no presence): (block delayed by
        `latency` and held under the ceiling, float32; new state). For a finished file (`enhance`)."""
        x = self._frames(block)
        st = self.initial_state() if state is None else state.copy()
        y = self._limit(x, st).astype(np.float32) if len(x) else np.zeros((0, self.channels), np.float32)
        return (y[:, 0] if self.channels == 1 else y), st

    def _frames(self, block) -> np.ndarray:
        """The block as (n, C) float64, NaN and infinities as silence."""
        x = np.asarray(block, dtype=np.float64)
        if x.ndim == 1 and self.channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.channels:
            want = "a mono block (n,) or (n, 1)" if self.channels == 1 else f"a block of shape (n, {self.channels})"
            raise ValueError(f"loudness: expected {want}, got shape {x.shape}")
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def _kweight(self, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for i, (b, a) in enumerate(self._kw):
            x, zi[i] = lfilter(b, a, x, axis=0, zi=zi[i])
        return x, zi

    def _gain(self, level: float) -> float:
        return float(np.clip(self.target - level, -self.max_cut, self.max_boost))

    def _level(self, x: np.ndarray, st: LoudnessState) -> np.ndarray:
        """Steps 1-4: the level gain in dB for every sample of x; updates st."""
        k, st.kw_zi = self._kweight(x, st.kw_zi)
        k2 = np.sum(k * k, axis=1)
        g = np.empty(len(x))
        i = 0
        while i < len(x):
            take = min(self.sub - st.sub_pos, len(x) - i)
            frac = np.arange(st.sub_pos + 1, st.sub_pos + take + 1) / self.sub
            g[i: i + take] = st.gain_from + (st.gain_to - st.gain_from) * frac
            st.sub_sum += float(np.sum(k2[i: i + take]))
            st.sub_pos += take
            i += take
            if st.sub_pos == self.sub:
                self._end_sub_block(st, st.sub_sum / self.sub)
                st.sub_sum, st.sub_pos = 0.0, 0
        return g

    def _end_sub_block(self, st: LoudnessState, p: float) -> None:
        st.powers = np.append(st.powers[1:], p)
        st.loudness = L = _lufs(float(np.mean(st.powers)))
        if st.primed < self.window:
            # Started on silence: the first 3 s of non-silent sub-blocks set M directly.
            if _lufs(p) >= self.gate:
                st.primed += 1
                st.prime_sum += p
                st.level = _lufs(st.prime_sum / st.primed)
        elif L >= self.gate and L >= st.level - self.relative_gate:
            st.level += (self.alpha_att if L > st.level else self.alpha_rel) * (L - st.level)
        st.gain_from = st.gain_to
        # Why the hold before priming: with nothing measured yet, unity is the only neutral gain.
        st.gain_to = self._gain(st.level) if st.primed else st.gain_to

    def _ease_presence(self, n: int, target: float, st: LoudnessState) -> np.ndarray:
        decay = self._presence ** np.arange(1, n + 1)
        p = target + (st.presence - target) * decay
        st.presence = float(p[-1])
        return p

    def _limit(self, v: np.ndarray, st: LoudnessState) -> np.ndarray:
        """Steps 7-9 on the levelled block v (n, C); updates st."""
        n, w, half, hist = len(v), self.w, self._half, len(st.history)
        ext = np.concatenate([st.history, v])  # ext[hist + i] = v[i]
        # Phase φ at block sample i interpolates v at (i - half) + φ/4: inside [i - half, i - half + 1).
        src = ext[hist - (self._phases.shape[1] - 1):]
        # Phase 0 is the sample itself times the centre tap (its other taps are zeros of the sinc, ~1e-17).
        peak = np.abs(ext[hist - half: hist - half + n]) * max(1.0, self._centre)
        np.maximum(peak, np.abs(ext[hist - half + 1: hist - half + 1 + n]), out=peak)
        for ph in self._phases[1:]:
            for c in range(self.channels):
                np.maximum(peak[:, c], np.abs(np.convolve(src[:, c], ph, "valid")), out=peak[:, c])
        peak = peak.max(axis=1)
        with np.errstate(divide="ignore"):
            need = np.where(peak > self.ceiling, self.ceiling / peak, 1.0)
        # Why W+1: r[m] bounds the span [m, m+1], so it must hold for both samples m and m+1.
        need_ext = np.concatenate([st.need, need])
        # = sliding_window_view(need_ext, w + 1).min(axis=1), in O(n) (van Herk) rather than O(n·w).
        held = minimum_filter1d(need_ext, w + 1)[(w + 1) // 2: (w + 1) // 2 + len(need_ext) - w]
        released = self._release_db(-20.0 * np.log10(held), st)
        rel_ext = np.concatenate([st.released, 10.0 ** (-released / 20.0)])
        # The mean of each W in a row, as a difference of running sums (np.convolve costs W per sample,
        # 144 at 48 kHz); the error, ~1e-16 of the block's sum, is far below anything heard or measured.
        total = np.concatenate([[0.0], np.cumsum(rel_ext)])
        gain = (total[w:] - total[:-w]) / w
        delayed = ext[hist - self.latency: hist - self.latency + n]
        st.history, st.need = ext[-hist:].copy(), need_ext[-w:].copy()
        st.released = rel_ext[len(rel_ext) - (w - 1):].copy()
        # The clip only absorbs rounding: gain <= c/|v| holds by construction (hold then mean).
        return np.clip(delayed * gain[:, None], -self.ceiling, self.ceiling)

    def _release_db(self, target: np.ndarray, st: LoudnessState) -> np.ndarray:
        """d[m] = max(target[m], λ·d[m-1]), d in dB of reduction, without a Python loop.

        Unrolled, d[m] = max_k target[k]·λ^(m-k); in logs that is m·lnλ + a running maximum.
        """
        ln_lam = np.log(self._release)
        m = np.arange(len(target))
        with np.errstate(divide="ignore"):
            lt = np.log(np.maximum(target, 0.0)) - m * ln_lam
            start = np.log(st.reduction) + ln_lam if st.reduction > 0 else -np.inf
        d = np.exp(m * ln_lam + np.maximum(np.maximum.accumulate(lt), start))
        st.reduction = float(d[-1])
        return d


def measure(audio: np.ndarray, rate: int) -> dict[str, float]:
    """Integrated loudness (LUFS), loudness range (LU, EBU Tech 3342) and true peak (dBTP) of a render.

    Multichannel audio is (n, channels); values are -inf / nan when the audio is too short or silent.
    """
    x = np.asarray(audio, dtype=np.float64)
    meter = pyloudnorm.Meter(rate)
    integrated, lra = -np.inf, np.nan
    if len(x) >= 3 * rate:  # LRA's 3 s windows need at least one; integrated needs 0.4 s
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            integrated = float(meter.integrated_loudness(x))
            lra = float(meter.loudness_range(x))
    elif len(x) >= 0.4 * rate:
        integrated = float(meter.integrated_loudness(x))
    peak = float(np.max(np.abs(resample_poly(x, 4, 1, axis=0)))) if len(x) else 0.0
    with np.errstate(divide="ignore"):
        true_peak = float(20.0 * np.log10(peak))
    return {"integrated_lufs": integrated, "lra_lu": lra, "true_peak_dbtp": true_peak}


class StreamMeter:
    """Integrated loudness and loudness range (EBU Tech 3342) of audio fed block by block, in bounded memory.

    BS.1770: each channel K-weighted (pyloudnorm's filters, state carried), the channels' mean squares
    summed (weight 1: stereo or mono), in 100 ms sub-blocks p_j counted from the start. Then
      integrated  over 400 ms blocks (4 sub-blocks, a 100 ms hop): gated at -70 LUFS, then 10 LU below
                  the mean of what passed; LUFS of the mean power of what passes both
      LRA         over 3 s windows (30 sub-blocks, a 100 ms hop, as ffmpeg's ebur128 steps): gated at
                  -70 LUFS and 20 LU below their mean; the 95th minus the 10th percentile, LU
    Memory: one float a sub-block (36 000 for an hour). `dual_mono`: a mono feed counts on both channels
    (a mono file as it plays, ffmpeg's `dualmono`), +3 dB.
    """

    def __init__(self, rate: int, channels: int, dual_mono: bool = False):
        meter = pyloudnorm.Meter(rate, filter_class="K-weighting")
        self._kw = [(f.passband_gain * f.b, f.a) for f in meter._filters.values()]
        self._zi = np.zeros((len(self._kw), 2, channels))
        self.sub = max(1, round(0.1 * rate))
        self.channels, self.weight = channels, 2.0 if dual_mono and channels == 1 else 1.0
        self._sum, self._pos, self._powers = 0.0, 0, []

    def add(self, block: np.ndarray) -> None:
        x = np.asarray(block, np.float64).reshape(len(block), self.channels)
        for i, (b, a) in enumerate(self._kw):
            x, self._zi[i] = lfilter(b, a, x, axis=0, zi=self._zi[i])
        k2 = np.sum(x * x, axis=1) * self.weight
        i = 0
        while i < len(k2):
            take = min(self.sub - self._pos, len(k2) - i)
            self._sum += float(np.sum(k2[i:i + take]))
            self._pos += take
            i += take
            if self._pos == self.sub:
                self._powers.append(self._sum / self.sub)
                self._sum, self._pos = 0.0, 0

    def _windows(self, subs: int) -> np.ndarray:
        p = np.asarray(self._powers)
        if len(p) < subs:
            return np.zeros(0)
        total = np.concatenate([[0.0], np.cumsum(p)])
        return (total[subs:] - total[:-subs]) / subs

    def integrated(self) -> float:
        z = self._windows(4)
        z = z[z > 10 ** ((-70.0 - _OFFSET) / 10)]
        if not len(z):
            return -np.inf
        z = z[z > np.mean(z) * 10 ** (-10.0 / 10)]
        return _lufs(float(np.mean(z)))

    def loudness_range(self) -> float:
        z = self._windows(30)
        z = z[z > 10 ** ((-70.0 - _OFFSET) / 10)]
        if not len(z):
            return np.nan
        z = z[z > np.mean(z) * 10 ** (-20.0 / 10)]
        levels = _OFFSET + 10 * np.log10(z)
        return float(np.percentile(levels, 95) - np.percentile(levels, 10))
