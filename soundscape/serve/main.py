"""`soundscape serve`: load the model and scenes, measure a batch, then serve HTTP until stopped."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import sys
from pathlib import Path

from ..errors import UsageError

SHIPPED_SCENES = Path(__file__).resolve().parents[2] / "scenes"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def default_scenes() -> Path:
    return SHIPPED_SCENES if SHIPPED_SCENES.is_dir() else Path("scenes")


def bind(host: str, port: int) -> socket.socket:
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


def serve(args) -> int:
    from ..model.loading import choose_model, load_model, resolve_source
    from .hub import Hub, load_scenes

    token = check_access(args.host, args.token)  # refuse a bad token before anything loads
    scenes = load_scenes(args.scenes or default_scenes())
    first = next(iter(scenes.values()))[1]
    if args.ray:
        from .ray_app import run_ray

        return run_ray(args, token, scenes)
    resolve_source(choose_model(args.model, first.model))
    sock = bind(args.host, args.port)  # a taken port fails before the model loads
    model = load_model(choose_model(args.model, first.model), device=args.device, dtype=args.dtype,
                       quiet=args.quiet, compile_mode=args.compile, runtime=args.runtime)
    hub = Hub(model, scenes, max_listeners=args.max_listeners, quality=args.quality, steps=args.steps)
    hub.calibrate(quiet=args.quiet)
    hub.start()
    return run_http(hub, sock, token, quiet=args.quiet)


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

    config = uvicorn.Config(build_app(hub, token), log_config=None, log_level="warning", access_log=False,
                            lifespan="off", ws="none", http="h11", loop="asyncio", server_header=False,
                            timeout_graceful_shutdown=3, proxy_headers=False)
    server = Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        hub.stop()
    print(f"serve: stopped; {hub.joined} listeners served, {hub.refused} refused", file=sys.stderr)
    return 0
