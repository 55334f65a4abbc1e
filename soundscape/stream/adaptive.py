"""Adaptive steps for `play`: each chunk's step count, chosen so the buffer never runs dry.

Cost model, refit after every chunk (exponential average, weight ALPHA on the newest):
  gen(s) = fixed + s · per_step        fixed: decode, conditioning, resampling; per_step: a denoising step
Choice for the next chunk, with `ahead` seconds of audio buffered and `hop` seconds of new audio a chunk:
  the largest s in [lo, hi] with gen(s) <= min(ahead - safety, hop · SUSTAIN + surplus)
  where safety is what the player must still hold when the chunk lands (its cover-up margin and
  held crossfade, plus jitter)
  where surplus = max(0, ahead - 2 hop) / 4: a full buffer is spent slowly on richer chunks.
It falls at once when the buffer shrinks and rises by at most RISE steps a chunk. The first chunk
(nothing measured yet) uses lo. `render` never adapts: its steps are fixed, so it stays deterministic.
"""

from __future__ import annotations

ALPHA = 0.5
SUSTAIN = 0.8  # steady state: a chunk may take 80 % of the audio it adds (timing jitter eats the rest)
RISE = 2


class StepController:
    def __init__(self, lo: int, hi: int, hop_s: float, safety_s: float = 1.5):
        if not 1 <= lo <= hi:
            raise ValueError(f"StepController: expected 1 <= lo <= hi, got lo={lo}, hi={hi}")
        self.lo, self.hi, self.hop_s, self.safety_s = lo, hi, hop_s, safety_s
        self.per_step: float | None = None
        self.fixed: float | None = None
        self.last = lo

    def observe(self, steps: int, denoise_s: float, gen_s: float) -> None:
        per_step, fixed = denoise_s / max(steps, 1), max(gen_s - denoise_s, 0.0)
        if self.per_step is None:
            self.per_step, self.fixed = per_step, fixed
        else:
            self.per_step += ALPHA * (per_step - self.per_step)
            self.fixed += ALPHA * (fixed - self.fixed)

    def predict(self, steps: int) -> float:
        return (self.fixed or 0.0) + steps * (self.per_step or 0.0)

    def choose(self, ahead_s: float) -> int:
        if self.per_step is None or self.lo == self.hi:
            self.last = self.lo
            return self.lo
        surplus = max(0.0, ahead_s - 2 * self.hop_s) / 4
        budget = min(ahead_s - self.safety_s, self.hop_s * SUSTAIN + surplus)
        affordable = int((budget - self.fixed) / max(self.per_step, 1e-9))
        steps = max(self.lo, min(self.hi, affordable, self.last + RISE))
        self.last = steps
        return steps
