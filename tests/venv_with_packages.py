"""A virtual environment that sees the running interpreter's packages by what its `sys.path` holds.

`python -m venv --system-site-packages` reaches the *base* interpreter's site-packages: run from inside a
venv (or a conda-like prefix whose packages sit elsewhere), the new environment has no torch. A `.pth` file
listing the folders this interpreter imports from works from a venv, a conda prefix and a system install alike.
Folders that hold a `soundscape` package (the checkout on PYTHONPATH, an editable install's source) are left
out: the new environment gets soundscape only from whatever is installed into it.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def package_folders() -> list[str]:
    """This interpreter's import folders, less the standard library (a venv has its own) and any soundscape."""
    stdlib = {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("stdlib", "platstdlib")}
    folders = []
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        if not path.is_dir() or str(path) in stdlib or path.name == "lib-dynload":
            continue
        if (path / "soundscape").exists() or str(path) in folders:
            continue
        folders.append(str(path))
    return folders


def make_venv(env_dir: Path, with_pip: bool = True, python: str = sys.executable) -> Path:
    """A new venv at `env_dir` whose imports fall back on this interpreter's packages; its python's path."""
    cmd = [python, "-m", "venv", str(env_dir)] + ([] if with_pip else ["--without-pip"])
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    purelib = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    # After the venv's own site-packages on sys.path, so what is installed into the venv wins.
    (Path(purelib) / "_running_interpreter_packages.pth").write_text("\n".join(package_folders()) + "\n")
    return env_dir / "bin" / "python"
