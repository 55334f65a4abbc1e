"""Ctrl-C and SIGTERM that are never lost: both raise KeyboardInterrupt, and both are remembered.

Why remembered: Python runs a signal handler between bytecodes of the main thread, wherever it is,
and a KeyboardInterrupt raised inside an object finalizer (`__del__`, a weakref callback) is printed
as "Exception ignored" and dropped. During start-up, with torch and the model's objects being built
and freed, that lost 5 of 48 SIGTERMs. The places that loop (the player's buffering and playing
loops, the end of model loading) call `check()`, which raises the interrupt again when one was
swallowed; whoever handles a KeyboardInterrupt calls `clear()`.

Ground code: it imports nothing of soundscape.
"""

from __future__ import annotations

import signal

_pending = 0  # signals received since the last clear()


def _handler(signum, frame):
    global _pending
    _pending += 1
    raise KeyboardInterrupt


def install() -> None:
    """SIGINT and SIGTERM both stop the CLI like Ctrl-C (a shell's background job starts with SIGINT ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def pending() -> bool:
    return _pending > 0


def check() -> None:
    """Raise KeyboardInterrupt if a signal arrived and nobody has handled its interrupt yet."""
    if _pending:
        raise KeyboardInterrupt


def clear() -> None:
    """The interrupt has been handled (the player is fading out, the render is writing its last line)."""
    global _pending
    _pending = 0
