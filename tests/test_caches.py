"""One cache owner (issue 31): `soundscape cache` lists every cache and `cache clear [NAME]` removes exactly
what it says; every entry read is checked, a bad one discarded and rebuilt; a folder where a cache file
should be is a miss, never an error; the instant-start folder is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SCENE
from soundscape.model.loading import load_model
from soundscape.scene import parse_scene
from soundscape.stream.scene_stream import SceneStream


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "soundscape"


def _cli(*args, home: Path):
    env = dict(os.environ, XDG_CACHE_HOME=str(home.parent))
    return subprocess.run([sys.executable, "-m", "soundscape", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=120)


def _fill(home: Path) -> None:
    for rel, size in (("prompts/a.safetensors", 1000), ("prompts/b.safetensors", 2000),
                      ("openvino/unet-x/model.bin", 3000), ("openvino/unet-x/model.xml", 10),
                      ("openvino/sources/unet-abc", 8), ("audio/k.flac", 5000)):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(b"x" * size)


def _line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_cache_lists_every_cache_and_clears_exactly_the_one_named(home):
    _fill(home)
    listed = _cli("cache", home=home)
    assert listed.returncode == 0, listed.stderr
    assert "2 files" in _line(listed.stdout, "prompts") and "2 files" in _line(listed.stdout, "openvino")
    assert "1 files" in _line(listed.stdout, "prepared") and "1 files" in _line(listed.stdout, "audio")
    cleared = _cli("cache", "clear", "openvino", home=home)
    assert cleared.returncode == 0 and "removed 2 files" in cleared.stdout, cleared.stdout + cleared.stderr
    assert not (home / "openvino/unet-x").exists() and (home / "openvino/sources/unet-abc").exists()
    assert (home / "prompts/a.safetensors").exists() and (home / "audio/k.flac").exists()
    everything = _cli("cache", "clear", home=home)
    assert "removed 2 files" in _line(everything.stdout, "prompts")
    assert "removed 1 files" in _line(everything.stdout, "audio")
    assert [p for p in home.rglob("*") if not p.is_dir()] == []


def test_clear_counts_only_what_it_removed_through_links(home, tmp_path):
    # The audio cache moved to another disk by a link, and a link inside prompts to a folder elsewhere.
    elsewhere, outside = tmp_path / "bigdisk", tmp_path / "outside"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "sub" / "k.flac").write_bytes(b"x" * 100)
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (home / "prompts").mkdir(parents=True)
    (home / "audio").symlink_to(elsewhere)
    (home / "prompts" / "link").symlink_to(outside)
    listed = _cli("cache", home=home)
    assert "1 files" in _line(listed.stdout, "audio") and "1 files" in _line(listed.stdout, "prompts")
    cleared = _cli("cache", "clear", home=home)
    assert "removed 1 files" in _line(cleared.stdout, "audio"), cleared.stdout
    assert "removed 1 files, 0.0 MiB" in _line(cleared.stdout, "prompts"), cleared.stdout
    assert not (elsewhere / "sub" / "k.flac").exists() and (home / "audio").is_symlink()
    assert (outside / "keep.txt").read_text() == "mine"  # a link is removed, never what it points to


def _play(model_dir, chunks: int = 1):
    model = load_model(str(model_dir), device="cpu", dtype="fp32", quiet=True, runtime="torch")
    stream = SceneStream(model, parse_scene(SCENE))
    return model, stream, np.concatenate([stream.next_segment().audio for _ in range(chunks)])


def _rewrite(path: Path, change) -> None:
    from safetensors.torch import safe_open, save_file

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(change(tensors), str(path), metadata=meta)


@pytest.mark.parametrize("damage", ["nan", "shape", "folder"])
def test_a_bad_prompt_entry_is_discarded_and_encoded_again(tiny_model_dir, home, damage, capfd):
    _, _, first = _play(tiny_model_dir)
    entries = sorted((home / "prompts").glob("*.safetensors"))
    assert len(entries) == 4
    for path in entries:
        if damage == "nan":
            _rewrite(path, lambda t: {**t, "t5": torch.full_like(t["t5"], float("nan"))})
        elif damage == "shape":
            _rewrite(path, lambda t: {**t, "gpt": t["gpt"][:, :, :3].contiguous()})
        else:
            path.unlink()
            path.mkdir()
    capfd.readouterr()
    model, stream, again = _play(tiny_model_dir)
    assert model.text_loads == 1 and stream.encoder.encoded == 4  # every prompt encoded again
    np.testing.assert_array_equal(first, again)  # and plays as before: not silence, not an error
    assert all(p.is_file() for p in entries)  # written again, folders included
    err = capfd.readouterr().err
    assert err.count("ignoring a damaged prompt cache entry") == 4, err


def _record(key: str, audio: np.ndarray, rate: int = 48000, **kw) -> Path:
    from soundscape.play import instant

    path = instant._folder() / f"{key}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, **kw)
    return path


@pytest.mark.parametrize("planted", ["float-wav", "too-loud", "silent", "mono"])
def test_a_planted_recording_is_discarded_not_played(home, monkeypatch, planted, capfd):
    from soundscape.play import instant

    monkeypatch.setenv("SOUNDSCAPE_INSTANT_S", "4")
    n = 5 * 48000
    noise = np.random.default_rng(1).normal(0, 0.05, (n, 2)).astype(np.float32)
    if planted == "float-wav":  # +55 dB RMS: what was played past the limiter
        path = _record("k", noise * 10000, format="WAV", subtype="FLOAT")
    elif planted == "too-loud":
        path = _record("k", np.clip(noise * 30, -1, 1), format="FLAC", subtype="PCM_16")
    elif planted == "silent":
        path = _record("k", noise * 0, format="FLAC", subtype="PCM_16")
    else:
        path = _record("k", noise[:, 0], format="FLAC", subtype="PCM_16")
    assert instant.cached_audio("k", 48000, 2) is None
    assert not path.exists()
    assert "ignoring an instant-start recording" in capfd.readouterr().err
    good = _record("k", noise, format="FLAC", subtype="PCM_16")
    assert instant.cached_audio("k", 48000, 2).shape == (n, 2) and good.exists()


def test_the_audio_cache_is_bounded_and_left_over_recordings_go(home, monkeypatch):
    from soundscape.play import instant

    monkeypatch.setenv("SOUNDSCAPE_INSTANT_S", "4")
    folder = instant._folder()
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    files = {"old.flac": (now - 40 * 86400, 10), "a.flac": (now - 3000, 600), "b.flac": (now - 2000, 600),
             "c.flac": (now - 1000, 600), f".rec-{dead.pid}-x.flac": (now, 10), f".rec-{os.getpid()}-y.flac": (now, 10),
             ".rec-zz.flac": (now - 2 * 3600, 10)}
    for name, (mtime, size) in files.items():
        (folder / name).write_bytes(b"x" * size)
        os.utime(folder / name, (mtime, mtime))
    monkeypatch.setattr(instant, "MAX_BYTES", 1300)
    instant.prune()
    left = sorted(p.name for p in folder.iterdir())
    # a month unused, a killed player's file, an old unnamed one, and the least recently used past the size go
    assert left == sorted([".rec-%d-y.flac" % os.getpid(), "b.flac", "c.flac"]), left


def test_a_folder_where_the_recording_goes_is_replaced(home, monkeypatch):
    from soundscape.play import instant

    monkeypatch.setenv("SOUNDSCAPE_INSTANT_S", "4")
    (instant._folder() / "k.flac").mkdir(parents=True)
    assert instant.cached_audio("k", 48000, 2) is None
    rec = instant.Recorder("k", 48000, 2)
    rec.add(np.full((5 * 48000, 2), 0.1, np.float32))
    rec.stop()
    assert instant.cached_audio("k", 48000, 2).shape == (5 * 48000, 2)


def _render(scene_file, model_dir, out, home):
    env = dict(os.environ, XDG_CACHE_HOME=str(home.parent))
    return subprocess.run([sys.executable, "-m", "soundscape", "render", str(scene_file), "--model", str(model_dir),
                           "--runtime", "openvino", "--duration", "3", "-o", str(out)], capture_output=True,
                          text=True, encoding="utf-8", env=env, timeout=600)


def test_a_damaged_openvino_entry_is_compiled_again_without_stray_lines(tiny_model_dir, scene_file, tmp_path, home):
    first = _render(scene_file, tiny_model_dir, tmp_path / "a.wav", home)
    assert first.returncode == 0, first.stderr[-2000:]
    for where in ("shapes", "entry"):  # a static shape's IR, then the converted model's own
        xmls = [p for p in (home / "openvino").rglob("model.xml") if ("shapes" in p.parts) == (where == "shapes")]
        assert xmls
        for xml in xmls:
            xml.write_text("garbage<")
        again = _render(scene_file, tiny_model_dir, tmp_path / f"{where}.wav", home)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "tensorflow" not in again.stderr and "E0000" not in again.stderr, again.stderr[-2000:]
        assert sf.info(str(tmp_path / f"{where}.wav")).duration == pytest.approx(3.0)
