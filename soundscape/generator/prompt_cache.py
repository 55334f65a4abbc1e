"""Encoded prompts on disk, so a known scene starts without loading a text encoder.

One file per prompt, `$XDG_CACHE_HOME/soundscape/prompts/<key>.safetensors`, holding the three
tensors of a PromptEmbedding (T5 sequence, its mask, the GPT-2 tokens). The key hashes:
  - the prompt's text,
  - a fingerprint of the model's text side: for each file under text_encoder/, text_encoder_2/,
    projection_model/, language_model/, tokenizer/ and tokenizer_2/, its path, size and first and
    last 64 KiB (a new download or an edited config changes it; reading 4.5 GB to hash it would
    cost more than encoding),
  - the encoder settings: the text encoders' dtype, the device type, torch's and transformers'
    versions and FORMAT below.
The same key is stored inside the file (safetensors metadata): a foreign or mismatched file is a miss.
Writes go to a temporary file that is then renamed, so a reader never sees half a file and two
players writing the same prompt do not corrupt it. A damaged file is reported once, removed and
rewritten; so is an entry whose tensors are not what an encoder makes (shapes, dtypes, a mask of 0s and
1s, finite values: one NaN would make its scene silent for good). Any OSError on the cache's paths (a
folder where a file should be, a read-only home) means carrying on without the cache. The folder is kept
under MAX_BYTES by removing the least recently used files (a hit
touches its file).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from .. import caches

FORMAT = 1  # bump when what is stored changes
MAX_BYTES = 256 * 2**20  # an entry is 20-150 KB: thousands of prompts
TEXT_FOLDERS = ("text_encoder", "text_encoder_2", "projection_model", "language_model", "tokenizer", "tokenizer_2")
_EDGE = 64 * 1024


def cache_root() -> Path:
    return caches.root()


def text_fingerprint(source) -> str | None:
    """A fingerprint of the text-side files of a model folder (or a hub snapshot); None if not a folder."""
    folder = _folder_of(source)
    if folder is None:
        return None
    h = hashlib.sha256()
    for sub in TEXT_FOLDERS:
        for path in sorted((folder / sub).rglob("*")):
            if not path.is_file():
                continue
            size = path.stat().st_size
            h.update(f"{path.relative_to(folder)}\0{size}\0".encode())
            with open(path, "rb") as f:
                h.update(f.read(_EDGE))
                if size > 2 * _EDGE:
                    f.seek(-_EDGE, os.SEEK_END)
                    h.update(f.read(_EDGE))
    return h.hexdigest()


def _folder_of(source) -> Path | None:
    if source is None:
        return None
    folder = Path(source)
    if folder.is_dir():
        return folder
    try:  # a hub id: its cached snapshot, without touching the network
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source), local_files_only=True))
    except Exception:
        return None


class PromptCache:
    def __init__(self, fingerprint: str, settings: dict, folder: Path | None = None, max_bytes: int = MAX_BYTES,
                 dims: tuple[int, int] | None = None, dtype: torch.dtype | None = None):
        """`dims`: (GPT-2 width, T5 width) the UNet takes; `dtype`: the text encoders'. An entry that does not
        match them is damaged."""
        import transformers

        self.folder = folder or caches.folder("prompts")
        self.max_bytes = max_bytes
        self.dims, self.dtype = dims, dtype
        self.base = json.dumps({"format": FORMAT, "text": fingerprint, "torch": torch.__version__,
                                "transformers": transformers.__version__, **settings}, sort_keys=True)

    def _key(self, prompt: str) -> tuple[str, Path]:
        key = hashlib.sha256(f"{self.base}\0{prompt}".encode("utf-8", "surrogatepass")).hexdigest()
        return key, self.folder / f"{key}.safetensors"

    def get(self, prompt: str) -> dict[str, torch.Tensor] | None:
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        key, path = self._key(prompt)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("key") != key:
                    return None  # another model's or version's entry under a colliding name: a miss
                tensors = {name: f.get_tensor(name) for name in ("t5", "mask", "gpt")}
            problem = self._problem(tensors)
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
            problem = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        if problem:
            print(f"soundscape: ignoring a damaged prompt cache entry {path} ({problem}); it is written again",
                  file=sys.stderr)
            _remove(path)
            return None
        try:
            os.utime(path)  # most recently used
        except OSError:
            pass
        return tensors

    def _problem(self, t: dict[str, torch.Tensor]) -> str | None:
        """What makes these tensors unlike an encoder's output (None when they are fine)."""
        t5, mask, gpt = t["t5"], t["mask"], t["gpt"]
        if t5.dim() != 3 or gpt.dim() != 3 or mask.dim() != 2 or len({len(t5), len(gpt), len(mask), 1}) != 1:
            return f"shapes t5 {tuple(t5.shape)}, mask {tuple(mask.shape)}, gpt {tuple(gpt.shape)}"
        if mask.shape[1] != t5.shape[1] or (self.dims and (gpt.shape[2], t5.shape[2]) != tuple(self.dims)):
            return f"shapes t5 {tuple(t5.shape)}, mask {tuple(mask.shape)}, gpt {tuple(gpt.shape)}"
        if mask.is_floating_point() or not bool(((mask == 0) | (mask == 1)).all()):
            return f"a mask of {mask.dtype} that is not all 0s and 1s"
        for name, x in (("t5", t5), ("gpt", gpt)):
            if not x.is_floating_point() or (self.dtype is not None and x.dtype != self.dtype):
                return f"{name} holds {x.dtype}"
            if not bool(torch.isfinite(x).all()):
                return f"{name} holds values that are not finite numbers"
        return None

    def put(self, prompt: str, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        key, path = self._key(prompt)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=self.folder)
            os.close(fd)
            save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp,
                      metadata={"key": key})
            os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        except OSError as exc:  # a full disk or a read-only home: the cache is an optimisation
            print(f"soundscape: cannot write the prompt cache in {self.folder} ({exc.strerror or exc})",
                  file=sys.stderr)
            Path(tmp).unlink(missing_ok=True) if "tmp" in locals() else None
            return
        self._trim()

    def _trim(self) -> None:
        entries = []
        try:
            for p in self.folder.glob("*.safetensors"):
                st = p.lstat()
                entries.append((st.st_mtime, st.st_size, p))
        except OSError:
            return  # removed meanwhile by another player, or unreadable: trimmed next time
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            _remove(p)
            total -= size


def _remove(path: Path) -> None:
    """Remove a cache file, or the folder found where one should be; a failure leaves it (a miss)."""
    import shutil

    try:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    except OSError:
        pass
