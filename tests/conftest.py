"""Shared fixtures: the tiny AudioLDM2 pipeline, saved once per session and loaded like a user's model."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Any Ray cluster a test starts is one node on loopback (Ray reads this when it is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", category=FutureWarning)
# OpenVINO's converted models (the default runtime on a CPU) go to one cache for the whole session, shared with
# the CLI subprocesses, and never to the user's own cache (whose entries the tiny model's would push out).
# The Hugging Face cache stays where it was.
os.environ.setdefault("HF_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                              "huggingface"))
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="soundscape-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

SCENE = """\
name: Test scene
seed: 7
negative_prompt: low quality
layers:
  birds: {prompt: birds singing in a forest, weight: 0.8}
  stream: {prompt: a stream of water, weight: 0.4}
generation: {chunk_seconds: 2.56, overlap_seconds: 0.64, steps: 3, guidance_scale: 3.0}
evolution: {drift: {depth: 0.1, period_seconds: 20}}
output: {fade_in_seconds: 0.5, sample_rate: 48000, channels: 2}
"""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from soundscape.model.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "audioldm2-tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from soundscape.model.loading import load_model

    # fp32 on torch: the parity tests compare with diffusers (torch) to 1e-4; the half-precision paths and
    # OpenVINO (the default runtime on a CPU) have their own tests.
    return load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="torch")


@pytest.fixture()
def scene_file(tmp_path):
    path = tmp_path / "scene.yaml"
    path.write_text(SCENE)
    return path


@pytest.fixture()
def scene(scene_file):
    from soundscape.scene import load_scene

    return load_scene(scene_file)
