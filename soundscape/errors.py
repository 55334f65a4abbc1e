"""User-facing errors and the exit codes the CLI maps them to (the documentation's "Exit codes": soundscape docs exit-codes)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected internal error (a bug: report it)
EXIT_USAGE = 2  # bad scene file or bad command-line value
EXIT_MODEL = 3  # model weights missing, unreachable or corrupt
EXIT_AUDIO = 4  # audio device missing or failing
EXIT_NO_PLAYER = 5  # `set`/`status`: no player (of this user's) listening on the control socket
EXIT_WRITE = 6  # `render`, `enhance`: the output could not be written (disk full, file-size limit)
EXIT_NO_SOUND = 7  # `play`, `serve`: the model made no usable sound (stream/first_sound.py)
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C / SIGTERM before finishing


class SoundscapeError(Exception):
    """An error the user can fix; printed as one line, never a traceback."""

    exit_code = EXIT_FAILURE


class UsageError(SoundscapeError):
    exit_code = EXIT_USAGE


class SceneError(UsageError):
    """A scene file problem. `str()` is the full one-line message."""


class WriteError(SoundscapeError):
    """The output could not be written (a full disk, a file-size limit)."""

    exit_code = EXIT_WRITE


class ModelError(SoundscapeError):
    exit_code = EXIT_MODEL


class AudioDeviceError(SoundscapeError):
    exit_code = EXIT_AUDIO


class NoPlayerError(SoundscapeError):
    exit_code = EXIT_NO_PLAYER


class NoSoundError(SoundscapeError):
    """The model never made a usable first chunk (stream/first_sound.py): stopping beats silence for good."""

    exit_code = EXIT_NO_SOUND


class ChunkRejected(SoundscapeError):
    """Every try at a chunk failed the quality watchdog; `play` keeps covering and tries its next seeds.
    `failed`: the checks the last try failed (silence, clipping, ...)."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, failed: tuple[str, ...] = ()):
        super().__init__(message)
        self.failed = tuple(failed)
