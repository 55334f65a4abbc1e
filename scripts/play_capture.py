"""`play` into a real-time sound server, measured from outside: first sound, silences, CPU share, RSS.

    python scripts/play_capture.py SCENE --model DIR --duration 4m [--out DIR] [-- EXTRA PLAY ARGS...]

Why from outside: what a listener gets is what reaches the sound server, not what the player thinks it
wrote. So this starts a private PulseAudio server with a null sink (real time, like a sound card; its own
XDG_RUNTIME_DIR and HOME), records the sink's monitor in float32 with `parec`, runs `soundscape play`
into it through PortAudio's ALSA `default`, and samples the player's CPU time and RSS (psutil, every
0.2 s). The caches stay the user's (XDG_CACHE_HOME is kept), so "weights cached" means what it says.

Prints one JSON object:
- first_sound_s: from `play` starting to the first non-zero sample at the sink (the random model's
  audio is near -180 dBFS in float: still non-zero);
- longest_silence_s after the first sound, with the fade-out's tail excluded;
- cpu_share: the player's CPU seconds / (wall seconds x cores), the issue-32 budget measure;
- peak_rss_mib; the last status line the player printed (fresh share, cover-ups, underruns);
- capture: the float WAV (for scripts/repeat_distance.py);
- with --pause-at S: paused_cpu_of_one_core, the player's CPU seconds per second while paused (after a
  settling time), the issue-32 "under 2 % of one core" figure.
Needs pulseaudio, pulseaudio-utils (parec) and libasound2-plugins (the pulse PCM), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf


def start_pulse(root: Path) -> dict:
    run, home = root / "run", root / "home"
    run.mkdir(mode=0o700)
    home.mkdir()
    asound = root / "asound.conf"
    asound.write_text("pcm.!default { type pulse }\nctl.!default { type pulse }\n")
    cache = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run), HOME=str(home), PULSE_SERVER=f"unix:{run}/pulse/native",
               ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{asound}", XDG_CACHE_HOME=cache)
    subprocess.run(["pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--load=module-native-protocol-unix",
                    "--load=module-null-sink sink_name=cap rate=48000 channels=2 format=float32le"],
                   env=env, check=True, capture_output=True, timeout=30)
    return env


class Pause:
    """Pauses the player once it plays, and measures its CPU while paused: the issue-32 "under 2 % of one
    core" figure. The first SETTLE_S after `pause` (the fade, a chunk in flight finishing) are not counted."""

    SETTLE_S = 15.0

    def __init__(self, at: float, hold: float, env: dict, log: Path):
        self.at, self.hold, self.env, self.log = at, hold, env, log
        self.started: float | None = None  # the first status line: the player plays
        self.paused_at: float | None = None
        self.window: list[tuple[float, float]] = []  # (time, cpu) inside the measured window
        self.resumed = False

    def _cli(self, *argv: str) -> None:
        subprocess.run([sys.executable, "-m", "soundscape", *argv], env=self.env, capture_output=True, timeout=30)

    def tick(self, cpu: float) -> None:
        now = time.time()
        if self.started is None:
            if "fresh" in self.log.read_text(errors="replace"):
                self.started = now
            return
        if self.paused_at is None and now - self.started >= self.at:
            self._cli("pause")
            self.paused_at = time.time()
        elif self.paused_at is not None and not self.resumed:
            if now - self.paused_at >= self.SETTLE_S + self.hold:
                self._cli("resume")
                self.resumed = True
            elif now - self.paused_at >= self.SETTLE_S:
                self.window.append((now, cpu))

    def measured_s(self) -> float:
        return round(self.window[-1][0] - self.window[0][0], 1) if len(self.window) > 1 else 0.0

    def share(self) -> float | None:
        if len(self.window) < 2:
            return None
        (t0, c0), (t1, c1) = self.window[0], self.window[-1]
        return round((c1 - c0) / (t1 - t0), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene")
    ap.add_argument("--model", required=True)
    ap.add_argument("--duration", default="4m")
    ap.add_argument("--out", type=Path, default=None, help="folder for the capture, timeline and log")
    ap.add_argument("--pause-at", type=float, default=None, metavar="S",
                    help="`soundscape pause` S seconds after the first status line, `resume` --pause-for later")
    ap.add_argument("--pause-for", type=float, default=60.0, metavar="S")
    ap.add_argument("extra", nargs="*", help="more arguments for play (after --)")
    args, rest = ap.parse_known_args()  # argparse keeps "--" and what follows it once `scene` is taken
    args.extra = [a for a in [*args.extra, *rest] if a != "--"]
    out = args.out or Path(tempfile.mkdtemp(prefix="play-capture-"))
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="pulse-"))
    env = start_pulse(root)
    capture, timeline, log = out / "capture.wav", out / "timeline.jsonl", out / "play.log"
    try:
        parec = subprocess.Popen(["parec", "-d", "cap.monitor", "--format=float32le", "--rate=48000",
                                  "--channels=2", "--file-format=wav", str(capture)], env=env)
        time.sleep(1.0)
        rec_started = time.time() - 1.0  # parec's first frame, within the server's latency
        cmd = [sys.executable, "-m", "soundscape", "play", args.scene, "--model", args.model,
               "--duration", args.duration, "--timeline", str(timeline), *args.extra]
        t0 = time.time()
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=subprocess.STDOUT)
            ps = psutil.Process(proc.pid)
            cpu, peak = 0.0, 0
            pause = Pause(args.pause_at, args.pause_for, env, log) if args.pause_at is not None else None
            while proc.poll() is None:
                try:
                    times = ps.cpu_times()
                    cpu = times.user + times.system
                    peak = max(peak, ps.memory_info().rss)
                except psutil.Error:
                    break
                if pause is not None:
                    pause.tick(cpu)
                time.sleep(0.2)
        wall = time.time() - t0
        time.sleep(1.0)
        parec.terminate()
        parec.wait(timeout=10)
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=30)
    audio, rate = sf.read(str(capture), dtype="float32", always_2d=True)
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 0)
    first = (loud[0] / rate + rec_started - t0) if len(loud) else None
    longest = 0.0
    if len(loud) > 1:
        body = np.abs(audio[loud[0]:loud[-1]]).max(axis=1) == 0  # up to the last sound: the fade's tail aside
        edges = np.diff(np.concatenate([[0], body.astype(np.int8), [0]]))
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        longest = float(runs.max() / rate) if len(runs) else 0.0
    lines = [ln for ln in log.read_text().replace("\r", "\n").splitlines() if "fresh" in ln]
    print(json.dumps({
        "rc": proc.returncode, "wall_s": round(wall, 1), "first_sound_s": None if first is None else round(first, 2),
        "heard_s": round(len(loud) and (loud[-1] - loud[0]) / rate, 1), "longest_silence_s": round(longest, 3),
        "cpu_s": round(cpu, 1), "cpu_share": round(cpu / (wall * os.cpu_count()), 3),
        "peak_rss_mib": round(peak / 2**20), "load": [round(x, 2) for x in os.getloadavg()],
        "last_status": lines[-1].strip() if lines else None,
        **({"paused_cpu_of_one_core": pause.share(), "paused_s": pause.measured_s()} if pause else {}), "capture": str(capture), "timeline": str(timeline),
    }))


if __name__ == "__main__":
    main()
