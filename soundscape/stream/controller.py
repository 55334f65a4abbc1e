"""Scene-state controller: (scene, time, live overrides) -> layer weights. Pure and deterministic.

Notation, for layer i at scene time t (seconds):
  τ        = t mod loop_seconds if the scene loops, else t
  base_i(τ) keyframe weights, eased between neighbouring keyframes with
            s(u) = (1 - cos πu) / 2 (zero slope at each keyframe, so no corners);
            before the first keyframe: the layer's own weight; after the last: held,
            or, when looping, eased from the last keyframe back to the first at τ = loop
  d_i(t)   = depth · Σ_k a_k sin(2π t / P_k + φ_k) / Σ_k a_k, with P_k spread around the
            drift period and a_k, φ_k drawn from the scene seed: smooth, |d_i| <= depth
  w_i(t)   = clip(base_i(τ) + d_i(t), 0, 1)
A scene whose keyframes are times of day (`at: "21:30"`) takes τ from the local clock instead:
  τ        = (day_start + t) mod 86400, seconds after midnight, where day_start is the time of
            day at scene time 0 (`render --start-time`; play maps each chunk to when it is heard)
  base_i(τ) eased between the keyframes before and after τ on a 24-hour circle (the last
            keyframe of the day eases into the first across midnight)
An override from `soundscape set` replaces w_i: exactly that value, no drift. It is
reached from the weight before it over transition_seconds with the same easing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..scene import Scene

_DRIFT_PARTIALS = (1.0, 0.61, 0.37)  # period ratios: incommensurate, so it never repeats exactly


@dataclass(frozen=True)
class Override:
    """`set LAYER=value` at scene time `at`."""

    layer: str
    value: float
    at: float


def ease(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * u)


DAY_S = 86400.0


def _clock_keyframed(scene: Scene, name: str, tod: float) -> float:
    """The keyframes as a daily cycle: eased from the keyframe at or before `tod` to the next, across midnight."""
    default = scene.layers[name].weight
    keys = sorted((k.seconds, k.weights.get(name, default)) for k in scene.evolution.keyframes)
    if len(keys) == 1:
        return keys[0][1]
    i = max((j for j, (at, _) in enumerate(keys) if at <= tod), default=len(keys) - 1)
    (t0, w0), (t1, w1) = keys[i], keys[(i + 1) % len(keys)]
    span = (t1 - t0) % DAY_S
    return w0 + (w1 - w0) * ease(((tod - t0) % DAY_S) / span)


def _keyframed(scene: Scene, name: str, t: float, day_start: float | None = None) -> float:
    if scene.evolution.follows_clock:
        return _clock_keyframed(scene, name, ((day_start or 0.0) + t) % DAY_S)
    default = scene.layers[name].weight
    keys = [(k.at, k.weights.get(name, default)) for k in scene.evolution.keyframes]
    if not keys:
        return default
    loop = scene.evolution.loop_seconds
    tau = t % loop if loop else t
    if tau < keys[0][0]:
        # Before the first keyframe: from the layer weight (or, looping, from the last keyframe).
        start_t, start_w = (keys[-1][0] - loop, keys[-1][1]) if loop and t >= loop else (0.0, default)
        span = keys[0][0] - start_t
        return start_w + (keys[0][1] - start_w) * ease((tau - start_t) / span) if span > 0 else keys[0][1]
    for (t0, w0), (t1, w1) in zip(keys, keys[1:]):
        if t0 <= tau < t1:
            return w0 + (w1 - w0) * ease((tau - t0) / (t1 - t0))
    last_t, last_w = keys[-1]
    if loop:
        first_t, first_w = keys[0]
        return last_w + (first_w - last_w) * ease((tau - last_t) / (loop + first_t - last_t))
    return last_w


def drift(scene: Scene, name: str, t: float) -> float:
    """Slow seeded wander of one layer, bounded by the drift depth."""
    cfg = scene.evolution.drift
    if cfg.depth == 0:
        return 0.0
    # Seeded by the scene seed and the layer name, so every layer wanders on its own.
    rng = np.random.default_rng([scene.seed, *name.encode()])
    amps = rng.uniform(0.5, 1.0, len(_DRIFT_PARTIALS))
    phases = rng.uniform(0, 2 * math.pi, len(_DRIFT_PARTIALS))
    total = sum(a * math.sin(2 * math.pi * t / (cfg.period_seconds * p) + ph)
                for a, p, ph in zip(amps, _DRIFT_PARTIALS, phases))
    return cfg.depth * total / float(amps.sum())


def scene_weight(scene: Scene, name: str, t: float, day_start: float | None = None) -> float:
    return min(max(_keyframed(scene, name, t, day_start) + drift(scene, name, t), 0.0), 1.0)


def weights_at(scene: Scene, t: float, overrides: tuple[Override, ...] = (),
               day_start: float | None = None) -> dict[str, float]:
    """Layer weights for the audio heard at scene time `t` (`day_start`: a clock scene's time of day at t = 0)."""
    out = {}
    transition = scene.evolution.transition_seconds
    for name in scene.layers:
        w = scene_weight(scene, name, t, day_start)
        for o in overrides:
            if o.layer != name or o.at > t:
                continue
            # Ease from whatever the layer was doing when the override arrived.
            w = w + (o.value - w) * ease((t - o.at) / transition) if transition > 0 else o.value
        out[name] = round(float(w), 6)
    return out


@dataclass(frozen=True)
class SceneChange:
    """The scene was replaced (hot reload, `set --prompt`) at scene time `at`."""

    before: Scene
    before_overrides: tuple[Override, ...]
    at: float


def prompt_weights(scene: Scene, t: float, overrides: tuple[Override, ...] = (),
                   change: SceneChange | None = None, day_start: float | None = None) -> dict[str, float]:
    """Weight per prompt text: what the conditioning blends.

    During a scene change the old scene's prompts fade out as the new one's fade in over
    transition_seconds, so an edited prompt crossfades in embedding space instead of jumping.
    """
    out: dict[str, float] = {}
    for name, w in weights_at(scene, t, overrides, day_start).items():
        prompt = scene.layers[name].prompt
        out[prompt] = out.get(prompt, 0.0) + w
    if change is not None:
        transition = scene.evolution.transition_seconds
        e = ease((t - change.at) / transition) if transition > 0 else 1.0
        if e < 1.0:
            old = prompt_weights(change.before, t, change.before_overrides, day_start=day_start)
            out = {p: e * out.get(p, 0.0) + (1 - e) * old.get(p, 0.0) for p in {*out, *old}}
    return out
