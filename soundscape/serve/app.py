"""The HTTP face of `soundscape serve`: a Starlette app over one Hub.

  GET  /                        the page: every scene with a player and a volume (Media Session: the lock
                                screen's controls); /serve.js, /icon.svg and /manifest.webmanifest (the
                                page on a phone's home screen) with it, and its icons (ICONS: no token
                                needed, as a launcher fetches them without the page's cookie); with a
                                token, the manifest's start_url carries it, so the installed app opens
                                after the browser has dropped its session cookie
  GET  /stream/{scene}          an endless stream for this listener alone (?format=opus|mp3, ?seed=N,
                                ?width=0..1: its stereo width from the start, else the scene's output.width);
                                its id is in the X-Listener-Id header; 503 + Retry-After when full
  POST /listeners/{id}/set      JSON {"weights": {LAYER: 0..1}} (or the weights alone), applied through
                                the same LiveControl as `play`; also {"cmd": "prompt"|"add"|"remove"|"status", ...}
                                and {"cmd": "width", "width": 0..1} (the stereo width, from the next chunk)
  HEAD /stream/{scene}          the stream's headers; admits and counts no listener
  GET  /metrics                 Prometheus text
  GET  /healthz                 200 "ok" while the generator runs
Pace: a listener gets LEAD_S of audio at once, then audio as its clock advances (real time), so
the browser's buffer stays about LEAD_S deep and the server never runs far ahead of what is heard.
Doors (the web mixer's, shared through web_access.py):
  - with a token (any host but loopback needs one), every request carries it as ?token=, the
    X-Soundscape-Token header or the cookie the page sets; else 403;
  - without one (loopback), a Host other than 127.0.0.1:PORT, localhost:PORT or [::1]:PORT gets 421,
    so a web page that rebinds its own name to 127.0.0.1 cannot read or change anything;
  - a POST whose Origin is another site gets 403; a control body must be application/json (a page
    on another site can send text/plain without asking, never JSON), at most 64 KiB, whole within 10 s;
  - a listener's id is its secret: only its own stream's X-Listener-Id header carries it (128 random
    bits); /metrics labels listeners by their number (X-Listener-Number), never by id;
  - any error in a request is a one-line reply and one line in the log, never a traceback.
"""

from __future__ import annotations

import asyncio
import html
import json
import sys
import time
import urllib.parse
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .encode import FORMATS
from ..units import parse_seed
from ..web_access import (BadBody, changes_state, foreign_origin, given_token, local_hosts, read_json_body,
                          token_matches)
from .hub import Full, Hub
from .listener import BLOCK_S, LEAD_S, Listener
from .metrics import CONTENT_TYPE, registry_for, render

STATIC = Path(__file__).parent / "static"
COOKIE = "soundscape_serve_token"
# The icons a launcher or a home screen fetches (scripts/make_icons.py draws them from icon.svg)
ICONS = {"icon-192.png": "image/png", "icon-512.png": "image/png", "icon-maskable-512.png": "image/png",
         "apple-touch-icon.png": "image/png", "favicon.ico": "image/x-icon"}
COMMANDS = ("set", "prompt", "add", "remove", "width", "status")


class ListenerResponse(StreamingResponse):
    """The stream, and the listener's slot freed however it ends (done, disconnected, cancelled)."""

    def __init__(self, hub: Hub, listener: Listener, remote=None, **kw):
        super().__init__(_paced(hub, listener), **kw)
        self.hub, self.listener, self.remote = hub, listener, remote

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        except OSError:
            pass  # the listener went away mid-write: that is how streams end
        finally:
            self.hub.leave(self.listener)
            if self.remote is not None:
                self.remote.left(self.listener)


async def _paced(hub: Hub, listener: Listener):
    """The listener's bytes: nothing until its first chunk is buffered (never silence), then its clock.

    Ends (a complete response) when the server stops, so shutting down never cancels a stream mid-write, and
    (empty) when its model made no usable first chunk (stream/first_sound.py).
    """
    rate = listener.rate
    while not listener.started:
        if hub.stopping:
            return
        if listener.gen.first.gave_up is not None:
            # No usable sound for this stream (stream/first_sound.py): it ends (an empty body); the server and
            # every other listener go on.
            print(f"serve: listener {listener.number} ({listener.scene_name}): {listener.gen.first.gave_up}; "
                  f"its stream has ended", file=sys.stderr, flush=True)
            return
        listener.pump()
        await asyncio.sleep(0.02)
    started, sent = time.monotonic(), 0
    lead, block = int(LEAD_S * rate), int(BLOCK_S * rate)
    while not hub.stopping:
        due = int((time.monotonic() - started) * rate) + lead - sent
        if due >= block:
            data = listener.pull(due)
            sent += due
            if data:
                yield data
        else:
            listener.pump()
        await asyncio.sleep(BLOCK_S / 2)
    tail = listener.close()
    if tail:
        yield tail


def _width(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"width: expected a number from 0 to 1, got {text!r}")
    return value


def _seed(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise ValueError(f"seed: {exc}") from None


def _index_page(hub: Hub, token: str | None) -> Response:
    """The page: every scene with a player, a volume and a width (and the token's cookie, when there is one)."""
    query = f"&token={token}" if token else ""
    items = []
    for name, (_, scene) in hub.scenes.items():
        src = html.escape(f"/stream/{name}?format=opus{query}")
        items.append(
            f'<li class="scene"><h2>{html.escape(scene.name)}</h2>'
            f'<p>{html.escape(scene.description or "")}</p>'
            f'<audio controls preload="none" data-scene="{html.escape(name)}" src="{src}"></audio>'
            f'<label>volume <input type="range" class="volume" min="0" max="1" step="0.01" value="0.8">'
            f'</label>'
            f'<label title="0: the same sound in both ears; applies when the stream starts">width '
            f'<input type="range" class="width" min="0" max="1" step="0.05" '
            f'value="{scene.output.width:g}"></label></li>')
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{scenes}}", "\n".join(items))
    response = HTMLResponse(page)
    if token:
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


def _static(name: str, media_type: str):
    """A route that answers with one of the page's files."""
    async def route(request: Request) -> Response:
        return Response((STATIC / name).read_bytes(), media_type=media_type)
    return route


def _manifest(token: str | None):
    """The web app manifest, in its own type (the W3C spec's), so a phone offers "add to home screen"; with
    a token, its start_url carries it."""
    async def route(request: Request) -> Response:
        data = json.loads((STATIC / "manifest.webmanifest").read_text(encoding="utf-8"))
        if token:  # only a request that carried the token gets here (the doors)
            data["start_url"] = f"/?token={urllib.parse.quote(token)}"
        return Response(json.dumps(data), media_type="application/manifest+json")
    return route


async def _icon_file(request: Request) -> Response:
    name = request.url.path.lstrip("/")
    return Response((STATIC / name).read_bytes(), media_type=ICONS[name], headers={"Cache-Control": "max-age=86400"})


def build_app(hub: Hub, token: str | None = None, remote=None, replica: str | None = None,
              port: int | None = None) -> Starlette:
    """The app over `hub`. Under Ray Serve, `remote` reaches listeners held by other replicas (ray_app.py).
    `port` is the one clients reach (the Host header names it); default: the socket's own."""
    registry = registry_for(hub)

    async def index(request: Request) -> Response:
        return _index_page(hub, token)

    # The page's script and icon (the launcher's icons: ICONS, cached a day).
    script, icon = _static("serve.js", "text/javascript"), _static("icon.svg", "image/svg+xml")

    manifest = _manifest(token)

    async def stream(request: Request) -> Response:
        name = request.path_params["scene"]
        if name not in hub.scenes:
            return PlainTextResponse(f"404: no scene {name!r}; scenes: {', '.join(hub.scenes)}\n", status_code=404)
        fmt = request.query_params.get("format", "opus")
        if fmt not in FORMATS:
            return PlainTextResponse(f"400: format: expected one of {', '.join(FORMATS)}, got {fmt!r}\n",
                                     status_code=400)
        try:
            seed = _seed(request.query_params.get("seed"))
            width = _width(request.query_params.get("width"))
        except ValueError as exc:
            return PlainTextResponse(f"400: {exc}\n", status_code=400)
        if request.method == "HEAD":  # what a stream would be, without admitting (or counting) a listener
            return Response(headers={"Content-Type": FORMATS[fmt].content_type, "Cache-Control": "no-store"})
        try:
            listener = hub.join(name, seed, fmt, width)
        except Full as exc:
            return PlainTextResponse(f"503: {exc}; try again later\n", status_code=503,
                                     headers={"Retry-After": str(exc.retry_after)})
        headers = {"X-Listener-Id": listener.id, "X-Listener-Number": str(listener.number),
                   "X-Seed": str(listener.stream.seed), "Cache-Control": "no-store"}
        if replica:
            headers["X-Replica"] = replica
        if remote is not None:
            remote.joined(listener)
        return ListenerResponse(hub, listener, remote, media_type=listener.encoder.content_type, headers=headers)

    async def control(request: Request) -> Response:
        listener_id = request.path_params["listener"]
        listener = hub.listeners.get(listener_id)
        if listener is not None and listener.live is None:
            listener = None  # its stream has just ended
        if listener is None and remote is None:
            return JSONResponse({"ok": False, "error": "no such listener (it has disconnected?)"}, status_code=404)
        try:
            body = await read_json_body(request)
        except BadBody as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        cmd = body.get("cmd", "set")
        if cmd not in COMMANDS:
            return JSONResponse({"ok": False, "error": f"cmd: expected one of {', '.join(COMMANDS)}, got {cmd!r}"},
                                status_code=400)
        if cmd == "set" and "weights" not in body:
            body = {"cmd": "set", "weights": body}
        body = {**body, "cmd": cmd}
        reply = listener.live.handle(body) if listener is not None else await remote.ask(listener_id, body)
        if reply is None:
            return JSONResponse({"ok": False, "error": "no such listener (it has disconnected?)"}, status_code=404)
        return JSONResponse(reply, status_code=200 if reply.get("ok") else 400)

    async def metrics(request: Request) -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        alive = hub.loop.is_alive()
        return PlainTextResponse("ok\n" if alive else "generator stopped\n", status_code=200 if alive else 503)

    app = Starlette(routes=[
        Route("/", index), Route("/serve.js", script), Route("/icon.svg", icon),
        Route("/manifest.webmanifest", manifest), Route("/stream/{scene}", stream),
        *(Route(f"/{name}", _icon_file) for name in ICONS),
        Route("/listeners/{listener}/set", control, methods=["POST"]),
        Route("/metrics", metrics), Route("/healthz", healthz),
    ])
    return _guarded(app, token, port)


def _refusal(request: Request, token: str | None, port: int | None) -> Response | None:
    """The doors, in order: Host (loopback without a token), Origin (anything that changes state), token."""
    port = port or (request.scope.get("server") or ("", 0))[1]
    if token is None and request.headers.get("host", "") not in local_hosts(port):
        return PlainTextResponse(f"421: this server answers only at http://127.0.0.1:{port}/ (or start it with "
                                 f"--token to reach it by another name)\n", status_code=421)
    if changes_state(request) and foreign_origin(request):
        return PlainTextResponse("403: requests from other sites are refused\n", status_code=403)
    if token is not None and request.url.path.lstrip("/") not in ICONS \
            and not token_matches(given_token(request, COOKIE, from_query=True), token):
        return PlainTextResponse("403: open the URL `soundscape serve` printed; it carries the token\n",
                                 status_code=403)
    return None


def _guarded(app, token: str | None, port: int | None):
    """Every request passes the doors first; an error inside the app is one line in the log, not a traceback
    (Starlette has already answered 500 when it re-raises)."""
    async def guard(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        refusal = _refusal(Request(scope), token, port)
        if refusal is not None:
            return await refusal(scope, receive, send)
        try:
            return await app(scope, receive, send)
        except Exception as exc:
            print(f"serve: {scope.get('method')} {scope.get('path')!r} failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)

    return guard
