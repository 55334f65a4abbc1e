"""Signals: `kill -INT` stops the CLI even when it was started with SIGINT ignored.

A shell script's background job (`soundscape play ... &`) inherits SIGINT as SIG_IGN; the CLI
puts Python's Ctrl-C handler back, so it still fades out and exits with code 130.
"""

import signal
import subprocess
import sys
import time

import pytest


def test_sigint_stops_a_play_started_with_sigint_ignored(scene_file, tiny_model_dir, tmp_path):
    timeline = tmp_path / "t.jsonl"
    cmd = [sys.executable, "-m", "soundscape", "play", str(scene_file), "--model", str(tiny_model_dir),
           "--output-device", "null", "--timeline", str(timeline), "--control", str(tmp_path / "ctl.sock")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not (
                timeline.exists() and timeline.read_text().count("\n") >= 1):  # the first chunk is made
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        assert timeline.exists() and timeline.read_text(), "no chunk within 120 s"
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGINT did not stop a play started with SIGINT ignored")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "played " in err  # it stopped through its own fade-out path


def test_a_signal_inside_a_deferred_block_waits_for_its_end():
    """The audio and the state that resumes after it are written as one step, even with other threads
    running (a segmented render's executor): the kernel may hand the signal to any of them."""
    import os
    import threading

    from soundscape.render.plain import _signals_deferred

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with _signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(50):
                    time.sleep(0.002)  # bytecode boundaries where a pending handler would run
                steps.append("block finished")
        assert steps == ["block finished"]
    finally:
        stop.set()
        other.join()
