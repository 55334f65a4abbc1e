"""Hostile and careless clients at every door, on the real surfaces: a real `serve` and a real
`play --web` on loopback answering raw HTTP, and the player's control socket fed raw bytes.

One server and one player (the tiny model, playing in real time into the null sink) are shared by
the tests here. Whatever is sent, the answer is one line, nothing changes, the player keeps playing
with no underrun, and neither log holds a traceback.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import SCENE
from serve_client import _metrics, _start, _wait_for

DEEP = "[" * 30000 + "]" * 30000  # under the 64 KiB cap, far past any parser's recursion
HUGE = "9" * 400


def ask(port: int, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None,
        host: str | None = None) -> tuple[int, dict, str]:
    """One raw request with exactly these headers (http.client adds no Host of its own)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    if data is not None:
        conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    res = conn.getresponse()
    text = res.read(100_000).decode("utf-8", "replace")
    conn.close()
    return res.status, dict(res.getheaders()), text


JSON = {"Content-Type": "application/json"}


# --- serve ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("doors-serve")
    scenes = folder / "scenes"
    scenes.mkdir()
    (scenes / "test.yaml").write_text(SCENE)
    log = folder / "serve.log"
    proc, url = _start([sys.executable, "-m", "soundscape", "serve", "--model", str(tiny_model_dir), "--port", "0",
                        "--scenes", str(scenes), "--max-listeners", "2"], log)
    yield {"base": url.rstrip("/"), "port": int(url.rstrip("/").rsplit(":", 1)[1]), "proc": proc, "log": log}
    proc.terminate()
    proc.wait(timeout=30)


def _listen(server) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    conn.request("GET", "/stream/test?seed=3")
    res = conn.getresponse()
    res.conn = conn
    assert res.status == 200
    res.read(2000)  # audio is flowing
    return res


def _hang_up(res) -> None:
    res.conn.sock.close()
    res.conn.close()


def test_serve_without_a_token_refuses_foreign_hosts_and_origins(server):
    port = server["port"]
    for path in ("/", "/metrics", "/stream/test"):
        assert ask(port, "GET", path, host="evil.example")[0] == 421
        assert ask(port, "GET", path, host=f"evil.example:{port}")[0] == 421
    assert ask(port, "GET", "/healthz", host=f"localhost:{port}")[0] == 200
    status, _, text = ask(port, "POST", "/listeners/x/set", '{"weights": {"birds": 0.1}}',
                          {**JSON, "Origin": "http://evil.example"})
    assert status == 403 and "other sites" in text
    assert ask(port, "GET", "/metrics", headers={"Origin": "http://evil.example"})[0] == 200  # reads are same-origin


def test_serve_control_bodies_are_json_capped_and_checked(server):
    port = server["port"]
    res = _listen(server)
    lid = res.getheader("X-Listener-Id")
    assert len(lid) >= 22  # 128 random bits
    path = f"/listeners/{lid}/set"

    def status() -> dict:
        code, _, text = ask(port, "POST", path, '{"cmd": "status"}', JSON)
        assert code == 200, text
        return json.loads(text)["status"]

    before = status()
    cases = [
        ('{"weights": {"birds": 0.1}}', {"Content-Type": "text/plain"}, "expected a JSON body"),
        ('{"weights": {"birds": 0.1}, "pad": "' + "x" * 200_000 + '"}', JSON, "larger than 65536 bytes"),
        (DEEP, JSON, "nested too deeply"),
        ('{"weights": {"birds": ' + HUGE + "}}", JSON, "a number of 400 digits"),
        ('{"cmd": "prompt", "layer": "birds", "prompt": "caf\\ud800"}', JSON, "lone surrogate"),
        ('{"cmd": "add", "layer": "owls", "prompt": "hoo\\u0007t"}', JSON, "control characters"),
        ('{"cmd": "remove", "layer": ["birds"]}', JSON, "layer: expected a layer name"),
        ('{"weights": {"birds": 1e999}}', JSON, "a number too large to hold"),
        ('{"cmd": "stop"}', JSON, "cmd: expected one of"),
    ]
    for body, headers, message in cases:
        code, _, text = ask(port, "POST", path, body, headers)
        assert code == 400 and message in json.loads(text)["error"], (body[:60], text)
        assert "\n" not in json.loads(text)["error"]
    after = status()
    assert after["layers"] == before["layers"] and after["weights"].keys() == before["weights"].keys()
    # A valid change still goes through, and only through this listener's own id.
    code, _, text = ask(port, "POST", path, '{"weights": {"birds": 0.2}}', JSON)
    assert code == 200 and json.loads(text)["applied"] == {"birds": 0.2}
    assert ask(port, "POST", f"/listeners/{lid[:-1]}x/set", '{"weights": {"birds": 0.2}}', JSON)[0] == 404
    _hang_up(res)
    log = server["log"].read_text()
    assert "Traceback" not in log and "failed" not in log


def test_metrics_counters_never_fall_and_show_no_listener_id(server):
    from prometheus_client.parser import text_string_to_metric_families

    def counters() -> tuple[dict, str]:
        text = ask(server["port"], "GET", "/metrics")[2]
        out = {}
        for family in text_string_to_metric_families(text):
            if family.type == "counter":
                for s in family.samples:
                    out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
        return out, text

    assert _wait_for(lambda: _metrics(server["base"])["soundscape_listeners"] == 0, 15)
    before, _ = counters()
    # HEAD answers a stream's headers and admits no one.
    code, headers, _ = ask(server["port"], "HEAD", "/stream/test")
    assert code == 200 and headers["content-type"].startswith("audio/ogg")
    assert counters()[0]["soundscape_listeners_joined_total{}"] == before["soundscape_listeners_joined_total{}"]
    res = _listen(server)
    lid = res.getheader("X-Listener-Id")
    assert _wait_for(lambda: counters()[0]["soundscape_chunks_total{}"] > before["soundscape_chunks_total{}"], 30)
    during, text = counters()
    assert lid not in text and f'listener="{res.getheader("X-Listener-Number")}"' in text
    _hang_up(res)
    assert _wait_for(lambda: _metrics(server["base"])["soundscape_listeners"] == 0, 15)
    after, text = counters()
    assert lid not in text
    for earlier in (before, during):
        for key, value in earlier.items():
            if key in after:
                assert after[key] >= value, f"{key} fell from {value} to {after[key]}"
    assert after["soundscape_chunks_total{}"] >= during["soundscape_chunks_total{}"] > 0
    assert after["soundscape_listeners_joined_total{}"] == before["soundscape_listeners_joined_total{}"] + 1


# --- play --web and its control socket ------------------------------------------------------------

class Player:
    def __init__(self, folder: Path, model: Path):
        self.scene = folder / "scene.yaml"
        self.scene.write_text(SCENE)
        self.sock, self.timeline = folder / "ctl" / "player.sock", folder / "t.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "soundscape", "play", str(self.scene), "--model", str(model), "--output-device",
             "null", "--web", "--control", str(self.sock), "--timeline", str(self.timeline), "--prefill", "8"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(line.rstrip("\n") for line in self.proc.stderr),
                         daemon=True).start()

    @property
    def url(self) -> str | None:
        found = [line for line in self.lines if line.startswith("web: http://")]
        return found[0].removeprefix("web: ") if found else None

    def status(self, timeout: float = 5.0) -> dict:
        return json.loads(self.raw(b'{"cmd": "status"}\n', timeout))["status"]

    def raw(self, data: bytes, timeout: float = 10.0) -> str:
        """Bytes to the control socket; the one-line reply."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(str(self.sock))
        s.sendall(data)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        s.close()
        return reply.decode()


@pytest.fixture(scope="module")
def player(tiny_model_dir, tmp_path_factory):
    p = Player(tmp_path_factory.mktemp("doors-play"), tiny_model_dir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert p.proc.poll() is None, "\n".join(p.lines)
        if p.url and p.sock.exists():
            try:
                if p.status()["elapsed_s"] > 0.5:  # sound has started
                    break
            except (OSError, ValueError):
                pass
        time.sleep(0.2)
    p.port, p.token = int(p.url.split(":")[2].split("/")[0]), p.url.split("token=")[1]
    yield p
    if p.proc.poll() is None:
        p.proc.send_signal(signal.SIGTERM)
    p.proc.wait(timeout=30)
    assert "Traceback" not in "\n".join(p.lines)


def test_control_socket_answers_malformed_lines_in_one_line_and_plays_on(player):
    lines = [
        DEEP.encode() + b"\n",
        b'{"cmd": "set", "weights": {"birds": ' + HUGE.encode() + b"}}\n",
        b'{"cmd": "stop", "fade_s": ' + HUGE.encode() + b"}\n",
        b'{"cmd": "timer", "action": "set", "seconds": ' + HUGE.encode() + b"}\n",
        b'{"cmd": "remove", "layer": ["birds"]}\n',
        b'{"cmd": "prompt", "layer": "birds", "prompt": "caf\\udce9"}\n',
        b'{"cmd": "prompt", "layer": "birds", "prompt": "caf\xe9"}\n',
        b'{"cmd": ["status"]}\n', b"[1, 2]\n", b"not json\n", b'{"cmd": "set", "weights": {"birds": NaN}}\n',
    ]
    for line in lines:
        reply = player.raw(line)
        assert reply.count("\n") == 1 and json.loads(reply)["ok"] is False, (line[:60], reply)
        assert player.proc.poll() is None, "\n".join(player.lines)
    status = player.status()
    assert status["layers"]["birds"] == "birds singing in a forest" and status["underruns"] == 0


def test_a_trickled_request_never_holds_the_player(player):
    before = player.status()["underruns"]
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(player.sock))
    s.setblocking(False)
    waits, reply = [], b""
    started = time.monotonic()
    for byte in b'{"cmd": "status"}\n'[:8]:  # one byte every 0.8 s: the request never arrives whole in time
        try:
            s.send(bytes([byte]))
        except OSError:
            break
        t0 = time.monotonic()
        player.status(timeout=2.0)  # others are answered meanwhile, at once
        waits.append(time.monotonic() - t0)
        time.sleep(0.8)
        try:
            reply += s.recv(4096)
        except BlockingIOError:
            pass
        if reply:
            break
    s.close()
    assert b"did not arrive whole within 2 s" in reply and time.monotonic() - started < 5
    assert max(waits) < 1.0, waits
    assert player.status()["underruns"] == before == 0


def _mixer(player, method, path, body=None, headers=None):
    return ask(player.port, method, path, body, {"X-Soundscape-Token": player.token, **(headers or {})})


def test_mixer_answers_hostile_bodies_with_400_and_changes_nothing(player):
    before = player.status()
    cases = [
        ("POST", "/api/weights", DEEP, JSON, "nested too deeply"),
        ("POST", "/api/weights", '{"weights": {"birds": ' + HUGE + "}}", JSON, "a number of 400 digits"),
        ("PUT", "/api/layers/birds", '{"prompt": "caf\\ud800"}', JSON, "lone surrogate"),
        ("POST", "/api/layers", '{"name": "owls", "prompt": "\\u0000hoot", "weight": 0.5}', JSON, "control char"),
        ("POST", "/api/layers", '{"name": "o\\ud800", "prompt": "hoot", "weight": 0.5}', JSON, "lone surrogate"),
        ("POST", "/api/stop", '{"fade_seconds": ' + HUGE + "}", JSON, "a number of 400 digits"),
        ("POST", "/api/weights", '{"weights": {"birds": 0.1}}', {"Content-Type": "text/plain"}, "expected a JSON body"),
        ("POST", "/api/save", '{"name": "a\\ud800"}', JSON, "lone surrogate"),
        ("POST", "/api/pause", '{"action": "sleep"}', JSON, "action"),
        ("POST", "/api/wake", '{"at": "07:00\\ud800"}', JSON, "at: "),
        ("POST", "/api/wake", '{"at": "+' + HUGE + '"}', JSON, "at"),
        ("POST", "/api/wake", '{"at": "31:00"}', JSON, "expected a local time like 07:00"),
    ]
    for method, path, body, headers, message in cases:
        code, _, text = _mixer(player, method, path, body, headers)
        assert code == 400 and message in json.loads(text)["error"], (path, body[:50], text)
    after = player.status()
    assert after["layers"] == before["layers"] and after["stopping"] is False
    assert after["paused"] is False and after["wake"] is None
    assert not [line for line in player.lines if "Traceback" in line or "failed" in line]


def test_mixer_cuts_off_stalled_clients_and_caps_connections(player):
    stalled = []
    for head in (b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % player.port,
                 b"POST /api/weights HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Soundscape-Token: %s\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{" % (player.port, player.token.encode())):
        s = socket.create_connection(("127.0.0.1", player.port), timeout=20)
        s.sendall(head)
        stalled.append(s)
    flood = [socket.create_connection(("127.0.0.1", player.port), timeout=5) for _ in range(40)]
    time.sleep(0.5)
    refused = 0
    for s in flood:
        s.setblocking(False)
        try:
            refused += s.recv(100).startswith(b"HTTP/1.1 503")
        except BlockingIOError:
            pass
        s.close()
    assert refused >= 40 + 3 - 32
    # Stalled heads are closed, a stalled body gets a one-line 400, all within ~10 s.
    def answer(s: socket.socket) -> bytes:
        got = b""
        while b"}" not in got:  # the head and the JSON body may come in two reads
            piece = s.recv(4096)
            if not piece:
                break
            got += piece
        return got

    t0 = time.monotonic()
    answers = [answer(s) for s in stalled]
    assert time.monotonic() - t0 < 13
    assert answers[0] == b"" and answers[1] == b"", answers
    assert answers[2].startswith(b"HTTP/1.1 400") and b"did not arrive within 10 s" in answers[2]
    assert _mixer(player, "GET", "/api/scene.yaml?name=ok")[0] == 200
    assert player.status()["underruns"] == 0


def test_running_out_of_file_descriptors_ends_nothing(player):
    """Last here: it squeezes the shared player's descriptor limit, then gives it back."""
    pid = player.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    used = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 8, hard))
    try:
        flood = [socket.create_connection(("127.0.0.1", player.port), timeout=5) for _ in range(30)]
        # The control socket cannot accept now: the request waits in its backlog rather than ending the player.
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(1.5)
        s.connect(str(player.sock))
        s.sendall(b'{"cmd": "status"}\n')
        time.sleep(1.0)
        assert player.proc.poll() is None, "\n".join(player.lines)
        assert any("control socket: cannot accept" in line for line in player.lines)  # it did run out
        for f in flood:
            f.close()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    s.settimeout(10)
    assert json.loads(s.makefile().readline())["ok"]  # answered once descriptors were free again
    s.close()
    assert player.proc.poll() is None
    assert player.status()["underruns"] == 0
