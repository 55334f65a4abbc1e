"""The doors both HTTP servers share (the web mixer, play/web/; `serve`, serve/): who is on this
machine, whether a request carries the token, whether its Host and Origin are ours, and a request
body read with a size cap and a deadline and parsed as one JSON object (play's control socket
parses its lines with the same function).

Ground code: it imports nothing of soundscape, so every command folder can use it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import math

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


# Host and Origin ---------------------------------------------------------------------------------

def local_hosts(port: int) -> tuple[str, ...]:
    """The Host headers a loopback server answers to. Any other name may be a DNS-rebinding page: a site
    that pointed its own name at 127.0.0.1 so that the browser lets it read our answers."""
    return f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"


def foreign_origin(request) -> bool:
    """A request sent by another site's page: its Origin is not the server it was sent to. Browsers send
    Origin on every cross-site POST, PUT and DELETE, and on same-site ones too, where it matches Host."""
    origin = request.headers.get("origin")
    return origin is not None and origin != f"http://{request.headers.get('host', '')}"


def changes_state(request) -> bool:
    return request.method not in ("GET", "HEAD", "OPTIONS")


# Bodies --------------------------------------------------------------------------------------------

MAX_BODY = 64 * 1024
BODY_DEADLINE_S = 10.0  # a client that sends its headers and then stalls is cut off after this
MAX_DIGITS = 30  # no number a request may carry is longer; float() of a 400-digit one overflows


class BadBody(ValueError):
    """A request body refused before it is looked at: the message is the whole one-line reply."""


async def read_json_body(request, max_bytes: int = MAX_BODY, deadline_s: float = BODY_DEADLINE_S) -> dict:
    """The body as one JSON object: `Content-Type: application/json` (a page on another site can send
    text/plain without asking, never JSON), at most `max_bytes` whatever Content-Length says, all of it
    within `deadline_s`. Raises BadBody."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise BadBody("expected a JSON body (Content-Type: application/json)")

    async def read() -> bytes:
        raw = b""
        async for piece in request.stream():
            raw += piece
            if len(raw) > max_bytes:
                raise BadBody(f"the request body is larger than {max_bytes} bytes")
        return raw

    try:
        raw = await asyncio.wait_for(read(), deadline_s)
    except asyncio.TimeoutError:
        raise BadBody(f"the request body did not arrive within {deadline_s:g} s") from None
    except OSError:
        raise BadBody("the client went away") from None
    except Exception as exc:  # starlette's ClientDisconnect, without importing starlette here
        if type(exc).__name__ == "ClientDisconnect":
            raise BadBody("the client went away") from None
        raise
    return parse_json_object(raw or b"null")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"a number of {len(text)} digits; no value here needs more than {MAX_DIGITS}")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]}, a number too large to hold")
    return value


def _constant(name: str):
    raise ValueError(f"{name}, which is not a number")


def parse_json_object(raw: bytes) -> dict:
    """One JSON object from UTF-8 bytes, or BadBody with one line: no NaN or Infinity, no number too long
    to hold, no nesting deep enough to exhaust the parser's recursion."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the request is not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise BadBody("the request is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BadBody(f"the request is not valid JSON ({exc.msg} at character {exc.pos})") from None
    except ValueError as exc:
        raise BadBody(f"the request holds {exc}") from None
    if not isinstance(data, dict):
        raise BadBody("expected a JSON object")
    return data


# Connections ---------------------------------------------------------------------------------------

HEADER_TIMEOUT_S = 10.0  # from a connection (or the end of its last response) to a whole request head


def guarded_protocol(max_connections: int, header_timeout_s: float = HEADER_TIMEOUT_S):
    """uvicorn's h11 protocol with two limits it lacks: at most `max_connections` open at once (more get
    503 and are closed), and a request head must arrive whole within `header_timeout_s` (a client that
    trickles its headers, or opens a connection and says nothing, is cut off). uvicorn already caps a
    head's size (h11, 16 KiB) and closes idle keep-alive connections (5 s)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _head_timer = None
        _last_cycle = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 5\r\n"
                                b"Connection: close\r\n\r\n")
                transport.close()
                return
            self._wait_for_head()

        def _wait_for_head(self) -> None:
            self._last_cycle = self.cycle
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timeout)

        def _head_timeout(self) -> None:
            # No new request head since the timer started (a response in progress is not ours to cut).
            if self.cycle is self._last_cycle and not self.transport.is_closing() \
                    and self.conn.their_state in (h11.IDLE, h11.DONE):
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._wait_for_head()

        def connection_lost(self, exc) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol


async def serve_sockets(server, sockets, who: str) -> None:
    """Run a uvicorn server whose event loop reports its own trouble in one line. Why: out of file
    descriptors, asyncio's accept logs a traceback for every try (it retries by itself, which is right)."""
    import asyncio as _asyncio
    import sys

    said: set[str] = set()

    def one_line(loop, context) -> None:
        exc = context.get("exception")
        text = f"{context.get('message', 'error')}" + (f" ({type(exc).__name__}: {exc})" if exc else "")
        if text not in said:  # once each: a flood must not flood the terminal too
            said.add(text)
            print(f"\n{who}: {text}; carrying on", file=sys.stderr, flush=True)

    _asyncio.get_running_loop().set_exception_handler(one_line)
    await server.serve(sockets=sockets)
