"""Start-up time and memory of `play`'s path with text encoders resident, on demand (cold prompt
cache) and on demand with a warm prompt cache, each in a fresh process, back to back.

  python scripts/probe_start.py MODEL_DIR [--chunks 2] [--quality balanced]

MODEL_DIR: a diffusers folder, e.g. the full architecture with random weights saved in bf16:
  python -c "import torch; from soundscape.model.architecture import build_random_audioldm2 as b; \\
             b(dtype=torch.bfloat16).pipe.save_pretrained('/tmp/full')"
Prints one JSON line per variant: load_s, first_chunk_s (prompts encoded included), text_loads,
RSS after load and peak RSS while making the chunks, whole and less file-backed pages (psutil, every
20 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, threading, time
import psutil
args = json.loads(sys.argv[1])
proc = psutil.Process()
peak = [0, 0]  # RSS, and RSS less file-backed pages (mapped weights the kernel can drop and read again)
def sample():
    while True:
        info = proc.memory_info()
        peak[0], peak[1] = max(peak[0], info.rss), max(peak[1], info.rss - info.shared)
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
from soundscape.model.loading import load_model
from soundscape.scene import parse_scene
from soundscape.stream.scene_stream import SceneStream
t0 = time.perf_counter()
model = load_model(args["model"], dtype="bf16", quiet=True, keep_encoders=args["keep"])
load_s = time.perf_counter() - t0
rss_loaded = proc.memory_info().rss
scene = parse_scene(args["scene"])
t1 = time.perf_counter()
stream = SceneStream(model, scene, quality=args["quality"])
first = None
for i in range(args["chunks"]):
    stream.next_segment()
    first = first or time.perf_counter() - t1
print(json.dumps({"variant": args["variant"], "load_s": round(load_s, 2), "first_chunk_s": round(first, 2),
                  "text_loads": model.text_loads, "encoded": stream.encoder.encoded,
                  "rss_after_load_mib": round(rss_loaded / 2**20), "peak_rss_mib": round(peak[0] / 2**20),
                  "peak_rss_not_file_backed_mib": round(peak[1] / 2**20)}))
"""

SCENE = """\
name: probe
seed: 3
negative_prompt: low quality
layers:
  birds: {prompt: birds chirping and singing in a forest in the morning, weight: 0.8}
  stream: {prompt: a small stream of water trickling over rocks, weight: 0.5}
  wind: {prompt: wind blowing through the leaves of trees, weight: 0.3}
quality_check: {enabled: false}
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--chunks", type=int, default=2)
    p.add_argument("--quality", default="balanced")
    a = p.parse_args()
    cache = tempfile.mkdtemp(prefix="probe-start-")
    env = {**os.environ, "XDG_CACHE_HOME": cache}
    # Cold first: every variant writes the prompt cache they share.
    for variant, keep in (("on demand, cold prompt cache", False), ("on demand, warm prompt cache", False),
                          ("resident (--keep-encoders)", True)):
        args = {"model": a.model, "keep": keep, "scene": SCENE, "quality": a.quality, "chunks": a.chunks,
                "variant": variant}
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], env=env, capture_output=True,
                             text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("{")]
        print(line[-1] if line else f"{variant}: failed\n{out.stderr[-2000:]}", flush=True)
    print(json.dumps({"load_avg": os.getloadavg(), "cpu": _cpu()}))


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "?"


if __name__ == "__main__":
    main()
