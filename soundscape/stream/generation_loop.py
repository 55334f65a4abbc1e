"""The one generator loop: a background thread that advances every stream's next chunk together.

`play` runs it with one stream; `serve` with one stream per listener. Each round:
  1. every slot hands its finished segment to its queue (backpressure: a slot whose queue is
     still full sits the round out) and applies the live changes that came in;
  2. the ready slots pick their steps (adaptive, StepController) and the batch takes the fewest any of
     them asked for, passed to the call that makes it, so that one UNet call per step carries every stream;
  3. `stream.next_segments` makes the batch; each slot gets its segment, or its own error
     (retried with backoff while earlier material plays), and the loop records the batch's
     cost for admission control (serve) and the status line.
A live change interrupts the batch in progress only when every stream in it is waiting for one
(play's batch of one) and the batch is not nearly done (NEARLY_DONE of its steps): the abandoned chunk is
remade with the new mix at once, and the timeline says so ({"event": "abandoned", ...}). In a shared batch
the change waits for the next boundary. A nearly-done chunk is finished and offered to the feeder (played,
or kept as cover material) rather than thrown away.
The first chunk after a change, alone in its batch, is short (ChunkSpec.short_frames: half the chunk at the
model's geometry), so the change is heard in about half the wait; lengths return to the scene's after it.
A budget (stream/budget.py; `--budget`) rests the loop after each batch so that it works only that share
of wall time, on a thread at the lowest scheduling priority the OS offers.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from ..audio.feeder import MARGIN_S, XFADE_S
from .adaptive import StepController
from ..errors import ChunkRejected
from .budget import Budget
from .first_sound import FirstSound
from ..generator.denoise import Cancelled
from .scene_stream import Segment, next_segments

CHANGING_S = 60.0  # after a live change the buffer stays shallow this long (someone is changing things)
SHALLOW_CHUNKS = 1.5  # a shallow buffer: the safety plus this many chunks' predicted work
NEARLY_DONE = 0.85  # a batch past this share of its denoising steps finishes even when a change arrives
JITTER_S = 0.25  # slack for a chunk that takes longer than predicted
IDLE_WAIT_S = 0.02  # how often an idle loop looks for a slot with room
HELD_WAIT_S = 0.1  # ... and while every stream is held (paused): a night of 50 wake-ups a second is CPU too

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass
class GenStats:
    chunks: int = 0
    hop_s: float = 0.0
    errors: int = 0
    steps: int = 0  # the last chunk's denoising steps
    last_done: float = 0.0  # monotonic time the last chunk was finished
    last_error: str = ""
    rtf_history: deque = field(default_factory=lambda: deque(maxlen=16))

    @property
    def rtf(self) -> float:
        recent = list(self.rtf_history)[-4:]
        return sum(recent) / len(recent) if recent else 0.0


class StreamSlot:
    """One stream in the loop: its output queue, live changes, statistics, timeline and retry clock."""

    def __init__(self, stream, out: queue.Queue, timeline: str | None = None, max_backoff: float = 30.0,
                 name: str = "", ahead=None, changing_s: float = CHANGING_S, held=None):
        self.stream = stream
        self.out = out
        self.name = name
        self.stats = GenStats(hop_s=stream.hop_s)
        self.changes: queue.SimpleQueue = queue.SimpleQueue()  # callables applied to the stream between chunks
        self.interrupt = threading.Event()  # a change is waiting: abandon the chunk in progress (batch of one)
        self.epoch = 0  # how many live changes have been applied
        self.short_next = False  # a change was applied: its first chunk is short (alone in its batch)
        # Someone is changing things until then (monotonic): a live change, or the web mixer's page open. The
        # buffer ahead stays shallow meanwhile (`shallow_s`), so less fresh audio is made only to be dropped at
        # the next change (the feeder keeps its margin and crossfades into the new audio), and deepens after.
        self.changing_s = changing_s
        self.changing_until = 0.0
        self.ahead = ahead or (lambda: float("inf"))  # seconds of audio buffered ahead (the consumer's)
        self.stepper: StepController | None = None
        self.max_backoff = max_backoff
        self.closed = False
        # The owner's (Playback.hold): nobody hears this stream now (play paused, or asleep after the sleep timer's fade).
        # No chunk starts once the stream has its first (the start needs one to open the device), except for a
        # live change, so a tweak made while paused is heard at resume. Why not fill the buffer and then rest
        # on backpressure: at 0.6x that is a minute or more of both cores after every pause (measured: 0.69 of
        # a core over the first minute paused), where a pause is the user asking for quiet.
        self.held = held or (lambda: False)
        # Until its first usable chunk, a stream that keeps failing gives up (first_sound.py): the owner reads
        # `first.gave_up` and stops (play) or ends the listener's response (serve).
        self.first = FirstSound()
        self._pending: Segment | None = None  # made, waiting for room in `out`
        self._retry_at = 0.0
        self._backoff = 0.5
        self._log_lock = threading.Lock()
        self._timeline = open(timeline, "w", encoding="utf-8") if timeline else None
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Seconds since this slot began: the `t_s` of timeline events from different threads, comparable."""
        return round(time.monotonic() - self._t0, 3)

    # Owner's side (the main thread, or a listener's connection) -----------------------------------
    def request(self, change) -> None:
        """Apply `change(stream)` before this stream's next chunk, abandoning the one in progress if alone."""
        self.changes.put(change)
        self.changing_until = time.monotonic() + self.changing_s
        self.interrupt.set()
        # A change applies at once, even while a failing chunk waits out its backoff (up to 30 s).
        self._retry_at, self._backoff = 0.0, 0.5

    def watched(self, seconds: float) -> None:
        """A page that changes things is open (the web mixer): keep the buffer shallow for `seconds` more."""
        self.changing_until = max(self.changing_until, time.monotonic() + seconds)

    def changing(self) -> bool:
        return time.monotonic() < self.changing_until

    def shallow_s(self) -> float:
        """The buffer ahead while someone is changing things: what must be left when a chunk lands (the safety
        the step controller keeps) plus SHALLOW_CHUNKS of its predicted work; the loop starts no chunk above it."""
        st = self.stepper
        work = st.predict(st.last) if st is not None and st.per_step is not None else self.stream.hop_s
        return MARGIN_S + XFADE_S + JITTER_S + SHALLOW_CHUNKS * work

    def log(self, row: dict) -> None:
        """Timeline rows come from the loop (chunks) and the owner (tweaks)."""
        if self._timeline:
            with self._log_lock:
                if not self._timeline.closed:
                    self._timeline.write(json.dumps(row) + "\n")
                    self._timeline.flush()

    def close(self) -> None:
        self.closed = True
        # Drop the consumer they pointed at (a gone listener's buffers go at once).
        self.ahead, self.held = (lambda: 0.0), (lambda: False)
        if self._timeline:
            with self._log_lock:
                self._timeline.close()

    # Loop's side ------------------------------------------------------------------------------------
    def deliver(self) -> None:
        """Hand the finished segment on when the queue has room; drop it if a change made it stale."""
        if self._pending is None:
            return
        if self.interrupt.is_set() and not self.changes.empty():
            self._pending = None  # made before a change that is still waiting: never heard
            return
        try:
            self.out.put_nowait(self._pending)
            self._pending = None
        except queue.Full:
            pass

    @property
    def holding(self) -> bool:
        """A made segment waits for room in the queue (backpressure): the loop is not working for this stream."""
        return self._pending is not None

    def ready(self, now: float) -> bool:
        if self.closed or self.first.gave_up is not None or self._pending is not None or now < self._retry_at:
            return False
        if self.held() and self.stats.chunks > 0 and self.changes.empty() and not self.interrupt.is_set():
            return False
        # While someone is changing things, no chunk starts until the buffer is down to a shallow depth; a change
        # waiting starts one at once (what is buffered beyond the feeder's switch keep is replaced by it).
        return (not self.changing() or self.interrupt.is_set() or not self.changes.empty()
                or self.ahead() <= self.shallow_s())

    def prepare(self) -> None:
        self.first.trying()
        self.interrupt.clear()
        while True:
            try:
                change = self.changes.get_nowait()
            except queue.Empty:
                break
            change(self.stream)
            # One epoch per change, even when several are applied before one chunk: LiveControl numbers a change
            # by counting those ahead of it, and its `tweak_heard` waits for that number (one epoch per batch of
            # changes left a slow machine's last tweak of a slider drag never heard).
            self.epoch += 1
            self.short_next = True

    def choose_steps(self) -> int:
        """This stream's steps for its next chunk: within the preset's range, so the buffer stays above its
        target (adaptive; render, which runs no loop, keeps its fixed steps)."""
        r = self.stream.resolved
        if self.stepper is None or (self.stepper.lo, self.stepper.hi) != (r.min_steps, r.max_steps):
            # Safety: the cover-up margin and the held crossfade must still be buffered when the chunk lands.
            self.stepper = StepController(r.min_steps, r.max_steps, self.stream.hop_s,
                                          safety_s=MARGIN_S + XFADE_S + JITTER_S)
        return self.stepper.choose(self.ahead())

    def accept(self, seg: Segment) -> None:
        seg.epoch = self.epoch
        self._backoff = 0.5
        self.stats.chunks += 1
        self.stats.last_done = time.monotonic()
        self.stats.steps = seg.steps
        self.short_next = False
        if seg.short_frames is None:  # a short chunk's cost would mislead the cost model and the speed shown
            self.stepper.observe(seg.steps, seg.denoise_s, seg.gen_s)
            self.stats.rtf_history.append(self.stats.hop_s / max(seg.gen_s, 1e-9))
        self.log(seg.timeline_row())
        qc = self.stream.scene.quality_check
        gave_up = self.first.made(seg.audio, seg.weights, qc.silence_db if qc.enabled else None)
        if gave_up is not None:
            self._gave_up(gave_up)
        self._pending = seg
        # Offered as it is made, even when a change is waiting (a nearly-done chunk finished on purpose: the
        # feeder plays it or keeps it as cover material); `deliver` drops only one held back by a full queue.
        try:
            self.out.put_nowait(seg)
            self._pending = None
        except queue.Full:
            pass

    def fail(self, exc: BaseException) -> None:
        """A failing chunk must not stop the sound: log it and retry after a growing pause."""
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        backoff = self._backoff
        gave_up = self.first.failed(short_error(exc))
        if gave_up is not None:
            self._gave_up(gave_up)
            return
        who = f" for {self.name}" if self.name else ""
        meanwhile = "while earlier material plays" if self.first.sounded else "(nothing usable has been made yet)"
        print(f"\nsoundscape: chunk failed{who} ({self.stats.last_error}); retrying in {backoff:.1f} s "
              f"{meanwhile}", file=sys.stderr)
        self.log({"event": "error", "error": self.stats.last_error, "retry_in_s": backoff})
        self._retry_at = time.monotonic() + backoff
        self._backoff = min(backoff * 2, self.max_backoff)


    def _gave_up(self, exc: BaseException) -> None:
        """No usable sound (first_sound.py): the loop makes nothing more for this stream; its owner stops."""
        self.log({"event": "no_sound", "error": str(exc)})


def short_error(exc: BaseException) -> str:
    """What failed, in a few words: the watchdog's checks, or the error."""
    if isinstance(exc, ChunkRejected) and exc.failed:
        return "the quality check found " + ", ".join(exc.failed)
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class BatchCost:
    streams: int
    seconds: float  # wall time of the whole batch (denoise, decode, joining)
    hop_s: float  # new audio each stream got


class GenerationLoop(threading.Thread):
    def __init__(self, slots: list[StreamSlot] | None = None, max_batch: int | None = None,
                 budget: Budget | None = None):
        super().__init__(name="soundscape-generator", daemon=True)
        self.slots: list[StreamSlot] = list(slots or [])
        self.max_batch = max_batch
        self.budget = budget or Budget()
        self.stop = threading.Event()
        self.costs: deque[BatchCost] = deque(maxlen=64)  # recent batches, for admission control
        self.batches = 0
        self.chunks = 0  # chunks handed to streams since start: only ever rises (serve's metrics)
        self._lock = threading.Lock()

    def add(self, slot: StreamSlot) -> None:
        """A new stream joins at the next batch boundary."""
        with self._lock:
            self.slots.append(slot)

    def remove(self, slot: StreamSlot) -> None:
        """A stream leaves at once: its chunk in progress, if any, is dropped when the batch ends."""
        slot.close()
        with self._lock:
            if slot in self.slots:
                self.slots.remove(slot)

    def _ready(self) -> list[StreamSlot]:
        with self._lock:
            slots = list(self.slots)
        for slot in slots:
            slot.deliver()
        now = time.monotonic()
        ready = [s for s in slots if s.ready(now)]
        return ready[: self.max_batch] if self.max_batch else ready

    def _all_held(self) -> bool:
        with self._lock:
            return bool(self.slots) and all(s.held() for s in self.slots)

    def _changes_waiting(self) -> bool:
        with self._lock:
            return any(s.interrupt.is_set() for s in self.slots)

    def run(self) -> None:
        # First, before this thread runs any torch op: its OpenMP workers are made by it and inherit it.
        self.budget.lower_priority()
        self.budget.start()
        while not self.stop.is_set():
            # Resting out the budget: a live change cuts the rest short (heard at once), the debt stays.
            if self.budget.resting() and not self._changes_waiting():
                self.stop.wait(IDLE_WAIT_S)
                continue
            # The batch lives in `_run_batch`'s frame only: a local here would keep the last batch's streams
            # (a gone listener's latents and buffers) alive for as long as the loop then idles.
            if not self._run_batch(self._ready()):
                self.stop.wait(HELD_WAIT_S if self._all_held() else IDLE_WAIT_S)
        with self._lock:
            slots = list(self.slots)
        for slot in slots:
            slot.close()

    def _run_batch(self, batch: list[StreamSlot]) -> bool:
        """One batch of the ready streams' next chunks; False when none is ready."""
        if not batch:
            return False
        for slot in batch:
            slot.prepare()
        # One step count for the whole batch: the fewest asked for keeps every stream's buffer safe.
        steps = min(slot.choose_steps() for slot in batch)
        # The first chunk after a change is short (heard in about half the wait), where it is alone in its
        # batch: in a shared batch every stream would get the short length.
        frames = batch[0].stream.short_frames() if len(batch) == 1 and batch[0].short_next else None
        try:
            self._make_batch(batch, steps, frames)
        finally:  # every batch's work counts against the budget: made, abandoned or failed
            self.budget.account()
        return True

    def _make_batch(self, batch: list[StreamSlot], steps: int, frames: int | None = None) -> None:
        done = [0]  # denoising steps begun (should_stop is asked once before each)

        def should_stop() -> bool:
            if self.stop.is_set():
                return True
            done[0] += 1
            # A batch nearly done finishes: throwing it away would cost more fresh audio than it saves time.
            nearly = done[0] - 1 >= NEARLY_DONE * steps
            return not nearly and all(s.interrupt.is_set() or s.closed for s in batch)

        t0 = time.perf_counter()
        try:
            outs = next_segments([s.stream for s in batch], should_stop=should_stop, steps=steps, frames=frames)
        except Cancelled:
            for slot in batch:
                if not slot.closed and not self.stop.is_set():  # a live change, not the end
                    slot.log({"event": "abandoned", "chunk_index": slot.stream.state.gen.chunk_index,
                              "steps_done": max(0, done[0] - 1), "steps": steps, "t_s": slot.now()})
            return
        except _OOM as exc:
            changes = [s.stream.reduce_memory() for s in batch]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if any(c is None for c in changes):
                for slot in batch:
                    slot.fail(exc)
                return
            for slot in batch:
                slot.stats.errors += 1
            print(f"\nsoundscape: out of memory; continuing with {changes[0]}", file=sys.stderr)
            return
        except Exception as exc:  # the batch failed as a whole: every stream retries
            for slot in batch:
                slot.fail(exc)
            return
        self.costs.append(BatchCost(len(batch), time.perf_counter() - t0, batch[0].stream.hop_s))
        self.batches += 1
        for slot, out in zip(batch, outs):
            if slot.closed:
                continue  # left during the batch
            if isinstance(out, BaseException):
                slot.fail(out)
            else:
                self.chunks += 1
                slot.accept(out)
