"""The weave: the stream's own earlier audio, replayed as a planned sequence of pieces when fresh audio is short.

Runs on the feeder's thread (audio/feeder.py calls it from `pump`); nothing here is touched by the audio
callback, which only reads the ring, so planning may allocate.

The pool is one preallocated ring of the last POOL_S seconds of fresh audio (and an instant start's
recording), oldest out first, cut into blocks of BLOCK_S. Per block it keeps
  epoch     the live-change epoch its audio was made under (-1: not to be replayed: a fade-in, a gap)
  run       which continuous stretch it belongs to: a piece never spans two runs (a hard cut)
  offset    o = (output frame) - (source frame) of its latest play; two plays of source frame s at
            output frames t1 < t2 have offsets o1 < o2 and t2 - t1 = o2 - o1: the repeat distance
  planned   the offset of a play planned but not yet written (fresh audio received, a piece in the plan),
            so the weave does not take it again first and then play it twice a few seconds apart.
Choosing a piece to play from output frame T: a window of blocks starting at source frame s0 would
repeat after d(s0) = (T - s0) - max(offset, planned over its blocks); the weave takes the window with the largest
d (the piece whose last use is oldest), preferring windows made under the current mix (`epoch`) while
their d is at least PREFER_S (or the best there is), never a window that would follow the previous piece
in an order already played (successor pairs), ties broken by the seeded RNG.
A piece is cut at quiet points: its first and last crossfade sit where the energy of a crossfade-long
window is lowest within QUIET_S of the nominal cut. Each join is the equal-power crossfade of
audio/crossfade.py, with the incoming piece's level (RMS) and coarse spectral tilt matched to the
MATCH_S before the join, the match easing back to the piece's own over RAMP_S.

Memory: POOL_S = 240 s at 48 kHz stereo float32 is 92 MB (46 MB mono; 15 MB at 16 kHz mono), allocated
at the first fresh audio and filled as it comes. Why 240 s: every second of output plays one second of
distinct material (fresh or woven), so a stretch comes back at best after all the material there is has
played once: the repeat distance is at most the pool's length (or all the fresh audio made so far, while
that is shorter), whatever the fresh share. Choosing the stretch heard longest ago gets about 80 % of
that bound (tests/audio/test_weave.py's drifting noise at a third fresh: 75 s after 5 minutes, when 100 s
of material existed; about 200 s once the pool was full), so 4 minutes keeps issue 32's target of
2 minutes between repeats with room (3 minutes would give about 2.5).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .crossfade import crossfade

POOL_S = 240.0  # earlier audio kept (see the module docstring for the RAM it costs)
BLOCK_S = 0.1  # the ledger's grain
PIECE_S = (4.0, 8.0)  # a piece's longest, drawn per piece
START_S = 2.0  # the window a piece's start is chosen by
MIN_PIECE_S = 1.5  # shorter runs are no material
QUIET_S = 0.3  # how far a cut may move to find a quiet point
MATCH_S = 0.5  # level and tilt are measured over this much on each side of a join
RAMP_S = 3.0  # the match eases back to the piece's own level and tilt over this long
PREFER_S = 60.0  # a piece of the current mix is taken if it repeats no sooner than this (or the best)
GAIN_LIMIT = 4.0  # a join's level match is at most +-12 dB
TILTS = np.linspace(-0.45, 0.8, 11)  # y = x + c * (x[n] - x[n-1]): c < 0 darker, c > 0 brighter
WINDOW_S = 300.0  # the reported repeat distance: the shortest among plays in the last five minutes
NEVER = -(1 << 60)


def _energy(x: np.ndarray, width: int) -> np.ndarray:
    """Energy of each `width`-long window of `x` (mono sum of squares): e[i] covers x[i:i+width]."""
    p = np.square(x, dtype=np.float64)
    p = p.sum(axis=1) if p.ndim == 2 else p
    c = np.concatenate([[0.0], np.cumsum(p)])
    return c[width:] - c[:-width]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _tilt(x: np.ndarray) -> float:
    """A coarse spectral tilt: log of the first difference's energy over the signal's (brighter: higher)."""
    d = np.diff(x, axis=0)
    return float(np.log((np.sum(np.square(d, dtype=np.float64)) + 1e-12) / (np.sum(np.square(x, dtype=np.float64)) + 1e-12)))


def _shape(x: np.ndarray, g: tuple[float, float], c: tuple[float, float]) -> np.ndarray:
    """`x` with its gain easing from g[0] to g[1] (in dB) and its tilt from c[0] to c[1] along it.

    The ease is a raised cosine, flat at both ends: a join matched to 10 dB apart moves 0.3 dB in its
    first 0.4 s (a straight line in amplitude moved 2.5 dB, measured on the test's drifting noise).
    """
    if g == (1.0, 1.0) and c == (0.0, 0.0):
        return x
    w = 0.5 - 0.5 * np.cos(np.pi * np.linspace(0.0, 1.0, len(x)))
    gs = np.exp(np.log(g[0]) + (np.log(g[1]) - np.log(g[0])) * w).astype(np.float32)
    cs = (c[0] + (c[1] - c[0]) * w).astype(np.float32)
    if x.ndim == 2:
        gs, cs = gs[:, None], cs[:, None]
    d = np.concatenate([x[:1] * 0, np.diff(x, axis=0)])
    return (gs * (x + cs * d)).astype(np.float32)


def _match(ref: np.ndarray, head: np.ndarray) -> tuple[float, float]:
    """(gain, tilt) that make `head` sound like `ref` in level and coarse spectrum."""
    if len(ref) < 16 or len(head) < 16:
        return 1.0, 0.0
    want = _tilt(ref)
    d = np.diff(head, axis=0)
    c = float(min(TILTS, key=lambda t: abs(_tilt(head[1:] + t * d) - want)))
    shaped = head[1:] + c * d
    r = _rms(shaped)
    g = float(np.clip(_rms(ref) / r, 1 / GAIN_LIMIT, GAIN_LIMIT)) if r > 0 else 1.0
    return g, c


class Weaver:
    def __init__(self, rate: int, channels: int, xfade: int, *, pool_s: float = POOL_S, seed: int = 0):
        self.rate, self.channels, self.x = rate, channels, xfade
        self.B = max(1, int(BLOCK_S * rate))
        self.nb = max(16, int(pool_s * rate) // self.B)
        self.N = self.nb * self.B
        self._audio: np.ndarray | None = None  # (N, channels) float32, made at the first add
        self._epoch = np.full(self.nb, -1, np.int64)
        self._run = np.zeros(self.nb, np.int64)
        self._offset = np.full(self.nb, NEVER, np.int64)
        self._planned = np.full(self.nb, NEVER, np.int64)
        self.total = 0  # source frames added so far (the next one's index)
        self._runs = 0
        self.epoch = 0  # the mix wanted now (the feeder sets it)
        self._rng = np.random.default_rng(seed)
        self._pairs: set[tuple[int, int]] = set()  # (block where a piece ended, block where the next began)
        self._pair_order: deque[tuple[int, int]] = deque()
        self._buf: np.ndarray | None = None  # planned frames not yet taken; its last x frames: the join's tail
        self._src: np.ndarray | None = None  # the source frame of each planned frame (-1: none)
        self._end_block = -1  # the block where the planned piece ends
        self._fade: tuple[int, int] | None = None  # (frames taken, length): an instant start's fade-in
        self._repeats: deque[tuple[int, int]] = deque(maxlen=8192)  # (output frame, distance in frames)
        self.min_repeat: int | None = None  # the shortest repeat ever, frames
        self.joins: deque[int] = deque(maxlen=512)  # output frames where crossfades between pieces start
        self.pieces = 0
        self.recent_pieces: deque[tuple[int, int, int]] = deque(maxlen=64)  # (output frame, source frame, epoch)
        self._recent = np.zeros((0, channels), np.float32)  # the last MATCH_S taken: what a join is matched to

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    # The pool ------------------------------------------------------------------------------------------
    def add(self, audio: np.ndarray, epoch: int, *, at: int | None = None, usable_from: int = 0,
            continues: bool = True) -> int:
        """Keep `audio` (its frames before `usable_from` are never replayed); returns its first source frame.

        `at`: the output frame where it will play (fresh audio), so it is not woven before it is heard;
        `continues`: it follows the last audio added without a cut (consecutive fresh segments do).
        """
        if self._audio is None:
            self._audio = np.zeros((self.N, self.channels), np.float32)
        audio = audio.reshape(len(audio), self.channels)
        B = self.B
        if not continues or self.total == 0:
            self._runs += 1
            if self.total % B:  # a cut inside a block: that block is not to be replayed
                self._epoch[(self.total // B) % self.nb] = -1
                self.total += B - self.total % B
        s0, n = self.total, len(audio)
        keep = min(n, self.N)  # only the last N frames can stay
        idx = (s0 + n - keep + np.arange(keep)) % self.N
        self._audio[idx] = audio[n - keep:]
        first, last = (s0 + n - keep) // B, (s0 + n - 1) // B
        if n:
            blocks = np.arange(first, last + 1)
            ring = blocks % self.nb
            usable = blocks * B >= s0 + usable_from
            if s0 % B and usable_from == 0:  # the block shared with the previous add (same run) stays usable
                usable[0] = self._epoch[ring[0]] >= 0 or first * B >= s0
            self._epoch[ring] = np.where(usable, epoch, -1)
            self._run[ring] = self._runs
            self._offset[ring] = NEVER
            self._planned[ring] = NEVER if at is None else at - s0
        self.total = s0 + n
        oldest = (self.total - self.N) // B
        while self._pair_order and self._pair_order[0][0] < oldest:
            self._pairs.discard(self._pair_order.popleft())
        return s0

    def __bool__(self) -> bool:
        return self._windows(int(MIN_PIECE_S * self.rate) // self.B) is not None

    def played(self, src: int, n: int, at: int) -> None:
        """Source frames [src, src + n) were written to play from output frame `at`: the ledger."""
        lo = max(src, self.total - self.N + self.B)  # blocks still whole in the pool
        if n <= 0 or src + n <= lo:
            return
        blocks = np.arange(lo // self.B, (src + n - 1) // self.B + 1)
        ring = blocks % self.nb
        o = at - src
        prev = self._offset[ring]
        again = (prev != NEVER) & (prev < o)
        if again.any():
            d = int(o - prev[again].max())
            self._repeats.append((at, d))
            self.min_repeat = d if self.min_repeat is None else min(self.min_repeat, d)
        self._offset[ring] = o
        self._planned[ring] = np.where(self._planned[ring] <= o, NEVER, self._planned[ring])

    def repeat_distance_s(self, now: int) -> float | None:
        """The shortest repeat among plays in the last WINDOW_S (seconds); None when nothing repeated."""
        while self._repeats and self._repeats[0][0] < now - WINDOW_S * self.rate:
            self._repeats.popleft()
        return min(d for _, d in self._repeats) / self.rate if self._repeats else None

    # Choosing a piece ------------------------------------------------------------------------------------
    def _windows(self, L: int):
        """Chronological block numbers and, per window of `L` blocks, whether it is one usable run."""
        B = self.B
        first = max(0, -(-(self.total - self.N) // B) + 1)  # whole blocks, the oldest one spared (being overwritten)
        last = self.total // B  # blocks before this one are complete
        if L < 1 or last - first < L:
            return None
        blocks = np.arange(first, last)
        ring = blocks % self.nb
        ep, run = self._epoch[ring], self._run[ring]
        win = np.lib.stride_tricks.sliding_window_view
        ok = (win(ep, L).min(axis=1) >= 0) & (win(run, L).min(axis=1) == win(run, L).max(axis=1))
        if not ok.any():
            return None
        return blocks, ring, ok

    def _choose(self, T: int) -> tuple[int, int] | None:
        """(first source frame, frames) of the next piece, to play from output frame T.

        The start: the START_S window whose latest play is oldest (see the module docstring). The piece then
        runs on, up to a length drawn from PIECE_S, only over blocks played no later than that window's
        latest: a fixed-length window would have to reach into stretches heard lately, and the distance
        fell to a third of the pool's (measured on tests/audio/test_weave.py's drifting noise).
        """
        B = self.B
        L, shortest = int(START_S * self.rate) // B, int(MIN_PIECE_S * self.rate) // B
        found = self._windows(L)
        while found is None and L > shortest:  # a shorter piece where no run is that long yet
            L = max(shortest, L * 3 // 4)
            found = self._windows(L)
        if found is None:
            return None
        blocks, ring, ok = found
        win = np.lib.stride_tricks.sliding_window_view
        s0 = blocks[: len(ok)] * B
        last = np.maximum(self._offset[ring], self._planned[ring])
        latest = win(last, L).max(axis=1)
        dist = ((T - s0) - latest).astype(np.float64) + self._rng.random(len(ok)) * B  # ties: the seeded RNG
        dist[~ok] = -np.inf
        if self._end_block >= 0:
            used = np.fromiter(((self._end_block, int(b)) in self._pairs for b in blocks[: len(ok)]), bool, len(ok))
            if (ok & ~used).any():
                dist[used] = -np.inf
        ep, run = self._epoch[ring], self._run[ring]
        current = ok & (win(ep, L).min(axis=1) == self.epoch) & (win(ep, L).max(axis=1) == self.epoch)
        best = int(np.argmax(dist))
        if current.any():
            cur = int(np.argmax(np.where(current, dist, -np.inf)))
            if dist[cur] >= min(PREFER_S * self.rate, dist[best]):
                best = cur
        # Run on over blocks of the same run, as replayable (and of the current mix if the start is), and
        # heard no later than the start window's latest.
        want, end = int(self._rng.uniform(*PIECE_S) * self.rate) // B, best + L
        while (end < min(len(last), best + want) and run[end] == run[best] and ep[end] >= 0
               and last[end] <= latest[best] and (ep[end] == self.epoch or not current[best])):
            end += 1
        return int(s0[best]), (end - best) * B

    def _piece(self, T: int, ref: np.ndarray | None):
        """The next piece cut at quiet points and matched to `ref`: (audio incl. its x-frame tail, sources)."""
        chosen = self._choose(T)
        if chosen is None:
            return None
        s0, n = chosen
        x, q = self.x, min(int(QUIET_S * self.rate), max(0, (n - 4 * self.x) // 4))
        i = s0 % self.N
        raw = self._audio[i:i + n] if i + n <= self.N else np.concatenate([self._audio[i:], self._audio[:i + n - self.N]])
        # The incoming crossfade at the quietest place near the start, the outgoing one likewise near the end.
        start = int(np.argmin(_energy(raw[: q + x], x)))
        end = n - x - q + int(np.argmin(_energy(raw[n - x - q:], x)))
        audio, src = raw[start:end + x], s0 + np.arange(start, end + x)
        ring = np.arange(src[0] // self.B, src[-1] // self.B + 1) % self.nb
        self._planned[ring] = np.maximum(self._planned[ring], T - src[0])  # taken: not to be chosen again first
        if ref is not None and len(ref):
            m = int(MATCH_S * self.rate)
            g, c = _match(ref[-m:], audio[x:x + m])  # past its crossfade: the quiet cut would bias the level
            r = min(len(audio) - x, int(RAMP_S * self.rate))
            audio = np.concatenate([_shape(audio[:r], (g, 1.0), (c, 0.0)), audio[r:]])
        pair = (self._end_block, int(src[0] // self.B))
        if self._end_block >= 0 and pair not in self._pairs:
            self._pairs.add(pair)
            self._pair_order.append(pair)
        self._end_block = int(src[-1] // self.B)
        self.pieces += 1
        self.recent_pieces.append((T, int(src[0]), int(self._epoch[ring].min())))
        return audio.astype(np.float32, copy=False), src

    # Playing it ---------------------------------------------------------------------------------------
    def begin(self, tail: np.ndarray | None, at: int, before: np.ndarray | None = None) -> bool:
        """Start the weave at output frame `at`, crossfading out of `tail` (the fresh audio's last frames);
        `before`: what was written just before `tail`, to match the level and tilt to."""
        parts = [p for p in (before, tail) if p is not None and len(p)]
        self._recent = np.concatenate(parts)[-int(MATCH_S * self.rate):] if parts else self._recent[:0]
        got = self._piece(at, self._recent if len(self._recent) else None)
        if got is None:
            return False
        audio, src = got
        if tail is not None and len(tail):
            k = min(len(tail), len(audio) - self.x)
            audio = np.concatenate([crossfade(tail[-k:], audio[:k]), audio[k:]])
            self.joins.append(at)
        self._buf, self._src = audio, src
        return True

    def _extend(self, need: int, at: int) -> None:
        """Plan pieces until `need` frames (plus the join's tail) are ready; `at` is the output frame of _buf[0]."""
        if self._buf is None and not self.begin(None, at):
            return
        x = self.x
        while len(self._buf) < need + x:
            k = min(x, len(self._buf))  # a shorter tail only where the material ran out before
            join_at = at + len(self._buf) - k
            got = self._piece(join_at, np.concatenate([self._recent, self._buf[:len(self._buf) - k]]))
            if got is None:
                return
            audio, src = got
            seam = crossfade(self._buf[len(self._buf) - k:], audio[:k])
            self._buf = np.concatenate([self._buf[:len(self._buf) - k], seam, audio[k:]])
            self._src = np.concatenate([self._src[:len(self._src) - k], src])
            self.joins.append(join_at)

    def take(self, n: int, at: int) -> np.ndarray:
        """The next `n` frames of the weave, to play from output frame `at`."""
        self._extend(n, at)
        if self._buf is None or len(self._buf) < n:
            got = np.zeros((n, self.channels), np.float32)  # no material at all (cannot happen once added)
            have = 0 if self._buf is None else len(self._buf)
            if have:
                got[:have] = self._buf
                self._note(self._src[:have], at)
                self._buf, self._src = self._buf[:0], self._src[:0]
            return got
        out, src = self._buf[:n], self._src[:n]
        self._buf, self._src = self._buf[n:], self._src[n:]
        self._note(src, at)
        self._recent = np.concatenate([self._recent, out])[-int(MATCH_S * self.rate):]
        return self._faded(out)

    def finish(self, fresh: np.ndarray, at: int) -> tuple[np.ndarray, np.ndarray]:
        """Leave the weave for `fresh` audio at a quiet point soon: (frames to write, the last x of them the
        crossfade into fresh's head; the rest of `fresh`, to play after them). Like every incoming piece, the
        fresh audio's first RAMP_S is matched to the weave's level and tilt and eases back to its own."""
        x = min(self.x, len(fresh))
        q = int(QUIET_S * self.rate)
        self._extend(q + x, at)
        buf = self._buf if self._buf is not None else np.zeros((0, self.channels), np.float32)
        if len(buf) < x:
            self.stop()
            return fresh[:x], fresh[x:]
        p = int(np.argmin(_energy(buf[: q + x], x)))
        m = int(MATCH_S * self.rate)
        g, c = _match(np.concatenate([self._recent, buf[:p]])[-m:], fresh[x:x + m])
        r = min(len(fresh), int(RAMP_S * self.rate))
        fresh = np.concatenate([_shape(fresh[:r], (g, 1.0), (c, 0.0)), fresh[r:]])
        lead = self._faded(buf[: p + x])
        out = np.concatenate([lead[:p], crossfade(lead[p:], fresh[:x])])
        self._note(self._src[: p + x], at)
        self.joins.append(at + p)
        self.stop()
        return out, fresh[x:]

    def stop(self) -> None:
        """Forget the plan (fresh audio plays on); the ledger and the successor pairs stay."""
        self._buf = self._src = None

    def _note(self, src: np.ndarray, at: int) -> None:
        """Ledger entries for frames written from output frame `at`, one per contiguous source run."""
        if not len(src):
            return
        breaks = np.flatnonzero(np.diff(src) != 1) + 1
        for a, b in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(src)]])):
            if src[a] >= 0:
                self.played(int(src[a]), int(b - a), at + int(a))

    def fade_in(self, frames: int) -> None:
        """The next `frames` taken rise from silence (the scene's fade-in, on a warm start)."""
        self._fade = (0, frames)

    def _faded(self, out: np.ndarray) -> np.ndarray:
        if self._fade is None:
            return out
        done, length = self._fade
        k = np.arange(done, done + len(out), dtype=np.float64)
        ramp = (0.5 - 0.5 * np.cos(np.pi * np.clip(k / max(length, 1), 0.0, 1.0))).astype(np.float32)
        self._fade = (done + len(out), length) if done + len(out) < length else None
        return out * ramp[:, None]
