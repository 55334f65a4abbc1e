"""Small doors and a quiet start (issue 31): a closed pipe, the resume clock, wake bounds before the model
loads, the tiny model's own parser, help that points at what a wheel holds, ALSA's xrun lines counted and
kept off the terminal, and no third-party lines on a normal start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import SCENE

ROOT = Path(__file__).resolve().parents[2]


def _soundscape(*args, cwd=None, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "soundscape", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.mark.parametrize("command", [["scenes"], ["cache"]])
def test_a_listing_into_a_closed_pipe_exits_quietly_with_0(command, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "soundscape", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    proc.stdout.close()  # the reader is gone before a line is written (imports take a second)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Error" not in err and "Traceback" not in err and "internal" not in err, err


def test_resume_with_another_start_time_is_refused_before_the_model_loads(tmp_path):
    out = tmp_path / "night.wav"
    out.write_bytes(b"")
    # What a plain render's state keeps of its clock (render/plain.py, SceneStream.save_state)
    np.savez(tmp_path / "night.wav.state.npz", day_start=np.array(21 * 3600.0))
    scene = tmp_path / "scene.yaml"
    scene.write_text(SCENE)
    bad = _soundscape("render", scene, "-o", out, "--duration", "10", "--resume", "--start-time", "22:00",
                      "--model", tmp_path / "no-model")
    assert bad.returncode == 2, bad.stderr
    assert "began at 21:00" in bad.stderr and "--start-time 21:00" in bad.stderr, bad.stderr
    same = _soundscape("render", scene, "-o", out, "--duration", "10", "--resume", "--start-time", "21:00",
                       "--model", tmp_path / "no-model")
    assert same.returncode == 3, same.stderr  # the same clock passes on to the model (missing here)


@pytest.mark.parametrize("flags, said", [(["--wake", "+25h"], "at most 24 hours"),
                                         (["--wake", "07:00", "--wake-fade", "1000h"], "at most 3 hours"),
                                         (["--wake", "07:00", "--wake-fade", "0"], "--wake-fade")])
def test_wake_bounds_are_the_sockets_and_checked_before_the_model_loads(flags, said, tmp_path):
    run = _soundscape("play", "forest", "--model", tmp_path / "no-model", "--output-device", "null", *flags)
    assert run.returncode == 2 and said in run.stderr, run.stderr


def test_a_refused_wake_request_arms_nothing():
    from soundscape.audio.output import Player
    from soundscape.audio.ringbuffer import RingBuffer
    from soundscape.play.transport import Transport

    # The transport's own alarm (play/transport.py owns it), over a real Player.
    alarm = Transport(Player(RingBuffer(1600, 1), 16000), 16000, lambda row: None, made_at=1.0).alarm
    assert alarm.fade_s == 600
    for fade in (0, -1, 4 * 3600, float("nan")):
        reply = alarm.set("+1h", fade_s=fade)
        assert not reply["ok"] and "3 hours" in reply["error"], reply
        assert not alarm.armed and alarm.fade_s == 600
    assert alarm.set("+1h", fade_s=60)["ok"] and alarm.armed and alarm.fade_s == 60


def test_the_tiny_model_module_has_a_real_parser(tmp_path):
    run = subprocess.run([sys.executable, "-m", "soundscape.model.tiny", "--help"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 0 and "usage:" in run.stdout and "DIR" in run.stdout, run.stdout + run.stderr
    assert list(tmp_path.iterdir()) == []  # no model written into a folder named --help


def test_help_points_only_at_what_a_wheel_holds():
    from soundscape.cli import build_parser

    parser = build_parser()
    helps = [parser.format_help()] + [sub.format_help() for action in parser._subparsers._group_actions
                                      for sub in action.choices.values()]
    for text in helps:
        assert "docs/" not in text and "pip install -e" not in text, text


def test_missing_weights_name_the_hf_command(tmp_path):
    from soundscape.errors import ModelError
    from soundscape.model.source import resolve_source

    with pytest.raises(ModelError) as exc:
        resolve_source("someone/not-downloaded-model")
    assert "`hf download someone/not-downloaded-model" in str(exc.value)


def test_alsa_xrun_lines_are_counted_not_printed(tmp_path):
    # A real libasound: the `null` PCM, recovered from an underrun as PortAudio does after one.
    code = textwrap.dedent("""
        import ctypes, ctypes.util, sys
        from soundscape.audio import alsa_log
        seen = []
        assert alsa_log.capture(lambda: seen.append(1))
        lib = ctypes.CDLL(ctypes.util.find_library("asound"))
        pcm = ctypes.c_void_p()
        assert lib.snd_pcm_open(ctypes.byref(pcm), b"null", 0, 0) == 0
        lib.snd_pcm_recover(pcm, -32, 0)  # -EPIPE: an underrun
        lib.snd_pcm_open(ctypes.byref(ctypes.c_void_p()), b"no_such_pcm", 0, 0)  # device probing noise
        print(len(seen))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1" and run.stderr == "", run.stderr


def test_a_save_into_a_folder_that_went_away_is_one_line_not_an_error(tmp_path):
    from soundscape.play.web.save import save_new

    gone = tmp_path / "saves"
    with pytest.raises(ValueError) as exc:
        save_new(gone, "mix.yaml", "name: x\n")
    assert str(gone) in str(exc.value) and "Download the scene instead" in str(exc.value)
    gone.mkdir()
    assert save_new(gone, "mix.yaml", "name: x\n").read_text() == "name: x\n"


def test_a_normal_start_prints_only_our_own_lines(tiny_model_dir, scene_file, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    for _ in range(2):  # the first start converts for OpenVINO; the second is a normal start
        run = _soundscape("play", scene_file, "--model", tiny_model_dir, "--output-device", "null", "--duration",
                          "2", "--steps", "2", env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    for noise in ("Loading pipeline components", "it/s]", "Warning", "warn", "ALSA lib", "E0000"):
        assert noise not in run.stderr, run.stderr[-2000:]
