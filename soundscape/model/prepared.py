"""Prepared weights: a later start takes the OpenVINO stages from their compiled cache, not from the weights.

The UNet and vocoder run on OpenVINO on a CPU (model/openvino_runtime.py); once their IR is cached,
torch's copies are only read to be freed again. So the first load with a model folder notes which
cache entry each stage became, under a key of the stage's source files (names, sizes, modification
times and, for the hub's cache, the content-addressed blob each file links to). A later load with the
same files builds those stages without weights (on torch's `meta` device, from their configs) and
hands OpenVINO the noted entry: 1.6 GB of fp32 safetensors are neither read nor held for a moment
(docs/benchmarks.md, "Start fast, run light"). A new download, an edited or replaced weights file, or
another precision changes the key: the weights are read and converted as on a first start.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

# The stages this can skip (the ones OpenVINO runs by default) and how to build each without weights.
STAGES = ("unet", "vocoder")


def local_folder(source) -> Path | None:
    """The model's folder on this machine: the folder itself, or the hub cache's snapshot; else None."""
    if isinstance(source, Path):
        return source
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source), local_files_only=True))
    except Exception:  # not in the local cache, or no hub library: nothing to key on
        return None


def source_key(folder: Path, stage: str, precision: torch.dtype) -> str | None:
    """A key of the stage's source files and precision, or None when the folder has no such stage."""
    from .openvino_runtime import CACHE_FORMAT

    sub = folder / stage
    if not sub.is_dir():
        return None
    import openvino as ov

    h = hashlib.sha256(json.dumps({"stage": stage, "precision": str(precision), "format": CACHE_FORMAT,
                                   "openvino": ov.get_version()}, sort_keys=True).encode())
    for f in sorted(sub.iterdir()):
        try:
            st = f.stat()
        except OSError:
            return None
        # resolve(): the hub's snapshot files link to blobs named by their content's hash
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}:{f.resolve().name}\n".encode())
    return f"{stage}-{h.hexdigest()[:24]}"


def _index(root: Path, key: str) -> Path:
    return root / "sources" / key


def find(folder: Path, precision, stages=STAGES) -> dict[str, Path]:
    """{stage: cache entry} for every stage whose entry is noted and complete; {} unless all are."""
    from .openvino_runtime import _cache_dir, looks_like_ir

    root, found = _cache_dir(), {}
    for stage in stages:
        key = source_key(folder, stage, getattr(precision, stage))
        try:
            name = _index(root, key).read_text().strip() if key else ""
        except OSError:
            return {}
        entry = root / name
        if not name or "/" in name or not looks_like_ir(entry / "model.xml") or not (entry / "model.bin").is_file():
            return {}
        found[stage] = entry
    return found


def remember(folder: Path, precision, entries: dict[str, Path]) -> None:
    """Note which cache entry each stage of `folder` became (written atomically; failures are ignored)."""
    from .openvino_runtime import _cache_dir

    root = _cache_dir()
    for stage, entry in entries.items():
        key = source_key(folder, stage, getattr(precision, stage))
        if key is None:
            continue
        path = _index(root, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            tmp.write_text(entry.name)
            os.replace(tmp, path)
        except OSError:
            pass


def build_without_weights(folder: Path, stage: str, dtype: torch.dtype) -> torch.nn.Module:
    """The stage's module from its config alone, every tensor on the `meta` device (no memory)."""
    with torch.device("meta"):
        if stage == "unet":
            from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel

            module = AudioLDM2UNet2DConditionModel.from_config(
                AudioLDM2UNet2DConditionModel.load_config(str(folder / "unet")))
        elif stage == "vocoder":
            from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

            module = SpeechT5HifiGan(SpeechT5HifiGanConfig.from_pretrained(str(folder / "vocoder")))
        else:
            raise ValueError(stage)
    # In place, not `.to(dtype)`: diffusers warns on that for models with fp32 modules (this one has none)
    module._apply(lambda t: t.to(dtype) if t.is_floating_point() else t)
    return module.eval()
