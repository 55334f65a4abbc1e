"""The wake alarm (`play SCENE --wake 07:00 [--wake-fade 20m] [--wake-scene OTHER]`).

After the sleep timer's fade (or at once, without --sleep) the player is paused: silent, the generator
resting (play/transport.py). At the wake time it fades the scene in from silence over the wake fade.
LEAD before the wake time the alarm is `preparing`: the generator works again, while still silent, so
the buffer is full when the fade begins; with a wake scene, the switch is made then too, so the wake
scene's first seconds are generated and buffered.

Time: the alarm aims at a local wall-clock time on a given date, not at "N seconds from now". The
target's epoch is worked out again at every check (`wake_epoch`, through the C library's mktime and
the local time zone), and compared with the wall clock (`time.time()`), never a monotonic one: across
a daylight-saving change 07:00 is still 07:00, and after a suspended night the check that follows the
resume sees the hour it is. A time of day already past today is tomorrow's. `+8h` or `+20m` is a delay
from now (a nap), turned into the local time it ends at.

Threads: `tick` runs on the engine's main thread with the control socket and LiveControl; `set`,
`cancel` and `status` answer requests there too (the web mixer and `soundscape wake` reach them
through LiveControl and the transport, play/transport.py, which owns the alarm). The clock is
injectable (`clock`), so the tests can move time.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass

from ..errors import UsageError
from ..stream.control_requests import MAX_WAKE_FADE_S, check_wake_fade, parse_wake
from ..units import format_duration, format_time_of_day

WAKE_FADE_S = 600.0  # the default rise: ten minutes from silence to the scene's level
MIN_LEAD_S = 20.0  # a wake scene is switched to at least this long before the wake time
MAX_LEAD_S = 600.0
CHECK_S = 0.5  # how often the wall clock is looked at
MAX_FADE_S = MAX_WAKE_FADE_S  # the longest rise: the command line, the socket and the mixer share the rule


def check_fade(fade_s: float, what: str = "fade_s") -> float:
    """A wake fade in (0, MAX_FADE_S] (stream/control_requests.py's rule), or UsageError naming the value."""
    try:
        return float(check_wake_fade(float(fade_s)))
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}, got {fade_s:g} s") from None


def wake_epoch(day: dt.date, tod: float) -> float:
    """The epoch of local time `tod` (seconds after midnight) on `day`, in the local time zone as it is now.

    mktime works out the UTC offset for that date (tm_isdst=-1): 07:00 stays 07:00 across a daylight-saving
    change. A time in the hour skipped in spring lands an hour later, as a wall clock would show it."""
    h, rem = divmod(int(tod), 3600)
    m, s = divmod(rem, 60)
    return time.mktime((day.year, day.month, day.day, h, m, s, 0, 0, -1)) + (tod % 1.0)


def next_wake(now: float, tod: float) -> dt.date:
    """The date whose local `tod` is the next one after `now` (epoch seconds): today's, or tomorrow's if past."""
    lt = time.localtime(now)
    today = dt.date(lt.tm_year, lt.tm_mon, lt.tm_mday)
    for ahead in range(3):  # three: a time zone change can make "tomorrow" land before now
        day = today + dt.timedelta(days=ahead)
        if wake_epoch(day, tod) > now:
            return day
    return today + dt.timedelta(days=1)


@dataclass(frozen=True)
class WakeTime:
    day: dt.date
    tod: float

    @classmethod
    def from_text(cls, text: str, now: float, what: str = "--wake") -> WakeTime:
        kind, value = parse_wake(text, what)  # the shared rule: a delay of at most a day
        if kind == "in":
            then = now + value
            lt = time.localtime(then)
            return cls(dt.date(lt.tm_year, lt.tm_mon, lt.tm_mday),
                       lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + then % 1.0)
        return cls(next_wake(now, value), value)

    def epoch(self) -> float:
        return wake_epoch(self.day, self.tod)

    @property
    def label(self) -> str:
        return format_time_of_day(self.tod)


class WakeAlarm:
    """One alarm: armed with a WakeTime, rung once (the scene fades in), then off until set again."""

    def __init__(self, transport, *, fade_s: float = WAKE_FADE_S, scene=None, scene_path: str | None = None,
                 lead_s=None, clock=time.time, quiet: bool = False):
        """`transport`: what pauses and resumes (its `paused`, `resume(fade_s, why)` and `log(row)`)."""
        self.transport = transport
        self.fade_s = fade_s
        self.scene, self.scene_path = scene, scene_path  # the wake scene, if any (loaded and checked already)
        self.clock = clock
        self.quiet = quiet
        self.lead_s = lead_s or (lambda: MIN_LEAD_S)  # how early the wake scene must be switched to
        self.at: WakeTime | None = None
        self.rung = 0
        self._switched = False
        self._next_check = 0.0
        self.preparing = False  # inside the lead before the wake time: the generator works (transport.py)

    @property
    def armed(self) -> bool:
        return self.at is not None

    # Requests (main thread) -------------------------------------------------------------------------
    def refusal(self, text: str | None, fade_s: float | None = None) -> str | None:
        """Why a wake at `text` with a rise of `fade_s` is refused, or None; reads, never writes."""
        checked = self._checked(text, fade_s)
        return checked if isinstance(checked, str) else None

    def _checked(self, text: str | None, fade_s: float | None) -> tuple[WakeTime, float] | str:
        """Both values checked before either is taken (the shared rule): (time, fade), or why not."""
        if not text:
            return "wake: give a time, e.g. {\"at\": \"07:00\"} or {\"at\": \"+8h\"}"
        try:
            return WakeTime.from_text(text, self.clock(), what="wake"), \
                self.fade_s if fade_s is None else check_fade(fade_s)
        except UsageError as exc:
            return str(exc)

    def set(self, text: str | None, fade_s: float | None = None) -> dict:
        checked = self._checked(text, fade_s)
        if isinstance(checked, str):  # a refused request changes nothing
            return {"ok": False, "error": checked}
        self.at, self.fade_s = checked
        self._switched = False
        self._next_check = 0.0
        self.preparing = False  # the next tick says (the lead is measured then)
        self.transport.log({"event": "wake_set", "at": self.at.label, "date": self.at.day.isoformat(),
                            "fade_s": self.fade_s})
        return {"ok": True, "applied": {"wake": self.status()}}

    def cancel(self) -> dict:
        self.at = None
        self.preparing = False
        self.transport.log({"event": "wake_cancel"})
        return {"ok": True, "applied": {"wake": None}}

    def status(self) -> dict | None:
        if self.at is None:
            return None
        return {"at": self.at.label, "date": self.at.day.isoformat(),
                "in_s": round(max(0.0, self.at.epoch() - self.clock()), 1), "fade_s": self.fade_s,
                "scene": self.scene.name if self.scene is not None else None}

    def describe(self) -> str:
        s = self.status()
        return f"waking at {s['at']} (in {format_duration(s['in_s'])})" if s else ""

    # The wait (engine tick, main thread) ---------------------------------------------------------------
    def tick(self):
        """Look at the wall clock; returns the wake scene's (scene, path) when it is to be played from now
        (the scene belongs to LiveControl, which switches to it), else None."""
        if self.at is None:
            return None
        now = self.clock()
        if now < self._next_check:
            return None
        self._next_check = now + CHECK_S
        due = self.at.epoch()  # again each time: the local offset may have changed (DST, a new zone)
        self.preparing = now >= due - self.lead_s()
        switch = None
        if self.scene is not None and not self._switched and self.transport.paused and self.preparing:
            switch = self._switch()  # while silent: the wake scene is made and buffered before the fade begins
        if now >= due:
            switch = self.ring(late_s=now - due) or switch
        return switch

    def _switch(self):
        self._switched = True
        return self.scene, self.scene_path

    def ring(self, late_s: float = 0.0):
        """Fade the scene in; returns the wake scene's (scene, path) if it was not switched to yet."""
        label = self.at.label
        self.at = None
        self.preparing = False
        self.rung += 1
        switch = self._switch() if self.scene is not None and not self._switched else None
        self.transport.log({"event": "wake", "at": label, "late_s": round(late_s, 3), "fade_s": self.fade_s})
        if self.transport.paused:
            self.transport.resume(self.fade_s, why="wake")
        if not self.quiet:
            print(f"\nsoundscape: {label}: waking, fading in over {format_duration(self.fade_s)}", file=sys.stderr)
        return switch
