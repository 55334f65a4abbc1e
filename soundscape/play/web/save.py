"""Save as scene: the mix as a scene file that `soundscape validate` accepts."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import yaml

from ...scene import Scene, parse_scene


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "scene"


def scene_yaml(scene: Scene, source: str | None) -> str:
    """The mix as a scene file: defaults left out, so it reads like one a person wrote."""
    data = scene.model_dump(mode="json", exclude_defaults=True)
    data = {"name": data.pop("name"), **data}  # name first
    head = f"# Saved from the soundscape web mixer on {datetime.now():%Y-%m-%d %H:%M}"
    head += f", from {source}.\n" if source else ".\n"
    text = head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    parse_scene(text)  # what we write, `soundscape validate` accepts
    return text


def new_file(folder: Path, filename: str) -> Path:
    """`folder/filename`, or `name-2.yaml`, `name-3.yaml`...: a save never overwrites a file."""
    stem, suffix = filename.rsplit(".", 1)
    for i in range(1, 1000):
        path = folder / (filename if i == 1 else f"{stem}-{i}.{suffix}")
        try:
            path.touch(exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: too many saved scenes named {stem}; pick another name")


def save_new(folder: Path, filename: str, text: str) -> Path:
    """Write `text` to a new file in `folder`; OSError (the folder removed, full or read-only) becomes one
    line the page can show (the request is fine: the folder is not)."""
    try:
        path = new_file(folder, filename)
        path.write_text(text, encoding="utf-8")
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    except OSError as exc:
        raise ValueError(f"cannot save into {folder}: {exc.strerror or exc}; is the folder still there "
                         f"and writable? Download the scene instead") from None
    return path
