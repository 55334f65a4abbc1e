"""Admission control: how many listeners the generator keeps in real time, from measured batches.

Cost model: a batch of n streams takes  c(n) = a + b n  seconds of wall time (a: the per-call
overhead that batching shares, b: each stream's own work), fitted by least squares to the
recent batches. A batch makes one hop of new audio per stream, so n streams stay in real time
while  c(n) <= HEADROOM * hop.  With batches of one size only, the line goes through the origin
(c(n) = n c(1) / 1): that never credits batching with more than it has shown.
"""

from __future__ import annotations

from ..stream.generation_loop import BatchCost

HEADROOM = 0.8  # a batch may use 80 % of the hop: the rest is slack for jitter and a newcomer's first chunk


def fit(costs: list[BatchCost]) -> tuple[float, float] | None:
    """(a, b) of c(n) = a + b n, or None with nothing measured."""
    if not costs:
        return None
    xs = [c.streams for c in costs]
    ys = [c.seconds for c in costs]
    if len(set(xs)) == 1:
        return 0.0, sum(ys) / len(ys) / xs[0]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    b = max(b, 1e-6)
    a = max(0.0, my - b * mx)
    return a, b


def capacity(costs: list[BatchCost], hop_s: float, limit: int) -> int:
    """The most streams (up to `limit`) whose batch fits in HEADROOM of a hop; at least 1."""
    ab = fit(costs)
    if ab is None:
        return limit
    a, b = ab
    n = int((HEADROOM * hop_s - a) / b)
    return max(1, min(limit, n))


def per_stream_rtf(costs: list[BatchCost]) -> float:
    """New audio per wall second for each stream, over the recent batches (1.0 = real time)."""
    if not costs:
        return 0.0
    recent = costs[-8:]
    return sum(c.hop_s for c in recent) / sum(c.seconds for c in recent)
