"""`serve --budget`: the hub's one loop takes the budget, every listener's status reports it, and the loop
idles with nobody listening (in process: the Hub and its listeners, real tiny model, no HTTP)."""

import time

from conftest import SCENE_DATA, merged, scene_yaml, wait_for
from soundscape.serve.hub import Hub, load_scenes

QUICK = {"generation": {"chunk_seconds": 2.56, "overlap_seconds": 0.64, "steps": 3},
         "output": {"sample_rate": 16000, "channels": 1}}


def test_a_budget_reaches_every_listener_and_nobody_listening_means_no_work(tiny_model, tmp_path):
    (tmp_path / "quiet.yaml").write_text(scene_yaml(merged(SCENE_DATA, QUICK)))
    hub = Hub(tiny_model, load_scenes(tmp_path), max_listeners=2, budget=40)
    hub.start()
    try:
        listener = hub.join("quiet", seed=3, fmt="opus")
        wait_for(lambda: listener.gen.stats.chunks >= 1, timeout=120)
        status = listener.playback.status()
        assert status["budget_percent"] == 40 and status["generator_priority"] in ("SCHED_IDLE", "nice 19")
        wait_for(lambda: listener.gen.holding, timeout=120)  # nothing pulled: its next segment waits, no batch runs
        hub.leave(listener)
        batches = hub.loop.batches
        time.sleep(1.0)
        assert hub.loop.batches == batches  # nobody listens: the loop makes nothing
    finally:
        hub.stop()
        hub.loop.join(timeout=60)
