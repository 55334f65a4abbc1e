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

The folder is bounded: at each start recordings unused for MAX_AGE_S go, then the least recently used
(an instant start touches its file) until the rest fit in MAX_BYTES, and a `.rec-PID-*` file whose player is
gone (killed mid-recording) is removed. A recording is played only after a look at its samples: the format
we write (FLAC, 16-bit), the rate and channels asked for, finite, and a level between SILENT_DB and LOUD_DB
RMS; anything else is removed (it is recorded again). A cache path that fails (OSError) means no instant
start and no recording, never a stop.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import caches

FORMAT = 1
KEEP_S = 600.0  # the last ten minutes
MIN_S = 30.0  # shorter recordings are not kept: too little to start from without repeats
# What an instant start reads of a recording (cached_audio). It covers the model's load, and it is the
# weave's whole pool until fresh audio adds to it: where the generator is slower than real time or on a
# budget, the first minutes' repeat distance is about this long. Simulated (the weave, 30 minutes at 6 %
# fresh, scripts/repeat_distance.py on the output): 120 s read gave 112 s, 150 s 139 s, 180 s 162 s; the
# target is 2 minutes. 180 s is 69 MB of float32 at 48 kHz stereo, copied into the pool (4 minutes).
START_S = 180.0
MAX_BYTES = 1 << 30  # ~8 scenes' ten minutes at 48 kHz stereo (13 MB a minute)
MAX_AGE_S = 30 * 86400.0  # a recording unused for a month goes
STALE_TMP_S = 3600.0  # a `.rec-*` file with no player id in its name, untouched this long, is left over
SILENT_DB, LOUD_DB = -80.0, -6.0  # RMS bounds of a recording worth playing (the chain aims at -23 LUFS)


def keep_s() -> float:
    try:
        return max(0.0, float(os.environ.get("SOUNDSCAPE_INSTANT_S", KEEP_S)))
    except ValueError:
        return KEEP_S


def _folder() -> Path:
    return caches.folder("audio")


def key_for(scene, model_id: str, rate: int, channels: int) -> str:
    what = {"format": FORMAT, "scene": scene.model_dump(mode="json"), "model": model_id, "rate": rate,
            "channels": channels}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8", "surrogatepass")).hexdigest()


def cached_audio(key: str, rate: int, channels: int, seconds: float | None = None) -> np.ndarray | None:
    """The recorded audio, (n, channels) float32, or None when there is none (or it is unreadable).

    `seconds`: at most this much of it, from a random place. Why: the start needs enough to cover the
    load and to keep repeats far apart until fresh audio adds to the weave's pool (START_S), and the whole
    ten minutes would sit in memory as 230 MB of float32 where the pool keeps four minutes.
    """
    import soundfile as sf

    path = _folder() / f"{key}.flac"
    if keep_s() <= 0:
        return None
    prune()
    try:
        if not path.is_file():
            return None
        with sf.SoundFile(str(path)) as f:
            problem = _format_problem(f, rate, channels)
            if problem is None:
                total = f.frames
                n = total if seconds is None else min(total, int(seconds * rate))
                f.seek(int(np.random.default_rng().integers(0, total - n + 1)))
                audio = f.read(n, dtype="float32", always_2d=True)
                problem = _sample_problem(audio, n)
        if problem is None:
            os.utime(path)  # most recently used: pruned last
    except (sf.LibsndfileError, OSError, RuntimeError) as exc:
        problem = str(exc) or type(exc).__name__
    if problem is not None:
        print(f"soundscape: ignoring an instant-start recording {path} ({problem}); it is recorded again",
              file=sys.stderr)
        _remove(path)
        return None
    return audio


def _format_problem(f, rate: int, channels: int) -> str | None:
    if (f.format, f.subtype) != ("FLAC", "PCM_16"):
        return f"{f.format} {f.subtype}, not the FLAC 16-bit play writes"
    if f.samplerate != rate or f.channels != channels:
        return f"{f.samplerate} Hz, {f.channels} channels where {rate} Hz, {channels} were asked for"
    if f.frames < min(MIN_S, keep_s()) * rate:
        return f"{f.frames / rate:.1f} s, shorter than {min(MIN_S, keep_s()):g} s"
    return None


def _sample_problem(audio: np.ndarray, n: int) -> str | None:
    if len(audio) != n:
        return f"{len(audio)} samples where the file said {n}"
    if not np.isfinite(audio).all():
        return "samples that are not finite numbers"
    rms_db = 10 * np.log10(max(float(np.mean(np.square(audio, dtype=np.float64))), 1e-20))
    if not SILENT_DB <= rms_db <= LOUD_DB:
        return f"a level of {rms_db:.0f} dB RMS, outside {SILENT_DB:g} to {LOUD_DB:g}"
    return None


def _remove(path: Path) -> None:
    import shutil

    try:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    except OSError:
        pass


def prune(now: float | None = None) -> None:
    """Bound the folder: left-over `.rec-*` files, recordings unused for MAX_AGE_S, then LRU to MAX_BYTES."""
    import time

    now = time.time() if now is None else now
    try:
        entries = [(p, p.lstat()) for p in _folder().iterdir()]
    except OSError:
        return  # no folder yet, or unreadable: nothing to bound
    kept = []
    for path, st in entries:
        if path.name.startswith(".rec-"):
            if _left_over(path.name, now - st.st_mtime):
                _remove(path)
        elif now - st.st_mtime > MAX_AGE_S:
            _remove(path)
        else:
            kept.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in kept)
    for _, size, path in sorted(kept):
        if total <= MAX_BYTES:
            break
        _remove(path)
        total -= size


def _left_over(name: str, age_s: float) -> bool:
    """A `.rec-PID-*` file whose player has exited (or an unnamed one untouched for STALE_TMP_S)."""
    pid = name.split("-")[1] if name.count("-") >= 2 else ""
    if not pid.isdigit():
        return age_s > STALE_TMP_S
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


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
        if self.active:
            prune()  # a killed player's `.rec-*` file, and what is past the bounds

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
        # The player's id in the name: a later start removes the file if this player is killed (prune)
        fd, self._tmp = tempfile.mkstemp(prefix=f".rec-{os.getpid()}-", suffix=".flac", dir=folder)
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
            target = _folder() / f"{self.key}.flac"
            if target.is_dir() and not target.is_symlink():
                _remove(target)  # a folder where the recording goes: os.replace cannot replace it
            os.replace(tmp, target)  # atomic: a reader sees one whole file
            prune()
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
