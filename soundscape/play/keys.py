"""Keys in the terminal `play` runs in: space pauses and resumes, up and down move the volume, q fades
out and quits. Only when stdin and stderr (where the status line goes) are both a terminal: never
from a pipe, a service, or a harness that captures the output while its own stdin is a terminal
someone else is typing in. The terminal is put in cbreak mode (keys arrive one at a time, Ctrl-C still interrupts) and restored on
the way out, whatever ends the player.

Polled from the engine's main thread with the other per-tick work: `select` with a zero timeout,
so a tick never waits for a key. Each key becomes a request to LiveControl, the door every other
control goes through.
"""

from __future__ import annotations

import os
import select
import sys

VOLUME_STEP = 0.05
QUIT_FADE_S = 2.0
HINT = "keys: space pause/resume, up/down volume, q fade out and quit"


class TerminalKeys:
    def __init__(self, live, stdin=None, stderr=None):
        self.live = live
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stderr = stderr if stderr is not None else sys.stderr
        self.fd: int | None = None
        self._saved = None
        self._pending = b""

    def start(self) -> bool:
        """Take the keys if stdin is a terminal; False (and nothing changed) otherwise."""
        try:
            fd = self.stdin.fileno()
            if not os.isatty(fd) or not os.isatty(self.stderr.fileno()):
                return False
            import termios
            import tty

            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except (OSError, ValueError, AttributeError, ImportError):
            return False
        self.fd = fd
        return True

    def close(self) -> None:
        if self.fd is not None and self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except OSError:
                pass
        self.fd = None

    def tick(self) -> None:
        if self.fd is None:
            return
        try:
            while select.select([self.fd], [], [], 0)[0]:
                data = os.read(self.fd, 64)
                if not data:  # the terminal went away
                    self.close()
                    return
                self._pending += data
        except OSError:
            return
        while self._pending:
            key, self._pending = self._next_key(self._pending)
            if key is None:
                break
            self._press(key)

    @staticmethod
    def _next_key(data: bytes) -> tuple[str | None, bytes]:
        if data.startswith(b"\x1b"):
            if len(data) < 3:  # an arrow key's sequence may still be arriving
                return (None, data) if data in (b"\x1b", b"\x1b[", b"\x1bO") else ("esc", data[1:])
            code = {b"\x1b[A": "up", b"\x1b[B": "down", b"\x1bOA": "up", b"\x1bOB": "down"}.get(data[:3])
            return code or "esc", data[3:]
        return data[:1].decode("latin-1"), data[1:]

    def _press(self, key: str) -> None:
        live = self.live
        if key == " ":
            reply = live.handle({"cmd": "toggle"})
        elif key in ("up", "down"):
            step = VOLUME_STEP if key == "up" else -VOLUME_STEP
            reply = live.handle({"cmd": "volume", "volume": round(min(1.0, max(0.0, live.volume + step)), 3)})
        elif key in ("q", "Q"):
            reply = live.handle({"cmd": "stop", "fade_s": QUIT_FADE_S})
        else:
            return
        if not reply.get("ok"):
            print(f"\nsoundscape: {reply.get('error')}", file=sys.stderr)
