"""The web mixer's server: a Starlette app on uvicorn, on its own thread in the player's process.

Threads: uvicorn's asyncio loop runs on the "soundscape-web" daemon thread. It validates request
bodies (with the scene files' own pydantic types), hands every change to the main thread through the
Bridge, and pushes live status and audio frames to the page over Server-Sent Events. It reads the
Bridge's status snapshot and the ring's mono tap; it never calls into the engine, and nothing in the
engine, the generator or the PortAudio callback ever waits for it.

Security: bound to 127.0.0.1 only. Every request must carry the token, as the `X-Soundscape-Token`
header or the SameSite=Strict cookie that the first page load (`/?token=...`) sets; otherwise 403.
A Host header other than 127.0.0.1:PORT or localhost:PORT gets 421 (DNS rebinding). No CORS headers
are ever sent, a request with a foreign Origin is refused, and changes must be JSON (a plain HTML
form from another site cannot send that), at most 64 KiB, whole within 10 s. At most
MAX_CONNECTIONS connections at once, each with a request head within 10 s (web_access.py). Any error
in a request is a one-line reply and one line in the terminal, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...errors import SceneError
from ...scene.load import one_line
from ...web_access import foreign_origin, given_token, guarded_protocol, serve_sockets, token_matches
from ...scene import Scene
from ...audio.mixer import Analyzer
from .bodies import (BadRequest, NewLayerBody, PauseBody, PromptBody, SaveBody, StopBody, TimerBody, VolumeBody,
                     WakeBody, WeightsBody, WidthBody, read_body)
from .save import save_new, scene_yaml, slug

STATIC = Path(__file__).parent / "static"
FRAME_S = 1 / 15  # audio frames (meter, spectrogram) per second on the event stream
MAX_CONNECTIONS = 32  # a few pages (an event stream each) and their requests; a flood gets 503


class WebMixer:
    """Owns the token, the listening socket and the uvicorn thread. `start` returns False if it cannot listen."""

    def __init__(self, bridge, ring, player, rate: int, *, port: int = 0, save_dir: Path | None = None,
                 scene_path: str | None = None):
        self.bridge, self.ring, self.player = bridge, ring, player
        self.port = port
        self.save_dir = save_dir
        self.scene_path = scene_path
        self.token = secrets.token_urlsafe(24)
        self.analyzer = Analyzer(rate)
        self.closing = False
        self._frame: tuple[float, dict] = (0.0, {})
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    # Lifecycle (main thread) -------------------------------------------------
    def start(self) -> bool:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            print(f"web: cannot listen on 127.0.0.1:{self.port} ({exc.strerror or exc}); "
                  f"playing without the web mixer (try another --web-port)", file=sys.stderr, flush=True)
            return False
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.guarded(self.app()), log_config=None, log_level="warning", access_log=False,
                                lifespan="off", ws="none", http=guarded_protocol(MAX_CONNECTIONS), loop="asyncio",
                                server_header=False, timeout_graceful_shutdown=2, proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(serve_sockets(self._server, [sock], "web")),
                                        name="soundscape-web", daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        """Tell open pages the player has stopped, then stop the server (a daemon thread: never blocks exit)."""
        self.closing = True
        if self._server is not None:
            time.sleep(2 * FRAME_S)  # let each event stream send its goodbye
            self._server.should_exit = True
            self._thread.join(timeout=3.0)

    # The app -----------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route("/", self.index),
            Route("/api/events", self.events),
            Route("/api/weights", self.weights, methods=["POST"]),
            Route("/api/layers", self.add_layer, methods=["POST"]),
            Route("/api/layers/{name}", self.layer, methods=["PUT", "DELETE"]),
            Route("/api/volume", self.volume, methods=["PUT"]),
            Route("/api/width", self.width, methods=["PUT"]),
            Route("/api/timer", self.timer, methods=["POST"]),
            Route("/api/stop", self.stop, methods=["POST"]),
            Route("/api/pause", self.pause, methods=["POST"]),
            Route("/api/wake", self.wake, methods=["POST"]),
            Route("/api/scene.yaml", self.download),
            Route("/api/save", self.save, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
        return Starlette(routes=routes, exception_handlers={BadRequest: self._bad_request})

    async def _bad_request(self, request: Request, exc: BadRequest) -> Response:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)

    async def index(self, request: Request) -> Response:
        if request.query_params.get("token"):
            # The link's token becomes a cookie, and the address bar loses it.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
            return response
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html; charset=utf-8")

    @property
    def cookie(self) -> str:
        return f"soundscape_{self.port}"  # cookies ignore ports: two players must not share one

    async def _run(self, request: dict) -> Response:
        reply = await asyncio.wrap_future(self.bridge.submit(request))
        return JSONResponse(reply, status_code=200 if reply.get("ok") else 400)

    async def weights(self, request: Request) -> Response:
        body = await read_body(request, WeightsBody)
        return await self._run({"cmd": "set", "weights": dict(body.weights)})

    async def add_layer(self, request: Request) -> Response:
        body = await read_body(request, NewLayerBody)
        return await self._run({"cmd": "add", "layer": body.name, "prompt": body.prompt, "weight": body.weight})

    async def layer(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "DELETE":
            return await self._run({"cmd": "remove", "layer": name})
        body = await read_body(request, PromptBody)
        return await self._run({"cmd": "prompt", "layer": name, "prompt": body.prompt})

    async def volume(self, request: Request) -> Response:
        body = await read_body(request, VolumeBody)
        return await self._run({"cmd": "volume", "volume": body.volume})

    async def width(self, request: Request) -> Response:
        body = await read_body(request, WidthBody)
        return await self._run({"cmd": "width", "width": body.width})

    async def timer(self, request: Request) -> Response:
        body = await read_body(request, TimerBody)
        return await self._run({"cmd": "timer", "action": body.action, "seconds": body.seconds})

    async def stop(self, request: Request) -> Response:
        body = await read_body(request, StopBody)
        return await self._run({"cmd": "stop", "fade_s": body.fade_seconds})

    async def pause(self, request: Request) -> Response:
        body = await read_body(request, PauseBody)
        return await self._run({"cmd": body.action})

    async def wake(self, request: Request) -> Response:
        body = await read_body(request, WakeBody)
        return await self._run({"cmd": "wake", "action": body.action, "at": body.at, "fade_s": body.fade_seconds})

    async def _mix_yaml(self, name: str) -> tuple[str, str]:
        reply = await asyncio.wrap_future(self.bridge.submit({"cmd": "scene"}))
        if not reply.get("ok"):
            raise BadRequest(reply.get("error", "cannot save the scene"))
        try:
            scene = Scene.model_validate({**reply["scene"], "name": name})
            return scene_yaml(scene, self.scene_path), slug(scene.name) + ".yaml"
        except (ValidationError, SceneError) as exc:  # never expected: every change was checked on the way in
            raise BadRequest(f"the mix cannot be saved as a valid scene: {exc}") from None

    async def download(self, request: Request) -> Response:
        try:
            name = SaveBody.model_validate({"name": request.query_params.get("name", "")}).name
        except ValidationError as exc:
            raise BadRequest(one_line(exc)) from None
        text, filename = await self._mix_yaml(name)
        return Response(text, media_type="application/x-yaml",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    async def save(self, request: Request) -> Response:
        body = await read_body(request, SaveBody)
        if self.save_dir is None:
            raise BadRequest("this player has no --web-save-dir; download the scene instead")
        text, filename = await self._mix_yaml(body.name)
        try:
            path = save_new(self.save_dir, filename, text)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return JSONResponse({"ok": True, "path": str(path)})

    # Live status and audio, pushed ------------------------------------------------
    def _state(self) -> dict:
        version, status = self.bridge.snapshot
        return {**status, "save_dir": str(self.save_dir) if self.save_dir else None, "version": version}

    def _audio_frame(self) -> dict:
        """One meter reading and spectrogram column, shared by every open page for FRAME_S."""
        now = time.monotonic()
        if now - self._frame[0] < FRAME_S / 2:
            return self._frame[1]
        audio, position = self.ring.recent(self.analyzer.n_fft, getattr(self.player, "latency_frames", 0))
        frame = self.analyzer.frame(audio, self.player.level_gain(position))
        self._frame = (now, frame)
        return frame

    async def events(self, request: Request) -> Response:
        async def stream():
            yield "retry: 3000\n\n"
            version = -1
            self.bridge.pages += 1  # an open page: the player keeps its buffer shallow (stream/generation_loop.py)
            try:
                while not self.closing:
                    if self.bridge.snapshot[0] != version:
                        state = self._state()
                        version = state["version"]
                        yield f"event: state\ndata: {json.dumps(state)}\n\n"
                    yield f"event: audio\ndata: {json.dumps(self._audio_frame())}\n\n"
                    await asyncio.sleep(FRAME_S)
                yield "event: bye\ndata: {}\n\n"
            finally:
                self.bridge.pages -= 1

        return StreamingResponse(stream(), media_type="text/event-stream")

    # The guard around every request --------------------------------------------------
    def guarded(self, app):
        async def guard(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            request = Request(scope)
            refusal = self._refusal(request)
            if refusal is not None:
                return await refusal(scope, receive, send)

            async def send_with_headers(message):
                if message["type"] == "http.response.start":
                    message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
                await send(message)

            try:
                return await app(scope, receive, send_with_headers)
            except Exception as exc:  # Starlette has answered 500; the terminal gets one line, not a traceback
                print(f"\nweb: {scope.get('method')} {scope.get('path')!r} failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)

        return guard

    def _refusal(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            return PlainTextResponse(f"421: this mixer answers only at http://127.0.0.1:{self.port}/\n",
                                     status_code=421)
        if foreign_origin(request):
            return PlainTextResponse("403: requests from other sites are refused\n", status_code=403)
        link = request.url.path == "/" and request.method == "GET"  # only the printed link carries it in the URL
        if not token_matches(given_token(request, self.cookie, from_query=link), self.token):
            return PlainTextResponse("403: open the link that `soundscape play --web` printed; it carries "
                                     "the token this mixer needs\n", status_code=403)
        return None


SECURITY_HEADERS = [(k.encode(), v.encode()) for k, v in {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}.items()]
