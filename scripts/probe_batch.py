"""Time `next_segments` (serve's batches) for N = 1, 2, 4, 8 streams of one scene, after a warm-up batch.

    OMP_WAIT_POLICY=PASSIVE python scripts/probe_batch.py MODEL_DIR SCENE.yaml

With the tiny model (python -m soundscape.model.tiny /tmp/tiny) it shows the per-call overhead that
batching shares; for the full architecture use `soundscape bench --random-weights --batch N`.
"""

import sys
import time

from soundscape.model.loading import load_model
from soundscape.scene import load_scene
from soundscape.stream.scene_stream import SceneStream, next_segments


def main(model_dir: str, scene_path: str) -> None:
    scene = load_scene(scene_path)
    model = load_model(model_dir, device="cpu", dtype="auto", quiet=True)
    for n in (1, 2, 4, 8):
        streams = [SceneStream(model, scene, seed=k) for k in range(n)]
        next_segments(streams)  # warm-up: first chunks decode the whole chunk
        t0 = time.perf_counter()
        next_segments(streams)
        next_segments(streams)
        per_batch = (time.perf_counter() - t0) / 2
        print(f"N={n}: {per_batch:.3f} s per batch, hop {streams[0].hop_s:.2f} s, "
              f"per-stream RTF {streams[0].hop_s / per_batch:.2f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
