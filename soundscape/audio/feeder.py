"""Keeps the ring buffer fed: fresh audio when the generator keeps up, the weave when it doesn't.

Runs on the thread that owns the Playback (play's main thread calls `pump()` every few milliseconds); the
audio callback only reads the ring, so everything here, the weave's planning included, may allocate.

    fresh ──► [held X frames] ──► ring ──► callback
                     │ generator late (or resting under --budget) and the ring below its margin:
                     ▼ crossfade the held fresh tail into the weave (audio/weave.py: earlier fresh audio
                       replayed as planned pieces, cut at quiet points, level and tilt matched, the
                       stretch unheard longest first), keep the ring at the margin; when fresh audio
                       returns, leave the weave at a quiet point within QUIET_S and crossfade into it.

The last X frames of fresh audio are always held back until the next fresh
segment arrives, so a switch to the weave never needs audio we don't have.
Every seam goes through `crossfade.crossfade`, the one place that owns the fade.
When the generator keeps up the weave is never used and the ring receives exactly the fresh samples.

Fresh chunks are spread evenly without a plan of their own: the queue of one holds the generator back,
each fresh chunk plays whole as soon as the one before it is done, and the weave fills the gap until
the next. Under a budget the loop rests after each chunk in proportion to its work, so chunks arrive a
steady period apart and the stream alternates chunk, weave, chunk, weave (a live change's chunk comes
at once: it must be heard).
"""

from __future__ import annotations

import queue
from collections import deque

import numpy as np

from .crossfade import crossfade
from .ringbuffer import RingBuffer
from .weave import Weaver

XFADE_S = 0.25  # every seam into and out of the weave
MARGIN_S = 1.0  # buffered audio kept while weaving
# What a live change leaves of the old audio before its crossfade. The new audio is in hand when the
# switch is made and is written at once, so only the block the callback may be reading must stay
# (RingBuffer.truncate); the engine raises it to the device's latency where that is longer (a warm
# start's 1 s). It used to be the 1 s margin: a second on every tweak, most of it on a fast machine.
SWITCH_KEEP_S = 0.25


class Feeder:
    def __init__(self, ring: RingBuffer, fresh: queue.Queue, *, xfade: int, margin: int, rate: int,
                 skip_pool: int = 0, seed: int = 0, on_fresh=None, pool_s: float | None = None):
        """`pool_s`: seconds of earlier audio the weave keeps (default weave.POOL_S)."""
        self.ring = ring
        self.fresh = fresh
        self.xfade = xfade  # frames held back and used for each crossfade
        self.margin = margin  # keep at least this much buffered when weaving
        self.switch_keep = int(SWITCH_KEEP_S * rate)  # what a live change keeps of the old audio
        self.weave = Weaver(rate, ring.channels, xfade, seed=seed, **({"pool_s": pool_s} if pool_s else {}))
        self._skip_pool = skip_pool  # frames at the start (the fade-in) never replayed
        self._pending = np.zeros((0, ring.channels), np.float32)
        self._pending_src: int | None = None  # the weave's source frame of _pending[0] (its ledger)
        self._last_stale = False  # the last segment received was made before a change (the next is no continuation)
        self.covering = False  # the weave is playing
        self.coverups = 0  # times the weave began
        self.cover_frames = 0
        self.fresh_frames = 0
        self.segments: deque = deque(maxlen=4)  # the latest segments received, for the status line
        self.epoch = 0  # the live-change epoch of the audio being written
        self.epoch_wanted = 0  # set by the engine: the generator has applied changes up to this epoch
        self.switches: list[tuple[int, int]] = []  # (epoch, ring position where its audio starts)
        self.on_fresh = on_fresh  # called with every fresh segment received (play records them: play/instant.py)
        self.warm = False  # playing a warm start's recording until the first fresh audio

    def cover_from(self, skip_frames: int, seed: int) -> None:
        """The stream's first `skip_frames` (its fade-in) are never replayed; `seed` seeds the weave's choices.
        Set when the stream is known, which may be after a warm start began playing (play/instant.py)."""
        self._skip_pool = skip_frames
        self.weave.reseed(seed)

    def _at(self) -> int:
        """The output frame the next frame written to the ring will play at."""
        return self.ring.frames_read + self.ring.level()

    def repeat_distance_s(self) -> float | None:
        """The weave's shortest repeat among recent plays (seconds), None while nothing has repeated."""
        return self.weave.repeat_distance_s(self.ring.frames_read)

    def _receive(self) -> None:
        """Move any ready fresh segments into the pending buffer."""
        # Take a new segment only when the current one is used up: the queue stays full
        # meanwhile, which is what holds the generator back (backpressure). A live change
        # skips the wait: stale segments are drained so the new audio is heard at once.
        while self.covering or len(self._pending) <= self.xfade or self.epoch_wanted > self.epoch:
            try:
                seg = self.fresh.get_nowait()
            except queue.Empty:
                return
            audio = seg.audio
            if self.on_fresh is not None:
                self.on_fresh(seg)
            stale = seg.epoch < self.epoch_wanted
            # Into the weave's pool; fresh audio that will play says where, so it is not woven first.
            will_play = None if stale else self._at() + (0 if self.covering else len(self._pending))
            src = self.weave.add(audio, seg.epoch, at=will_play, usable_from=min(self._skip_pool, len(audio)),
                                 continues=not self.warm and stale == self._last_stale)
            self._last_stale = stale
            self._skip_pool = max(0, self._skip_pool - len(audio))
            if stale:
                continue  # made before the latest change: only good as weave material
            self.segments.append(seg)
            if seg.epoch > self.epoch:
                self._switch(seg.epoch, audio, src)
                continue
            self.warm = False
            if self.covering:
                # Back to fresh audio: leave the weave at a quiet point, crossfaded into the segment's head.
                seam, rest = self.weave.finish(audio, self._at())
                head = len(audio) - len(rest)
                self._write_all(seam)
                self.weave.played(src, head, self._at() - head)
                self.cover_frames += len(seam) - head
                audio, src = rest, src + head
                self.covering = False
            if not len(self._pending):
                self._pending, self._pending_src = audio, src
            else:
                self._pending = np.concatenate([self._pending, audio])

    def _switch(self, epoch: int, audio: np.ndarray, src: int) -> None:
        """Drop buffered audio beyond `switch_keep` and crossfade into `audio` (a live change)."""
        level, x = self.ring.level(), self.xfade
        keep = min(level, self.switch_keep)
        # The old audio that would have followed the cut: fade it out under the new audio.
        old = self.ring.peek_ahead(keep, min(x, level - keep))
        if len(old) < x and not self.covering:
            old = np.concatenate([old, self._pending[: x - len(old)]])
        self.ring.truncate(keep)
        if len(old) < x and self.weave:
            old = np.concatenate([old, self.weave.take(x - len(old), self._at())])
        self.weave.stop()
        self.weave.epoch = epoch
        self._pending = self._pending[:0]
        self.covering = False
        head = audio[: len(old)]
        self.switches.append((epoch, self.ring.frames_read + keep))
        self.epoch = epoch
        self._write_all(crossfade(old, head) if len(old) else head)
        rest = audio[len(head):]
        self._pending, self._pending_src = rest, src + len(head)

    def _write_all(self, frames: np.ndarray) -> None:
        # Seams are short (xfade frames) and written only when there is room for them.
        written = self.ring.write(frames)
        if written < len(frames):
            self._pending = np.concatenate([frames[written:], self._pending])
            if self._pending_src is not None:
                self._pending_src -= len(frames) - written

    def pump(self) -> None:
        self.weave.epoch = self.epoch_wanted  # prefer material made under the mix wanted now
        self._receive()
        if not self.covering:
            # Fresh: write all but the held-back tail.
            writable = max(0, len(self._pending) - self.xfade)
            if writable:
                at = self._at()
                n = self.ring.write(self._pending[:writable])
                self.fresh_frames += n
                if self._pending_src is not None:
                    self.weave.played(self._pending_src, n, at)
                    self._pending_src += n
                self._pending = self._pending[n:]
            if self.ring.level() < self.margin and len(self._pending) <= self.xfade and self.weave:
                if self.ring.free() < self.xfade:
                    return
                # The generator is late: crossfade the held tail into the weave.
                tail = self._pending
                self._pending, self._pending_src = self._pending[:0], None
                level = self.ring.level()
                before = self.ring.peek_ahead(0, level) if level else None  # written, not yet played
                self.weave.begin(tail if len(tail) else None, self._at(), before)
                self.covering = True
                self.coverups += 1
        if self.covering:
            need = min(self.margin - self.ring.level(), self.ring.free())
            if need > 0:
                n = self.ring.write(self.weave.take(need, self._at()))
                self.cover_frames += n

    def start_warm(self, audio: np.ndarray, fade_in: int) -> None:
        """Play `audio` (an earlier run's recording) from now on, rising over `fade_in` frames, until fresh
        audio arrives and is crossfaded in: the weave of that recording starts the stream (not a cover-up)."""
        self.weave.add(audio, self.epoch, continues=False)
        self.weave.fade_in(fade_in)
        self.covering = self.warm = True

    def prime(self, frames: int) -> None:
        """Fill the ring to `frames` with the weave now (a warm start, before the device opens).

        Why: PortAudio fills a new stream's device buffer by calling back at once, block after block, so a
        1 s device buffer takes 1 s from the ring within milliseconds; with only the margin buffered, the
        first blocks found the ring empty (two underruns at every instant start, measured).
        """
        need = min(frames - self.ring.level(), self.ring.free())
        if self.covering and need > 0:
            self.cover_frames += self.ring.write(self.weave.take(need, self._at()))

    def buffered_fresh(self) -> int:
        return len(self._pending)
