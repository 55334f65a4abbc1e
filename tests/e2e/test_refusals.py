"""Every refused request changes nothing (issue 31), through every door: one running player (the tiny model, a
null device, --web, its media controls on a private session bus) is sent each request its control socket, its
web mixer's /api/* and its MPRIS object refuse, and one `serve` listener each body its control endpoint
refuses; the whole state (the status as `status --json` shows it: pause, volume, width, layers and their set
weights, sleep timer, wake alarm, scene, stopping; less what moves by itself while it plays) is compared before
and after. A wake with a fade of 0 or over 3 h once answered `ok: false` and armed the alarm anyway, which then
turned the sleep timer's end into a pause. One rule checks them all (stream/control_requests.py, then
LiveControl's plan): the last tests show that an accepted request does change the state compared here."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request

import pytest

from conftest import SCENE, wait_for
from serve_client import _start
from soundscape.play.control_socket import request as control

NAN = float("nan")
SOCKET = [
    {"cmd": "wake", "at": "+30m", "fade_s": 0},
    {"cmd": "wake", "at": "+30m", "fade_s": 4 * 3600},
    {"cmd": "wake", "at": "+30m", "fade_s": -5},
    {"cmd": "wake", "at": "+30m", "fade_s": "soon"},
    {"cmd": "wake", "at": "+25h"},
    {"cmd": "wake", "at": "25:00"},
    {"cmd": "wake", "at": 7},
    {"cmd": "wake"},  # no time
    {"cmd": "timer", "action": "set", "seconds": -1},
    {"cmd": "timer", "action": "set", "seconds": 0},
    {"cmd": "timer", "action": "set", "seconds": "30h"},
    {"cmd": "timer", "action": "set"},  # no seconds
    {"cmd": "timer", "action": "extend", "seconds": "forever"},
    {"cmd": "timer", "action": "snooze", "seconds": 60},
    {"cmd": "volume", "volume": 2},
    {"cmd": "volume", "volume": -0.1},
    {"cmd": "volume", "volume": "loud"},
    {"cmd": "volume", "volume": NAN},
    {"cmd": "volume", "volume": True},
    {"cmd": "width", "width": 5},
    {"cmd": "width", "width": NAN},
    {"cmd": "pause", "fade_s": -1},
    {"cmd": "pause", "fade_s": 600},
    {"cmd": "toggle", "fade_s": "slowly"},
    {"cmd": "stop", "fade_s": -1},
    {"cmd": "stop", "fade_s": 600},
    {"cmd": "set", "weights": {"birds": 2}},
    {"cmd": "set", "weights": {"birds": NAN}},
    {"cmd": "set", "weights": {"birds": 0.2, "nope": 0.5}},  # one good weight beside a bad layer: neither
    {"cmd": "set", "weights": {}},
    {"cmd": "prompt", "layer": "birds", "prompt": ""},
    {"cmd": "prompt", "layer": "owls at night", "prompt": "owls"},
    {"cmd": "add", "layer": "birds", "prompt": "more birds"},
    {"cmd": "add", "layer": "owls", "prompt": "owls", "weight": 3},
    {"cmd": "remove", "layer": "nope"},
    {"cmd": "volume", "volume": 0.5, "fade_s": 1},  # an unknown key beside a good value
    {"cmd": "fly"},
    ["volume", 0.5],
]
# The web mixer: (method, path, body).
WEB = [
    ("POST", "/api/wake", {"at": "+30m", "fade_seconds": 0}),
    ("POST", "/api/wake", {"at": "+30m", "fade_seconds": 4 * 3600}),
    ("POST", "/api/wake", {"at": "+25h"}),
    ("POST", "/api/wake", {"at": "7 o'clock"}),
    ("POST", "/api/wake", {"action": "set"}),
    ("POST", "/api/timer", {"action": "set", "seconds": 0}),
    ("POST", "/api/timer", {"action": "set", "seconds": "30h"}),
    ("POST", "/api/timer", {"action": "extend"}),
    ("PUT", "/api/volume", {"volume": NAN}),
    ("PUT", "/api/volume", {"volume": "loud"}),
    ("PUT", "/api/volume", {"volume": 1.5}),
    ("PUT", "/api/width", {"width": 5}),
    ("POST", "/api/pause", {"action": "sleep"}),
    ("POST", "/api/stop", {"fade_seconds": 600}),
    ("POST", "/api/weights", {"weights": {"birds": 0.2, "nope": 0.5}}),
    ("POST", "/api/weights", {"weights": {"birds": 2}}),
    ("POST", "/api/layers", {"name": "birds", "prompt": "more birds", "weight": 0.5}),
    ("POST", "/api/layers", {"name": "owls", "prompt": "owls", "weight": -1}),
    ("PUT", "/api/layers/birds", {"prompt": ""}),
    ("DELETE", "/api/layers/nope", None),
]
# The media controls (dbus-send arguments), each refused with an error reply.
PLAYER, PROPS = "org.mpris.MediaPlayer2.Player", "org.freedesktop.DBus.Properties"
MPRIS = [
    [f"{PROPS}.Set", f"string:{PLAYER}", "string:Volume", "variant:string:loud"],
    [f"{PROPS}.Set", f"string:{PLAYER}", "string:Volume", "variant:double:nan"],
    [f"{PROPS}.Set", f"string:{PLAYER}", "string:Volume", "variant:boolean:true"],
    [f"{PROPS}.Set", f"string:{PLAYER}", "string:Volume", "double:0.2"],  # a bare double, not a variant
    [f"{PROPS}.Set", f"string:{PLAYER}", "string:Shuffle", "variant:boolean:true"],  # a property it lacks
    ["com.example.Player.Pause"],  # the right member on another interface
]
# What moves by itself while a player plays (times, levels, counters, the last chunk's drifting weights).
MOVING = {"elapsed_s", "buffered_s", "generator_rtf", "chunks", "steps", "weights", "coverups", "fresh_percent",
          "underruns", "audio", "generator_errors", "encoding"}


def full_state(status: dict) -> dict:
    """The status, less what moves by itself; the alarm's and the timer's countdowns left out too."""
    state = {k: v for k, v in status.items() if k not in MOVING}
    if state.get("wake"):
        state["wake"] = {k: v for k, v in state["wake"].items() if k != "in_s"}
    if state.get("sleep"):
        state["sleep"] = {k: v for k, v in state["sleep"].items() if k != "remaining_s"}
    return state


class Player:
    """`soundscape play` with every door open, and how to knock on each."""

    def __init__(self, folder, model, bus: str | None):
        self.sock, self.bus = folder / "ctl" / "p.sock", bus
        scene = folder / "scene.yaml"
        scene.write_text(SCENE)
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=bus) if bus else \
            {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "soundscape", "play", str(scene), "--model", str(model), "--output-device", "null",
             "--quiet", "--control", str(self.sock), "--steps", "2", "--sleep", "2h", "--wake", "+3h",
             "--wake-fade", "5m", "--web", "--runtime", "torch"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=lambda: [self.lines.append(line) for line in self.proc.stderr], daemon=True).start()
        wait_for(lambda: self.proc.poll() is None and self.sock.exists() and self.web_url()
                 and control(self.sock, {"cmd": "status"}).get("ok"), 180)
        found = re.match(r"web: http://127\.0\.0\.1:(\d+)/\?token=(\S+)", self.web_url())
        self.port, self.token = int(found.group(1)), found.group(2)

    def web_url(self) -> str | None:
        return next((line.strip() for line in self.lines if line.startswith("web: http://")), None)

    def state(self) -> dict:
        return full_state(control(self.sock, {"cmd": "status"})["status"])

    def web(self, method: str, path: str, body) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Host": f"127.0.0.1:{self.port}", "X-Soundscape-Token": self.token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        res = conn.getresponse()
        out = res.status, json.loads(res.read() or b"{}")
        conn.close()
        return out

    def mpris(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["dbus-send", "--session", "--print-reply", "--reply-timeout=2000",
                               "--dest=org.mpris.MediaPlayer2.soundscape", "/org/mpris/MediaPlayer2", *args],
                              capture_output=True, text=True, timeout=10,
                              env=dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.bus))


@pytest.fixture(scope="module")
def player(tiny_model_dir, tmp_path_factory):
    bus = None
    if shutil.which("dbus-daemon") and shutil.which("dbus-send"):
        daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                                  stdout=subprocess.PIPE, text=True)
        bus = daemon.stdout.readline().strip()
    p = Player(tmp_path_factory.mktemp("refusals"), tiny_model_dir, bus)
    try:
        yield p
    finally:
        p.proc.terminate()
        p.proc.wait(timeout=30)
        if bus:
            daemon.terminate()
            daemon.wait(timeout=10)


@pytest.mark.parametrize("req", SOCKET, ids=lambda r: str(r)[:60])
def test_a_refused_socket_request_changes_nothing(player, req):
    before = player.state()
    reply = control(player.sock, req)
    assert reply.get("ok") is False and reply.get("error"), reply
    assert "\n" not in reply["error"] and "internal error" not in reply["error"]
    assert player.state() == before


@pytest.mark.parametrize("method, path, body", WEB, ids=lambda x: str(x)[:50])
def test_a_refused_web_request_changes_nothing(player, method, path, body):
    before = player.state()
    status, reply = player.web(method, path, body)
    assert status == 400 and reply.get("ok") is False and reply.get("error"), reply
    assert player.state() == before


@pytest.mark.parametrize("args", MPRIS, ids=lambda a: " ".join(a)[-40:])
def test_a_refused_media_control_call_changes_nothing(player, args):
    if player.bus is None:
        pytest.skip("needs dbus-daemon and dbus-send (apt: dbus)")
    before = player.state()
    out = player.mpris(*args)
    assert out.returncode != 0 and "Error" in out.stderr, out.stdout + out.stderr
    assert player.state() == before


def test_an_accepted_request_does_change_the_state_compared(player):
    """The comparison can fail: each door's good request moves what the refused ones left alone."""
    before = player.state()
    assert control(player.sock, {"cmd": "wake", "at": "+4h", "fade_s": 60})["ok"]
    assert player.state()["wake"]["fade_s"] == 60 != before["wake"]["fade_s"]
    assert player.web("PUT", "/api/volume", {"volume": 0.3}) == (200, {"ok": True, "applied": {"volume": 0.3}})
    assert player.state()["volume"] == 0.3 != before["volume"]


# serve: a listener's control endpoint (the same LiveControl, without a transport) --------------------------

SERVE = [
    {"weights": {"birds": 2}},
    {"weights": {"birds": 0.2, "nope": 0.5}},
    {"cmd": "set", "weights": {"birds": NAN}},
    {"cmd": "width", "width": 5},
    {"cmd": "prompt", "layer": "birds", "prompt": ""},
    {"cmd": "add", "layer": "birds", "prompt": "more birds"},
    {"cmd": "remove", "layer": "nope"},
    {"cmd": "volume", "volume": 0.5},  # a transport command: serve's streams have none
    {"cmd": "wake", "at": "+1h"},
    {"cmd": "fly"},
]


@pytest.fixture(scope="module")
def listener(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-refusals")
    (folder / "scenes").mkdir()
    (folder / "scenes" / "test.yaml").write_text(SCENE)
    proc, url = _start([sys.executable, "-m", "soundscape", "serve", "--model", str(tiny_model_dir), "--port", "0",
                        "--scenes", str(folder / "scenes"), "--steps", "2", "--runtime", "torch"], folder / "serve.log")
    base = url.rstrip("/")
    stream = urllib.request.urlopen(base + "/stream/test?format=opus", timeout=60)
    listener_id = stream.headers["X-Listener-Id"]
    reading = threading.Thread(target=lambda: [None for _ in iter(lambda: stream.read(4096), b"")], daemon=True)
    reading.start()

    def post(body) -> tuple[int, dict]:
        req = urllib.request.Request(f"{base}/listeners/{listener_id}/set", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, json.loads(res.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        yield post
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stream.close()


def _serve_state(post) -> dict:
    status, reply = post({"cmd": "status"})
    assert status == 200, reply
    return full_state(reply["status"])


@pytest.mark.parametrize("body", SERVE, ids=lambda b: str(b)[:60])
def test_a_refused_serve_control_changes_nothing(listener, body):
    before = _serve_state(listener)
    status, reply = listener(body)
    assert status == 400 and reply.get("ok") is False and reply.get("error"), reply
    assert _serve_state(listener) == before


def test_an_accepted_serve_control_does_change_the_state_compared(listener):
    before = _serve_state(listener)
    assert listener({"cmd": "width", "width": 0.25}) == (200, {"ok": True, "applied": {"width": 0.25}})
    assert _serve_state(listener)["width"] == 0.25 != before["width"]
