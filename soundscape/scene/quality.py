"""Quality presets: `generation.quality` (or `--quality`) -> steps, guidance interval, chunk length.

    preset     steps (render)   play adapts within   guidance on        chunk
    best       25               15..25               every step         10.24 s
    balanced   10               10..16               first half         10.24 s
    eco         6                4..8                first third        10.24 s
`auto` is best on a GPU and balanced on a CPU, where play may still go down to eco's floor (4 steps)
when balanced's cannot keep up (AUTO_CPU_FLOOR). A value the scene sets itself (steps,
guidance_interval, chunk_seconds) wins over the preset; explicit steps (scene or --steps)
also fix play's steps. Figures behind the choices: docs/benchmarks.md ("Presets").
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import Generation


@dataclass(frozen=True)
class Preset:
    steps: int
    min_steps: int
    max_steps: int
    guidance_interval: tuple[float, float]
    chunk_seconds: float


PRESETS = {
    "best": Preset(steps=25, min_steps=15, max_steps=25, guidance_interval=(0.0, 1.0), chunk_seconds=10.24),
    # Why the first half: guidance shapes what the sound is while the noise is high; late steps refine
    # texture, where batch-1 steps save about a third of a guided step's cost on a CPU (docs/benchmarks.md).
    "balanced": Preset(steps=10, min_steps=10, max_steps=16, guidance_interval=(0.0, 0.5), chunk_seconds=10.24),
    "eco": Preset(steps=6, min_steps=4, max_steps=8, guidance_interval=(0.0, 0.34), chunk_seconds=10.24),
}
# `auto` on a CPU: balanced's steps and guidance, but play adapts down to eco's floor rather than
# cover with earlier material. Why: on a 2-core CPU balanced's floor (10 steps) ran at 0.6x real
# time and eco's range at 1.1x (docs/benchmarks.md, "Five minutes of play"); a listener who chose
# nothing wants fresh sound more than the last few steps. An explicit `balanced` keeps its floor.
AUTO_CPU_FLOOR = PRESETS["eco"].min_steps
# Fields a preset sets when the scene leaves them out.
PRESET_FIELDS = ("steps", "guidance_interval", "chunk_seconds")


def preset_name(quality: str, device_type: str) -> str:
    if quality == "auto":
        return "best" if device_type in ("cuda", "mps") else "balanced"
    return quality


@dataclass(frozen=True)
class Resolved:
    generation: Generation  # the scene's generation with the preset filled in
    preset: str
    min_steps: int  # play's adaptive range; equal to steps when steps are fixed
    max_steps: int


def resolve(g: Generation, quality: str | None = None, device_type: str = "cpu",
            steps: int | None = None) -> Resolved:
    """The generation settings a stream runs with: --quality, else the scene's, applied under its own values."""
    chosen = quality or g.quality
    name = preset_name(chosen, device_type)
    p = PRESETS[name]
    update = {f: getattr(p, f) for f in PRESET_FIELDS if f not in g.model_fields_set}
    if "chunk_seconds" in update and g.overlap_seconds > update["chunk_seconds"] / 2:
        del update["chunk_seconds"]  # keep a scene's long overlap valid
    if steps is not None:
        update["steps"] = steps
    resolved = g.model_copy(update=update)
    fixed = steps is not None or "steps" in g.model_fields_set
    floor = AUTO_CPU_FLOOR if chosen == "auto" and name == "balanced" else p.min_steps
    lo, hi = (resolved.steps, resolved.steps) if fixed else (floor, p.max_steps)
    return Resolved(generation=resolved, preset=name, min_steps=lo, max_steps=hi)
