"""`soundscape render` end to end, through the CLI a user runs."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

from soundscape.cli import main


def render(scene_file, model_dir, out, *extra):
    return main(["render", str(scene_file), "-o", str(out), "--model", str(model_dir), "--quiet", *extra])


def test_render_exact_length_timeline_and_repeatable(scene_file, tiny_model_dir, tmp_path):
    a, b, c = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.flac"
    timeline = tmp_path / "t.jsonl"
    assert render(scene_file, tiny_model_dir, a, "--duration", "9s", "--timeline", str(timeline)) == 0
    assert render(scene_file, tiny_model_dir, b, "--duration", "9") == 0
    assert render(scene_file, tiny_model_dir, c, "--duration", "0.15m") == 0
    x, rate = sf.read(a)
    y, _ = sf.read(b)
    z, _ = sf.read(c)
    assert rate == 48000 and x.shape == (9 * 48000, 2)
    assert np.array_equal(x, y)  # same command, same samples
    assert np.abs(x - z).max() <= 2 ** -22  # FLAC: the same to within one 24-bit step
    assert np.isfinite(x).all() and np.sqrt(np.mean(x[48000:] ** 2)) > 0.01
    lines = [json.loads(line) for line in timeline.read_text().splitlines()]
    rows = [r for r in lines if "chunk" in r]
    assert list(lines[-1]) == ["summary"] and lines[-1]["summary"]["duration_s"] == 9.0
    assert [r["chunk"] for r in rows] == list(range(len(rows)))
    assert rows[0]["start_s"] == 0 and rows[-1]["end_s"] >= 9
    for prev, cur in zip(rows, rows[1:]):
        assert cur["start_s"] == prev["end_s"]
    assert set(rows[0]) == {"chunk", "start_s", "end_s", "weights", "seed", "steps", "gen_s", "quality"}
    assert set(rows[0]["weights"]) == {"birds", "stream"} and rows[0]["gen_s"] > 0
    assert not (tmp_path / "a.wav.state.npz").exists()


def test_sigterm_leaves_a_valid_file_and_resume_completes_it(scene_file, tiny_model_dir, tmp_path):
    out, ref = tmp_path / "stopped.wav", tmp_path / "whole.wav"
    cmd = [sys.executable, "-m", "soundscape", "render", str(scene_file), "-o", str(out), "--duration", "40",
           "--model", str(tiny_model_dir), "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and sf.info(str(out)).frames > 0:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    partial, rate = sf.read(out)
    assert 0 < len(partial) < 40 * rate
    assert (tmp_path / "stopped.wav.state.npz").exists()
    # Continue it, and compare with an uninterrupted render.
    assert render(scene_file, tiny_model_dir, out, "--duration", "40", "--resume") == 0
    assert render(scene_file, tiny_model_dir, ref, "--duration", "40") == 0
    resumed, whole = sf.read(out)[0], sf.read(ref)[0]
    assert resumed.shape == whole.shape == (40 * rate, 2)
    assert np.array_equal(resumed, whole)


def test_missing_model_is_exit_3_without_traceback(scene_file, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "soundscape", "render", str(scene_file), "-o",
                           str(tmp_path / "x.wav"), "--duration", "5", "--model", "/no/such/dir"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert "/no/such/dir: no such folder" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["render", str(scene_file), "-o", str(tmp_path / "x.wav"), "--duration", "5",
                 "--model", str(empty)]) == 3


def test_bad_command_line_values_exit_2(scene_file, tmp_path, capsys):
    for bad in (["--duration", "-5"], ["--duration", "abc"], ["--duration", "0"], ["--steps", "0"]):
        args = ["render", str(scene_file), "-o", str(tmp_path / "x.wav"), "--duration", "5", *bad]
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code
        assert code == 2, bad
    assert main(["render", str(scene_file), "-o", str(tmp_path / "x.mp3"), "--duration", "5"]) == 2
    assert "expected a file ending in .wav, .flac, .ogg" in capsys.readouterr().err


def test_render_reports_loudness_near_the_target(tiny_model, tmp_path):
    """The loudness controller holds the scene's target; render measures the file (BS.1770) and says so."""
    import json

    from soundscape.scene import parse_scene
    from soundscape.stream.scene_stream import SceneStream
    from soundscape.render.plain import render
    from conftest import scene_yaml

    scene = parse_scene(scene_yaml({"output": {"volume": 1.0, "loudness_lufs": -26}}))
    result = render(SceneStream(tiny_model, scene), tmp_path / "l.wav", 40.0, timeline=tmp_path / "t.jsonl",
                    quiet=True)
    summary = [json.loads(line)["summary"] for line in open(tmp_path / "t.jsonl") if '"summary"' in line]
    assert len(summary) == 1 and summary[0] == {**summary[0], **result.loudness}
    assert abs(result.loudness["integrated_lufs"] - (-26)) < 1.0, result.loudness
    assert result.loudness["true_peak_dbtp"] <= -0.9
    assert summary[0]["target_lufs"] == -26
