"""The one door between the web thread and the player: requests in, status out.

The web thread only `submit`s a request (a queue put) and reads `snapshot`; the main thread runs
`tick()` with the engine's other per-tick work, and answers each request with `LiveControl.handle`,
the same code that serves `soundscape set`/`status` and the scene file's hot reload. Replies go
back through a concurrent Future, which the main thread completes without waiting for anyone.

Slider drags are coalesced here as well as in the page: weight changes that arrive within
`coalesce_s` of the last one applied are held, merged (the latest value per layer wins) and applied
together, so a drag costs the generator a few restarts, not one per mouse move.
"""

from __future__ import annotations

import queue
import sys
import time
from concurrent.futures import Future, InvalidStateError

PAGE_HOLD_S = 2.0  # an open mixer page keeps the buffer shallow this long past each tick (then the change rule)


def _resolve(future: Future, reply: dict) -> None:
    try:
        future.set_result(reply)
    except InvalidStateError:  # the page went away and the web thread cancelled it
        pass


class Bridge:
    def __init__(self, live, coalesce_s: float = 0.3, status_every_s: float = 0.5):
        self.live = live
        self.coalesce_s = coalesce_s
        self.status_every_s = status_every_s
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self._held: list[tuple[dict, Future]] = []
        self._last_set = -float("inf")
        self._next_status = 0.0
        self.snapshot: tuple[int, dict] = (0, {})  # (version, status); replaced whole, read by the web thread
        self.pages = 0  # mixer pages open (their event streams), counted by the web thread

    # Web thread -------------------------------------------------------------
    def submit(self, request: dict) -> Future:
        future: Future = Future()
        self.requests.put((request, future))
        return future

    # Main thread ------------------------------------------------------------
    def tick(self) -> None:
        while True:
            try:
                self._held.append(self.requests.get_nowait())
            except queue.Empty:
                break
        now = time.monotonic()
        if self.pages > 0:
            # Someone has the mixer open and may move a slider any moment: the buffer stays shallow.
            self.live.watched(PAGE_HOLD_S)
        changed = False
        while self._held:
            request, future = self._held[0]
            if request.get("cmd") == "set":
                if now - self._last_set < self.coalesce_s:
                    break  # keep order: what came after the held weights waits with them
                self._apply_sets(now)
            else:
                del self._held[0]
                _resolve(future, self._handle(request))
            changed = True
        if changed or now >= self._next_status:
            self._next_status = now + self.status_every_s
            self.snapshot = (self.snapshot[0] + 1, self._handle({"cmd": "status"}).get("status", {}))

    def _apply_sets(self, now: float) -> None:
        """Merge the run of weight changes at the head of the queue into one `set`."""
        run = 0
        while run < len(self._held) and self._held[run][0].get("cmd") == "set":
            run += 1
        batch, self._held = self._held[:run], self._held[run:]
        merged: dict = {}
        for request, _ in batch:
            merged.update(request.get("weights") or {})
        reply = self._handle({"cmd": "set", "weights": merged})
        self._last_set = now
        for request, future in batch:
            # A merged set that failed (a layer removed meanwhile) is answered one request at a time.
            _resolve(future, reply if reply.get("ok") or len(batch) == 1 else self._handle(request))

    def _handle(self, request: dict) -> dict:
        try:
            return self.live.handle(request)
        except Exception as exc:  # a bug in a request must not stop the music
            print(f"\nsoundscape: web request {request.get('cmd')!r} failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc} (please report it)"}
