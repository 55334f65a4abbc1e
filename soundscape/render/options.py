"""`RenderOptions`: what `soundscape render` was asked, typed and checked once (cli/render.py makes it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..scene import Scene
from ..stream.options import ModelOptions


@dataclass(frozen=True)
class RenderOptions:
    scene: Scene
    scene_path: str
    output: Path  # checked writable, of a known format (audio/files.py)
    duration: float
    model: ModelOptions = ModelOptions()
    timeline: str | None = None
    resume: bool = False
    quiet: bool = False
    loop: bool = False
    workers: int | None = None
    start_time: float | None = None  # a clock scene's local time of day at the file's start
    ray: str | None = None

    @property
    def segmented(self) -> bool:
        """--loop, --workers or --ray: the segmented driver (render/segmented.py), not the plain render."""
        return bool(self.loop or self.workers or self.ray)

    def flags(self) -> str:
        """The flags a resumed render must repeat."""
        return "".join([" --loop" if self.loop else "", f" --workers {self.workers}" if self.workers else "",
                        f" --ray {self.ray}" if self.ray else ""])
