"""Short soak through the whole engine: flat memory, no underruns, no clock or timeline drift."""

from soundscape.scene import parse_scene
from soundscape.soak import run_soak

from conftest import scene_yaml


def test_short_soak(tiny_model, tmp_path):
    scene = parse_scene(scene_yaml({"generation": {"chunk_seconds": 5.12, "overlap_seconds": 1.28, "steps": 2}}))
    # 4x real time: at 6x an AVX2-only EPYC's tiny-model chunks (a 3.84 s hop due every 0.64 s) covered once.
    result = run_soak(tiny_model, scene, minutes=2.0, speed=4.0, timeline=str(tmp_path / "t.jsonl"))
    assert result.audio_s >= 119.9
    assert result.underruns == 0 and result.coverups == 0
    assert result.rss_growth_mb < 50, result
    assert abs(result.clock_drift_s) < 1.0, result
    assert result.timeline_drift_s < 1e-6
