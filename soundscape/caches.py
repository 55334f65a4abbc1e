"""The caches under `$XDG_CACHE_HOME/soundscape` (~/.cache/soundscape): where each one lives, what it
holds, and clearing it. One owner: every cache's folder comes from `folder(NAME)`, and `soundscape cache`
lists and clears them all from here.

Counting and clearing never follow a link inside a cache (a link is one entry of no size, and clearing
removes the link, not what it points to); a cache folder that is itself a link (moved to a bigger disk)
is cleared inside its target and kept. What cannot be read or removed is reported, never counted.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

# name -> (folder under the root, what it holds, sub-folders that belong to another cache)
CACHES = {
    "prompts": ("prompts", "encoded prompts", ()),
    "openvino": ("openvino", "OpenVINO's converted and compiled models", ("sources",)),
    "prepared": ("openvino/sources", "prepared weights: which OpenVINO entry each model's stage became", ()),
    "audio": ("audio", "instant-start recordings of what play played", ()),
    "probe": ("probe", "which runtime runs each decoder fastest on this CPU, as measured", ()),
}


def root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "soundscape"


def folder(name: str) -> Path:
    return root() / CACHES[name][0]


@dataclass
class Tally:
    """Files (and links) seen or removed, their bytes, and what could not be read or removed."""

    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


def _walk(name: str, tally: Tally):
    """(path, lstat) of every file and link in the cache, deepest first; folders as (path, None) after their
    contents. Unreadable folders are noted in `tally.problems`."""
    top = folder(name)
    skip = {top / s for s in CACHES[name][2]}

    def onerror(exc: OSError) -> None:
        if Path(exc.filename or "") != top or top.exists() or top.is_symlink():
            tally.problems.append(f"{exc.filename}: {exc.strerror or exc}")

    # Bottom-up, links not followed; `top` itself may be a link to the cache's real folder.
    for here, dirs, files in os.walk(top, topdown=False, onerror=onerror, followlinks=False):
        here = Path(here)
        if here in skip or any(s in here.parents for s in skip):
            continue
        for entry in files + [d for d in dirs if (here / d).is_symlink()]:
            path = here / entry
            try:
                st = os.lstat(path)
            except OSError as exc:
                tally.problems.append(f"{path}: {exc.strerror or exc}")
                continue
            yield path, st
        if here != top:
            yield here, None


def survey(name: str) -> Tally:
    tally = Tally()
    for path, st in _walk(name, tally):
        if st is not None:
            tally.files += 1
            tally.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return tally


def clear(name: str) -> Tally:
    """Remove every file and link in the cache; the tally counts only what was removed."""
    tally = Tally()
    for path, st in _walk(name, tally):
        try:
            if st is None:
                os.rmdir(path)
                continue
            os.unlink(path)
        except FileNotFoundError:
            continue  # removed meanwhile (another player's own trim)
        except OSError as exc:
            if st is not None or exc.errno != errno.ENOTEMPTY:  # ENOTEMPTY: something in it was not removed
                tally.problems.append(f"{path}: {exc.strerror or exc}")
            continue
        tally.files += 1
        tally.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return tally
