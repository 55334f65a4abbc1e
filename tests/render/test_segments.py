"""Segmented renders (issue 12): the same bytes for any worker count and on Ray, resume, lost workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from soundscape.cli import main
from soundscape.render.loop_file import analyse_seams
from soundscape.model.geometry import SAMPLES_PER_FRAME
from soundscape.render.plan import plan_render, segment_seed
from soundscape.render.segmented import make_plan, render_segmented
from soundscape.render.workers import LocalExecutor, Settings

DURATION = 20.0  # 11 pieces: 3 segments of up to 4 chunks and 2 bridges


def _settings(scene, model_dir):
    from soundscape.scene.quality import resolve
    from soundscape.stream.scene_stream import chunk_spec

    resolved = resolve(scene.generation, None, "cpu")
    return Settings(scene=scene, seed=scene.seed, model=str(model_dir), spec=chunk_spec(resolved.generation),
                    quality=resolved.preset, device="cpu", dtype="fp32")


def _render(settings, out, executor, **kw):
    return render_segmented(settings, out, DURATION, executor, out_rate=48000, channels=2, quiet=True, **kw)


@pytest.fixture(scope="module")
def module_scene(tmp_path_factory):
    from conftest import SCENE

    path = tmp_path_factory.mktemp("scene") / "scene.yaml"
    path.write_text(SCENE)
    return path


@pytest.fixture(scope="module")
def reference(module_scene, tiny_model_dir, tmp_path_factory):
    """The render with one local worker process: every other way must give these bytes."""
    from soundscape.scene import load_scene

    settings = _settings(load_scene(module_scene), tiny_model_dir)
    out = tmp_path_factory.mktemp("ref") / "one.wav"
    timeline = out.with_suffix(".jsonl")
    result = _render(settings, out, LocalExecutor(1, threads=1), timeline=timeline)
    assert result.frames == int(DURATION * 48000)
    rows = [json.loads(line) for line in timeline.read_text().splitlines() if '"chunk"' in line]
    return settings, out.read_bytes(), rows


def test_the_plan_depends_on_the_scene_and_duration_only(module_scene, tiny_model_dir, reference):
    settings, _, rows = reference
    plan, total = make_plan(settings, DURATION, 48000, loop=False)
    assert total == DURATION * 48000
    assert [len(plan.segments), len(plan.bridges)] == [3, 2] and plan.segments[0].chunks == 4
    pieces = plan.pieces()
    assert all(a.emit[1] == b.emit[0] for a, b in zip(pieces, pieces[1:]))  # nothing twice, nothing skipped
    assert plan.segments[0].seed == settings.seed  # segment 0 starts as the plain render does
    assert len({s.seed for s in plan.segments}) == 3
    assert plan.segments[2].seed == segment_seed(settings.seed, 2)
    # The timeline: one row per piece, in order, contiguous, bridges marked.
    assert [r["chunk"] for r in rows] == list(range(len(pieces)))
    assert [r.get("bridge", False) for r in rows] == [p.bridge for p in pieces]
    assert all(a["end_s"] == b["start_s"] for a, b in zip(rows, rows[1:]))
    # Longer renders get longer segments (about the square root of the chunk count), up to 16 chunks.
    spec = settings.spec
    assert plan_render(spec, 25 * 120, 0).segments[0].chunks == 8  # 63 chunks
    assert plan_render(spec, 25 * 600, 0).segments[0].chunks == 16  # 313 chunks


@pytest.mark.parametrize("workers", [2, 3])
def test_any_number_of_workers_gives_the_same_bytes(reference, tmp_path, workers):
    settings, want, _ = reference
    out = tmp_path / f"n{workers}.wav"
    _render(settings, out, LocalExecutor(workers, threads=1))
    assert out.read_bytes() == want


def test_segment_zero_is_the_plain_render_and_bridges_are_seamless(reference, module_scene, tiny_model, tmp_path):
    """A segmented render equals the plain one up to its first bridge, then differs; its seams all pass."""
    from soundscape.render.plain import render
    from soundscape.scene import load_scene
    from soundscape.stream.scene_stream import SceneStream

    settings, want, _ = reference
    out = tmp_path / "seg.wav"
    out.write_bytes(want)
    seg, rate = sf.read(out, dtype="float32")
    plain_out = tmp_path / "plain.wav"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers compute (workers.worker_threads)
    try:
        render(SceneStream(tiny_model, load_scene(module_scene)), plain_out, DURATION, quiet=True)
    finally:
        torch.set_num_threads(threads)
    plain, _ = sf.read(plain_out, dtype="float32")
    plan, _ = make_plan(settings, DURATION, rate, loop=False)
    first_bridge = next(p for p in plan.pieces() if p.bridge)
    split = first_bridge.emit[0] * SAMPLES_PER_FRAME * 3  # 48 kHz
    assert np.array_equal(seg[: split - 480], plain[: split - 480])  # (less the resampler's lookahead)
    assert not np.allclose(seg[split + 48000:], plain[split + 48000:], atol=1e-3)
    # Seams: every piece's crossfade, bridges included, checked as tests/test_realtime.py checks them, in
    # each channel of the stereo output (width and air at the scene defaults), late by the limiter's delay.
    from soundscape.audio.loudness import LoudnessController

    delay = LoudnessController(rate).latency
    seams = [p.emit[0] * SAMPLES_PER_FRAME * 3 + delay for p in plan.pieces()[1:]]
    assert not np.array_equal(seg[:, 0], seg[:, 1])
    for channel in seg.T:
        report = analyse_seams(channel, rate, seams, settings.spec.xfade * SAMPLES_PER_FRAME * 3)
        # Why 1.25 (the loop test's margin for its wrap): with air, the largest sample-to-sample step is
        # set by the noise above 8 kHz, whose level follows the 4-7 kHz band's, and the tiny model's audio
        # is 2-3 dB louder across its crossfades than just before them (so it was before air too, where
        # the seams' steps sat at the inside median): those seams' steps come out ~1.1x the inside's largest.
        # A click is a jump many times the material's own.
        assert max(report["step"]) <= 1.25 * max(report["inside"]), report
        assert max(report["jump"]) <= max(report["jump_inside"]) + 0.5
        assert max(report["repeat"]) < 0.9


@pytest.fixture(scope="module")
def ray_cluster():
    # Loopback only: Ray then binds this machine's 127.0.0.1, never an outside address.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_bytes(reference, ray_cluster, tmp_path):
    from soundscape.render.workers import RayExecutor

    settings, want, _ = reference
    out = tmp_path / "ray.wav"
    executor = RayExecutor(None)  # the cluster this process started
    assert executor.size == 2 and executor.device == "cpu"
    _render(settings, out, executor)
    assert out.read_bytes() == want


def test_a_worker_killed_mid_job_is_replaced_and_nothing_is_lost(reference, tmp_path, capsys):
    settings, want, rows = reference
    killed = []

    def kill_once(pid, key):
        if key == ("segment", 1) and not killed:
            os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
            killed.append(pid)

    executor = LocalExecutor(2, threads=1, on_start=kill_once)
    out, timeline = tmp_path / "killed.wav", tmp_path / "t.jsonl"
    render_segmented(settings, out, DURATION, executor, out_rate=48000, channels=2, timeline=timeline, quiet=True)
    assert killed
    err = capsys.readouterr().err
    assert "worker lost" in err and "running segment 1 again (try 2 of 4)" in err
    assert out.read_bytes() == want
    got = [json.loads(line) for line in timeline.read_text().splitlines() if '"chunk"' in line]
    assert [r["chunk"] for r in got] == [r["chunk"] for r in rows]  # each piece written once, in order
    assert [r["seed"] for r in got] == [r["seed"] for r in rows]


def test_a_stopped_segmented_render_resumes_at_segment_granularity(module_scene, tiny_model_dir, reference, tmp_path,
                                                                     capsys):
    _, want, _ = reference
    out = tmp_path / "stopped.wav"
    cache = tmp_path / "stopped.wav.segments"
    cmd = [sys.executable, "-m", "soundscape", "render", str(module_scene), "-o", str(out), "--duration", "20",
           "--model", str(tiny_model_dir), "--dtype", "fp32", "--device", "cpu", "--runtime", "torch", "--workers", "2"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.exists() and any(cache.glob("segment-*.npz")) and out.exists() and sf.info(str(out)).frames > 0:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--workers 2 --resume" in err
    # One progress bar, for all the workers: they draw none of their own (not even the model loading's).
    assert "rendering:" in err and "2 workers" in err and "Loading pipeline components" not in err
    assert 0 < sf.info(str(out)).frames < 20 * 48000
    kept = {p.name for p in cache.glob("*-[0-9][0-9][0-9][0-9][0-9].npz")}
    assert kept
    # A different render, or a plain one, may not continue it.
    # torch, as the reference (Settings' default): the CLI's default on a CPU is OpenVINO.
    base = ["render", str(module_scene), "-o", str(out), "--model", str(tiny_model_dir), "--dtype", "fp32",
            "--runtime", "torch", "--quiet", "--resume"]
    assert main(base + ["--duration", "25", "--workers", "1"]) == 2
    assert main(base + ["--duration", "20"]) == 2
    err = capsys.readouterr().err
    assert "is from a different render" in err and "resume it with the same flags" in err
    # Resume with another worker count: finished segments are reused, not made again.
    seen = []
    import soundscape.render.segmented as segmented

    original = segmented.Driver._store

    def spy(self, result):
        seen.append(result.key)
        return original(self, result)

    segmented.Driver._store = spy
    try:
        assert main(base + ["--duration", "20", "--workers", "1"]) == 0
    finally:
        segmented.Driver._store = original
    assert out.read_bytes() == want
    reused = {tuple(n.split(".")[0].split("-")) for n in kept}
    assert not {(kind, int(i)) for kind, i in reused} & set(seen)
    assert not cache.exists() and not (tmp_path / "stopped.wav.state.npz").exists()
