"""scripts/repeat_distance.py on synthetic captures: a planted repeat is found at its distance, none is not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

SCRIPT = Path(__file__).parents[2] / "scripts" / "repeat_distance.py"
RATE = 48000


def _run(path: Path, *more: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), str(path), "--json", *more], capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout)


def test_a_planted_repeat_is_found_at_its_distance(tmp_path):
    """90 s of rain-like noise (brown-ish, level drifting) with 3 s from 20 s played again at 67.5 s, 5 dB
    quieter: the shortest repeat of a 2 s stretch is 47.5 s; the same noise without the copy repeats nowhere."""
    rng = np.random.default_rng(7)
    n = 90 * RATE
    t = np.arange(n) / RATE
    x = lfilter([0.05], [1.0, -0.95], rng.standard_normal(n)) * (1 + 0.3 * np.sin(2 * np.pi * t / 17))
    plain = tmp_path / "plain.wav"
    sf.write(plain, x.astype(np.float32), RATE)
    y = x.copy()
    y[int(67.5 * RATE): int(70.5 * RATE)] = 0.56 * x[20 * RATE: 23 * RATE]
    planted = tmp_path / "planted.wav"
    sf.write(planted, y.astype(np.float32), RATE)
    found = _run(planted)
    assert abs(found["repeat_distance_s"] - 47.5) < 0.05, found
    assert abs(found["first_s"] - 20.0) <= 1.0 and found["correlation"] > 0.9, found
    assert _run(plain)["repeat_distance_s"] is None
    # --after: only stretches heard from then on. The copy starts at 67.5 s; from 71 s on nothing repeats.
    assert abs(_run(planted, "--after", "60")["repeat_distance_s"] - 47.5) < 0.05
    assert _run(planted, "--after", "71")["repeat_distance_s"] is None


def test_an_unreadable_capture_exits_2_naming_it(tmp_path):
    bad = tmp_path / "not-audio.wav"
    bad.write_text("hello")
    out = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not-audio.wav" in out.stderr
