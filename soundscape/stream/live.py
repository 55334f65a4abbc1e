"""Live changes to a playing scene: `soundscape set` requests and scene-file hot reload.

Both run on the owner's thread (play's main thread, serve's event loop), over a Playback (playback.py).
Each change is validated here, then handed to the generator thread (`StreamSlot.request`,
stream/generation_loop.py), which applies it between chunks; the feeder then crossfades into the first
audio made after it. Every change is written to the timeline when it arrives ({"event": "tweak", ...})
and when its audio starts ({"event": "tweak_heard", ...}).

Commands (`handle`), shared by play's control socket, web mixer (play/web/) and media controls (MPRIS) and
serve's listeners. Each is checked whole before anything changes: its values with the scene's own types and
the shared bounds (control_requests.py), then against the state (`_plan`, and the transport's `refusal`),
and only then applied, so a refused request changes nothing:
  status                          what `soundscape status` shows, plus the mix, volume and sleep timer
  set {weights}                   layer weights, eased in over transition_seconds
  prompt {layer, prompt}          change a layer's prompt, or add a layer at weight 1
  add {layer, prompt, weight}     add a layer (refused if it exists)
  remove {layer}                  remove a layer (it fades out over transition_seconds)
  width {width}                   stereo width 0..1 (output.width; audio/width.py): from the next chunk,
                                  the side ramping there over 0.25 s; refused on a mono output
  scene                           the current mix as a scene (what "Save as scene" writes)
  pause / resume / toggle, volume, timer, stop, wake: the transport's (play/transport.py), handed to
                                  the `transport` given, and refused here, in one place, without one (serve)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from ..errors import SceneError
from ..scene import Scene, load_scene
from ..scene.load import one_line
from .control_requests import parse_request
from .prompt_ahead import PromptAhead
from .playback import Playback

_GEOMETRY = ("chunk_seconds", "overlap_seconds")
TRANSPORT_COMMANDS = ("pause", "resume", "toggle", "volume", "timer", "stop", "wake")


class PlayerControls(Protocol):
    """What plays the audio and answers TRANSPORT_COMMANDS: play's (play/transport.py)."""

    volume: float

    def refusal(self, req) -> str | None: ...  # why its state refuses a checked request; changes nothing
    def handle(self, req) -> dict: ...
    def status(self) -> dict: ...
    def tick(self): ...  # the wake scene's (scene, path) when it is to be switched to now


class LiveControl:
    def __init__(self, playback: Playback, scene_path: str | Path | None, *, transport: PlayerControls | None = None,
                 poll_s: float = 0.5):
        self.playback = playback
        self.transport = transport
        self.scene: Scene = playback.stream.scene  # the owner's view of the current scene
        self.set_weights: dict[str, float] = {}  # layers moved by `set`: the value each was set to
        self.path = Path(scene_path) if scene_path else None
        self._mtime = self._stat()
        self._poll_s = poll_s
        self._next_poll = 0.0
        self._heard = 0
        self.pending: dict[int, dict] = {}  # epoch -> tweak row, until its audio is heard
        self._ahead: PromptAhead | None = None  # new prompts encoded while the chunk in flight runs

    # The owner calls this every tick.
    def tick(self) -> None:
        self._report_heard()
        if self.transport is not None:
            switch = self.transport.tick()
            if switch is not None:
                self.switch_scene(*switch)
        now = time.monotonic()
        if self.path and now >= self._next_poll:
            self._next_poll = now + self._poll_s
            self._check_file()

    def watched(self, seconds: float) -> None:
        """The web mixer's page is open: the buffer ahead stays shallow for `seconds` more (StreamSlot.watched)."""
        if self.playback.slot is not None:
            self.playback.slot.watched(seconds)

    @property
    def volume(self) -> float:
        """The master volume: the transport's, or the scene's own without one."""
        return self.transport.volume if self.transport is not None else self.scene.output.volume

    def _played_s(self) -> float:
        return self.playback.played_s()

    def _submit(self, kind: str, detail: dict, change, prompts=()) -> None:
        """Hand `change` to the generator, once `prompts` (a new scene's) are encoded (stream/prompt_ahead.py)."""
        gen = self.playback.slot
        if self._ahead is None or self._ahead.slot is not gen:
            self._ahead = PromptAhead(gen, self.playback.stream.encoder)
        # The epoch this change lands in: one more than what is applied or queued before it.
        epoch = gen.epoch + gen.changes.qsize() + self._ahead.waiting + 1
        row = {"event": "tweak", "kind": kind, **detail, "epoch": epoch, "received_s": round(self._played_s(), 3),
               "t_s": gen.now()}
        self.pending[epoch] = row
        gen.log(row)
        self._ahead.submit(change, prompts, epoch)

    def _report_heard(self) -> None:
        switches = self.playback.feeder.switches
        while self._heard < len(switches):
            epoch, ring_pos = switches[self._heard]
            self._heard += 1
            heard_s = ring_pos / self.playback.rate
            for e in sorted(k for k in self.pending if k <= epoch):
                row = self.pending.pop(e)
                self.playback.log({"event": "tweak_heard", "epoch": e, "kind": row["kind"],
                                     "received_s": row["received_s"], "heard_s": round(heard_s, 3),
                                     "latency_s": round(heard_s - row["received_s"], 3)})

    # `soundscape set` ------------------------------------------------------
    def handle(self, request) -> dict:
        """One request from any door: checked against the scene's types, then applied; always a reply.

        Nothing a client sends may end the player: a bad request is a one-line error, and a bug in
        handling a good one is reported in one line too, not raised into the engine's loop.
        """
        try:
            if isinstance(request, dict) and request.get("cmd") == "set" and isinstance(request.get("weights"), dict):
                unknown = [k for k in request["weights"] if k not in self.scene.layers]
                if unknown:  # the most useful message first: which layers there are
                    return {"ok": False, "error": self._no_layer(unknown[0])}
            req = parse_request(request)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        try:
            plan = self._plan(req)  # every check first: a refused request changes nothing
            return {"ok": False, "error": plan} if isinstance(plan, str) else plan()
        except Exception as exc:
            print(f"\nsoundscape: control request {req.cmd!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc} (please report it)"}

    def _plan(self, req):
        """Every check `req` needs against the current state, and nothing changed: the change to apply (a
        callable that returns the reply), or why it is refused (a string). The one rule for every door."""
        cmd = req.cmd
        if cmd in TRANSPORT_COMMANDS:
            if self.transport is None:
                return (f"{cmd}: this stream has no transport here (pause, volume, the sleep timer, stop and the "
                        f"wake alarm belong to `soundscape play`)")
            why = self.transport.refusal(req)
            return why if why is not None else (lambda: self.transport.handle(req))
        if cmd == "status":
            return lambda: {"ok": True, "status": self.status()}
        if cmd == "scene":
            return lambda: {"ok": True, "scene": self.mix().model_dump(mode="json")}
        if cmd == "set":
            return self._plan_set(dict(req.weights))
        if cmd == "width":
            return self._plan_width(req.width)
        return self._plan_layers(req)

    def status(self) -> dict:
        """The playback's status, the mix and the transport's (the scene's own volume without one)."""
        status = self.playback.status()
        status.update(description=self.scene.description, volume=self.volume, width=self.scene.output.width,
                      channels=self.playback.channels, stopping=False,
                      set_weights={k: self.set_weights.get(k, v.weight) for k, v in self.scene.layers.items()},
                      sleep=None, paused=False, wake=None)
        if self.transport is not None:
            status.update(self.transport.status())
        return status

    def _no_layer(self, name: str) -> str:
        return f"no layer {name!r}; layers are: {', '.join(self.scene.layers)}"

    def _plan_set(self, weights: dict[str, float]):
        for name in weights:
            if name not in self.scene.layers:
                return self._no_layer(name)
        values = {k: float(v) for k, v in weights.items()}

        def apply():
            self.set_weights.update(values)
            self._submit("set", {"weights": values}, lambda stream: stream.apply_overrides(values))
            return {"ok": True, "applied": values}
        return apply

    def _plan_layers(self, req):
        """prompt, add, remove: the edited scene, validated whole before it replaces the current one."""
        cmd, layer, data = req.cmd, req.layer, self.scene.model_dump()
        if cmd == "add" and layer in self.scene.layers:
            return f"there is already a layer {layer!r}; change its prompt instead"
        if cmd == "remove":
            if layer not in self.scene.layers:
                return self._no_layer(layer)
            if len(self.scene.layers) == 1:
                return f"{layer} is the only layer; a scene needs at least one"
            del data["layers"][layer]
            for key in data["evolution"]["keyframes"]:
                key["weights"].pop(layer, None)
        else:
            weight = req.weight if cmd == "add" else data["layers"].get(layer, {}).get("weight", 1.0)
            data["layers"][layer] = {"prompt": req.prompt, "weight": weight}
        new = self._validated(data)
        if isinstance(new, str):
            return new
        if cmd == "remove":
            applied = {"layer": layer}
        else:
            applied = {"layer": layer, "prompt": new.layers[layer].prompt, "weight": new.layers[layer].weight}

        def apply():
            if cmd == "remove":
                self.set_weights.pop(layer, None)
            self._replace(cmd, {k: v for k, v in applied.items() if k != "weight" or cmd == "add"}, new)
            return {"ok": True, "applied": applied}
        return apply

    def _validated(self, data: dict) -> Scene | str:
        try:
            return Scene.model_validate(data)
        except ValidationError as exc:
            return one_line(exc)

    def _replace(self, kind: str, detail: dict, new: Scene) -> None:
        self.scene = new
        prompts = [new.negative_prompt, "", *(layer.prompt for layer in new.layers.values())]
        self._submit(kind, detail, lambda stream: stream.replace_scene(new), prompts)

    def mix(self) -> Scene:
        """The scene as it plays now: prompts and layers as edited, each moved layer at the value it was set to.

        A moved layer leaves the keyframes (it would otherwise follow them again), and the master volume
        becomes output.volume; everything else is the scene as loaded.
        """
        data = self.scene.model_dump()
        for name, value in self.set_weights.items():
            data["layers"][name]["weight"] = round(value, 3)
        for key in data["evolution"]["keyframes"]:
            for name in self.set_weights:
                key["weights"].pop(name, None)
        data["evolution"]["keyframes"] = [k for k in data["evolution"]["keyframes"] if k["weights"]]
        data["output"]["volume"] = round(self.volume, 3)
        return Scene.model_validate(data)

    # Width ---------------------------------------------------------------
    def _plan_width(self, width: float):
        if self.playback.channels < 2:
            return ("the output is mono (one channel), so it has no width; play a scene with output.channels: 2 "
                    "on a stereo device")

        def apply():
            self.scene = self.scene.model_copy(update={"output": self.scene.output.model_copy(update={"width": width})})
            self._submit("width", {"width": width}, lambda stream: stream.set_width(width))
            return {"ok": True, "applied": {"width": width}}
        return apply

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
        except Exception as exc:  # a bug in the reader must not end a playing player either
            print(f"\n{self.path}: cannot be read ({type(exc).__name__}: {exc}); keeping the last good scene",
                  file=sys.stderr)
            return
        new, changed = self.compatible(new)
        if changed:
            print(f"\n{self.path}: {changed} changed: restart play to apply that; applying the rest", file=sys.stderr)
        if new == self.scene:
            return
        self._replace("reload", {"file": str(self.path)}, new)

    def compatible(self, new: Scene) -> tuple[Scene, str]:
        """`new` with what a running stream cannot change (chunk geometry, output, seed) kept as it is now,
        and which of those differed ("" if none)."""
        old = self.scene
        changed = [k for k in _GEOMETRY if getattr(new.generation, k) != getattr(old.generation, k)]
        live_output = old.output.model_copy(update={"width": new.output.width})  # width applies live
        if not changed and new.output == live_output and new.seed == old.seed:
            return new, ""
        kept = new.model_copy(update={"generation": new.generation.model_copy(
            update={k: getattr(old.generation, k) for k in _GEOMETRY}), "output": live_output, "seed": old.seed})
        return kept, f"generation.{', '.join(changed)}" if changed else "seed/output"

    def switch_scene(self, new: Scene, path: str | Path | None) -> None:
        """Play another scene from the next chunk (the wake scene), easing over its transition time; its file
        is the one watched for edits from now on."""
        new, _ = self.compatible(new)
        self.path = Path(path) if path else None
        self._mtime = self._stat()
        self.set_weights = {}
        self._replace("wake", {"file": str(path)}, new)
