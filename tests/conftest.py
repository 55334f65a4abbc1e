"""Shared fixtures: the tiny AudioLDM2 pipeline, saved once per session and loaded like a user's model."""

from __future__ import annotations

import atexit
import copy
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Any Ray cluster a test starts is one node on loopback (Ray reads this when it is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# play records what it plays for the next start (play/instant.py): tests that compare a play with a
# render must start cold, so recording is off unless a test turns it on (tests/test_instant.py).
os.environ.setdefault("SOUNDSCAPE_INSTANT_S", "0")
# `--runtime auto` measures each decoder's runtimes once per machine and model (model/probe.py): a timing can
# choose differently from one cold cache to the next, so the tests that compare two runs keep the defaults;
# tests/test_probe.py turns it on.
os.environ.setdefault("SOUNDSCAPE_PROBE", "0")
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
# SCENE as text is for the YAML reader's own tests (line numbers, tags); every other test changes the scene
# as data, through `scene_yaml`, so an edit cannot silently stop matching.
SCENE_DATA = yaml.safe_load(SCENE)
DELETE = object()  # a change that removes its key


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes`: a dict merges key by key, DELETE removes the key, any other value replaces."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def scene_yaml(changes: dict | None = None, base: dict = SCENE_DATA) -> str:
    """The test scene (or `base`) with `changes` merged in, as a scene file's text. A misspelt key cannot
    edit nothing in silence: the scene's own validation refuses unknown keys."""
    return yaml.safe_dump(merged(base, changes or {}), sort_keys=False, allow_unicode=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from soundscape.model.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "audioldm2-tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from soundscape.model.loading import load_model

    # fp32 on torch: the parity tests compare with diffusers (torch) to 1e-4; the half-precision paths and
    # OpenVINO (the default runtime on a CPU) have their own tests. Encoders resident: those tests run
    # diffusers' own pipeline, which needs them (on demand: tests/test_prompt_cache.py).
    return load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="torch",
                      keep_encoders=True)


@pytest.fixture(scope="session")
def silent_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its vocoder's last convolution (conv_post) all zeros: a model that makes no usable
    sound (every chunk is silence), loaded by the tests through the real loading code (issue 31)."""
    import torch
    from transformers import SpeechT5HifiGan

    folder = tmp_path_factory.mktemp("silent") / "audioldm2-silent"
    shutil.copytree(tiny_model_dir, folder)
    vocoder = SpeechT5HifiGan.from_pretrained(folder / "vocoder")
    with torch.no_grad():
        vocoder.conv_post.weight.zero_()
        vocoder.conv_post.bias.zero_()
    vocoder.save_pretrained(folder / "vocoder")
    return folder


@pytest.fixture()
def scene_file(tmp_path):
    path = tmp_path / "scene.yaml"
    path.write_text(SCENE)
    return path


@pytest.fixture()
def scene(scene_file):
    from soundscape.scene import load_scene

    return load_scene(scene_file)


def start_logged(cmd: list[str], log_path: Path, pattern: str, cwd=None, env=None, timeout: float = 180.0):
    """Start a server process with its output in `log_path`; (process, first group of `pattern`) once it says so."""
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text()
        found = re.search(pattern, text)
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"{cmd[2] if len(cmd) > 2 else cmd[0]} exited {proc.returncode}:\n{text}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"did not start:\n{log_path.read_text()}")


def start_pulse(root: Path, sinks=("cap",)) -> dict:
    """A private PulseAudio server with null sinks (real time), and the environment that plays into it
    through PortAudio's ALSA `default`; stop it with `stop_pulse(env)`."""
    run, home = root / "run", root / "home"
    run.mkdir(mode=0o700)
    home.mkdir()
    asound = root / "asound.conf"
    asound.write_text("pcm.!default { type pulse }\nctl.!default { type pulse }\n")
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run), HOME=str(home), PULSE_SERVER=f"unix:{run}/pulse/native",
               ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{asound}")
    subprocess.run(["pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--load=module-native-protocol-unix",
                    *(f"--load=module-null-sink sink_name={name} rate=48000 channels=2" for name in sinks)],
                   env=env, check=True, capture_output=True, timeout=30)
    return env


def stop_pulse(env: dict) -> None:
    subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=30)


def longest_silence(x, rate: int) -> float:
    """The longest run of silent frames in `x` (frames, channels), in seconds."""
    quiet = abs(x).max(axis=1) < 1e-7
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return longest / rate


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1):
    """`predicate()`'s first truthy value, polled every `every` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s")


def headless_chrome(*extra_args: str):
    """Debian's chromium, headless, driven by its chromedriver; skips the test when either is missing.

    Nothing it loads leaves loopback (host resolver rules, no proxy, no background networking), and
    Selenium Manager is told not to look for a driver or browser online.
    """
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs chromium and chromedriver (apt: chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
                "--disable-client-side-phishing-detection", "--no-proxy-server",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", *extra_args):
        opts.add_argument(arg)
    saved = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    finally:
        if saved is None:
            os.environ.pop("SE_OFFLINE")
        else:
            os.environ["SE_OFFLINE"] = saved


# Keeps what a page hands the Media Session in window.__media, to press its buttons as a lock screen would.
MEDIA_SESSION_HOOK = """
    window.__media = {};
    const set = navigator.mediaSession.setActionHandler.bind(navigator.mediaSession);
    navigator.mediaSession.setActionHandler = (action, handler) => { window.__media[action] = handler;
                                                                     set(action, handler); };"""


@pytest.fixture(autouse=True)
def _keeps_the_locale(request):
    """A library that sets the C locale in-process (seen once in a whole-suite run, after the in-process Ray
    tests; not reproduced alone) makes every later `text=True` subprocess decode as ASCII, and tests that
    never touched it fail on a progress bar's block character. Put it back, and say which test moved it."""
    import locale

    before = locale.setlocale(locale.LC_CTYPE)
    yield
    after = locale.setlocale(locale.LC_CTYPE)
    if after != before:
        locale.setlocale(locale.LC_CTYPE, before)
        warnings.warn(f"{request.node.nodeid} changed the C locale's LC_CTYPE from {before!r} to {after!r}; restored")
