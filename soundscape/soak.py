"""Soak test: hours of audio through the whole `play` engine, headless, on a fast-forward clock.

    python -m soundscape.soak --minutes 120 --speed 12 [--model DIR]   (tiny model if none)

Runs the real engine (generator thread, feeder, ring buffer, callback) against the null
output clocked at `speed` x real time, samples the process RSS, and reports: RSS growth
after warm-up, true underruns, cover-ups, and clock drift (audio played against the
fast-forwarded wall clock, and the timeline's chunk times against chunk index x hop + lead).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass

import psutil

from .periodic import Periodic


@dataclass
class SoakResult:
    audio_s: float
    wall_s: float
    speed: float
    rss_start_mb: float
    rss_after_warmup_mb: float
    rss_end_mb: float
    rss_growth_mb: float
    underruns: int
    coverups: int
    chunks: int
    clock_drift_s: float
    timeline_drift_s: float


def run_soak(model, scene, minutes: float, speed: float, rate: int = 16000, warmup: float = 0.1,
             timeline: str | None = None) -> SoakResult:
    from .audio.output import NULL_DEVICE, OutputConfig
    from .play.engine import Engine
    from .stream.scene_stream import SceneStream

    proc = psutil.Process()
    stream = SceneStream(model, scene, out_rate=rate, channels=1)
    timeline = timeline or tempfile.mktemp(suffix=".jsonl")
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", rate, 1), quiet=True, timeline=timeline,
                    sink_speed=speed)
    seconds = minutes * 60
    samples: list[tuple[float, float]] = []  # (audio seconds played, RSS MB)

    def sample():
        samples.append((engine.player.frames_played / rate, proc.memory_info().rss / 2**20))

    rss_start = proc.memory_info().rss / 2**20
    started = time.monotonic()
    with Periodic(sample, 0.5, "soak-rss"):
        result = engine.run(duration=seconds, fade_out=1.0)
    wall = time.monotonic() - started
    played = result.frames_played / rate
    after = [mb for t, mb in samples if t >= warmup * seconds] or [rss_start]
    rows = [json.loads(line) for line in open(timeline, encoding="utf-8") if '"chunk"' in line]
    timeline_drift = max((abs(r["start_s"] - stream.output_span(r["chunk"])[0]) for r in rows), default=0.0)
    # The clock started after buffering; compare played audio with the sink's elapsed clock.
    playing_wall = wall - engine.started_playing_after
    return SoakResult(
        audio_s=round(played, 2), wall_s=round(wall, 2), speed=speed, rss_start_mb=round(rss_start, 1),
        rss_after_warmup_mb=round(after[0], 1), rss_end_mb=round(after[-1], 1),
        rss_growth_mb=round(max(after) - after[0], 1), underruns=result.underruns, coverups=result.coverups,
        chunks=result.chunks, clock_drift_s=round(played - playing_wall * speed, 3),
        timeline_drift_s=round(timeline_drift, 6),
    )


def main(argv=None) -> int:
    from .model.loading import load_model
    from .model.tiny import save_tiny_pipeline
    from .scene import load_scene

    p = argparse.ArgumentParser(prog="python -m soundscape.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=120.0, help="audio to play (default 120)")
    p.add_argument("--speed", type=float, default=12.0, help="clock speed-up (the generator must keep up)")
    p.add_argument("--scene", default="scenes/forest.yaml")
    p.add_argument("--model", help="model folder (default: the tiny model, built in a temp folder)")
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)
    model_dir = args.model or str(save_tiny_pipeline(tempfile.mkdtemp() + "/tiny"))
    model = load_model(model_dir, device="cpu", quiet=True)
    scene = load_scene(args.scene)
    scene = scene.model_copy(update={"generation": scene.generation.model_copy(update={"steps": args.steps})})
    result = run_soak(model, scene, args.minutes, args.speed)
    print(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
