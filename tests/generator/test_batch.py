"""Shared batches: B streams in one UNet call give each stream the audio it gets alone."""

from __future__ import annotations

import numpy as np

from soundscape.scene import load_scene
from soundscape.stream.scene_stream import SceneStream, next_segments

from conftest import SCENE, scene_yaml


def test_a_batch_gives_each_stream_its_own_audio(tiny_model, tmp_path):
    # Two scenes whose prompts tokenize to different T5 lengths (padding and masking), three seeds.
    (tmp_path / "a.yaml").write_text(SCENE)
    (tmp_path / "b.yaml").write_text(scene_yaml({"layers": {"birds": {
        "prompt": "a distant thunderstorm rolling over wide open hills at night"}}}))
    a, b = load_scene(tmp_path / "a.yaml"), load_scene(tmp_path / "b.yaml")
    make = lambda: [SceneStream(tiny_model, a, seed=1, out_rate=16000, channels=1),
                    SceneStream(tiny_model, b, seed=2, out_rate=16000, channels=1),
                    SceneStream(tiny_model, a, seed=3, out_rate=16000, channels=1)]
    together, alone = make(), make()
    got = [[] for _ in together]
    for _ in range(3):
        for k, seg in enumerate(next_segments(together)):
            got[k].append(seg.audio[:, 0])
    want = [[s.next_segment().audio[:, 0] for _ in range(3)] for s in alone]
    for g, w in zip(got, want):
        g, w = np.concatenate(g), np.concatenate(w)
        assert g.shape == w.shape
        assert np.abs(g - w).max() < 1e-3 * np.abs(w).max()
    # ...and the streams are not each other's.
    first = [np.concatenate(g) for g in got]
    assert np.abs(first[0] - first[2]).max() > 0.1 * np.abs(first[0]).max()
