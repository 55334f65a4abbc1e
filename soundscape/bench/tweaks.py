"""`bench --tweaks N`: how long a live change takes to be heard, measured on the path `play` runs.

A two-layer scene at bench's geometry and steps plays through the real parts (SceneStream, the
GenerationLoop on its thread, a Playback whose clock is drained at real-time pace, as a serve listener's
is, and LiveControl); N times, at a random moment, the mix flips (layer a <-> layer b) and the wait until
its first audio plays is read from the timeline's `tweak_heard` rows (issue 32). Real time: each tweak
takes at least a chunk's work.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..model.geometry import FRAME_S
from ..scene import Scene
from ..stream.generation_loop import GenerationLoop
from ..stream.live import LiveControl
from ..stream.playback import Playback
from ..stream.scene_stream import SceneStream

RATE = 16000
BLOCK_S = 0.02
START_S = 1.0  # buffered before the clock starts


def bench_scene(gen, frames: int, overlap: int, prompts: tuple[str, str]) -> Scene:
    g = gen.model_dump() | {"chunk_seconds": round(frames * FRAME_S, 4), "overlap_seconds": round(overlap * FRAME_S, 4)}
    return Scene.model_validate({
        "name": "bench tweaks", "layers": {"a": {"prompt": prompts[0], "weight": 1.0},
                                           "b": {"prompt": prompts[1], "weight": 0.0}},
        "generation": g, "evolution": {"transition_seconds": 0}, "output": {"sample_rate": RATE, "channels": 1},
        # A latency figure, not a quality one: random weights (`--random-weights`, a saved random model) make
        # near-silence that the quality check rejects, and the stream would never start.
        "quality_check": {"enabled": False}})


class _Listener:
    """Drains the ring at real-time pace once START_S is buffered, and ticks the live control."""

    def __init__(self, playback: Playback, live: LiveControl):
        self.playback, self.live = playback, live
        self._block = np.zeros((int(BLOCK_S * RATE), 1), np.float32)
        self._t0: float | None = None

    def until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        clock = self.playback.player
        while time.monotonic() < deadline:
            self.playback.pump()
            if self._t0 is None and self.playback.ring.level() >= START_S * RATE:
                self._t0 = time.monotonic()
            if self._t0 is not None:
                while (time.monotonic() - self._t0) * RATE - clock.frames_played >= len(self._block):
                    clock.underruns += bool(self.playback.ring.read_into(self._block))
                    clock.frames_played += len(self._block)
                    self.playback.pump()
            self.live.tick()
            if done():
                return True
            time.sleep(0.005)
        return False


def tweak_latency(model, gen, frames: int, overlap: int, n: int, prompts: tuple[str, str], seed: int = 0) -> dict:
    """Median and 95th percentile of N tweaks' latency (s of audio from the change to its first sound)."""
    scene = bench_scene(gen, frames, overlap, prompts)
    stream = SceneStream(model, scene, out_rate=RATE, channels=1)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        timeline = Path(folder) / "timeline.jsonl"
        playback = Playback.build(RATE, 1, "bench", stream.hop_s)
        slot = playback.attach(stream, timeline=str(timeline))
        live = LiveControl(playback, None)
        loop = GenerationLoop([slot])
        loop.start()
        listener = _Listener(playback, live)
        patience = 60 + 10 * stream.hop_s
        try:
            listener.until(lambda: slot.stats.chunks >= 1 and playback.player.frames_played > 0, patience)
            for i in range(n):
                end = time.monotonic() + rng.uniform(0, stream.hop_s)  # a random moment within a chunk's time
                listener.until(lambda: time.monotonic() >= end, stream.hop_s + 1)
                live.handle({"cmd": "set", "weights": {"a": float(i % 2), "b": float(1 - i % 2)}})
                if not listener.until(lambda: not live.pending, patience):
                    break
        finally:
            loop.stop.set()
            loop.join(timeout=patience)
        rows = [json.loads(line) for line in timeline.read_text().splitlines()]
    heard = [r["latency_s"] for r in rows if r.get("event") == "tweak_heard"]
    abandoned = sum(r.get("event") == "abandoned" for r in rows)
    short = sum("frames" in r for r in rows if "chunk" in r)  # short chunks after a change (issue 32)
    ordered = sorted(heard)
    p95 = ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)] if ordered else None
    return {"tweaks": n, "heard": len(heard), "median_s": statistics.median(heard) if heard else None,
            "p95_s": p95, "abandoned": abandoned, "short_chunks": short, "hop_s": round(stream.hop_s, 3),
            "underruns": playback.player.underruns, "latencies_s": heard}
