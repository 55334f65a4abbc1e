"""Ctrl-C and SIGTERM that are never lost: both raise KeyboardInterrupt, and one that Python drops is raised again.

Why: Python runs a signal handler between bytecodes of the main thread, wherever it is, and a
KeyboardInterrupt raised inside an object finalizer (`__del__`, a weakref callback) is not raised
at all: it goes to sys.unraisablehook ("Exception ignored in ...") and is dropped. During start-up,
with torch and the model's objects being built and freed, that lost 5 of 48 SIGTERMs. Our hook
notes such a dropped interrupt, and the places that loop (the player's buffering and playing loops,
the end of model loading) call `check()`, which raises it again.

Ground code: it imports nothing of soundscape.
"""

from __future__ import annotations

import signal
import sys

_received = 0  # signals since install()
_dropped = False  # an interrupt went to sys.unraisablehook instead of up the stack
_previous_hook = None


def _handler(signum, frame):
    global _received
    _received += 1
    raise KeyboardInterrupt


def _unraisable(info) -> None:
    global _dropped
    if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
        _dropped = True  # not printed: it is raised again where it can be handled
        return
    _previous_hook(info)


def install() -> None:
    """SIGINT and SIGTERM both stop the CLI like Ctrl-C (a shell's background job starts with SIGINT ignored)."""
    global _received, _dropped, _previous_hook
    _received, _dropped = 0, False
    if sys.unraisablehook is not _unraisable:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def pending() -> bool:
    """A signal arrived since install() (a library may have turned its KeyboardInterrupt into an error)."""
    return _received > 0


def check() -> None:
    """Raise the KeyboardInterrupt that a finalizer swallowed, if one did."""
    global _dropped
    if _dropped:
        _dropped = False
        raise KeyboardInterrupt


def clear() -> None:
    """The interrupt has been handled (the player is fading out, the render is writing its last line)."""
    global _dropped
    _dropped = False
