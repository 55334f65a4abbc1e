"""The plan of a segmented or looping render: which pieces, where on the timeline, from which seeds.

A plain render is one stream of chunks, each continuing the last. A segmented render cuts the
timeline into segments of K chunks that are generated independently (on any worker, in any
order) and joins them with bridge chunks inpainted from both sides. A loop is the same plan
with one more bridge, from the last segment back into the first.

Notation, in latent frames (25 a second; T chunk, O overlap, h = T - O hop, e edge, x crossfade
as in generator/chunks.py):
  G_s    where segment s starts; its chunk k covers [G_s + k h, G_s + k h + T).
         Segment s ends at E_s = G_s + K_s h + O.
  B_s    = E_s - O, where the bridge after segment s starts; it is T_b frames long. Its first O
         frames are segment s's last O (held, as any chunk's overlap), its last O_b frames are
         the first O_b of the segment after it: G_{s+1} = B_s + T_b - O_b.
         Middle m = T_b - O - O_b frames are new. Inner bridges: T_b = T, O_b = min(O, (T - O) / 2).
  L      a loop's cycle: the wrap bridge after the last segment ends on segment 0's first
         frames, at G_S = L. Its T_b (a multiple of 8, the UNet's quantum) and O_b (O_b to O_b + 7)
         are chosen so that L is exactly the requested length.
Seeds: segment s draws its chunks' seeds from seed_s = segment_seed(scene seed, s) (segment 0
uses the scene seed itself, so a segmented render starts exactly like the plain one); the
bridge after segment s is seed_s's chunk K_s. None of this depends on how many workers run.
Audio: each piece's decode is joined by the ordinary Joiner in timeline order. A segment's first
chunk is decoded from its frame 0 and joined like any later chunk, so the bridge before it
crossfades into it at its frames [e, e + x), the same short way as every other seam.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..generator.chunks import ChunkSpec

from ..model.geometry import FRAME_S
MIN_MIDDLE = 8  # a bridge generates at least this many new frames (the UNet's 8-frame quantum)
MAX_SEGMENT_CHUNKS = 16


def segment_seed(scene_seed: int, segment: int) -> int:
    """Segment 0 keeps the scene seed; others get a well-mixed seed from (scene seed, segment)."""
    if segment == 0:
        return int(scene_seed)
    return int(np.random.SeedSequence([int(scene_seed), int(segment), 0x5E6]).generate_state(1)[0])


def segment_chunks(plain_chunks: int) -> int:
    """K: about the square root of the chunk count, 2 to 16.

    Why the square root: a bridge takes a chunk's place, so segments cost no extra denoising, but
    each bridge is where two independently generated segments meet (the sound changes there more
    than at other seams) and each segment's first chunk decodes its whole window; the number of
    segments bounds the parallelism. The square root balances the two as renders grow.
    """
    return min(MAX_SEGMENT_CHUNKS, max(2, math.ceil(math.sqrt(max(plain_chunks, 1)))))


@dataclass(frozen=True)
class PlannedSegment:
    index: int
    start: int  # G_s
    chunks: int  # K_s
    seed: int


@dataclass(frozen=True)
class PlannedBridge:
    index: int  # the segment it follows
    start: int  # B_s
    frames: int  # T_b
    tail: int  # O_b: frames of the next segment's start it ends on
    to: int  # the segment it leads into (0 for a loop's wrap)


@dataclass(frozen=True)
class Piece:
    """One item of the timeline, in the order the driver joins and writes them."""

    index: int  # position in the timeline, 0..P-1 (the timeline's "chunk")
    segment: int
    chunk: int | None  # chunk within the segment, None for a bridge
    start: int  # the piece's frame 0 on the timeline (G_s + k h, or B_s)
    emit: tuple[int, int]  # the timeline frames its joined audio covers

    @property
    def bridge(self) -> bool:
        return self.chunk is None


@dataclass(frozen=True)
class Plan:
    spec: ChunkSpec
    segments: tuple[PlannedSegment, ...]
    bridges: tuple[PlannedBridge, ...]  # bridges[s] follows segments[s]; a loop has one more (the wrap)
    loop_frames: int | None  # L, or None for a render that ends

    @property
    def hop(self) -> int:
        return self.spec.hop

    @property
    def origin(self) -> int:
        """The timeline frame the output starts at: 0, or e + x for a loop (its start crossfades at the end)."""
        return self.spec.edge + self.spec.xfade if self.loop_frames else 0

    def head_frames(self, s: int) -> int:
        """How many of segment s's first latent frames a bridge ends on (0: none)."""
        return max((b.tail for b in self.bridges if b.to == s), default=0)

    def needs_tail(self, s: int) -> bool:
        return s < len(self.bridges)

    def control_frame(self, start: int) -> float:
        """The timeline frame a piece's weights are taken at: half a hop into it, as a plain render's chunks."""
        return start + self.hop / 2

    def pieces(self) -> list[Piece]:
        T, O, h = self.spec.frames, self.spec.overlap, self.hop
        e, x = self.spec.edge, self.spec.xfade
        out: list[Piece] = []
        for seg in self.segments:
            for k in range(seg.chunks):
                g = seg.start + k * h
                if k:
                    lo = g + O - e - x
                elif seg.index:
                    lo = g + e  # joined from a bridge: crossfaded at its frames [e, e + x)
                else:
                    # A render's first chunk emits from its frame 0, as in a plain render; a loop's
                    # from e + x: its crossfade [e, e + x) with the wrap bridge ends the file instead.
                    lo = self.origin
                out.append(Piece(len(out), seg.index, k, g, (lo, g + T - e - x)))
            if seg.index < len(self.bridges):
                b = self.bridges[seg.index]
                hi = b.start + b.frames - b.tail + e + (x if b.to == 0 and self.loop_frames else 0)
                out.append(Piece(len(out), seg.index, None, b.start, (b.start + O - e - x, hi)))
        return out

    def emitted_frames(self) -> int:
        """Timeline frames of joined audio the whole plan gives, from its origin."""
        return self.pieces()[-1].emit[1] - self.origin


def _layout(spec: ChunkSpec, pieces: int, k: int, tail: int, seed: int) -> tuple[list, list, int]:
    """Segments of k chunks joined by bridges (tail O_b), `pieces` chunks and bridges in all;
    returns the segments, the bridges and where a bridge after the last segment would start."""
    T, h = spec.frames, spec.hop
    segments, bridges, start, left = [], [], 0, pieces
    while True:
        # The last segment takes what is left (up to k + 1): a render never ends on a bridge.
        n = left if left <= k + 1 else k
        s = len(segments)
        segments.append(PlannedSegment(s, start, n, segment_seed(seed, s)))
        left -= n
        b_start = start + n * h
        if not left:
            return segments, bridges, b_start
        bridges.append(PlannedBridge(s, b_start, T, tail, s + 1))
        start = b_start + T - tail
        left -= 1


def bridge_tail(spec: ChunkSpec) -> int:
    """O_b: the overlap, or less where that would leave a bridge under half a hop of new frames."""
    floor = 2 * spec.edge + spec.xfade  # its crossfade and both decode edges must fit inside it
    tail = max(floor, min(spec.overlap, spec.hop // 2))
    if spec.frames - spec.overlap - tail < MIN_MIDDLE or spec.overlap < floor or not spec.overlap:
        raise UsageError(f"segmented and looping renders need chunks with room for a bridge: chunk_seconds "
                         f"{spec.frames * FRAME_S:g} with overlap_seconds {spec.overlap * FRAME_S:g} leaves none; "
                         f"use a longer chunk or a shorter overlap")
    return tail


def plan_render(spec: ChunkSpec, frames_needed: int, seed: int, k: int | None = None) -> Plan:
    """A segmented render whose joined audio covers at least `frames_needed` timeline frames."""
    h, lead = spec.hop, spec.lead
    plain = max(1, math.ceil((frames_needed - lead) / h))  # the chunks a plain render needs
    k = k or segment_chunks(plain)
    tail = bridge_tail(spec)
    # A bridge moves the timeline on by T - O_b >= h, so the plain count is enough; drop what is not needed.
    pieces = plain
    while pieces > 1:
        plan = _plan(spec, pieces - 1, k, tail, seed)
        if plan.emitted_frames() < frames_needed:
            break
        pieces -= 1
    return _plan(spec, pieces, k, tail, seed)


def _plan(spec, pieces, k, tail, seed) -> Plan:
    segments, bridges, _ = _layout(spec, pieces, k, tail, seed)
    return Plan(spec, tuple(segments), tuple(bridges), None)


def plan_loop(spec: ChunkSpec, loop_frames: int, seed: int, k: int | None = None) -> Plan:
    """A loop of exactly `loop_frames` frames: segments, inner bridges, and a wrap bridge back to the start."""
    T, O, h = spec.frames, spec.overlap, spec.hop
    tail = bridge_tail(spec)
    # The wrap bridge's new middle m = T_b - O - O_b takes up the remainder; aim it around an inner
    # bridge's middle, never below MIN_MIDDLE (so T_b stays within about 0.6 to 1.4 chunks).
    m_lo = max(MIN_MIDDLE, (T - O - tail) - h // 2)
    k = k or segment_chunks(max(1, round(loop_frames / h)))
    pieces = max(1, (loop_frames - O - m_lo) // h)
    while pieces >= 1:
        segments, bridges, b_start = _layout(spec, pieces, k, tail, seed)
        r = loop_frames - b_start  # = T_b - O_b
        if r - O >= m_lo:
            wrap_tail = tail + (-(r + tail)) % 8  # T_b = r + O_b, a multiple of 8
            bridges.append(PlannedBridge(len(segments) - 1, b_start, r + wrap_tail, wrap_tail, 0))
            return Plan(spec, tuple(segments), tuple(bridges), loop_frames)
        pieces -= 1
    shortest = (h + O + m_lo) * FRAME_S
    raise UsageError(f"--loop: expected a duration of at least {shortest:g} s (one chunk and a bridge back "
                     f"to the start at chunk_seconds {T * FRAME_S:g}), got {loop_frames * FRAME_S:g} s")


def loop_frames_for(duration_s: float) -> int:
    """A loop's length in latent frames; it must be a whole number of them, so the file loops exactly."""
    frames = round(duration_s / FRAME_S)
    if frames < 1 or abs(frames * FRAME_S - duration_s) > 1e-6:
        raise UsageError(f"--loop: expected a duration that is a multiple of {FRAME_S:g} s (one latent frame), "
                         f"e.g. 10m or 90s, got {duration_s:g} s")
    return frames
