"""The doors both HTTP servers share (the web mixer, play/web/; `serve`, serve/): who is on this
machine, and whether a request carries the token.

Ground code: it imports nothing of soundscape, so both command folders can use it.
"""

from __future__ import annotations

import hmac
import ipaddress

TOKEN_HEADER = "x-soundscape-token"


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def given_token(request, cookie: str, from_query: bool) -> str:
    """The token a request carries: the header, then the cookie, then (where allowed) `?token=`."""
    given = request.headers.get(TOKEN_HEADER) or request.cookies.get(cookie)
    if from_query and request.query_params.get("token"):
        given = request.query_params["token"]
    return given or ""


def token_matches(given: str, token: str) -> bool:
    """A constant-time comparison: how long the check takes says nothing about the token."""
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())
