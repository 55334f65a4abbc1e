"""`soundscape play` through the real PortAudio stream (ALSA file device) and the threaded engine."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import longest_silence
from soundscape.audio.output import NULL_DEVICE, OutputConfig
from soundscape.play.engine import Engine
from soundscape.stream.scene_stream import SceneStream


@pytest.fixture()
def alsa_file(tmp_path):
    """An ALSA config whose default PCM writes what it plays into a raw float32 file."""
    raw = tmp_path / "played.raw"
    conf = tmp_path / "asound.conf"
    conf.write_text(f'pcm.!default {{\n  type file\n  slave.pcm "null"\n  file "{raw}"\n  format "raw"\n}}\n')
    env = dict(os.environ, ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{conf}")
    return raw, env


@pytest.mark.parametrize("runtime", ["torch", "auto"])
def test_play_through_portaudio_equals_render(alsa_file, scene_file, scene, tiny_model, tiny_model_dir, runtime):
    """Both runtimes: torch, and auto (OpenVINO on a CPU, from the session's cache, compiled for static shapes)."""
    raw, env = alsa_file
    # ALSA's null device consumes as fast as it is fed, not in real time, so the whole
    # run is generated before sound starts (--prefill) and counted in frames, not seconds.
    cmd = [sys.executable, "-m", "soundscape", "play", str(scene_file), "--model", str(tiny_model_dir),
           "--duration", "6", "--fade-out", "1", "--prefill", "8", "--dtype", "fp32", "--quiet", "--runtime", runtime]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    played = np.fromfile(raw, dtype=np.float32).reshape(-1, 2)
    rate = 48000
    if runtime != "torch":
        from soundscape.model.loading import load_model

        tiny_model = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime=runtime)
        assert tiny_model.runtimes["unet"] == "openvino"
    stream = SceneStream(tiny_model, scene)
    expected = np.concatenate([stream.next_segment().audio for _ in range(4)])[: 5 * rate]
    # PortAudio primes the device with a little silence before the first callback: skip it.
    lead = np.argmax(np.abs(played[:, 0]) > 0) - np.argmax(np.abs(expected[:, 0]) > 0)
    assert 0 <= lead < 0.5 * rate  # up to the device buffer (at least MIN_LATENCY_S) of silence
    played = played[lead:]
    loud = np.nonzero(np.abs(played[:, 0]) > 1e-7)[0]
    assert 5.9 < (loud[-1] + 1) / rate <= 6.0  # ends at 6 s
    assert longest_silence(played[: 5 * rate], rate) < 0.05
    rms = lambda a, b: float(np.sqrt(np.mean(played[int(a * rate):int(b * rate)] ** 2)))
    assert rms(0, 0.05) < 0.2 * rms(2, 4)  # fade-in
    assert rms(5.9, 6.0) < 0.2 * rms(2, 4)  # fade-out
    # Streaming equals rendering: the samples before the fade-out are the stream's samples.
    assert np.abs(played[: 5 * rate] - expected).max() < 1e-6


class SlowStream(SceneStream):
    """The real stream, made slower than real time (a slow CPU, a GPU hiccup)."""

    delay = 0.0

    def _finish(self, prepared, result, verdict):
        time.sleep(self.delay)
        return super()._finish(prepared, result, verdict)


def test_slow_generator_never_goes_silent(tiny_model, scene):
    stream = SlowStream(tiny_model, scene, out_rate=16000, channels=1)
    stream.delay = 1.5 * stream.hop_s  # well under real time
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", 16000, 1), quiet=True, capture=[])
    result = engine.run(duration=9.0, fade_out=0.5)
    played = np.concatenate(engine.capture)[: 9 * 16000]
    assert result.coverups >= 1 and result.underruns == 0
    # Slower than real time: sound starts after the first chunk, not after waiting for a second one.
    assert engine.started_playing_after < 1.5 * stream.delay, (engine.started_playing_after, stream.delay)
    assert longest_silence(played[int(0.1 * 16000): int(8.4 * 16000)], 16000) < 0.05
    assert engine.feeder.cover_frames > 0 and engine.feeder.fresh_frames > 0


def test_fast_generator_needs_no_coverups(tiny_model, scene):
    stream = SceneStream(tiny_model, scene, out_rate=16000, channels=1)
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", 16000, 1), quiet=True, capture=[])
    result = engine.run(duration=5.0, fade_out=0.5)
    played = np.concatenate(engine.capture)
    ref = SceneStream(tiny_model, scene, out_rate=16000, channels=1)
    expected = np.concatenate([ref.next_segment().audio for _ in range(3)])[: 4 * 16000]
    assert result.coverups == 0 and result.underruns == 0
    assert np.array_equal(played[: 4 * 16000], expected)


def test_sigint_fades_out_and_exits_promptly(scene_file, tiny_model_dir, tmp_path):
    timeline = tmp_path / "t.jsonl"
    cmd = [sys.executable, "-m", "soundscape", "play", str(scene_file), "--model", str(tiny_model_dir),
           "--output-device", "null", "--timeline", str(timeline)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (timeline.exists() and timeline.read_text().count("\n") >= 2):
        time.sleep(0.1)
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 2.0, err[-800:]
    assert proc.returncode == 130
    assert "Traceback" not in err and "played" in err


def test_sleep_timer_fades_out_slowly_then_stops(tiny_model, scene):
    """The one sleep timer (play/transport.py) on the engine: wall-clock time, so a real-time sink."""
    from soundscape.play.transport import Transport

    stream = SceneStream(tiny_model, scene, out_rate=16000, channels=1)
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", 16000, 1), quiet=True, capture=[])
    playback = engine.playback
    transport = Transport(playback.player, playback.rate, playback.log, made_at=scene.output.volume, fade_s=3.0)
    assert transport.timer("set", 6.0)["ok"]
    result = engine.run(ticks=[transport.tick])
    played = np.concatenate(engine.capture)[:, 0]
    rms = lambda a, b: float(np.sqrt(np.mean(played[int(a * 16000):int(b * 16000)] ** 2)))
    assert not result.interrupted and 6.0 <= result.frames_played / 16000 < 6.5
    # A slow fade over the last 3 s: each second quieter than the one before, silence after.
    assert rms(2, 3) > rms(3.5, 4.5) > rms(4.5, 5.5) > rms(5.6, 5.95)
    # The timer counts wall-clock time from the first sound seen on a tick: the end lands within a tick of 6 s.
    assert np.abs(played[int(6.1 * 16000):]).max(initial=0.0) == 0.0
