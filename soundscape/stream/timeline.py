"""The timeline file (`--timeline`): one JSON line per chunk and per live change.

Light on purpose (no torch): `play` and `render` check the path before the model loads.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError


def check_timeline_path(path) -> None:
    """--timeline: a file we can create; UsageError (exit 2) now rather than after the model has loaded."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--timeline {path}: is a folder; name a file such as {path / 'timeline.jsonl'}")
    if not path.parent.is_dir():
        raise UsageError(f"--timeline {path}: the folder {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--timeline {path}: cannot write there (permission denied); pass another path")
