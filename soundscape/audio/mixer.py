"""What the web mixer needs from the audio path: the gain it played, and a look at what was just played.

Both are used only with `play --web` and cost the audio threads nothing they could wait on:
  MixerPlayer   the Player (whose master volume and pause are glides, audio/ramp.py), plus the gain
                it applied at a given frame, for the meter. Its device buffer is the Player's (at
                least audio/output.MIN_LATENCY_S).
  TappedRing    the ring buffer, plus a mono copy of every frame written, kept by its position in
                the stream. Writes happen on the main thread (the feeder); the callback is untouched.
                The web thread reads the frames just before the callback's read position: what the
                device has just been sent. The copy holds `keep_s` more than the ring, so the
                producer, never more than a ring ahead of the reader, cannot overwrite those frames.
  Analyzer      level (RMS, peak) and one spectrogram column from those frames, on the web thread.
"""

from __future__ import annotations

import math

import numpy as np

from .output import Player
from .ringbuffer import RingBuffer


class MixerPlayer(Player):
    def level_gain(self, frame: int) -> float:
        """Web thread: the gain the callback applied at `frame` (master volume times any fade-out)."""
        if self.done:
            return 0.0
        gain = self.volume.at(frame) * self.pausing.at(frame)
        curve, start = self._curve, self._fade_start
        if curve is not None and frame >= start:
            gain *= float(curve[frame - start]) if frame - start < len(curve) else 0.0
        return gain


class TappedRing(RingBuffer):
    def __init__(self, capacity: int, channels: int, rate: int, keep_s: float = 4.0):
        super().__init__(capacity, channels)
        self.keep = int(keep_s * rate)
        self._mono = np.zeros(capacity + self.keep, np.float32)

    def _copy(self, pos: int, frames: np.ndarray) -> None:
        m = len(self._mono)
        start = pos % m
        first = min(len(frames), m - start)
        self._mono[start:start + first] = frames[:first, 0]
        self._mono[: len(frames) - first] = frames[first:, 0]

    def write(self, frames: np.ndarray) -> int:
        # Copy before the parent publishes the frames, so the reader never sees a frame before its copy.
        pos, ahead = self._w, min(len(frames), self.free())
        self._copy(pos, frames[:ahead])
        n = super().write(frames)
        if n > ahead:  # the callback freed more room in between
            self._copy(pos + ahead, frames[ahead:n])
        return n

    def recent(self, n: int, delay: int = 0) -> tuple[np.ndarray, int]:
        """Web thread: a copy of `n` frames (mono) ending `delay` frames before the callback's read position
        (the device's latency: those are being heard now), and the position after them."""
        end = max(0, self.frames_read - min(delay, self.keep // 4))
        n = max(0, min(n, end, self.keep // 2))
        idx = np.arange(end - n, end) % len(self._mono)
        return self._mono[idx], end


class Analyzer:
    """Level and spectrum of what the device was just sent, for the meter and the spectrogram."""

    def __init__(self, rate: int, bands: int = 96, fmin: float = 40.0, fmax: float = 8000.0,
                 floor_db: float = -100.0, top_db: float = -20.0):
        # The model makes 16 kHz audio, so nothing above 8 kHz is worth drawing.
        fmax = min(fmax, 0.45 * rate)
        self.rate = rate
        self.n_fft = 2 ** round(math.log2(rate * 0.085))  # ~85 ms: 12 Hz bins at 48 kHz
        self.window = np.hanning(self.n_fft).astype(np.float32)
        # A full-scale sine reads 0 dB in its band.
        self.norm = (self.window.sum() / 2) ** 2
        edges = np.geomspace(fmin, fmax, bands + 1) * self.n_fft / rate
        self.lo = np.floor(edges[:-1]).astype(int)
        self.hi = np.maximum(self.lo + 1, np.ceil(edges[1:]).astype(int))
        self.floor_db, self.top_db = floor_db, top_db
        self.meter_n = rate // 15

    def frame(self, audio: np.ndarray, gain: float) -> dict:
        """`audio`: the latest n_fft mono frames (fewer at the start). Returns dBFS levels and 0..255 bands."""
        x = np.zeros(self.n_fft, np.float32)
        x[len(x) - len(audio):] = audio[-self.n_fft:] * gain
        recent = x[-self.meter_n:]
        rms = float(np.sqrt(np.mean(np.square(recent, dtype=np.float64))))
        peak = float(np.abs(recent).max())
        power = np.abs(np.fft.rfft(x * self.window)) ** 2 / self.norm
        cum = np.concatenate([[0.0], np.cumsum(power)])
        band = (cum[self.hi] - cum[self.lo]) / (self.hi - self.lo)
        db = 10 * np.log10(band + 1e-20)
        scaled = np.clip((db - self.floor_db) / (self.top_db - self.floor_db), 0, 1) * 255
        to_db = lambda v: round(20 * math.log10(v), 1) if v > 1e-6 else None  # noqa: E731
        return {"rms_db": to_db(rms), "peak_db": to_db(peak), "bands": scaled.astype(np.uint8).tolist()}
