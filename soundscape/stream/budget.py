"""The generator's CPU budget (`--budget PERCENT` on play and serve): a duty cycle at the lowest priority.

Why: a sleep player that keeps every core busy all night means fans, heat and a flat battery, and a busy
machine must never starve the audio callback. With a budget below 100 the generation loop's thread
  1. runs at the lowest scheduling priority the OS offers (`lower_priority`): on Linux SCHED_IDLE for
     that thread (any user may move a thread there), else nice 19 for that thread; elsewhere nice 19 for
     the process is not taken (it would slow the audio callback too), so the priority stays as it is;
  2. works only PERCENT of wall time on average: after W seconds of work it rests W * (100/PERCENT - 1)
     (`worked`, `resting`). A live change cuts a rest short so that it is heard at once; the rest it
     skipped is still owed and is taken after the next chunk, so the average holds.
Meanwhile the feeder plays earlier material (the cover-up path), so the sound never stops; the status
shows the fresh share. Budget 100 (the default) is today's behaviour: no rest, the priority unchanged.
Torch's OpenMP workers are made by the first thread that runs a parallel op and inherit its priority, so
the loop lowers itself before its first chunk.
A schedule (the scene's `generation.budget`, e.g. 100 % for the first 20 minutes, then 15 %) sets the
percentage from the play time (`played`: seconds heard, so a pause does not count); `--budget` wins over
it. A schedule with any step below 100 lowers the priority from the start (the workers are made then),
which costs nothing while the machine is otherwise idle: SCHED_IDLE gets every cycle nobody else wants.
"""

from __future__ import annotations

import os
import threading
import time

PRIORITY_NAMES = ("SCHED_IDLE", "nice 19", "unchanged")


class Budget:
    def __init__(self, percent: float = 100.0):
        _check(percent)
        self._percent = float(percent)
        self.priority = "unchanged"  # what `lower_priority` managed (the status shows it)
        self._rest_until = 0.0  # monotonic time the loop may work again
        self._schedule: tuple[tuple[float | None, float], ...] = ()  # (until play second or None, percent)
        self._played = None  # () -> seconds played so far, for the schedule

    def follow(self, schedule, played) -> None:
        """Take the percentage from `schedule` ((until_s or None, percent) steps, the last open-ended:
        the scene's `generation.budget`) at the play time `played()` returns. Call before the loop starts."""
        steps = tuple((None if until is None else float(until), float(percent)) for until, percent in schedule)
        for _, percent in steps:
            _check(percent)
        self._schedule, self._played = steps, played

    @property
    def percent(self) -> float:
        """The share in force now: the schedule's step at this play time, else the fixed one."""
        if self._schedule:
            t = self._played()
            for until, percent in self._schedule:
                if until is None or t < until:
                    return percent
            return self._schedule[-1][1]
        return self._percent

    @property
    def limited(self) -> bool:
        """Below 100 now, or at some step of the schedule (the priority is lowered from the start)."""
        return self.percent < 100 or any(percent < 100 for _, percent in self._schedule)

    def lower_priority(self) -> str:
        """Call on the generator thread. The lowest priority this OS lets the thread take; its name."""
        if not self.limited:
            return self.priority
        tid = threading.get_native_id()
        try:
            # pid = a thread id: on Linux the scheduler calls act on that one thread, not the process.
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            self.priority = "SCHED_IDLE"
        except (AttributeError, OSError):
            try:
                if not hasattr(os, "sched_setscheduler"):  # not Linux: PRIO_PROCESS would mean the whole process
                    raise OSError("no per-thread priority here")
                os.setpriority(os.PRIO_PROCESS, tid, 19)
                self.priority = "nice 19"
            except (AttributeError, OSError):
                self.priority = "unchanged"
        return self.priority

    def worked(self, seconds: float) -> None:
        """A batch took `seconds` of work: rest the budget's share after it (added to any rest still owed)."""
        percent = self.percent
        if percent < 100:
            now = time.monotonic()
            self._rest_until = max(self._rest_until, now) + seconds * (100.0 / percent - 1.0)

    def resting(self) -> bool:
        return time.monotonic() < self._rest_until


def _check(percent: float) -> None:
    if not 0 < percent <= 100:
        raise ValueError(f"budget: expected a percentage above 0 and at most 100, got {percent:g}")
