"""What every generating command is told about the model and its settings, checked once by `cli`.

`ModelOptions` is the typed form of the shared flags (--model, --device, --dtype, --runtime, --quality,
--steps, --seed, --keep-encoders, --compile); `open_stream` is the one place a scene becomes a
SceneStream from them (play and the plain render; serve and the segmented render share the model).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import interrupts


@dataclass(frozen=True)
class ModelOptions:
    name: str | None = None  # --model: a hub id or a folder; None: the scene's, $SOUNDSCAPE_MODEL, the default
    device: str = "auto"
    dtype: str = "auto"
    runtime: str = "auto"
    quality: str | None = None
    steps: int | None = None
    seed: int | None = None
    keep_encoders: bool = False
    compile: str | None = None

    def model_id(self, scene_model: str | None = None) -> str:
        from ..model.source import choose_model

        return choose_model(self.name, scene_model)

    def load(self, scene_model: str | None = None, quiet: bool = False):
        """The loaded model (exit 3 when it cannot be)."""
        from ..model.loading import load_model

        return load_model(self.model_id(scene_model), device=self.device, dtype=self.dtype, quiet=quiet,
                          compile_mode=self.compile, runtime=self.runtime, keep_encoders=self.keep_encoders)


def open_stream(scene, options: ModelOptions, *, quiet: bool = False, **kw):
    """Load the model the scene and options name, and make the scene's stream (kw: SceneStream's)."""
    from .scene_stream import SceneStream

    model = options.load(scene.model, quiet=quiet)
    if not quiet and model.device.type == "cpu":
        import sys

        # What `--runtime auto` chose on this CPU (measured once, model/probe.py), as `status --json` says it too
        print("running " + ", ".join(f"{s} on {r}" for s, r in model.runtime_names().items()), file=sys.stderr)
    interrupts.check()  # a signal swallowed while the model's objects were built and freed
    return SceneStream(model, scene, steps=options.steps, seed=options.seed, quality=options.quality, **kw)
