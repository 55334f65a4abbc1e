"""Loop files: weights that come back to the start, and the seam analyser.

Weights over a loop of L seconds with chunks of c seconds (stream/controller.py gives w(t)):
  s(t)      = ease((t - (L - c)) / c)          0 until the last chunk, 1 at the wrap
  w_loop(t) = (1 - s) w(t) + s w(t - L)        w(t - L): the scene just before its own start
so the weights reach at the wrap exactly those the loop starts with, eased over the last chunk
with zero slope at both ends; keyframes and drift meet themselves.

The cyclic finish of the joined audio (loudness around the loop, wrapping resampler) is the
output chain's: audio/chain.py, `OutputChain.finish_cycle`.
"""

from __future__ import annotations

import numpy as np

from ..stream import controller
from ..scene import Scene


def _blend(a: dict[str, float], b: dict[str, float], s: float) -> dict[str, float]:
    return {k: (1 - s) * a.get(k, 0.0) + s * b.get(k, 0.0) for k in {*a, *b}}


def ease_back(t: float, loop_s: float | None, chunk_s: float) -> float:
    """s(t): how far the weights at scene time t have eased back to the loop's start."""
    if not loop_s:
        return 0.0
    return controller.ease((t - (loop_s - chunk_s)) / chunk_s)


def weights(scene: Scene, t: float, loop_s: float | None, chunk_s: float,
            day_start: float = 0.0) -> dict[str, float]:
    """Layer weights at t (for the timeline), eased back to the start over a loop's last chunk."""
    w = controller.weights_at(scene, t, day_start=day_start)
    s = ease_back(t, loop_s, chunk_s)
    if s <= 0:
        return w
    back = controller.weights_at(scene, t - loop_s, day_start=day_start)
    return {k: round(v, 6) for k, v in _blend(w, back, s).items()}


def prompt_weights(scene: Scene, t: float, loop_s: float | None, chunk_s: float,
                   day_start: float = 0.0) -> dict[str, float]:
    """Weight per prompt (what the conditioning blends), eased back the same way."""
    w = controller.prompt_weights(scene, t, day_start=day_start)
    s = ease_back(t, loop_s, chunk_s)
    if s <= 0:
        return w
    return _blend(w, controller.prompt_weights(scene, t - loop_s, day_start=day_start), s)


# The seam analyser ------------------------------------------------------------------------------

def _rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64))))) if len(x) else 0.0


def analyse_seams(audio: np.ndarray, rate: int, seams: list[int], xfade: int) -> dict:
    """Click, level and repetition figures at each seam, and the same figures inside the pieces.

    `audio` is mono; `seams` are the samples where each seam's crossfade (`xfade` samples) starts.
    step     the largest sample-to-sample change within 12.5 ms of a crossfade (a click shows here)
    inside   the same, over each stretch between seams, 25 ms clear of them
    jump     |level change| in dB across the seam, 0.25 s either side; `jump_inside` the same at
             points 0.5 s clear of any seam (the material's own wandering)
    repeat   how well the 0.2 s before a seam matches anything in the second after it (1 = a copy)
    """
    y = np.asarray(audio, dtype=np.float64)
    d = np.abs(np.diff(y))
    m, q, w = int(0.0125 * rate), int(0.25 * rate), int(0.2 * rate)
    seams = sorted(int(a) for a in seams if q <= a <= len(y) - max(q, rate))
    bounds = [0, *seams, len(y)]
    step = [float(d[a - m: a + xfade + m].max()) for a in seams]
    inside = [float(d[a + xfade + 2 * m: b - 2 * m].max()) for a, b in zip(bounds[:-1], bounds[1:])
              if b - 2 * m > a + xfade + 2 * m]

    def jump(a):
        return abs(20 * np.log10(max(_rms(y[a - q:a]), 1e-12) / max(_rms(y[a:a + q]), 1e-12)))

    clear = [p for p in range(q, len(y) - q, max(1, rate // 8))
             if all(abs(p - a) > 2 * q for a in seams)]

    def repeat(a):
        before = y[a - w:a]
        after = y[a:a + rate]
        nb = np.linalg.norm(before) + 1e-12
        hop = max(1, rate // 400)
        return max(float(np.dot(before, after[k:k + w]) / (nb * (np.linalg.norm(after[k:k + w]) + 1e-12)))
                   for k in range(0, len(after) - w, hop))

    return {"step": step, "inside": inside, "jump": [jump(a) for a in seams],
            "jump_inside": [jump(p) for p in clear], "repeat": [repeat(a) for a in seams]}
