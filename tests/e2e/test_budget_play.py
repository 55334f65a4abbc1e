"""`play --budget` from the command line to `status --json`: the flag reaches the generator loop."""

import json
import signal
import subprocess
import sys

from conftest import scene_yaml, wait_for
from soundscape.cli import main

QUICK = {"generation": {"chunk_seconds": 2.56, "overlap_seconds": 0.64, "steps": 3},
         "output": {"sample_rate": 16000, "channels": 1}}


def test_play_with_a_budget_reports_it_and_its_fresh_share(tmp_path, tiny_model_dir, capsys):
    scene = tmp_path / "quiet.yaml"
    scene.write_text(scene_yaml(QUICK))
    sock = tmp_path / "ctl" / "player.sock"
    proc = subprocess.Popen([sys.executable, "-m", "soundscape", "play", str(scene), "--model", str(tiny_model_dir),
                             "--output-device", "null", "--control", str(sock), "--budget", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def status():
            if not sock.exists() or main(["status", "--json", "--control", str(sock)]) != 0:
                capsys.readouterr()
                return None
            out = json.loads(capsys.readouterr().out)
            return out if out["chunks"] >= 2 else None

        s = wait_for(status, timeout=120)
        assert s["budget_percent"] == 50 and s["generator_priority"] in ("SCHED_IDLE", "nice 19"), s
        assert 0 < s["fresh_percent"] <= 100 and s["underruns"] == 0, s
        assert "repeat_distance_s" in s, s  # the weave's figure: null until something repeats
        assert main(["status", "--control", str(sock)]) == 0
        assert f"(budget 50 %, generator at {s['generator_priority']})" in capsys.readouterr().out
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
