"""At night, with real parts: one `soundscape play --wake +1h --web` (the tiny model) playing in real time
into a private PulseAudio null sink, on a private D-Bus session bus (`dbus-daemon --session`), driven by
`playerctl` (MPRIS), the control socket (`soundscape pause`/`resume`, the wake request) and headless
Chromium (the mixer's Pause button and Media Session). One player for the whole module, its tests in
order: it starts asleep (the alarm an hour away), is woken by playerctl, paused and resumed, has its
volume halved, is paused over the socket (no click, no CPU, no chunk), gets an alarm in the past (tomorrow) and
one seconds ahead (the sound rises over the fade, in the wake scene), and ends with playerctl's stop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import MEDIA_SESSION_HOOK, headless_chrome, scene_yaml, start_pulse, stop_pulse, wait_for
from soundscape.cli import main
from soundscape.play.control_socket import request as control

NIGHT = {"name": "Night test", "seed": 3,
         "layers": {"crickets": {"prompt": "crickets at night", "weight": 0.8},
                    "wind": {"prompt": "soft wind", "weight": 0.4}},
         "generation": {"chunk_seconds": 2.56, "overlap_seconds": 0.64, "steps": 3, "guidance_scale": 3.0},
         "evolution": {"drift": {"depth": 0}},
         "output": {"volume": 1.0, "fade_in_seconds": 0.5, "sample_rate": 48000, "channels": 2}}
SCENE = scene_yaml(base=NIGHT)

REC_RATE = 16000
NEEDS = [p for p in ("pulseaudio", "parec", "dbus-daemon", "playerctl") if not shutil.which(p)]
pytestmark = pytest.mark.skipif(bool(NEEDS), reason=f"needs {', '.join(NEEDS)} (apt: pulseaudio pulseaudio-utils "
                                                    f"dbus playerctl)")


class Recording:
    """What reaches the sink, recorded continuously (its monitor, 16 kHz mono) from start to stop."""

    def __init__(self, env: dict, sink: str):
        self.proc = subprocess.Popen(["parec", "-d", f"{sink}.monitor", "--raw", "--format=float32le",
                                      "--channels=1", f"--rate={REC_RATE}", "--latency-msec=20"],
                                     env=env, stdout=subprocess.PIPE)
        self.data = bytearray()
        self.started = time.time()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            self.data += chunk

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        n = len(self.data) // 4 * 4
        return np.frombuffer(bytes(self.data[:n]), np.float32)


def db(x) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(np.asarray(x, np.float64)))) + 1e-12))


def level_db(env, sink: str, seconds: float = 1.0) -> float:
    """The level of `seconds` of what reaches the sink from now (after 0.2 s to settle). Waits for that much
    audio rather than for that much time: under load parec can take a second to start streaming."""
    rec = Recording(env, sink)
    wait_for(lambda: len(rec.data) >= int((seconds + 0.2) * REC_RATE) * 4, 30, every=0.05)
    return db(rec.stop()[int(0.2 * REC_RATE):])


def windows_db(x: np.ndarray, win_s: float = 0.05) -> np.ndarray:
    n = int(win_s * REC_RATE)
    k = len(x) // n
    frames = x[: k * n].reshape(k, n).astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-12)


@pytest.fixture(scope="module")
def bus():
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                            stdout=subprocess.PIPE, text=True)
    address = proc.stdout.readline().strip()
    try:
        assert address.startswith("unix:"), address
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    env = start_pulse(tmp_path_factory.mktemp("pulse"), sinks=("night",))
    try:
        yield env
    finally:
        stop_pulse(env)


class NightPlayer:
    def __init__(self, folder: Path, model: Path, env: dict):
        self.scene, self.sock, self.timeline = folder / "night.yaml", folder / "ctl" / "p.sock", folder / "t.jsonl"
        self.scene.write_text(SCENE)
        self.dawn = folder / "dawn.yaml"
        self.dawn.write_text(scene_yaml({"name": "Dawn test", "layers": {"crickets": {"prompt": "birds at dawn"}}}, base=NIGHT))
        self.env = env
        cmd = [sys.executable, "-m", "soundscape", "play", str(self.scene), "--model", str(model), "--runtime",
               "torch", "--control", str(self.sock), "--timeline", str(self.timeline), "--wake", "+1h",
               "--wake-fade", "4s", "--wake-scene", str(self.dawn), "--web"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def status(self) -> dict:
        return control(self.sock, {"cmd": "status"})["status"]

    def chunks(self) -> int:
        text = self.timeline.read_text() if self.timeline.exists() else ""
        return sum(1 for line in text.splitlines() if '"chunk"' in line)

    def playerctl(self, *args: str) -> str:
        out = subprocess.run(["playerctl", "-p", "soundscape", *args], env=self.env, capture_output=True, text=True,
                             timeout=20)
        assert out.returncode == 0, f"playerctl {' '.join(args)}: {out.stderr}\n" + "\n".join(self.lines)
        return out.stdout.strip()

    @property
    def url(self) -> str:
        return next(line.removeprefix("web: ") for line in self.lines if line.startswith("web: http://"))


@pytest.fixture(scope="module")
def player(tmp_path_factory, tiny_model_dir, pulse, bus):
    p = NightPlayer(tmp_path_factory.mktemp("night"), tiny_model_dir,
                    dict(pulse, PULSE_SINK="night", DBUS_SESSION_BUS_ADDRESS=bus))
    try:
        def ready():
            assert p.proc.poll() is None, "\n".join(p.lines)
            return (p.sock.exists() and p.chunks() >= 1 and any(line.startswith("media controls:") for line in p.lines)
                    and any(line.startswith("web: ") for line in p.lines))
        wait_for(ready, 120)
        yield p
    finally:
        if p.proc.poll() is None:
            p.proc.terminate()
        try:
            p.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.proc.kill()


def test_a_wake_start_is_silent_and_the_media_controls_see_the_scene(player, pulse):
    s = player.status()
    assert s["paused"] and 3500 < s["wake"]["in_s"] <= 3600 and s["wake"]["fade_s"] == 4.0
    assert level_db(pulse, "night") < -90  # quiet and idle until the alarm
    # The generator rests: the first chunk (the start needs it), then nothing until the alarm's lead.
    assert s["generator_resting"] and player.chunks() == 1 and player.status()["chunks"] == 1
    assert player.playerctl("metadata", "title") == "Night test"
    assert player.playerctl("status") == "Paused"
    out = subprocess.run([sys.executable, "-m", "soundscape", "status", "--control", str(player.sock)],
                         capture_output=True, text=True, timeout=60)
    assert "paused" in out.stdout and "wake alarm:" in out.stdout, out.stdout + out.stderr


def test_playerctl_plays_pauses_and_sets_the_volume(player, pulse):
    player.playerctl("play")
    wait_for(lambda: player.playerctl("status") == "Playing", 5)
    time.sleep(1.5)
    loud = level_db(pulse, "night")
    assert loud > -60
    player.playerctl("play-pause")
    time.sleep(1.5)  # the fade (1 s) and the device's and PulseAudio's buffers
    assert level_db(pulse, "night") < loud - 50
    assert player.playerctl("status") == "Paused" and player.status()["paused"]
    player.playerctl("play-pause")
    time.sleep(1.5)
    assert abs(level_db(pulse, "night") - loud) < 4
    player.playerctl("volume", "0.5")
    wait_for(lambda: player.status()["volume"] == 0.5, 5)
    assert player.playerctl("volume").startswith("0.5")
    time.sleep(0.6)
    assert abs(level_db(pulse, "night") - (loud - 6.02)) < 2.5
    player.playerctl("volume", "1.0")
    wait_for(lambda: player.status()["volume"] == 1.0, 5)


def test_pause_over_the_socket_fades_without_a_click_and_the_generator_rests(player, pulse):
    import psutil

    rec = Recording(pulse, "night")
    time.sleep(1.5)
    paused_at = time.time()
    assert main(["pause", "--control", str(player.sock)]) == 0
    # The fade, and the generator finishes its chunk in flight and rests: no new chunk for a second.
    seen = [player.chunks(), time.monotonic()]

    def settled():
        n = player.chunks()
        if n != seen[0]:
            seen[:] = [n, time.monotonic()]
        return time.monotonic() - seen[1] > 1.0 and time.time() > paused_at + 1.5
    wait_for(settled, 15)
    chunks, proc = player.chunks(), psutil.Process(player.proc.pid)
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    time.sleep(3.0)
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
    assert player.chunks() == chunks, "the generator made chunks while paused"
    assert cpu < 0.15, f"the paused player used {cpu:.0%} of a core"
    resumed_at = time.time()
    assert main(["resume", "--control", str(player.sock)]) == 0
    time.sleep(2.5)
    x = rec.stop()
    levels = windows_db(x)
    at = lambda t: int((t - rec.started) / 0.05)  # noqa: E731  the window around a wall-clock time
    playing = levels[at(rec.started + 0.4):at(paused_at)]
    held = levels[at(paused_at + 1.8):at(resumed_at)]
    back = levels[at(resumed_at + 1.6):]
    full = float(np.median(playing))
    assert full > -60 and np.max(held) < full - 60, "silence while paused"
    assert abs(float(np.median(back)) - full) < 4
    # No click at either edge: the level moves through the fade over about a second (an abrupt stop or
    # start would cross it within one 50 ms window), and no sample steps further than the sound's own.
    def crossing(seq, falling: bool) -> float:
        hi, lo = full - 3, full - 30
        first = next(i for i, v in enumerate(seq) if (v < hi if falling else v > lo))
        last = next(i for i, v in enumerate(seq) if (v < lo if falling else v > hi))
        return (last - first) * 0.05
    assert crossing(levels[at(paused_at - 0.2):at(paused_at + 2.5)], falling=True) > 0.3
    assert crossing(levels[at(resumed_at - 0.2):at(resumed_at + 2.5)], falling=False) > 0.3
    steps = np.abs(np.diff(x))
    own = max(steps[at(rec.started + 0.4) * 800:at(paused_at - 0.1) * 800].max(),
              steps[at(resumed_at + 1.6) * 800:].max())
    edges = np.concatenate([steps[at(paused_at - 0.1) * 800:at(paused_at + 1.6) * 800],
                            steps[at(resumed_at - 0.1) * 800:at(resumed_at + 1.6) * 800]])
    assert edges.max() <= own * 1.05


def test_an_alarm_in_the_past_rings_tomorrow_and_one_seconds_ahead_fades_the_scene_in(player, pulse):
    assert control(player.sock, {"cmd": "pause"})["ok"]
    time.sleep(1.5)
    past = time.strftime("%H:%M:%S", time.localtime(time.time() - 60))
    reply = control(player.sock, {"cmd": "wake", "at": past})
    assert reply["ok"] and reply["applied"]["wake"]["in_s"] > 23 * 3600
    assert level_db(pulse, "night", 1.5) < -90 and player.status()["paused"]  # not now
    due = int(time.time()) + 5
    reply = control(player.sock, {"cmd": "wake", "at": time.strftime("%H:%M:%S", time.localtime(due)), "fade_s": 4})
    assert reply["ok"] and reply["applied"]["wake"]["in_s"] <= 5
    rec = Recording(pulse, "night")
    wait_for(lambda: time.time() > due + 6.5, 20)
    x = rec.stop()
    w = windows_db(x, 0.5)
    at = lambda t: int((t - rec.started) / 0.5)  # noqa: E731
    assert np.max(w[: at(due - 0.3)]) < -90, "silent until the wake time"
    rising = w[at(due + 0.5):at(due + 4.0)]
    assert np.all(np.diff(rising) > -2.0), f"the level rises smoothly: {np.round(rising, 1)}"
    end = float(np.median(w[at(due + 4.8):at(due + 6.3)]))
    assert end > -60 and rising[0] < end - 10
    s = player.status()
    assert not s["paused"] and s["wake"] is None and s["scene"] == "Dawn test"  # woken into the wake scene
    assert '"event": "wake"' in player.timeline.read_text()
    assert player.playerctl("metadata", "title") == "Dawn test"


def test_the_mixer_page_has_a_media_session_and_a_pause_button(player):
    driver = headless_chrome("--mute-audio")
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": MEDIA_SESSION_HOOK})
        driver.get(player.url)
        wait_for(lambda: driver.execute_script(
            "return navigator.mediaSession.metadata && navigator.mediaSession.metadata.title"), 20)
        assert driver.execute_script("return navigator.mediaSession.metadata.title") == "Dawn test"  # woken into it
        assert driver.execute_script("return navigator.mediaSession.metadata.artwork[0].src").endswith("/icon.svg")
        assert sorted(driver.execute_script("return Object.keys(window.__media)")) == ["pause", "play", "stop"]
        driver.execute_script("window.__media.pause()")
        wait_for(lambda: player.status()["paused"], 5)
        wait_for(lambda: driver.find_element("id", "pause").text == "Resume", 5)
        assert driver.execute_script("return navigator.mediaSession.playbackState") == "paused"
        driver.find_element("id", "pause").click()
        wait_for(lambda: not player.status()["paused"], 5)
        driver.find_element("id", "wake-time").send_keys("+3h\n")
        wait_for(lambda: player.status()["wake"], 5)
        wait_for(lambda: "in 2:59" in driver.find_element("id", "wake-display").text, 5)
    finally:
        driver.quit()


def test_playerctl_stop_fades_out_and_ends_the_player(player):
    player.playerctl("stop")
    player.proc.wait(timeout=30)
    assert player.proc.returncode == 0, "\n".join(player.lines)
    assert not [line for line in player.lines if "Traceback" in line or "mpris:" in line]
    events = [json.loads(line).get("event") for line in player.timeline.read_text().splitlines()]
    assert {"pause", "resume", "wake", "volume", "stop"} <= set(events)
