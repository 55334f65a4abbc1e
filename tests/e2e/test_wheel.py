"""What a user installs: a wheel built from the checkout, in a fresh virtual environment, run from
a folder outside the checkout. Every other test runs on the editable checkout, which hides files a
wheel leaves out (the pages' static folders were missing once: `serve` could not serve its page).

The environment sees the running interpreter's packages (torch, diffusers: reinstalling them would take
minutes and test pip, not us) by what its sys.path holds, so the suite passes from a venv, a conda-like
prefix or a system install (tests/venv_with_packages.py); it gets soundscape itself only from the wheel.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from conftest import SCENE, start_logged
from venv_with_packages import make_venv

ROOT = Path(__file__).resolve().parents[2]
# What a user's shell has: no PYTHONPATH pointing into a checkout (a test run may set one).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheel")
    dist = folder / "dist"
    # No build isolation: the build uses this machine's setuptools instead of fetching one.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    wheel = next(dist.glob("soundscape-*.whl"))
    env_dir = folder / "venv"
    python = make_venv(env_dir)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall",
                    str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    work = folder / "elsewhere"  # not the checkout: nothing may be read from it
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import soundscape; print(soundscape.__file__)"], cwd=work,
                           env=ENV, check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(env_dir)), f"soundscape came from {where}, not the wheel"
    return {"python": python, "bin": env_dir / "bin", "work": work}


def _start(cmd, cwd: Path, log_path: Path, pattern: str):
    return start_logged(cmd, log_path, pattern, cwd=cwd, env=ENV)


def _get(url: str, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body, dict(r.getheaders())


def _assets(page: str) -> list[str]:
    """Every local file a page loads: scripts, style sheets, icons, images (not its audio streams)."""
    tags = re.findall(r"<(?:script|link|img)\b[^>]*>", page)
    return sorted({m for tag in tags for m in re.findall(r'(?:src|href)="(/[^"]*)"', tag)})


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_from_a_wheel_serves_the_shipped_scenes_its_page_and_every_asset(venv, tiny_model_dir, tmp_path):
    # No --scenes: the scenes that ship inside the package, wherever it is installed.
    proc, url = _start([str(venv["bin"] / "soundscape"), "serve", "--model", str(tiny_model_dir), "--port", "0",
                        "--max-listeners", "1"], venv["work"], tmp_path / "serve.log",
                       r"serve: listening on (http://\S+)")
    try:
        status, body, _ = _get(url, "/")
        assert status == 200, body[:300]
        page = body.decode()
        for name in ("forest", "rain", "night", "thunderstorm"):
            assert f'data-scene="{name}"' in page, f"{name} is not on the page"
        assets = _assets(page)
        assert assets, "the page references no asset"
        for asset in assets:
            status, body, _ = _get(url, asset)
            assert status == 200 and body, f"GET {asset}: {status}"
    finally:
        _stop(proc)


def test_a_wheel_lists_and_plays_the_shipped_scenes_by_name(venv, tiny_model_dir):
    scenes = subprocess.run([str(venv["bin"] / "soundscape"), "scenes"], cwd=venv["work"], capture_output=True,
                            text=True, timeout=60, env=ENV)
    assert scenes.returncode == 0, scenes.stderr
    names = [line.split()[0] for line in scenes.stdout.splitlines() if line.strip()]
    assert {"forest", "rain", "cafe", "ocean", "night", "thunderstorm", "fireplace"} <= set(names), scenes.stdout
    assert "Forest at dawn" in scenes.stdout
    play = subprocess.run([str(venv["bin"] / "soundscape"), "play", "forest", "--model", str(tiny_model_dir),
                           "--output-device", "null", "--duration", "5", "--quiet", "--steps", "2"],
                          cwd=venv["work"], capture_output=True, text=True, timeout=300, env=ENV)
    assert play.returncode == 0, play.stderr
    missing = subprocess.run([str(venv["bin"] / "soundscape"), "play", "no-such-scene"], cwd=venv["work"],
                             capture_output=True, text=True, timeout=60, env=ENV)
    assert missing.returncode == 2 and "soundscape scenes" in missing.stderr and "Traceback" not in missing.stderr


def test_play_web_from_a_wheel_serves_the_mixer_and_every_asset(venv, tiny_model_dir, tmp_path):
    scene = tmp_path / "scene.yaml"
    scene.write_text(SCENE)
    proc, url = _start([str(venv["bin"] / "soundscape"), "play", str(scene), "--model", str(tiny_model_dir),
                        "--output-device", "null", "--web", "--quiet", "--duration", "120"], venv["work"],
                       tmp_path / "play.log", r"web: (http://\S+)")
    try:
        u = urllib.parse.urlsplit(url)
        status, body, headers = _get(url, f"/?{u.query}")
        if status in (302, 303, 307):  # the link's token becomes a cookie
            cookie = headers.get("set-cookie", headers.get("Set-Cookie", "")).split(";")[0]
            status, body, _ = _get(url, "/", {"Cookie": cookie})
        else:
            cookie = headers.get("set-cookie", headers.get("Set-Cookie", "")).split(";")[0]
        assert status == 200, body[:300]
        assets = _assets(body.decode())
        assert {"/static/app.js", "/static/style.css"} <= set(assets), assets
        for asset in assets:
            status, body, _ = _get(url, asset, {"Cookie": cookie})
            assert status == 200 and body, f"GET {asset}: {status}"
    finally:
        _stop(proc)


def test_a_wheel_prints_its_documentation_with_the_references_from_its_own_code(venv):
    # The pages are package data (soundscape/pages links docs/); a wheel must carry the text, not the links.
    def docs(*args):
        return subprocess.run([str(venv["bin"] / "soundscape"), "docs", *args], cwd=venv["work"], capture_output=True,
                              text=True, timeout=120, env=ENV)

    listing = docs()
    assert listing.returncode == 0 and re.search(r"^troubleshooting\s+Troubleshooting$", listing.stdout, re.M)
    scenes = docs("scenes")
    assert scenes.returncode == 0 and "| `output.width` | a number from 0 to 1 | `0.5` |" in scenes.stdout
    commands = docs("commands")
    assert "usage: soundscape docs" in commands.stdout and "<!-- reference" not in commands.stdout
    assert docs("benchmarks").stdout.startswith("# Benchmarks")
