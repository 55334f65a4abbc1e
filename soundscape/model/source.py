"""Where the weights come from: `--model`, then `model:` in the scene, then $SOUNDSCAPE_MODEL, then
cvssp/audioldm2; a hub id (`org/name`) or a local diffusers-format folder.

Light on purpose (no torch, no diffusers): `play` checks the model here before it opens the sound
card, and an instant start (play/instant.py) must sound before the heavy imports are done.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError

DEFAULT_MODEL = "cvssp/audioldm2"


def choose_model(flag: str | None, scene_model: str | None = None) -> str:
    return flag or scene_model or os.environ.get("SOUNDSCAPE_MODEL") or DEFAULT_MODEL


def looks_like_path(model: str) -> bool:
    """A hub id is `org/name`; anything that exists here or starts like a path is a folder."""
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or Path(model).expanduser().exists()


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelError(f"--model {folder}: no such folder; pass a diffusers-format AudioLDM2 folder "
                         f"or a hub id such as {DEFAULT_MODEL}")
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"--model {folder}: not a diffusers pipeline folder (no model_index.json); "
                         f"download one with `hf download {DEFAULT_MODEL} --local-dir DIR`")


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("//")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _resolve_hub_id(model: str) -> str | Path:
    """The cached snapshot of a hub id, else the id itself if the hub answers."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
        raise ModelError(
            f"--model {model}: the weights are not in the local cache and the hub cannot be reached. "
            f"On a connected machine run `hf download {model} --local-dir DIR` "
            f"(about 4.5 GB), copy DIR here and pass --model DIR")
    return model


def resolve_source(model: str) -> str | Path:
    """Where the weights will come from: a checked local folder, a cached snapshot, or the hub.

    Cheap, so `play` can fail on a bad --model before it touches the audio device.
    """
    if looks_like_path(model):
        folder = Path(model).expanduser()
        _check_folder(folder)
        return folder
    return _resolve_hub_id(model)
