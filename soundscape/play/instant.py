"""Instant sound: what a scene played last time, kept to start its next `play` at once.

`play` records the fresh audio it plays (after the fade-in, before any live change) into
`$XDG_CACHE_HOME/soundscape/audio/<key>.flac`, a new file every KEEP_S seconds, each replacing the
last when it is done (and at exit, once it holds MIN_S): the cache holds the last few minutes.
The key hashes the scene's whole content (prompts, weights, seed, evolution, output), the model and
the output rate and channels, so a different scene, an edited prompt or another model never plays
another's audio. The next `play` of the scene opens the sound card before the model loads, plays
that audio with the scene's fade-in while the model loads and the first chunk is made, and
crossfades into fresh audio as soon as there is some, the way cover-ups hand back
(audio/feeder.py). `render` never uses it: a render stays deterministic.

$SOUNDSCAPE_INSTANT_S sets KEEP_S (seconds; 0 turns recording and instant starts off).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

FORMAT = 1
KEEP_S = 600.0  # the last ten minutes
MIN_S = 30.0  # shorter recordings are not kept: too little to start from without repeats
START_S = 120.0  # what an instant start reads of a recording (cached_audio)


def keep_s() -> float:
    try:
        return max(0.0, float(os.environ.get("SOUNDSCAPE_INSTANT_S", KEEP_S)))
    except ValueError:
        return KEEP_S


def _folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "soundscape" / "audio"


def key_for(scene, model_id: str, rate: int, channels: int) -> str:
    what = {"format": FORMAT, "scene": scene.model_dump(mode="json"), "model": model_id, "rate": rate,
            "channels": channels}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8", "surrogatepass")).hexdigest()


def cached_audio(key: str, rate: int, channels: int, seconds: float | None = None) -> np.ndarray | None:
    """The recorded audio, (n, channels) float32, or None when there is none (or it is unreadable).

    `seconds`: at most this much of it, from a random place. Why: the start only needs enough to cover
    the load and the first chunk without repeats, and the whole ten minutes would sit in the cover pool
    as 230 MB of float32 until fresh audio replaces it.
    """
    import soundfile as sf

    path = _folder() / f"{key}.flac"
    if keep_s() <= 0 or not path.exists():
        return None
    try:
        with sf.SoundFile(str(path)) as f:
            file_rate, file_channels, total = f.samplerate, f.channels, f.frames
            if file_rate != rate or file_channels != channels or total < min(MIN_S, keep_s()) * rate:
                return None
            n = total if seconds is None else min(total, int(seconds * rate))
            f.seek(int(np.random.default_rng().integers(0, total - n + 1)))
            audio = f.read(n, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, OSError, RuntimeError) as exc:
        print(f"soundscape: ignoring a damaged instant-start recording {path} ({exc})", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None
    return audio if len(audio) == n else None


class Recorder:
    """Writes fresh segments to the cache as they are played (the feeder calls `add`)."""

    def __init__(self, key: str, rate: int, channels: int, skip_frames: int = 0):
        self.key, self.rate, self.channels = key, rate, channels
        self.keep = int(keep_s() * rate)
        self._skip = skip_frames  # the stream's fade-in: not material to start from
        self._file = None
        self._tmp: str | None = None
        self._frames = 0
        self.active = self.keep > 0

    def add(self, audio: np.ndarray) -> None:
        if not self.active:
            return
        if self._skip:
            cut = min(self._skip, len(audio))
            audio, self._skip = audio[cut:], self._skip - cut
        if not len(audio):
            return
        try:
            if self._file is None:
                self._open()
            self._file.write(audio)
            self._frames += len(audio)
            if self._frames >= self.keep:
                self._finish()
        except (OSError, RuntimeError) as exc:  # a full disk: playing matters more than the cache
            print(f"soundscape: stopped recording for instant starts ({exc})", file=sys.stderr)
            self.stop()

    def _open(self) -> None:
        import soundfile as sf

        folder = _folder()
        folder.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=".rec-", suffix=".flac", dir=folder)
        os.close(fd)
        self._file = sf.SoundFile(self._tmp, "w", samplerate=self.rate, channels=self.channels, format="FLAC",
                                  subtype="PCM_16")
        self._frames = 0

    def _finish(self) -> None:
        """Close the file; it replaces the scene's recording when it holds enough."""
        f, tmp, frames = self._file, self._tmp, self._frames
        self._file, self._tmp, self._frames = None, None, 0
        if f is None:
            return
        f.close()
        if frames >= min(MIN_S * self.rate, self.keep):
            os.replace(tmp, _folder() / f"{self.key}.flac")  # atomic: a reader sees one whole file
        else:
            Path(tmp).unlink(missing_ok=True)

    def stop(self) -> None:
        """No more recording (a live change made the audio no longer the scene file's, or the end)."""
        if self.active:
            self.active = False
            try:
                self._finish()
            except (OSError, RuntimeError):
                pass
