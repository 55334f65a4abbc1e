"""Who may reach `serve`, checked before anything loads: the token a host needs, and the socket.

Its own module so that the command (main.py) and the Ray Serve deployment (ray_app.py) both use it
without importing each other.
"""

from __future__ import annotations

import secrets
import socket

from ..errors import UsageError
from ..web_access import is_loopback


def check_access(host: str, token: str | None) -> str | None:
    """The token every request must carry, or None (loopback without --token).

    Any host but loopback reaches other machines, so it needs --token; `--token auto` makes one up
    (printed with the URL).
    """
    if token == "auto":
        return secrets.token_urlsafe(18)
    if token is not None and len(token) < 16:
        raise UsageError(f"--token: expected at least 16 characters, got {len(token)}; "
                         f"or --token auto to have one made up")
    if token is None and not is_loopback(host):
        raise UsageError(f"--host {host}: other machines can reach it, so it needs --token SECRET "
                         f"(16+ characters), or --token auto to have one made up and printed")
    return token


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before the model loads, so a taken port fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                         f"pick another --port") from None
    return sock
