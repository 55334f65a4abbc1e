"""Audio files written as they grow, always readable.

WAV and FLAC: the header is rewritten after every write (libsndfile's
SFC_SET_UPDATE_HEADER_AUTO) and the data synced, so a crash, Ctrl-C or
SIGTERM at any moment leaves a valid file holding all audio written so far.

Ogg Vorbis: one continuous stream, never the header update. Why: for Ogg, libsndfile's header
update ends the logical stream and starts a new one at every write, and each restart drops the
encoder's tail (about 0.3 s lost at every chunk; players disagree about the length). The pages are
flushed after every write, so a stopped render is a valid file up to its last page, and closing it
(Ctrl-C, SIGTERM, the end) writes the end of the stream. An Ogg file cannot be continued without
decoding and re-encoding it, so `--resume` is refused for it (`RESUMABLE`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import UsageError

FORMATS = {".wav": ("WAV", "PCM_24"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS")}
RESUMABLE = (".wav", ".flac")  # an uncompressed or lossless file can take more audio after a stop
_SFC_SET_UPDATE_HEADER_AUTO = 0x1061


def check_output_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"-o {path}: expected a file ending in {', '.join(FORMATS)}, got {path.suffix or 'no suffix'!r}")
    if path.is_dir():
        raise UsageError(f"-o {path}: is a directory; name a file such as {path / 'scene.wav'}")
    if not path.parent.exists():
        raise UsageError(f"-o {path}: the folder {path.parent} does not exist; create it first")
    return path


class GrowingAudioFile:
    def __init__(self, path: str | Path, rate: int, channels: int):
        path = check_output_path(path)
        fmt, subtype = FORMATS[path.suffix.lower()]
        try:
            self._f = sf.SoundFile(path, "w", samplerate=rate, channels=channels, format=fmt, subtype=subtype)
        except (sf.LibsndfileError, OSError) as exc:
            raise UsageError(f"-o {path}: cannot write the file: {exc}") from None
        if fmt != "OGG":  # why not for Ogg: see the module's docstring
            # Keep the header's length fields current after every write.
            sf._snd.sf_command(self._f._file, _SFC_SET_UPDATE_HEADER_AUTO, sf._ffi.NULL, sf._snd.SF_TRUE)
        self.path = path
        self.frames = 0

    def write(self, audio: np.ndarray) -> None:
        self._f.write(np.clip(audio, -1.0, 1.0))
        self._f.flush()
        self.frames += len(audio)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def copy_prefix(src: Path, dst: GrowingAudioFile, frames: int, block: int = 1 << 16) -> None:
    """Copy the first `frames` frames of `src` into `dst` (resuming a render)."""
    with sf.SoundFile(src) as f:
        left = frames
        while left > 0:
            data = f.read(min(block, left), dtype="float32", always_2d=True)
            if not len(data):
                break
            dst.write(data)
            left -= len(data)
