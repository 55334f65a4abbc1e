"""The generator's CPU budget (`--budget PERCENT` on play and serve): a duty cycle at the lowest priority.

Why: a sleep player that keeps every core busy all night means fans, heat and a flat battery, and a busy
machine must never starve the audio callback. With a budget below 100 the generation loop's thread
  1. runs at the lowest scheduling priority the OS offers (`lower_priority`): on Linux SCHED_IDLE for
     that thread (any user may move a thread there), else nice 19 for that thread; elsewhere nice 19 for
     the process is not taken (it would slow the audio callback too), so the priority stays as it is;
  2. keeps the whole process's CPU time to PERCENT of the machine's (wall time x cores) on average: after
     each batch it reads the process's CPU seconds since the last batch (every thread: the generator's,
     and the output chain's and the weave's while it rested) and rests until that much CPU is paid for at
     PERCENT (`account`, `resting`). Why the process's CPU and not the generator's wall time: the chain at
     48 kHz stereo costs about a tenth of a core all the time; a duty cycle of the generator alone gave a
     `--budget 15` play 19 % of the machine over 30 minutes (docs/budget.md). Idle time (a pause) is not
     banked as credit. A live change cuts a rest short so that it is heard at once; the rest it skipped is
     still owed and is taken after the next chunk, so the average holds. The account starts with the loop
     (`start`): loading the model is not in it.
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
    def __init__(self, percent: float = 100.0, cpu_clock=time.process_time, cores: int | None = None):
        _check(percent)
        self._percent = float(percent)
        self._cpu_clock, self._cores = cpu_clock, cores or _cores()
        self._t_at = self._cpu_at = None  # monotonic time and process CPU seconds at the last account
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

    def start(self) -> None:
        """Open the account: the loop's thread calls this before its first chunk."""
        self._t_at, self._cpu_at = time.monotonic(), self._cpu_clock()
        self._rest_until = max(self._rest_until, self._t_at)

    def account(self) -> None:
        """After a batch (made, abandoned or failed): rest until the process's CPU since the last account is
        paid for at the budget's share of the machine, after any rest still owed."""
        now, cpu = time.monotonic(), self._cpu_clock()
        if self._t_at is None:
            self._t_at, self._cpu_at = now, cpu
        spent, since = cpu - self._cpu_at, self._t_at
        self._t_at, self._cpu_at = now, cpu
        percent = self.percent
        if percent < 100:
            # max(.., since): time that passed idle before the last account is not credit.
            self._rest_until = max(self._rest_until, since) + spent / (percent / 100.0 * self._cores)

    def resting(self) -> bool:
        return time.monotonic() < self._rest_until


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (a container's share)
    except AttributeError:
        return os.cpu_count() or 1


def _check(percent: float) -> None:
    if not 0 < percent <= 100:
        raise ValueError(f"budget: expected a percentage above 0 and at most 100, got {percent:g}")
