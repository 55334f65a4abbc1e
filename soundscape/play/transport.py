"""The transport of `play`: pause, resume, the sleep timer, stop, the master volume and the wake alarm.

One owner of "paused" and of the night clock. LiveControl (stream/live.py) hands it these commands
(from the control socket, the web mixer, the keys, MPRIS), all on the engine's main thread:
  pause / resume / toggle {fade_s}  fade out (about a second) and hold, the generator resting; fade back in
                                    from where it stopped
  volume {volume}                   master volume 0..1 (the player's gain, glided)
  timer {action, seconds}           sleep timer: set / extend / cancel, until its fade-out has begun
  stop {fade_s}                     fade out and stop
  wake {action, at, fade_s}         the wake alarm (play/wake.py): set or cancel
Each arrives with its values checked (stream/control_requests.py); `refusal` then says whether the
transport's state refuses it, reading and never writing, and only a request it lets through is applied.
The sleep timer counts wall-clock time from when sound started, less the time spent paused (a device
that stalls must not make the night longer; a pause must not shorten it); `tick` schedules its fade
on the player a second ahead, and from then on it can no longer be moved. A fade that the device has
made late is cut short at its deadline. With a wake alarm set, the sleep timer's fade ends in a pause
instead of the end of the player, and the alarm fades the sound back in.
"""

from __future__ import annotations

import time

from ..stream.control_requests import MAX_TIMER_S, PAUSE_FADE_S, PauseRequest, parse_request
from .wake import WakeAlarm

TIMER_LOOKAHEAD_S = 1.0  # the sleep fade is handed to the player this long before it starts
LATE_FADE_S = 0.25  # what is left of a fade when its deadline has passed
COMMANDS = ("pause", "resume", "toggle", "volume", "timer", "stop", "wake")
FADING_OUT = "the player is fading out to stop; it cannot be {}"


class Transport:
    def __init__(self, player, rate: int, log, *, made_at: float, fade_s: float = 30.0, wake: dict | None = None,
                 hold=None):
        """`player`: audio/output.Player; `log(row)`: the timeline; `made_at`: the volume the stream bakes into
        its audio (the scene's output.volume); `fade_s`: the sleep timer's fade-out; `wake`: WakeAlarm's
        keyword arguments (the alarm is always there, unarmed until set); `hold(on)`: rests the generator
        (stream/playback.Playback.hold) while paused, except in the alarm's lead (the buffer is made full, and
        a wake scene's first seconds, before the wake fade begins)."""
        self.player, self.rate, self.log = player, rate, log
        self._hold = hold or (lambda on: None)
        self._holding = False
        self.made_at = made_at
        self.volume = made_at  # master volume; the stream keeps making audio at `made_at`
        self.fade_s = fade_s  # the sleep timer's fade-out (at most the timer's length)
        self.sleep_at: float | None = None  # when the sleep timer stops the player, on `clock()`
        self._sleep_fade = 0.0
        self._sleep_scheduled = False  # the fade is on the player: the timer can no longer move
        self._sound_started: float | None = None  # time.monotonic() when the first audio was played
        self._deadline: float | None = None  # `clock()` by which the fade under way must be over
        self.stopping = False
        self.paused = False  # asked to pause (the player fades, then holds)
        self._paused_at = 0.0  # time.monotonic() of the pause
        self._paused_total = 0.0  # seconds paused since sound started: the sleep timer does not count them
        self.alarm = WakeAlarm(self, **(wake or {}))

    def clock(self) -> float:
        """Seconds of wall-clock time since sound started, less the time paused (0 while buffering)."""
        if self._sound_started is None:
            if self.player.frames_played == 0:
                return 0.0
            self._sound_started = time.monotonic()
        now = time.monotonic()
        return now - self._sound_started - self._paused_total - (now - self._paused_at if self.paused else 0.0)

    def _played_s(self) -> float:
        return self.player.frames_played / self.rate

    def handle(self, req) -> dict:
        """One request whose values are checked (stream/control_requests.py) and whose cmd is in COMMANDS:
        refused as a whole against the transport's state (`refusal`, which changes nothing), or applied."""
        why = self.refusal(req)
        if why is not None:
            return {"ok": False, "error": why}
        cmd = req.cmd
        if cmd == "volume":
            return self._set_volume(req.volume)
        if cmd == "timer":
            return self._timer(req.action, req.seconds)
        if cmd == "stop":
            return self._stop(req.fade_s)
        if cmd == "wake":
            return self.alarm.cancel() if req.action == "cancel" else self.alarm.set(req.at, req.fade_s)
        if cmd == "toggle":
            cmd = "resume" if self.paused else "pause"
        return self.pause(req.fade_s) if cmd == "pause" else self.resume(req.fade_s)

    def refusal(self, req) -> str | None:
        """Why the transport's state refuses `req` (values already checked), or None; reads, never writes."""
        cmd = req.cmd
        if cmd == "toggle":
            cmd = "resume" if self.paused else "pause"
        if cmd in ("pause", "resume") and self.stopping:
            return FADING_OUT.format(cmd + "d")
        if cmd == "pause" and self._sleep_scheduled and not self.paused:
            return "the sleep timer is fading the player out; it cannot be paused"
        if cmd == "volume" and self.made_at == 0:
            return ("the scene's output.volume is 0, so there is nothing to turn up; raise it in the scene file "
                    "and restart")
        if cmd == "timer" and (self.stopping or self._sleep_scheduled):
            return "the player is already fading out; the sleep timer can no longer change"
        if cmd == "timer" and req.action == "extend" and self.sleep_at is None:
            return "no sleep timer is set; set one first"
        if cmd == "wake" and req.action == "set":
            return self.alarm.refusal(req.at, req.fade_s)
        return None

    def request(self, request: dict) -> dict:
        """A request from inside the player (the command line's --sleep, a test): the same checks as a door's."""
        try:
            return self.handle(parse_request(request))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}

    def status(self) -> dict:
        return {"volume": self.volume, "stopping": self.stopping, "sleep": self._timer_status(),
                "paused": self.paused, "wake": self.alarm.status()}

    def night_text(self) -> str:
        """The status line's words on a pause and the alarm."""
        text = "  PAUSED" if self.paused else ""
        if self.alarm.armed:
            text += f"  ({self.alarm.describe()})"
        return text

    def tick(self):
        """Every engine tick: the sleep timer, then the alarm. Returns the wake scene's (scene, path) when it
        is to be switched to now (LiveControl owns the scene), else None."""
        self._run_timer()
        switch = self.alarm.tick()
        self._sync_hold()
        return switch

    def _sync_hold(self) -> None:
        """The generator rests while paused, and works in the alarm's lead."""
        holding = self.paused and not self.alarm.preparing
        if holding != self._holding:
            self._holding = holding
            self._hold(holding)

    # Pause and resume -------------------------------------------------------
    def pause(self, fade_s: float = PAUSE_FADE_S, start_frame: int | None = None, why: str = "pause") -> dict:
        """Fade out over `fade_s` (from `start_frame`, default now) and hold; the generator rests once its
        chunk in flight is done. The sleep timer stops counting."""
        refused = self.refusal(PauseRequest(cmd="pause"))
        if refused is not None:
            return {"ok": False, "error": refused}
        if not self.paused:
            self.paused = True
            self._paused_at = time.monotonic()
            self.player.pause(max(float(fade_s), 0.01), start_frame)
            self.log({"event": why, "fade_s": fade_s, "received_s": round(self._played_s(), 3)})
            self._sync_hold()
        return {"ok": True, "applied": {"paused": True}}

    def resume(self, fade_s: float = PAUSE_FADE_S, why: str = "resume") -> dict:
        """Fade back in over `fade_s` from where the sound stopped."""
        refused = self.refusal(PauseRequest(cmd="resume"))
        if refused is not None:
            return {"ok": False, "error": refused}
        if self.paused:
            self.paused = False
            if self._sound_started is not None:
                self._paused_total += time.monotonic() - self._paused_at
            self.player.resume(max(float(fade_s), 0.01))
            self.log({"event": why, "fade_s": fade_s, "received_s": round(self._played_s(), 3)})
            self._sync_hold()
        return {"ok": True, "applied": {"paused": False}}

    # Master volume, sleep timer, stop ---------------------------------------
    def _set_volume(self, volume: float) -> dict:
        self.volume = volume
        self.player.set_gain(volume / self.made_at)
        self.log({"event": "volume", "volume": volume, "received_s": round(self._played_s(), 3)})
        return {"ok": True, "applied": {"volume": volume}}

    def _timer_status(self) -> dict | None:
        if self.sleep_at is None:
            return None
        return {"remaining_s": round(max(0.0, self.sleep_at - self.clock()), 2),
                "fade_s": self._sleep_fade, "fading": self._sleep_scheduled}

    def timer(self, action: str, seconds: float | None = None) -> dict:
        """The sleep timer from inside the player (--sleep): checked as a request is."""
        return self.request({"cmd": "timer", "action": action, "seconds": seconds})

    def _timer(self, action: str, seconds: float | None) -> dict:
        if action == "cancel":
            self.sleep_at = None
        else:
            now = self.clock()
            self.sleep_at = min((self.sleep_at if action == "extend" else now) + seconds, now + MAX_TIMER_S)
            self._sleep_fade = min(self.fade_s, self.sleep_at - now)
        self.log({"event": "timer", "action": action, "ends_at_s": self.sleep_at,
                  "received_s": round(self._played_s(), 3)})
        return {"ok": True, "applied": {"sleep": self._timer_status()}}

    def _run_timer(self) -> None:
        """Hand the sleep fade to the player shortly before it starts; cut a fade short that runs late."""
        now, player = self.clock(), self.player
        if self._deadline is not None and now >= self._deadline and not player.done:
            self._deadline = None
            player.start_fade(LATE_FADE_S)  # the device lost time (xruns): end on time anyway
        if self.sleep_at is None or self._sleep_scheduled or self.paused:
            return
        start = self.sleep_at - self._sleep_fade
        if now >= start - TIMER_LOOKAHEAD_S:
            frame = player.frames_played + int(max(0.0, start - now) * self.rate)
            if self.alarm.armed:
                # An alarm will wake the scene: the night's fade ends in a pause, not the end of the player.
                self.sleep_at = None
                self.pause(self._sleep_fade, start_frame=frame, why="sleep")
                return
            self._sleep_scheduled = True
            self._deadline = self.sleep_at
            player.schedule_fade(frame, self._sleep_fade)

    def _stop(self, fade_s: float) -> dict:
        self.stopping = True
        fade_s = max(fade_s, 0.01)
        self.player.start_fade(fade_s)
        self._deadline = min(self._deadline or float("inf"), self.clock() + fade_s)
        self.log({"event": "stop", "fade_s": fade_s, "received_s": round(self._played_s(), 3)})
        return {"ok": True, "applied": {"fade_s": fade_s}}

