"""Live changes to a playing scene: `soundscape set` requests and scene-file hot reload.

Both run on the engine's main thread. Each change is validated here, then handed to the
generator thread (`StreamSlot.request`, stream/generation_loop.py), which applies it between chunks; the feeder
then crossfades into the first audio made after it. Every change is written to the
timeline when it arrives ({"event": "tweak", ...}) and when its audio starts
({"event": "tweak_heard", ...}).

Commands (`handle`), shared by play's control socket and web mixer (play/web/) and serve's listeners,
each checked with the scene's own types first (control_requests.py):
  status                          what `soundscape status` shows, plus the mix, volume and sleep timer
  set {weights}                   layer weights, eased in over transition_seconds
  prompt {layer, prompt}          change a layer's prompt, or add a layer at weight 1
  add {layer, prompt, weight}     add a layer (refused if it exists)
  remove {layer}                  remove a layer (it fades out over transition_seconds)
  volume {volume}                 master volume 0..1, at once (needs the mixer's player: play --web)
  width {width}                   stereo width 0..1 (output.width; audio/width.py): from the next chunk,
                                  the side ramping there over 0.25 s; refused on a mono output
  timer {action, seconds}         sleep timer: set / extend / cancel, until its fade-out has begun
  stop {fade_s}                   fade out and stop
  scene                           the current mix as a scene (what "Save as scene" writes)
  pause / resume / toggle {fade_s} fade out (about a second) and hold; fade back in from where it stopped
  wake {action, at, fade_s}       the wake alarm (play --wake): set or cancel; handled by `self.alarm`
The sleep timer counts wall-clock time from when sound started, less the time spent paused (a device
that stalls must not make the night longer; a pause must not shorten it); `tick` schedules its fade
on the player a second ahead, and from then on it can no longer be moved. A fade that the device has
made late is cut short at its deadline. With a wake alarm set, the sleep timer's fade ends in a pause
instead of the end of the player, and the alarm fades the sound back in (play/wake.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from ..errors import SceneError
from ..scene import Scene, load_scene
from ..scene.load import describe as _describe, one_line
from ..scene.schema import Seconds, Weight
from .control_requests import PAUSE_FADE_S, parse_request

_GEOMETRY = ("chunk_seconds", "overlap_seconds")
TIMER_LOOKAHEAD_S = 1.0  # the sleep fade is handed to the player this long before it starts
LATE_FADE_S = 0.25  # what is left of a fade when its deadline has passed
MAX_TIMER_S = 24 * 3600.0
MAX_PAUSE_FADE_S = 60.0


class LiveControl:
    def __init__(self, engine, scene_path: str | Path | None, poll_s: float = 0.5, fade_s: float = 30.0):
        self.engine = engine
        self.scene: Scene = engine.stream.scene  # the main thread's view of the current scene
        self.set_weights: dict[str, float] = {}  # layers moved by `set`: the value each was set to
        self.volume = self.scene.output.volume  # master volume; the stream keeps making audio at its own
        self.fade_s = fade_s  # the sleep timer's fade-out (at most the timer's length)
        self.sleep_at: float | None = None  # when the sleep timer stops the player, on `_clock()`
        self._sleep_fade = 0.0
        self._sleep_scheduled = False  # the fade is on the player: the timer can no longer move
        self._sound_started: float | None = None  # time.monotonic() when the first audio was played
        self._deadline: float | None = None  # `_clock()` by which the fade under way must be over
        self.stopping = False
        self.paused = False  # asked to pause (the player fades, then holds)
        self._paused_at = 0.0  # time.monotonic() of the pause
        self._paused_total = 0.0  # seconds paused since sound started: the sleep timer does not count them
        self.alarm = None  # play's wake alarm (play/wake.py), when there is one
        self.path = Path(scene_path) if scene_path else None
        self._mtime = self._stat()
        self._poll_s = poll_s
        self._next_poll = 0.0
        self._heard = 0
        self.pending: dict[int, dict] = {}  # epoch -> tweak row, until its audio is heard

    # The engine calls this every tick.
    def tick(self) -> None:
        self._report_heard()
        self._run_timer()
        now = time.monotonic()
        if self.path and now >= self._next_poll:
            self._next_poll = now + self._poll_s
            self._check_file()

    def _clock(self) -> float:
        """Seconds of wall-clock time since sound started, less the time paused (0 while buffering)."""
        if self._sound_started is None:
            if self.engine.player.frames_played == 0:
                return 0.0
            self._sound_started = time.monotonic()
        now = time.monotonic()
        return now - self._sound_started - self._paused_total - (now - self._paused_at if self.paused else 0.0)

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
    def handle(self, request) -> dict:
        """One request from any door: checked against the scene's types, then applied; always a reply.

        Nothing a client sends may end the player: a bad request is a one-line error, and a bug in
        handling a good one is reported in one line too, not raised into the engine's loop.
        """
        try:
            if isinstance(request, dict) and request.get("cmd") == "set" and isinstance(request.get("weights"), dict):
                unknown = [k for k in request["weights"] if k not in self.scene.layers]
                if unknown:  # the most useful message first: which layers there are
                    return {"ok": False, "error": f"no layer {unknown[0]!r}; layers are: {', '.join(self.scene.layers)}"}
            req = parse_request(request)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        try:
            return self._dispatch(req)
        except Exception as exc:
            print(f"\nsoundscape: control request {req.cmd!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc} (please report it)"}

    def _dispatch(self, req) -> dict:
        cmd = req.cmd
        if cmd == "status":
            return {"ok": True, "status": self._status()}
        if cmd == "set":
            return self._set(dict(req.weights))
        if cmd == "prompt":
            return self._prompt(req.layer, req.prompt)
        if cmd == "add":
            return self._add(req.layer, req.prompt, req.weight)
        if cmd == "remove":
            return self._remove(req.layer)
        if cmd == "volume":
            return self._volume(req.volume)
        if cmd == "width":
            return self._width(req.width)
        if cmd == "timer":
            return self._timer(req.action, req.seconds)
        if cmd == "stop":
            return self._stop(req.fade_s)
        if cmd in ("pause", "resume", "toggle"):
            if cmd == "toggle":
                cmd = "resume" if self.paused else "pause"
            fade_s = min(req.fade_s, MAX_PAUSE_FADE_S)
            return self.pause(fade_s) if cmd == "pause" else self.resume(fade_s)
        if cmd == "wake":
            if self.alarm is None:
                return {"ok": False, "error": "this player has no wake alarm (it belongs to `soundscape play`)"}
            return self.alarm.cancel() if req.action == "cancel" else self.alarm.set(req.at, req.fade_s)
        return {"ok": True, "scene": self.mix().model_dump(mode="json")}

    def _status(self) -> dict:
        status = self.engine.status_dict()
        status.update(description=self.scene.description, volume=self.volume, width=self.scene.output.width,
                      channels=self.engine.config.channels, stopping=self.stopping,
                      set_weights={k: self.set_weights.get(k, v.weight) for k, v in self.scene.layers.items()},
                      sleep=self._timer_status(), paused=self.paused,
                      wake=self.alarm.status() if self.alarm is not None else None)
        return status

    # Pause and resume -------------------------------------------------------
    def pause(self, fade_s: float = PAUSE_FADE_S, start_frame: int | None = None, why: str = "pause") -> dict:
        """Fade out over `fade_s` (from `start_frame`, default now) and hold; the generator idles once
        the buffer is full. The sleep timer stops counting."""
        player = self.engine.player
        if getattr(player, "pause", None) is None:
            return {"ok": False, "error": "this stream cannot be paused here (pause the player that plays it)"}
        if self.stopping:
            return {"ok": False, "error": "the player is fading out to stop; it cannot be paused"}
        if self._sleep_scheduled and not self.paused:
            return {"ok": False, "error": "the sleep timer is fading the player out; it cannot be paused"}
        if not self.paused:
            self.paused = True
            self._paused_at = time.monotonic()
            player.pause(max(float(fade_s), 0.01), start_frame)
            self.engine.gen.log({"event": why, "fade_s": fade_s, "received_s": round(self._played_s(), 3)})
        return {"ok": True, "applied": {"paused": True}}

    def resume(self, fade_s: float = PAUSE_FADE_S, why: str = "resume") -> dict:
        """Fade back in over `fade_s` from where the sound stopped."""
        player = self.engine.player
        if getattr(player, "resume", None) is None:
            return {"ok": False, "error": "this stream cannot be paused here (pause the player that plays it)"}
        if self.stopping:
            return {"ok": False, "error": "the player is fading out to stop; it cannot be resumed"}
        if self.paused:
            self.paused = False
            if self._sound_started is not None:
                self._paused_total += time.monotonic() - self._paused_at
            player.resume(max(float(fade_s), 0.01))
            self.engine.gen.log({"event": why, "fade_s": fade_s, "received_s": round(self._played_s(), 3)})
        return {"ok": True, "applied": {"paused": False}}

    def _set(self, weights: dict[str, float]) -> dict:
        for name in weights:
            if name not in self.scene.layers:
                return {"ok": False, "error": f"no layer {name!r}; layers are: {', '.join(self.scene.layers)}"}
        values = {k: float(v) for k, v in weights.items()}
        self.set_weights.update(values)
        self._submit("set", {"weights": values}, lambda stream: stream.apply_overrides(values))
        return {"ok": True, "applied": values}

    def _prompt(self, layer: str, prompt: str) -> dict:
        data = self.scene.model_dump()
        weight = data["layers"].get(layer, {}).get("weight", 1.0)
        data["layers"][layer] = {"prompt": prompt, "weight": weight}
        new = self._validated(data)
        if isinstance(new, dict):
            return new
        self._replace("prompt", {"layer": layer, "prompt": new.layers[layer].prompt}, new)
        return {"ok": True, "applied": {"layer": layer, "prompt": new.layers[layer].prompt, "weight": weight}}

    def _add(self, layer: str, prompt: str, weight: float) -> dict:
        if layer in self.scene.layers:
            return {"ok": False, "error": f"there is already a layer {layer!r}; change its prompt instead"}
        data = self.scene.model_dump()
        data["layers"][layer] = {"prompt": prompt, "weight": weight}
        new = self._validated(data)
        if isinstance(new, dict):
            return new
        applied = {"layer": layer, "prompt": new.layers[layer].prompt, "weight": new.layers[layer].weight}
        self._replace("add", applied, new)
        return {"ok": True, "applied": applied}

    def _remove(self, layer) -> dict:
        if layer not in self.scene.layers:
            return {"ok": False, "error": f"no layer {layer!r}; layers are: {', '.join(self.scene.layers)}"}
        if len(self.scene.layers) == 1:
            return {"ok": False, "error": f"{layer} is the only layer; a scene needs at least one"}
        data = self.scene.model_dump()
        del data["layers"][layer]
        for key in data["evolution"]["keyframes"]:
            key["weights"].pop(layer, None)
        new = self._validated(data)
        if isinstance(new, dict):
            return new
        self.set_weights.pop(layer, None)
        self._replace("remove", {"layer": layer}, new)
        return {"ok": True, "applied": {"layer": layer}}

    def _validated(self, data: dict) -> Scene | dict:
        try:
            return Scene.model_validate(data)
        except ValidationError as exc:
            return {"ok": False, "error": one_line(exc)}

    def _replace(self, kind: str, detail: dict, new: Scene) -> None:
        self.scene = new
        self._submit(kind, detail, lambda stream: stream.replace_scene(new))

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

    # Master volume, sleep timer, stop ---------------------------------------
    def _volume(self, volume) -> dict:
        set_gain = getattr(self.engine.player, "set_gain", None)
        if set_gain is None:
            return {"ok": False, "error": "this stream has no master volume here (set the player's own)"}
        try:
            volume = TypeAdapter(Weight).validate_python(volume)
        except ValidationError as exc:
            return {"ok": False, "error": f"volume: {one_line(exc)}, got {_describe(volume)}"}
        made_at = self.scene.output.volume  # the volume the stream bakes into its audio
        if made_at == 0:
            return {"ok": False, "error": "the scene's output.volume is 0, so there is nothing to turn up; "
                                          "raise it in the scene file and restart"}
        self.volume = volume
        set_gain(volume / made_at)
        self.engine.gen.log({"event": "volume", "volume": volume, "received_s": round(self._played_s(), 3)})
        return {"ok": True, "applied": {"volume": volume}}

    def _width(self, width: float) -> dict:
        if self.engine.config.channels < 2:
            return {"ok": False, "error": "the output is mono (one channel), so it has no width; play a scene "
                                          "with output.channels: 2 on a stereo device"}
        self.scene = self.scene.model_copy(update={"output": self.scene.output.model_copy(update={"width": width})})
        self._submit("width", {"width": width}, lambda stream: stream.set_width(width))
        return {"ok": True, "applied": {"width": width}}

    def _timer_status(self) -> dict | None:
        if self.sleep_at is None:
            return None
        return {"remaining_s": round(max(0.0, self.sleep_at - self._clock()), 2),
                "fade_s": self._sleep_fade, "fading": self._sleep_scheduled}

    def _timer(self, action, seconds) -> dict:
        if self.stopping or self._sleep_scheduled:
            return {"ok": False, "error": "the player is already fading out; the sleep timer can no longer change"}
        if action == "cancel":
            self.sleep_at = None
        elif action in ("set", "extend"):
            try:
                seconds = TypeAdapter(Seconds).validate_python(seconds)
            except ValidationError as exc:
                return {"ok": False, "error": f"seconds: {one_line(exc)}, got {_describe(seconds)}"}
            if not 0 < seconds <= MAX_TIMER_S:
                return {"ok": False, "error": f"seconds: expected more than 0 and at most 24 hours, got {seconds:g}"}
            if action == "extend" and self.sleep_at is None:
                return {"ok": False, "error": "no sleep timer is set; set one first"}
            now = self._clock()
            self.sleep_at = min((self.sleep_at if action == "extend" else now) + seconds, now + MAX_TIMER_S)
            self._sleep_fade = min(self.fade_s, self.sleep_at - now)
        else:
            return {"ok": False, "error": f"timer: unknown action {action!r}; expected set, extend or cancel"}
        self.engine.gen.log({"event": "timer", "action": action, "ends_at_s": self.sleep_at,
                             "received_s": round(self._played_s(), 3)})
        return {"ok": True, "applied": {"sleep": self._timer_status()}}

    def _run_timer(self) -> None:
        """Hand the sleep fade to the player shortly before it starts; cut a fade short that runs late."""
        now, player = self._clock(), self.engine.player
        if self._deadline is not None and now >= self._deadline and not player.done:
            self._deadline = None
            player.start_fade(LATE_FADE_S)  # the device lost time (xruns): end on time anyway
        if self.sleep_at is None or self._sleep_scheduled or self.paused:
            return
        start = self.sleep_at - self._sleep_fade
        if now >= start - TIMER_LOOKAHEAD_S:
            frame = player.frames_played + int(max(0.0, start - now) * self.engine.config.rate)
            if self.alarm is not None and self.alarm.armed:
                # An alarm will wake the scene: the night's fade ends in a pause, not the end of the player.
                self.sleep_at = None
                self.pause(self._sleep_fade, start_frame=frame, why="sleep")
                return
            self._sleep_scheduled = True
            self._deadline = self.sleep_at
            player.schedule_fade(frame, self._sleep_fade)

    def _stop(self, fade_s) -> dict:
        try:
            fade_s = TypeAdapter(Seconds).validate_python(fade_s)
        except ValidationError as exc:
            return {"ok": False, "error": f"fade_s: {one_line(exc)}, got {_describe(fade_s)}"}
        self.stopping = True
        fade_s = max(min(fade_s, 60.0), 0.01)
        self.engine.player.start_fade(fade_s)
        self._deadline = min(self._deadline or float("inf"), self._clock() + fade_s)
        self.engine.gen.log({"event": "stop", "fade_s": fade_s, "received_s": round(self._played_s(), 3)})
        return {"ok": True, "applied": {"fade_s": fade_s}}

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
