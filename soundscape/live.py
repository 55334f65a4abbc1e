"""Live changes to a playing scene: `soundscape set` requests and scene-file hot reload.

Both run on the engine's main thread. Each change is validated here, then handed to the
generator thread (`GeneratorThread.request`), which applies it between chunks; the feeder
then crossfades into the first audio made after it. Every change is written to the
timeline when it arrives ({"event": "tweak", ...}) and when its audio starts
({"event": "tweak_heard", ...}).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from .errors import SceneError
from .scene import Scene, load_scene

_GEOMETRY = ("chunk_seconds", "overlap_seconds")


class LiveControl:
    def __init__(self, engine, scene_path: str | Path | None, poll_s: float = 0.5):
        self.engine = engine
        self.scene: Scene = engine.stream.scene  # the main thread's view of the current scene
        self.path = Path(scene_path) if scene_path else None
        self._mtime = self._stat()
        self._poll_s = poll_s
        self._next_poll = 0.0
        self._heard = 0
        self.pending: dict[int, dict] = {}  # epoch -> tweak row, until its audio is heard

    # The engine calls this every tick.
    def tick(self) -> None:
        self._report_heard()
        now = time.monotonic()
        if self.path and now >= self._next_poll:
            self._next_poll = now + self._poll_s
            self._check_file()

    def _played_s(self) -> float:
        return self.engine.player.frames_played / self.engine.config.rate

    def _submit(self, kind: str, detail: dict, change) -> None:
        gen = self.engine.gen
        gen.request(change)
        # The epoch this change lands in: one more than what is applied or queued before it.
        epoch = gen.epoch + gen.changes.qsize()
        row = {"event": "tweak", "kind": kind, **detail, "epoch": epoch, "received_s": round(self._played_s(), 3)}
        self.pending[epoch] = row
        gen.log(row)

    def _report_heard(self) -> None:
        switches = self.engine.feeder.switches
        while self._heard < len(switches):
            epoch, ring_pos = switches[self._heard]
            self._heard += 1
            heard_s = ring_pos / self.engine.config.rate
            for e in sorted(k for k in self.pending if k <= epoch):
                row = self.pending.pop(e)
                self.engine.gen.log({"event": "tweak_heard", "epoch": e, "kind": row["kind"],
                                     "received_s": row["received_s"], "heard_s": round(heard_s, 3),
                                     "latency_s": round(heard_s - row["received_s"], 3)})

    # `soundscape set` ------------------------------------------------------
    def handle(self, request: dict) -> dict:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.engine.status_dict()}
        if cmd == "set":
            return self._set(request.get("weights"))
        if cmd == "prompt":
            return self._prompt(request.get("layer"), request.get("prompt"))
        return {"ok": False, "error": f"unknown command {cmd!r}; expected status, set or prompt"}

    def _set(self, weights) -> dict:
        if not isinstance(weights, dict) or not weights:
            return {"ok": False, "error": "expected LAYER=VALUE pairs"}
        for name, value in weights.items():
            if name not in self.scene.layers:
                return {"ok": False, "error": f"no layer {name!r}; layers are: {', '.join(self.scene.layers)}"}
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0 <= value <= 1:
                return {"ok": False, "error": f"{name}: expected a number from 0 to 1, got {value!r}"}
        values = {k: float(v) for k, v in weights.items()}
        self._submit("set", {"weights": values}, lambda stream: stream.apply_overrides(values))
        return {"ok": True, "applied": values}

    def _prompt(self, layer, prompt) -> dict:
        if not isinstance(layer, str) or not isinstance(prompt, str):
            return {"ok": False, "error": "expected a layer name and a prompt"}
        data = self.scene.model_dump()
        weight = data["layers"].get(layer, {}).get("weight", 1.0)
        data["layers"][layer] = {"prompt": prompt, "weight": weight}
        try:
            new = Scene.model_validate(data)
        except Exception as exc:  # pydantic's message, first line: the key and what was wrong
            first = str(exc).splitlines()
            return {"ok": False, "error": " ".join(first[1:3]).strip() or "invalid prompt"}
        self.scene = new
        self._submit("prompt", {"layer": layer, "prompt": new.layers[layer].prompt},
                     lambda stream: stream.replace_scene(new))
        return {"ok": True, "applied": {"layer": layer, "prompt": new.layers[layer].prompt, "weight": weight}}

    # Hot reload ------------------------------------------------------------
    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns if self.path else None
        except OSError:
            return None

    def _check_file(self) -> None:
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            new = load_scene(self.path)
        except SceneError as exc:
            print(f"\n{exc} (keeping the last good scene)", file=sys.stderr)
            return
        old = self.scene
        changed = [k for k in _GEOMETRY if getattr(new.generation, k) != getattr(old.generation, k)]
        if changed or new.output != old.output or new.seed != old.seed:
            print(f"\n{self.path}: generation.{', '.join(changed) or 'seed/output'} changed: restart play to apply "
                  f"that; applying the rest", file=sys.stderr)
            new = new.model_copy(update={"generation": new.generation.model_copy(
                update={k: getattr(old.generation, k) for k in _GEOMETRY}), "output": old.output, "seed": old.seed})
        if new == old:
            return
        self.scene = new
        self._submit("reload", {"file": str(self.path)}, lambda stream: stream.replace_scene(new))
