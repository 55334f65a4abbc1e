"""What the serve tests and the end-to-end ones share: starting `soundscape serve`, reading its metrics,
and a listener that decodes its stream as it arrives (tests/serve/, tests/e2e/)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request

import numpy as np

from conftest import start_logged
from soundscape.serve.decode import decode_stream

RATE = 48000


def _start(cmd: list[str], log_path) -> tuple[subprocess.Popen, str]:
    return start_logged(cmd, log_path, r"serve: listening on (http://\S+)")


def _metrics(base: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + (json.dumps(s.labels, sort_keys=True) if s.labels else "")
            out[key] = s.value
    return out


def _wait_for(predicate, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


class Client(threading.Thread):
    """A listener: reads the stream and decodes it with PyAV as it arrives, noting when each frame came."""

    def __init__(self, url: str, seconds: float):
        super().__init__(daemon=True)
        self.url, self.seconds = url, seconds
        self.frames: list[np.ndarray] = []
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, samples decoded so far)
        self.headers: dict = {}
        self.error: BaseException | None = None

    def run(self):
        try:
            with urllib.request.urlopen(self.url, timeout=30) as response:
                self.headers = response.headers  # case-insensitive
                total = 0
                for pcm, rate in decode_stream(response, "opus"):
                    assert rate == RATE
                    total += len(pcm)
                    self.frames.append(pcm)
                    self.arrivals.append((time.monotonic(), total))
                    if total >= self.seconds * RATE:
                        break
        except BaseException as exc:  # reported by the test
            self.error = exc

    def audio(self) -> np.ndarray:
        return np.concatenate(self.frames)
