"""A model that makes no usable sound (issue 31): the tiny model with its vocoder's last layer zeroed, loaded
through the real loading code. `play` stops with exit code 7 and one line saying what to check, within a
bounded time, instead of sitting silent for good; the working tiny model never trips the rule."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from conftest import scene_yaml
from soundscape.audio.output import NULL_DEVICE, OutputConfig
from soundscape.errors import EXIT_NO_SOUND
from soundscape.play.engine import Engine
from soundscape.stream.first_sound import NO_SOUND_TRIES, FirstSound
from soundscape.stream.scene_stream import SceneStream

# One seed a chunk (the watchdog's tries), so the five failed tries take seconds on the tiny model.
ONE_TRY = {"quality_check": {"max_tries": 1}}


def test_play_of_a_silent_model_stops_with_exit_7_and_one_line(silent_model_dir, tmp_path):
    scene = tmp_path / "scene.yaml"
    scene.write_text(scene_yaml(ONE_TRY))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "soundscape", "play", str(scene), "--model", str(silent_model_dir),
                           "--output-device", "null", "--quiet", "--no-mpris", "--runtime", "torch", "--steps", "2",
                           "--duration", "10m"], capture_output=True, text=True, timeout=180)
    took = time.monotonic() - t0
    assert proc.returncode == EXIT_NO_SOUND == 7, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"soundscape: the model made no usable sound: {NO_SOUND_TRIES} tries at the first chunk "
                           f"failed"), proc.stderr
    assert "(last: the quality check found silence)" in last
    assert "--model" in last and "--dtype fp32" in last and "soundscape cache clear" in last
    assert "Traceback" not in proc.stderr
    assert "earlier material plays" not in proc.stderr  # there was none
    assert took < 120  # the backoff before the fifth try is 7.5 s; the rest is loading and five tiny chunks


def test_the_working_tiny_model_never_trips_it(tiny_model, scene):
    stream = SceneStream(tiny_model, scene, out_rate=16000, channels=1)
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", 16000, 1), quiet=True, capture=[], sink_speed=2.0)
    engine.run(duration=3.0, fade_out=0.3)
    assert engine.gen.first.sounded and engine.gen.first.gave_up is None and engine.gen.first.failures == 0
    assert np.abs(np.concatenate(engine.capture)).max() > 0.01


def test_the_rule_counts_only_until_the_first_usable_chunk():
    noise = np.random.default_rng(0).standard_normal(1600).astype(np.float32) * 0.1
    first = FirstSound(tries=3, seconds=60.0)
    assert first.made(np.zeros(1600), {"birds": 0.0}, -60.0) is None and first.failures == 0  # silence asked for
    assert first.failed("ChunkRejected: silence") is None
    assert first.made(np.zeros(1600), {"birds": 0.5}, -60.0) is None and first.failures == 2  # silent, asked
    assert "3 tries" in str(first.failed("RuntimeError: boom"))
    later = FirstSound(tries=1)
    assert later.made(noise, {"birds": 0.5}, -60.0) is None and later.sounded
    assert later.failed("RuntimeError: boom") is None and later.gave_up is None  # covered as before
    slow = FirstSound(tries=100, seconds=0.0)
    assert slow.failed("RuntimeError: boom") is not None  # the time bound, at a failed try


def test_quiet_audio_is_no_failure_where_the_scene_turned_its_check_off():
    # quality_check: {enabled: false} (how a model with random weights is played, at about -180 dBFS)
    first = FirstSound(tries=1)
    quiet = np.full(1600, 1e-9, dtype=np.float32)
    assert first.made(quiet, {"birds": 1.0}, None) is None and first.sounded
    # ... while audio that is not finite still counts
    broken = FirstSound(tries=1)
    assert broken.made(np.array([np.nan], dtype=np.float32), {"birds": 1.0}, None) is not None
