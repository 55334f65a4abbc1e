"""`soundscape serve`: load the model and scenes, measure a batch, then serve HTTP until stopped."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from ..web_access import guarded_protocol, is_loopback, serve_sockets
from .access import bind, check_access
from .options import ServeOptions



def default_scenes() -> Path:
    from ..scene.shipped import SHIPPED_DIR

    return SHIPPED_DIR


def serve(opts: ServeOptions) -> int:
    from ..model.loading import resolve_source
    from .hub import Hub, load_scenes

    token = check_access(opts.host, opts.token)  # refuse a bad token before anything loads
    scenes = load_scenes(opts.scenes or default_scenes())
    first = next(iter(scenes.values()))[1]
    if opts.ray:
        from .ray_app import run_ray

        return run_ray(opts, token, scenes)
    m = opts.model
    resolve_source(m.model_id(first.model))
    sock = bind(opts.host, opts.port)  # a taken port fails before the model loads
    model = m.load(first.model, quiet=opts.quiet)  # without --keep-encoders: loaded for new prompts (Hub)
    hub = Hub(model, scenes, max_listeners=opts.max_listeners, quality=m.quality, steps=m.steps,
              budget=opts.budget)
    hub.calibrate(quiet=opts.quiet)
    hub.start()
    return run_http(hub, sock, token, quiet=opts.quiet)


def run_http(hub, sock: socket.socket, token: str | None, quiet: bool = False) -> int:
    import uvicorn

    from .app import build_app

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"serve: listening on {url}", file=sys.stderr, flush=True)
    if not is_loopback(host) and not quiet:
        print("serve: on another device, open this URL with this machine's address in place of "
              f"{shown}", file=sys.stderr, flush=True)
    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            hub.stopping = True  # streams end by themselves (a complete response) within 0.05 s
            super().handle_exit(sig, frame)

    # Every listener holds a connection; room beyond them for pages, metrics and control calls.
    protocol = guarded_protocol(max_connections=hub.max_listeners + 32)
    config = uvicorn.Config(build_app(hub, token, port=port), log_config=None, log_level="warning", access_log=False,
                            lifespan="off", ws="none", http=protocol, loop="asyncio", server_header=False,
                            timeout_graceful_shutdown=3, proxy_headers=False)
    server = Server(config)
    try:
        asyncio.run(serve_sockets(server, [sock], "serve"))
    finally:
        hub.stop()
    print(f"serve: stopped; {hub.joined} listeners served, {hub.refused} refused", file=sys.stderr)
    return 0
