"""Keeps the ring buffer fed: fresh audio when the generator keeps up, earlier material when it doesn't.

Runs on the main thread (the engine calls `pump()` every few milliseconds).

    fresh ──► [held X frames] ──► ring ──► callback
                     │ generator late and the ring below its margin:
                     ▼ crossfade the held fresh tail into cover audio (earlier chunks,
                       each joined to the next by a crossfade), keep the ring at the margin;
                       when fresh audio returns, crossfade cover into it.

The last X frames of fresh audio are always held back until the next fresh
segment arrives, so a switch to cover material never needs audio we don't have.
Every seam, fresh->cover, cover->cover and cover->fresh, goes through
`crossfade.crossfade`, the one place that owns the fade. When the generator
keeps up no cover is ever used and the ring receives exactly the fresh samples.
"""

from __future__ import annotations

import queue
from collections import deque

import numpy as np

from .crossfade import crossfade
from .ringbuffer import RingBuffer

XFADE_S = 0.25  # every cover-up seam
MARGIN_S = 1.0  # buffered audio kept while covering; also what a tweak leaves in the buffer


class CoverPool:
    """Earlier fresh audio, replayed as one continuous stream whose pieces are joined by crossfades."""

    def __init__(self, xfade: int, max_segments: int = 8, seed: int = 0):
        self.xfade = xfade
        self.segments: deque[np.ndarray] = deque(maxlen=max_segments)
        self._rng = np.random.default_rng(seed)
        self._buf: np.ndarray | None = None  # upcoming cover frames; always > xfade once started
        self._fade: tuple[int, int] | None = None  # (frames taken, fade length): a warm start's fade-in

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def add(self, audio: np.ndarray) -> None:
        if len(audio) > 4 * self.xfade:
            self.segments.append(audio)

    def __bool__(self) -> bool:
        return bool(self.segments)

    def _piece(self) -> np.ndarray:
        seg = self.segments[int(self._rng.integers(len(self.segments)))]
        # Start anywhere but the last 3 crossfades, so repeats of one segment don't line up.
        return seg[int(self._rng.integers(0, len(seg) - 3 * self.xfade)):]

    def take(self, n: int) -> np.ndarray:
        """The next `n` frames of cover audio."""
        if self._buf is None:
            self._buf = self._piece()
        while len(self._buf) < n + self.xfade:
            nxt, x = self._piece(), self.xfade
            self._buf = np.concatenate([self._buf[:-x], crossfade(self._buf[-x:], nxt[:x]), nxt[x:]])
        out, self._buf = self._buf[:n], self._buf[n:]
        if self._fade is not None:
            done, length = self._fade
            k = np.arange(done, done + len(out), dtype=np.float64)
            ramp = (0.5 - 0.5 * np.cos(np.pi * np.clip(k / max(length, 1), 0.0, 1.0))).astype(np.float32)
            out = out * (ramp[:, None] if out.ndim == 2 else ramp)
            self._fade = (done + len(out), length) if done + len(out) < length else None
        return out

    def fade_in(self, frames: int) -> None:
        """The next `frames` taken rise from silence (the scene's fade-in, on a warm start)."""
        self._fade = (0, frames)


class Feeder:
    def __init__(self, ring: RingBuffer, fresh: queue.Queue, *, xfade: int, margin: int, skip_pool: int = 0,
                 seed: int = 0, on_fresh=None):
        self.ring = ring
        self.fresh = fresh
        self.xfade = xfade  # frames held back and used for each crossfade
        self.margin = margin  # keep at least this much buffered when covering
        self.pool = CoverPool(xfade, seed=seed)
        self._skip_pool = skip_pool  # frames at the start (the fade-in) not used as cover material
        self._pending = np.zeros((0, ring.channels), np.float32)
        self.covering = False
        self.coverups = 0
        self.cover_frames = 0
        self.fresh_frames = 0
        self.segments: deque = deque(maxlen=4)  # the latest segments received, for the status line
        self.epoch = 0  # the live-change epoch of the audio being written
        self.epoch_wanted = 0  # set by the engine: the generator has applied changes up to this epoch
        self.switches: list[tuple[int, int]] = []  # (epoch, ring position where its audio starts)
        self.on_fresh = on_fresh  # called with every fresh segment received (play records them: play/instant.py)
        self.warm = False  # playing a warm start's recording until the first fresh audio

    def cover_from(self, skip_frames: int, seed: int) -> None:
        """The stream's first `skip_frames` (its fade-in) are no cover material; `seed` picks the pieces.
        Set when the stream is known, which may be after a warm start began playing (play/instant.py)."""
        self._skip_pool = skip_frames
        self.pool.reseed(seed)

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
            if self._skip_pool < len(audio):
                self.pool.add(audio[self._skip_pool:])
            self._skip_pool = max(0, self._skip_pool - len(audio))
            if seg.epoch < self.epoch_wanted:
                continue  # made before the latest change: only good as cover material
            self.segments.append(seg)
            if seg.epoch > self.epoch:
                self._switch(seg.epoch, audio)
                continue
            self.warm = False
            if self.covering:
                # Back to fresh audio: crossfade the cover stream into the new segment's head.
                head = audio[: self.xfade]
                self._write_all(crossfade(self.pool.take(len(head)), head))
                audio = audio[len(head):]
                self.covering = False
            self._pending = np.concatenate([self._pending, audio]) if len(self._pending) else audio

    def _switch(self, epoch: int, audio: np.ndarray) -> None:
        """Drop buffered audio beyond the margin and crossfade into `audio` (a live change)."""
        level, x = self.ring.level(), self.xfade
        keep = min(level, self.margin)
        # The old audio that would have followed the cut: fade it out under the new audio.
        old = self.ring.peek_ahead(keep, min(x, level - keep))
        if len(old) < x and not self.covering:
            old = np.concatenate([old, self._pending[: x - len(old)]])
        if len(old) < x and self.pool:
            old = np.concatenate([old, self.pool.take(x - len(old))])
        self.ring.truncate(keep)
        self._pending = self._pending[:0]
        self.covering = False
        head = audio[: len(old)]
        self.switches.append((epoch, self.ring.frames_read + keep))
        self.epoch = epoch
        self._write_all(crossfade(old, head) if len(old) else head)
        rest = audio[len(head):]
        self._pending = np.concatenate([self._pending, rest]) if len(self._pending) else rest

    def _write_all(self, frames: np.ndarray) -> None:
        # Seams are short (xfade frames) and written only when there is room for them.
        written = self.ring.write(frames)
        if written < len(frames):
            self._pending = np.concatenate([frames[written:], self._pending])

    def pump(self) -> None:
        self._receive()
        if not self.covering:
            # Fresh: write all but the held-back tail.
            writable = max(0, len(self._pending) - self.xfade)
            if writable:
                n = self.ring.write(self._pending[:writable])
                self.fresh_frames += n
                self._pending = self._pending[n:]
            if self.ring.level() < self.margin and len(self._pending) <= self.xfade and self.pool:
                if self.ring.free() < self.xfade:
                    return
                # The generator is late: crossfade the held tail into earlier material.
                tail = self._pending
                self._pending = self._pending[:0]
                self._write_all(crossfade(tail, self.pool.take(len(tail))) if len(tail) else tail)
                self.covering = True
                self.coverups += 1
        if self.covering:
            need = min(self.margin - self.ring.level(), self.ring.free())
            if need > 0:
                n = self.ring.write(self.pool.take(need))
                self.cover_frames += n

    def start_warm(self, audio: np.ndarray, fade_in: int, piece: int) -> None:
        """Play `audio` (an earlier run's recording) from now on, rising over `fade_in` frames, until fresh
        audio arrives and is crossfaded in: a cover-up that starts the stream (not counted as one)."""
        for start in range(0, len(audio) - piece // 2, piece):
            self.pool.add(audio[start:start + piece])
        self.pool.fade_in(fade_in)
        self.covering = self.warm = True

    def prime(self, frames: int) -> None:
        """Fill the ring to `frames` with cover material now (a warm start, before the device opens).

        Why: PortAudio fills a new stream's device buffer by calling back at once, block after block, so a
        1 s device buffer takes 1 s from the ring within milliseconds; with only the margin buffered, the
        first blocks found the ring empty (two underruns at every instant start, measured).
        """
        need = min(frames - self.ring.level(), self.ring.free())
        if self.covering and need > 0:
            self.cover_frames += self.ring.write(self.pool.take(need))

    def buffered_fresh(self) -> int:
        return len(self._pending)
