"""`soundscape serve --ray` on a local, loopback-only Ray cluster: 2 replicas, 4 listeners, all fed."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import time
import urllib.request

import pytest

from conftest import SCENE
from serve_client import RATE, Client, _start

# Not imported here: importing Ray at collection would fix its settings before other tests set them.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='needs pip install -e ".[ray]"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_replicas_feed_four_listeners(tiny_model_dir, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "test.yaml").write_text(SCENE)
    port = _free_port()
    proc, url = _start([sys.executable, "-m", "soundscape", "serve", "--ray", "--model", str(tiny_model_dir),
                        "--scenes", str(scenes), "--port", str(port), "--min-replicas", "2", "--max-replicas", "2",
                        "--max-listeners", "2"], tmp_path / "serve.log")
    try:
        base = url.rstrip("/")
        clients = []
        for k in range(4):  # one at a time, so the proxy sees each one's load before routing the next
            c = Client(f"{base}/stream/test?seed={k}", 20.0)
            c.start()
            deadline = time.monotonic() + 60
            while not c.arrivals and c.error is None and time.monotonic() < deadline:
                time.sleep(0.05)
            clients.append(c)
        # A live change reaches its listener whichever replica the request lands on.
        for c in clients[:2]:
            req = urllib.request.Request(f"{base}/listeners/{c.headers['X-Listener-Id']}/set", method="POST",
                                         data=json.dumps({"birds": 0.3}).encode(),
                                         headers={"Content-Type": "application/json"})
            reply = json.loads(urllib.request.urlopen(req, timeout=30).read())
            assert reply["ok"] and reply["applied"] == {"birds": 0.3}
        for c in clients:
            c.join(timeout=120)
        for c in clients:
            assert c.error is None and not c.is_alive(), c.error
            assert sum(len(f) for f in c.frames) >= 20 * RATE
            t0, _ = c.arrivals[0]
            assert max((t - t0) - n / RATE for t, n in c.arrivals) < 0.05  # fed in real time, no gap
        # Two replicas, each with its own two listeners.
        replicas = [c.headers["X-Replica"] for c in clients]
        assert len(set(replicas)) == 2 and all(replicas.count(r) == 2 for r in set(replicas))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
