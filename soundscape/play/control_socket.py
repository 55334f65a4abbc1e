"""Live control of a running player over a Unix-domain socket (no network port).

Protocol: one JSON object per connection, one JSON reply, then the connection closes.
  {"cmd": "status"}                                -> {"ok": true, "status": {...}}
  {"cmd": "set", "weights": {"birds": 0.2}}        -> {"ok": true, "applied": {...}}
  {"cmd": "prompt", "layer": "owls", "prompt": ..} -> {"ok": true, "applied": {...}}
  errors                                           -> {"ok": false, "error": "..."}
Security: the socket lives in a folder only its user can enter (0700), is itself 0600,
and a peer whose uid differs from ours is refused (SO_PEERCRED). The client checks the same from
its side: the folder and the listening process must be its own user's, so `set` never talks to a
socket another user planted in a shared temp folder.
Robustness: the server is polled from the engine's main thread (handlers never race the feeder), and
never blocks it: connections are non-blocking, each request must arrive whole within
REQUEST_DEADLINE_S and within MAX_REQUEST bytes, at most MAX_PENDING wait at once, and running out
of file descriptors leaves the connection in the backlog for a later tick. Every request is checked
with the scene's types (stream/control_requests.py); whatever a client sends, it gets one line back.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NoPlayerError, UsageError
from ..web_access import parse_json_object

MAX_REQUEST = 64 * 1024
REQUEST_DEADLINE_S = 2.0  # a client that trickles its request is answered with an error after this
MAX_PENDING = 8  # requests being read at once; more are answered "busy" at once
MAX_PATH_BYTES = 107  # sun_path holds 108 bytes with its NUL


def default_socket_path() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(base) / "soundscape" if base else Path(tempfile.gettempdir()) / f"soundscape-{os.getuid()}"
    return folder / "control.sock"


def _private_folder(folder: Path) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"--control: {folder} is not a folder (a file is in the way); pass another path") from None
    except OSError as exc:
        raise UsageError(f"--control: cannot create the folder {folder} ({exc.strerror}); pass another path") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise UsageError(f"--control: {folder} must belong to you and be private (chmod 700 {folder})")


def _peer_uid(conn: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def check_socket_path(path: str | Path | None) -> Path:
    """The socket's path, its folder made private; UsageError (exit 2) before the model loads if it cannot be."""
    path = Path(path) if path else default_socket_path()
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise UsageError(f"--control {path}: a socket path holds at most {MAX_PATH_BYTES} bytes; pass a shorter one")
    _private_folder(path.parent)
    if path.is_dir():
        raise UsageError(f"--control {path}: is a folder; pass a file path such as {path / 'control.sock'}")
    if path.exists() and _alive(path):
        raise UsageError(f"--control {path}: another player is already listening there; "
                         f"stop it or pass another --control path")
    return path


@dataclass
class _Pending:
    """A connection whose request is still arriving."""

    conn: socket.socket
    deadline: float
    data: bytearray = field(default_factory=bytearray)


class ControlServer:
    def __init__(self, path: str | Path | None, handler):
        self.path = check_socket_path(path)
        self.handler = handler
        self.pending: list[_Pending] = []
        self._warned_fds = False
        if self.path.exists():
            if _alive(self.path):
                raise UsageError(f"--control {self.path}: another player is already listening there; "
                                 f"stop it or pass another --control path")
            self.path.unlink()  # left over from a player that died
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600, with no window where others could connect
        try:
            self.sock.bind(str(self.path))
        except OSError as exc:
            self.sock.close()
            raise UsageError(f"--control {self.path}: cannot listen there ({exc.strerror or exc}); "
                             f"pass another path") from None
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.sock.listen(8)
        self.sock.setblocking(False)

    def poll(self) -> None:
        """Accept what is waiting and read what has arrived; returns at once, whatever clients do."""
        self._accept()
        now = time.monotonic()
        for p in list(self.pending):
            self._read(p, now)

    def _accept(self) -> None:
        for _ in range(MAX_PENDING):
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: the request waits in the backlog for a later tick
                if not self._warned_fds:
                    self._warned_fds = True
                    print(f"\nsoundscape: control socket: cannot accept a connection ({exc.strerror or exc}); "
                          f"playing on", file=sys.stderr)
                return
            conn.setblocking(False)
            uid = _peer_uid(conn)
            if uid is not None and uid != os.getuid():
                self._reply(conn, {"ok": False, "error": "refused: the player belongs to another user"})
            elif len(self.pending) >= MAX_PENDING:
                self._reply(conn, {"ok": False, "error": "busy: too many requests at once; try again"})
            else:
                self.pending.append(_Pending(conn, time.monotonic() + REQUEST_DEADLINE_S))

    def _read(self, p: _Pending, now: float) -> None:
        ended = False
        try:
            chunk = p.conn.recv(MAX_REQUEST + 1 - len(p.data))
            ended = not chunk  # the client closed its side: what came is the request
            p.data += chunk
        except BlockingIOError:
            pass
        except OSError:
            self._drop(p)
            return
        if len(p.data) > MAX_REQUEST:
            reply = {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"}
        elif b"\n" in p.data or (ended and p.data):
            reply = self._answer(bytes(p.data).split(b"\n", 1)[0])
        elif ended:
            self._drop(p)
            return
        elif now > p.deadline:
            reply = {"ok": False, "error": f"the request did not arrive whole within {REQUEST_DEADLINE_S:g} s"}
        else:
            return
        self.pending.remove(p)
        self._reply(p.conn, reply)

    def _answer(self, line: bytes) -> dict:
        try:
            request = parse_json_object(line)
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        return self.handler(request)

    def _reply(self, conn: socket.socket, reply: dict) -> None:
        try:
            # Non-blocking: a reply is a few KB and the socket's buffer holds far more; a client that
            # never reads loses its reply rather than holding the player.
            conn.send((json.dumps(reply) + "\n").encode())
        except OSError:
            pass
        conn.close()

    def _drop(self, p: _Pending) -> None:
        if p in self.pending:
            self.pending.remove(p)
        p.conn.close()

    def close(self) -> None:
        for p in list(self.pending):
            self._drop(p)
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _alive(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def request(path: str | Path | None, payload: dict, timeout: float = 10.0) -> dict:
    """Client side: send one request to the running player and return its reply."""
    path = Path(path) if path else default_socket_path()
    try:
        owner = path.parent.stat().st_uid
    except OSError:
        owner = os.getuid()  # no folder: connect() below says there is no player
    if owner != os.getuid():
        raise NoPlayerError(f"no player of yours is running at {path}: its folder {path.parent} belongs to user "
                            f"{owner}, not you (someone else's socket in a shared folder?); refusing to talk to it")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except PermissionError:
        s.close()
        raise NoPlayerError(f"cannot reach the player at {path}: permission denied (another user's player?)") from None
    except OSError:  # no such file, refused (a dead player's socket), a path through a file...
        s.close()
        raise NoPlayerError(f"no player is running at {path}; start one with `soundscape play SCENE`"
                            f"{' --control ' + str(path) if path != default_socket_path() else ''}") from None
    peer = _peer_uid(s)
    if peer is not None and peer != os.getuid():
        s.close()
        raise NoPlayerError(f"no player of yours is running at {path}: the process listening there is user "
                            f"{peer}'s, not yours; refusing to talk to it")
    try:
        s.sendall((json.dumps(payload) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise NoPlayerError(f"the player at {path} did not answer ({exc})") from None
    finally:
        s.close()
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:
        raise NoPlayerError(f"the player at {path} sent no valid answer") from None
