"""A running `play` controlled for real: Unix socket round-trips, hot reload, tweak latency."""

import json
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import scene_yaml
from soundscape.cli import main

LIVE = {"name": "Live", "seed": 5,
        "layers": {"birds": {"prompt": "birds singing", "weight": 0.8},
                   "stream": {"prompt": "a stream of water", "weight": 0.4}},
        "generation": {"chunk_seconds": 2.56, "overlap_seconds": 0.64, "steps": 3, "guidance_scale": 3.0},
        "evolution": {"drift": {"depth": 0, "period_seconds": 60}, "transition_seconds": 2},
        "output": {"fade_in_seconds": 0.5, "sample_rate": 16000, "channels": 1}}
SCENE = scene_yaml(base=LIVE)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture()
def player(tmp_path, tiny_model_dir):
    scene = tmp_path / "live.yaml"
    scene.write_text(SCENE)
    sock, timeline = tmp_path / "ctl" / "player.sock", tmp_path / "t.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "soundscape", "play", str(scene), "--model", str(tiny_model_dir),
                             "--output-device", "null", "--control", str(sock), "--timeline", str(timeline)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sock.exists() and len([r for r in rows(timeline) if "chunk" in r]) >= 2)
        yield proc, scene, sock, timeline
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_set_status_reload_and_latency(player, capsys):
    proc, scene, sock, timeline = player
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

    assert main(["status", "--json", "--control", str(sock)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["scene"] == "Live" and set(status["layers"]) == {"birds", "stream"}
    assert status["elapsed_s"] >= 0 and status["underruns"] == 0

    assert main(["set", "--control", str(sock), "birds=0"]) == 0
    assert "set birds=0" in capsys.readouterr().out
    assert main(["set", "--control", str(sock), "owls=0.5"]) == 2
    assert "no layer 'owls'; layers are: birds, stream" in capsys.readouterr().err
    assert main(["set", "--control", str(sock), "birds=2"]) == 2
    assert main(["set", "--control", str(sock / "nope"), "birds=0"]) == 5

    # The tweak is heard within one chunk hop plus one generation time.
    heard = wait_for(lambda: [r for r in rows(timeline) if r.get("event") == "tweak_heard"])[0]
    chunks = [r for r in rows(timeline) if "chunk" in r]
    hop = chunks[0]["end_s"] - chunks[0]["start_s"]
    assert 0 <= heard["latency_s"] <= hop + max(r["gen_s"] for r in chunks) + 0.5, heard
    # ...and once the transition is over, chunks carry exactly that weight.
    wait_for(lambda: [r for r in rows(timeline) if "chunk" in r and r["weights"]["birds"] == 0.0])

    # A broken edit is reported and ignored: the player keeps going.
    n_before = len(rows(timeline))
    broken = scene_yaml({"layers": {"stream": {"weight": "loud"}}}, base=LIVE)
    scene.write_text(broken)
    loud_line = 1 + next(i for i, line in enumerate(broken.splitlines()) if "loud" in line)
    wait_for(lambda: len(rows(timeline)) > n_before + 2)
    assert proc.poll() is None
    # A valid edit changes the weights within the promised time.
    scene.write_text(scene_yaml({"layers": {"stream": {"weight": 0.9}}}, base=LIVE))
    reload_heard = wait_for(lambda: [r for r in rows(timeline)
                                     if r.get("event") == "tweak_heard" and r["kind"] == "reload"])[0]
    assert reload_heard["latency_s"] <= hop + max(r["gen_s"] for r in chunks) + 1.0
    wait_for(lambda: [r for r in rows(timeline) if "chunk" in r and r["weights"]["stream"] == 0.9])

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"live.yaml:{loud_line}: layers.stream.weight: expected a number from 0 to 1, got \"loud\" " \
           "(keeping the last good scene)" in err
    assert "Traceback" not in err
    assert not sock.exists()
