"""Text encoders on demand and the prompt cache on disk (issue 23): a known scene starts without
loading a text encoder, and plays the same samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SCENE, scene_yaml
from one_stream import is_cached
from soundscape.model.loading import load_model
from soundscape.scene import parse_scene
from soundscape.stream.scene_stream import SceneStream


@pytest.fixture()
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "soundscape" / "prompts"


def _play(model_dir, scene, chunks: int = 2):
    model = load_model(str(model_dir), device="cpu", dtype="fp32", quiet=True, runtime="torch")
    stream = SceneStream(model, scene)
    audio = np.concatenate([stream.next_segment().audio for _ in range(chunks)])
    return model, stream, audio


def test_second_start_loads_no_text_encoder_and_plays_the_same(tiny_model_dir, cache_home):
    scene = parse_scene(SCENE)
    first, _, a = _play(tiny_model_dir, scene)
    assert first.text_loads == 1  # once for all the scene's prompts
    assert first.pipe.text_encoder_2 is None and first.pipe.language_model is None  # released after
    assert first.pipe.vae.encoder is None  # never needed
    assert len(list(cache_home.glob("*.safetensors"))) == 4  # negative, "", two layers
    second, stream, b = _play(tiny_model_dir, scene)
    assert second.text_loads == 0 and stream.encoder.encoded == 0
    np.testing.assert_array_equal(a, b)  # the cached encodings are the same tensors


def test_a_new_prompt_while_released_is_encoded_and_played(tiny_model_dir, cache_home):
    model, stream, _ = _play(tiny_model_dir, parse_scene(SCENE), chunks=1)
    assert model.pipe.text_encoder_2 is None
    edited = parse_scene(scene_yaml({"layers": {"stream": {"prompt": "rain on a tin roof"}}}))
    stream.replace_scene(edited)
    assert model.text_loads == 2 and model.pipe.text_encoder_2 is None  # loaded for it, released again
    seg = stream.next_segment()
    assert np.isfinite(seg.audio).all() and np.abs(seg.audio).max() > 0
    assert is_cached(stream.encoder, "rain on a tin roof")


def test_another_prompt_or_model_misses(tiny_model_dir, tmp_path, cache_home):
    from soundscape.model.tiny import save_tiny_pipeline

    model, stream, _ = _play(tiny_model_dir, parse_scene(SCENE), chunks=1)
    entries = set(cache_home.glob("*.safetensors"))
    # Another model (other text weights): every prompt misses, and is encoded with that model.
    other_dir = save_tiny_pipeline(tmp_path / "other", seed=1)
    other, stream2, _ = _play(other_dir, parse_scene(SCENE), chunks=1)
    assert other.text_loads == 1 and stream2.encoder.encoded == 4
    assert len(set(cache_home.glob("*.safetensors")) - entries) == 4


def test_a_damaged_entry_is_ignored_with_one_line_and_rewritten(tiny_model_dir, cache_home, capfd):
    _play(tiny_model_dir, parse_scene(SCENE), chunks=1)
    entries = sorted(cache_home.glob("*.safetensors"))
    entries[0].write_bytes(entries[0].read_bytes()[:40])  # truncated
    entries[1].write_bytes(b"garbage" * 100)
    capfd.readouterr()
    model, stream, _ = _play(tiny_model_dir, parse_scene(SCENE), chunks=1)
    err = capfd.readouterr().err
    assert err.count("ignoring a damaged prompt cache entry") == 2 and "Traceback" not in err
    assert model.text_loads == 1 and stream.encoder.encoded == 2  # only the two damaged ones
    from safetensors.torch import load_file

    for entry in cache_home.glob("*.safetensors"):  # rewritten whole
        assert set(load_file(str(entry))) == {"t5", "mask", "gpt"}


def test_two_players_at_once_do_not_corrupt_the_cache(tiny_model_dir, tmp_path, cache_home):
    scene = tmp_path / "scene.yaml"
    scene.write_text(SCENE)
    code = ("import sys; from soundscape.model.loading import load_model; from soundscape.scene import load_scene;"
            "from soundscape.generator.conditioning import PromptEncoder;"
            "m = load_model(sys.argv[1], device='cpu', dtype='fp32', quiet=True, runtime='torch');"
            "e = PromptEncoder(m); e.encode_all([f'prompt number {i}' for i in range(12)])")
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(cache_home.parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tiny_model_dir)], env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    from soundscape.generator.conditioning import PromptEncoder

    model = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="torch")
    enc = PromptEncoder(model)
    enc.encode_all([f"prompt number {i}" for i in range(12)])
    assert enc.encoded == 0 and model.text_loads == 0  # all twelve read back whole
    assert not list(Path(cache_home).glob(".tmp-*"))


def test_held_encoders_stay_for_new_prompts_and_go_once_idle(tiny_model_dir, cache_home):
    """serve's PromptEncoder (hold_s): the text encoders load once for a burst of new prompts, stay loaded
    while prompts keep coming, and are released once none has come for hold_s."""
    import time

    from soundscape.generator.conditioning import PromptEncoder
    from soundscape.model import text_encoders

    model = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="torch")
    encoder = PromptEncoder(model, disk=False, hold_s=1.5)
    encoder.encode("rain on a tin roof")
    time.sleep(0.8)
    encoder.encode("wind in the pines")  # within the hold: no second load, and the hold starts again
    assert model.text_loads == 1 and text_encoders.loaded(model)
    time.sleep(0.9)  # 1.7 s after the first prompt, 0.9 s after the last: still held
    assert text_encoders.loaded(model)
    from soundscape.model.loading import TEXT_STAGES

    def released():  # every stage gone (the timer thread drops them one by one)
        return all(getattr(model.pipe, stage) is None for stage in TEXT_STAGES)

    deadline = time.monotonic() + 10
    while not released() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert released() and not text_encoders.loaded(model)
    encoder.encode("wind in the pines")  # known: from memory, nothing loaded
    assert model.text_loads == 1
