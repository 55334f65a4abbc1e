"""Bridge chunks inpainted from both sides, and `render --loop` (issue 12)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from soundscape.cli import main
from one_stream import generate_chunk
from soundscape.generator.chunks import GeneratorState
from soundscape.render.loop_file import analyse_seams
from soundscape.model.geometry import SAMPLES_PER_FRAME
from soundscape.render.plan import bridge_tail, plan_loop

LATENCY = 153  # the loudness controller's delay at 48 kHz (audio/loudness.py), in output samples

MONO = """\
name: Loop scene
seed: 11
negative_prompt: low quality
layers:
  rain: {prompt: gentle rain on a roof, weight: 0.9}
  wind: {prompt: wind in the trees, weight: 0.3}
generation: {chunk_seconds: 2.56, overlap_seconds: 0.64, steps: 3, guidance_scale: 3.0}
evolution:
  keyframes:
    - {at: 0, weights: {rain: 0.9, wind: 0.2}}
    - {at: 8, weights: {rain: 0.3, wind: 0.9}}
  drift: {depth: 0.1, period_seconds: 20}
output: {fade_in_seconds: 0.5, sample_rate: 16000, channels: 1}
"""


def _scene(text=MONO):
    from soundscape.scene import parse_scene

    return parse_scene(text)


@pytest.fixture(scope="module")
def stream(tiny_model):
    from soundscape.stream.scene_stream import SceneStream

    return SceneStream(tiny_model, _scene(), out_rate=16000, channels=1)


@pytest.fixture(scope="module")
def bridged(tiny_model, stream):
    """Segment A's last chunk, segment B's first, and the bridge between them."""
    spec = stream.spec
    cond = stream.conditioning({"gentle rain on a roof": 1.0})
    a0 = generate_chunk(tiny_model, cond, GeneratorState(), spec, 101)
    a1 = generate_chunk(tiny_model, cond, a0.state, spec, 101)
    b0 = generate_chunk(tiny_model, cond, GeneratorState(), spec, 202)
    ob = bridge_tail(spec)
    bridge = generate_chunk(tiny_model, cond, GeneratorState(chunk_index=2, tail_latents=a1.state.tail_latents,
                                                             known_tail=b0.latents[:, :, :ob].clone()), spec, 101)
    return spec, ob, a1, bridge, b0


def test_bridge_holds_both_ends_exactly(bridged):
    spec, ob, a1, bridge, b0 = bridged
    o, t = spec.overlap, spec.frames
    assert torch.equal(bridge.latents[:, :, :o], a1.latents[:, :, t - o:])  # the head: A's tail
    assert torch.equal(bridge.latents[:, :, t - ob:], b0.latents[:, :, :ob])  # the tail: B's start
    middle = bridge.latents[:, :, o:t - ob]
    assert middle.shape[2] > 0 and middle.abs().mean() > 0.1
    # ...and the middle is new, not a copy of either side.
    assert not torch.allclose(middle[:, :, :ob], b0.latents[:, :, :ob], atol=1e-2)
    # The decode window: from 2e + x before the head's end to 2e + x into the tail.
    assert len(bridge.audio) == (spec.decode_end(ob) - spec.decode_start(first=False)) * SAMPLES_PER_FRAME


def test_decoded_bridge_matches_both_neighbours_at_its_seams(bridged):
    """Each side of a bridge decodes like an ordinary overlap: the same latents, the same sound."""
    spec, ob, a1, bridge, b0 = bridged
    e, x = spec.edge * SAMPLES_PER_FRAME, spec.xfade * SAMPLES_PER_FRAME
    audio, prev, nxt = bridge.audio.numpy(), a1.audio.numpy(), b0.audio.numpy()
    # Head side: the bridge's [e, e + x) and A's held tail are the same frames.
    r_head = np.corrcoef(audio[e:e + x], prev[len(prev) - e - x:len(prev) - e])[0, 1]
    # Tail side: the bridge's crossfade region and B's [e, e + x) (B decodes from its frame 0).
    end = len(audio) - e - x
    r_tail = np.corrcoef(audio[end:end + x], nxt[e:e + x])[0, 1]
    assert r_head > 0.9 and r_tail > 0.9, (r_head, r_tail)


def _seams_of(plan, n_samples):
    """Output samples (48 kHz) where each inner seam's crossfade starts."""
    return [(p.emit[0] - plan.origin) * SAMPLES_PER_FRAME * 3 + LATENCY for p in plan.pieces()[1:]
            if (p.emit[0] - plan.origin) * SAMPLES_PER_FRAME * 3 < n_samples]


STEREO = MONO.replace("sample_rate: 16000, channels: 1", "sample_rate: 48000, channels: 2")


def test_loop_wraps_as_smoothly_as_its_interior_seams(scene_file, tiny_model_dir, tmp_path):
    """On the stereo 48 kHz output, width and air at their defaults: the wrap runs through them too."""
    from soundscape.audio.loudness import LoudnessController

    assert LoudnessController(48000).latency == LATENCY
    scene_file.write_text(STEREO)
    out, timeline = tmp_path / "loop.wav", tmp_path / "t.jsonl"
    code = main(["render", str(scene_file), "-o", str(out), "--duration", "20", "--loop", "--timeline", str(timeline),
                 "--model", str(tiny_model_dir), "--quiet"])
    assert code == 0
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 48000 and audio.shape == (20 * 48000, 2)  # exactly the length asked for
    assert not np.array_equal(audio[:, 0], audio[:, 1])  # stereo, not the same signal twice
    assert not (tmp_path / "loop.wav.state.npz").exists() and not (tmp_path / "loop.wav.segments").exists()
    # Played twice end to end: the wrap is one more seam, with the loop's x-sample crossfade before it.
    from soundscape.render.segmented import make_plan
    from soundscape.render.workers import Settings
    from soundscape.scene.quality import resolve
    from soundscape.stream.scene_stream import chunk_spec

    scene = _scene(STEREO)
    spec = chunk_spec(resolve(scene.generation, None, "cpu").generation)
    plan, total = make_plan(Settings(scene=scene, seed=scene.seed, model="", spec=spec, quality="balanced"),
                            20.0, 48000, loop=True)
    assert total == len(audio) and len(plan.bridges) == len(plan.segments)  # inner bridges and the wrap
    x = spec.xfade * SAMPLES_PER_FRAME * 3
    inner = _seams_of(plan, len(audio))
    wrap = len(audio) - x + LATENCY
    k = len(inner)
    for channel in audio.T:
        twice = np.concatenate([channel, channel])
        report = analyse_seams(twice, 48000, inner + [wrap] + [len(audio) + s for s in inner], x)
        wrap_step, inner_steps = report["step"][k], report["step"][:k] + report["step"][k + 1:]
        assert wrap_step <= max(report["inside"]), (wrap_step, report["inside"])  # no click
        assert wrap_step <= 1.25 * max(inner_steps), (wrap_step, inner_steps)  # no worse than the other seams
        assert report["jump"][k] <= max(report["jump_inside"]) + 0.5  # no level jump at the wrap
        assert report["repeat"][k] < 0.9  # nothing just heard is heard again
        assert max(report["step"]) <= max(report["inside"])
    # The weights meet themselves: the last piece's are eased most of the way back to the first's.
    rows = [json.loads(line) for line in timeline.read_text().splitlines() if '"chunk"' in line]
    assert [r["chunk"] for r in rows] == list(range(len(plan.pieces())))
    assert rows[0]["start_s"] == 0 and rows[-1]["end_s"] == 20.0 and rows[-1]["bridge"]
    first, middle, last = rows[0]["weights"], rows[len(rows) // 2]["weights"], rows[-1]["weights"]
    assert abs(last["wind"] - first["wind"]) < abs(middle["wind"] - first["wind"])


def test_loop_weights_ease_back_to_the_start():
    from soundscape.stream import controller
    from soundscape.render.loop_file import weights

    scene = _scene()
    loop_s, chunk_s = 20.0, 2.56
    start = controller.weights_at(scene, 0.0)
    assert weights(scene, loop_s, loop_s, chunk_s) == pytest.approx(start, abs=1e-6)  # meets its start
    before = loop_s - chunk_s - 0.01
    assert weights(scene, before, loop_s, chunk_s) == controller.weights_at(scene, before)  # untouched until then
    # Smooth: no step anywhere on the way back.
    ts = np.linspace(loop_s - chunk_s - 1, loop_s, 400)
    wind = np.array([weights(scene, t, loop_s, chunk_s)["wind"] for t in ts])
    assert np.abs(np.diff(wind)).max() < 0.01


def test_loop_plans_are_exact_for_any_length():
    """The wrap bridge takes up whatever is left, so a loop is exactly as long as asked."""
    scene = _scene()
    from soundscape.scene.quality import resolve
    from soundscape.stream.scene_stream import chunk_spec

    spec = chunk_spec(resolve(scene.generation, None, "cpu").generation)
    for frames in range(72, 1500, 37):
        plan = plan_loop(spec, frames, 5)
        pieces = plan.pieces()
        assert plan.emitted_frames() == frames
        assert all(a.emit[1] == b.emit[0] for a, b in zip(pieces, pieces[1:]))
        wrap = plan.bridges[-1]
        assert wrap.to == 0 and wrap.frames % 8 == 0 and wrap.frames - spec.overlap - wrap.tail >= 8
        assert 0.5 * spec.frames <= wrap.frames <= 1.5 * spec.frames


@pytest.mark.parametrize("duration, message", [
    ("20.01", "--loop: expected a duration that is a multiple of 0.04 s"),
    ("2", "--loop: expected a duration of at least 2.88 s"),
])
def test_loop_durations_that_cannot_loop_exactly_are_refused(scene_file, tiny_model_dir, tmp_path, capsys,
                                                             duration, message):
    scene_file.write_text(MONO)
    code = main(["render", str(scene_file), "-o", str(tmp_path / "x.wav"), "--duration", duration, "--loop",
                 "--model", str(tiny_model_dir), "--quiet"])
    assert code == 2 and message in capsys.readouterr().err
