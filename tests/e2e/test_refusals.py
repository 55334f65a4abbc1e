"""Every refused request changes nothing (issue 31): a running player (the tiny model, a null device) is sent
each request its doors refuse, and its whole state (pause, volume, width, weights, sleep timer, wake alarm,
scene) is compared before and after. A wake with a fade of 0 or over 3 h once answered `ok: false` and armed
the alarm anyway, which then turned the sleep timer's end into a pause."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import SCENE, wait_for
from soundscape.play.control_socket import request as control

REFUSED = [
    {"cmd": "wake", "at": "+30m", "fade_s": 0},
    {"cmd": "wake", "at": "+30m", "fade_s": 4 * 3600},
    {"cmd": "wake", "at": "+30m", "fade_s": -5},
    {"cmd": "wake", "at": "+25h"},
    {"cmd": "wake", "at": "25:00"},
    {"cmd": "timer", "action": "set", "seconds": -1},
    {"cmd": "timer", "action": "extend", "seconds": "forever"},
    {"cmd": "volume", "volume": 2},
    {"cmd": "volume", "volume": "loud"},
    {"cmd": "width", "width": 5},
    {"cmd": "pause", "fade_s": -1},
    {"cmd": "stop", "fade_s": -1},
    {"cmd": "set", "weights": {"birds": 2}},
    {"cmd": "set", "weights": {"birds": 0.2, "nope": 0.5}},  # one good weight beside a bad layer: neither
    {"cmd": "prompt", "layer": "birds", "prompt": ""},
    {"cmd": "remove", "layer": "nope"},
    {"cmd": "fly"},
]


def _state(sock) -> dict:
    """The player's state, less what moves by itself while it plays (times, levels, counters)."""
    s = control(sock, {"cmd": "status"})["status"]
    wake = {k: v for k, v in (s.get("wake") or {}).items() if k != "in_s"}
    sleep = {k: v for k, v in (s.get("sleep") or {}).items() if k != "remaining_s"}
    return {"paused": s["paused"], "volume": s["volume"], "width": s["width"], "weights": s["set_weights"],
            "stopping": s["stopping"], "scene": s.get("scene"), "wake": wake, "sleep": sleep}


@pytest.fixture(scope="module")
def player(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("refusals")
    scene, sock = folder / "scene.yaml", folder / "ctl" / "p.sock"
    scene.write_text(SCENE)
    proc = subprocess.Popen([sys.executable, "-m", "soundscape", "play", str(scene), "--model", str(tiny_model_dir),
                             "--output-device", "null", "--quiet", "--control", str(sock), "--steps", "2",
                             "--sleep", "2h", "--wake", "+3h", "--wake-fade", "5m", "--no-mpris"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proc.poll() is None and sock.exists() and control(sock, {"cmd": "status"}).get("ok"), 180)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("req", REFUSED, ids=lambda r: str(r)[:60])
def test_a_refused_request_changes_nothing(player, req):
    before = _state(player)
    reply = control(player, req)
    assert reply.get("ok") is False and reply.get("error"), reply
    assert _state(player) == before
