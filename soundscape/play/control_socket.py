"""Live control of a running player over a Unix-domain socket (no network port).

Protocol: one JSON object per connection, one JSON reply, then the connection closes.
  {"cmd": "status"}                                -> {"ok": true, "status": {...}}
  {"cmd": "set", "weights": {"birds": 0.2}}        -> {"ok": true, "applied": {...}}
  {"cmd": "prompt", "layer": "owls", "prompt": ..} -> {"ok": true, "applied": {...}}
  errors                                           -> {"ok": false, "error": "..."}
Security: the socket lives in a folder only its user can enter (0700), is itself 0600,
and a peer whose uid differs from ours is refused (SO_PEERCRED). Requests are capped in size.
The server is polled from the engine's main thread, so handlers never race the feeder.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import tempfile
from pathlib import Path

from ..errors import NoPlayerError, UsageError

MAX_REQUEST = 64 * 1024


def default_socket_path() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(base) / "soundscape" if base else Path(tempfile.gettempdir()) / f"soundscape-{os.getuid()}"
    return folder / "control.sock"


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise UsageError(f"--control: {folder} must belong to you and be private (chmod 700 {folder})")


def _peer_uid(conn: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class ControlServer:
    def __init__(self, path: str | Path | None, handler):
        self.path = Path(path) if path else default_socket_path()
        self.handler = handler
        _private_folder(self.path.parent)
        if self.path.exists():
            if _alive(self.path):
                raise UsageError(f"--control {self.path}: another player is already listening there; "
                                 f"stop it or pass another --control path")
            self.path.unlink()  # left over from a player that died
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600, with no window where others could connect
        try:
            self.sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.sock.listen(8)
        self.sock.setblocking(False)

    def poll(self) -> None:
        """Serve whatever requests are waiting; returns at once when none are."""
        while select.select([self.sock], [], [], 0)[0]:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            with conn:
                conn.settimeout(1.0)
                try:
                    reply = self._serve(conn)
                except (OSError, ValueError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                try:
                    conn.sendall((json.dumps(reply) + "\n").encode())
                except OSError:
                    pass

    def _serve(self, conn: socket.socket) -> dict:
        uid = _peer_uid(conn)
        if uid is not None and uid != os.getuid():
            return {"ok": False, "error": "refused: the player belongs to another user"}
        data = b""
        while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        if len(data) > MAX_REQUEST:
            return {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"}
        request = json.loads(data.decode("utf-8"))
        if not isinstance(request, dict):
            raise ValueError("expected a JSON object")
        return self.handler(request)

    def close(self) -> None:
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
