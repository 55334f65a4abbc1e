"""One small helper: call a function on a fixed schedule in a daemon thread, as a context manager."""

from __future__ import annotations

import threading
import time


class Periodic:
    """Calls `fn()` every `period` seconds (on a schedule, so delays don't accumulate) until the `with` ends."""

    def __init__(self, fn, period: float, name: str):
        self.fn, self.period = fn, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.fn()
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
