"""The suite from inside a virtualenv: the wheel test's environment, made from a venv's python, still has
the packages the running interpreter has (`--system-site-packages` reached the base interpreter's instead,
and the wheel tests failed with ModuleNotFoundError for torch in a fresh venv)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from venv_with_packages import make_venv

TESTS = Path(__file__).resolve().parents[1]  # where venv_with_packages.py lives
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

INNER = """
import subprocess, sys
sys.path.insert(0, sys.argv[1])
from venv_with_packages import make_venv
inner = make_venv(__import__("pathlib").Path(sys.argv[2]), with_pip=False)
probe = "import torch, soundfile, diffusers, importlib.util; print(importlib.util.find_spec('soundscape'))"
sys.exit(subprocess.run([str(inner), "-c", probe]).returncode)
"""


def test_the_wheel_tests_environment_made_from_inside_a_venv_has_the_packages(tmp_path):
    # A user's venv (no pip: nothing is installed into it), then the wheel test's venv made from its python.
    outer = make_venv(tmp_path / "user-venv", with_pip=False)
    run = subprocess.run([str(outer), "-c", INNER, str(TESTS), str(tmp_path / "wheel-venv")], env=ENV, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    # soundscape itself comes only from what is installed into the environment (the wheel), never the checkout.
    assert run.stdout.strip() == "None", run.stdout
