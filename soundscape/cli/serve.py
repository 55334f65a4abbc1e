"""`soundscape serve`: its flags, made into ServeOptions."""

from __future__ import annotations

from .flags import PORT, add_budget, add_model_args, model_options, ranged


def add_parsers(sub) -> None:
    serve = sub.add_parser("serve", help="stream scenes over HTTP to many listeners from one model",
                           description="Serve every scene in a folder over HTTP: each listener gets an endless "
                                       "stream of their own (Ogg/Opus or MP3); all are generated in shared batches.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; any other needs --token)")
    serve.add_argument("--port", type=PORT, default=8000, help="port (default 8000; 0: a free one)")
    serve.add_argument("--scenes", metavar="DIR", help="folder of scene files (default: the shipped scenes/)")
    serve.add_argument("--max-listeners", type=ranged(1, 1024), default=8, metavar="K",
                       help="listeners at once, per replica (default 8; fewer when the measured batch cost "
                            "says so)")
    serve.add_argument("--token", help="access token every request must carry (?token=), 16+ characters, or `auto` "
                                       "to have one made up and printed; required for a --host other than loopback")
    add_model_args(serve)
    add_budget(serve)
    serve.add_argument("--quiet", action="store_true", help="fewer messages")
    scale = serve.add_argument_group("Ray Serve (pip install \"soundscape[ray]\"; soundscape docs serving)")
    scale.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                       help="run as a Ray Serve deployment: one model per replica (auto: the cluster this "
                            "machine belongs to, else a local one)")
    scale.add_argument("--min-replicas", type=ranged(1, 1024), default=1, metavar="N")
    scale.add_argument("--max-replicas", type=ranged(1, 1024), default=1, metavar="N")
    scale.add_argument("--gpus-per-replica", type=ranged(0, 64, kind=float), default=None, metavar="G",
                       help="GPUs each replica holds (default: 1 when the cluster has GPUs, else 0)")


def cmd_serve(ns) -> int:
    from ..serve.main import serve
    from ..serve.options import ServeOptions

    return serve(ServeOptions(host=ns.host, port=ns.port, scenes=ns.scenes, max_listeners=ns.max_listeners,
                              token=ns.token, model=model_options(ns), quiet=ns.quiet, ray=ns.ray,
                              min_replicas=ns.min_replicas, max_replicas=ns.max_replicas,
                              gpus_per_replica=ns.gpus_per_replica, budget=ns.budget))


COMMANDS = {"serve": cmd_serve}
