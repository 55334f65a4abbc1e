"""No usable sound under `serve` (issue 31): a model that makes none stops serve with exit code 7 before it
listens; a scene whose every chunk fails the watchdog ends its listener's stream while the server, and the
other scenes' listeners, go on."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from conftest import scene_yaml
from serve_client import _start, _wait_for

from soundscape.errors import EXIT_NO_SOUND

ONE_TRY = {"quality_check": {"max_tries": 1}}


def test_serve_of_a_silent_model_exits_7_before_listening(silent_model_dir, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "test.yaml").write_text(scene_yaml(ONE_TRY))
    proc = subprocess.run([sys.executable, "-m", "soundscape", "serve", "--model", str(silent_model_dir), "--port", "0",
                           "--scenes", str(scenes), "--runtime", "torch", "--steps", "2", "--quiet"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == EXIT_NO_SOUND, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("soundscape: the model made no usable sound: 5 tries at the first chunk failed"), last
    assert "serve: listening" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_scene_that_never_sounds_ends_its_listener_and_no_other(tiny_model_dir, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "a.yaml").write_text(scene_yaml())  # the first scene: the one serve calibrates on
    # Every chunk of the tiny model (about -20 dBFS) is quieter than 0 dBFS: the watchdog calls it silence.
    (scenes / "mute.yaml").write_text(scene_yaml({"quality_check": {"max_tries": 1, "silence_db": 0}}))
    log = tmp_path / "serve.log"
    proc, url = _start([sys.executable, "-m", "soundscape", "serve", "--model", str(tiny_model_dir), "--port", "0",
                        "--scenes", str(scenes), "--steps", "2", "--runtime", "torch"], log)
    base = url.rstrip("/")
    try:
        t0 = time.monotonic()
        with urllib.request.urlopen(base + "/stream/mute?format=opus", timeout=60) as response:
            number = response.headers["X-Listener-Number"]
            assert response.read() == b""  # ended, empty: never silence passed off as sound
        assert time.monotonic() - t0 < 60
        assert _wait_for(lambda: f"serve: listener {number} (mute): the model made no usable sound" in log.read_text())
        assert proc.poll() is None
        assert urllib.request.urlopen(base + "/healthz", timeout=10).status == 200
        with urllib.request.urlopen(base + "/stream/a?format=opus", timeout=60) as response:
            assert len(response.read(4096)) == 4096  # another scene's listener hears its stream
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()
