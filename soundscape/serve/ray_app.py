"""`soundscape serve --ray`: the same app as a Ray Serve deployment, one model per replica.

Each replica is a Hub (its own model on its own device, its own GenerationLoop batching its own
listeners) behind the same Starlette app as the single-process server. Ray Serve's proxy routes
each request to the replica with the fewest requests in flight (a listener is one long request),
and an autoscaler keeps between --min-replicas and --max-replicas, aiming at 3/4 of each
replica's listener slots in use. A replica that is full answers 503 like the plain server.

Live control: `POST /listeners/{id}/set` may reach any replica. The one that holds the listener
answers at once; any other hands the request to the named ListenerDirectory actor, from which the
owning replica collects it (every 0.1 s) and returns LiveControl's reply.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

from ..errors import UsageError
from ..units import unreachable
from .access import bind

DIRECTORY = "soundscape-listener-directory"
NAMESPACE = "soundscape"
POLL_S = 0.1


def _directory_class():
    import ray

    @ray.remote(num_cpus=0)
    class ListenerDirectory:
        """listener id -> replica, and the control requests waiting for each replica."""

        def __init__(self):
            self.owner: dict[str, str] = {}
            self.waiting: dict[str, list] = {}
            self.replies: dict[str, asyncio.Future] = {}

        def register(self, listener_id: str, replica: str) -> None:
            self.owner[listener_id] = replica

        def unregister(self, listener_id: str) -> None:
            self.owner.pop(listener_id, None)

        async def ask(self, listener_id: str, body: dict, timeout: float = 10.0):
            replica = self.owner.get(listener_id)
            if replica is None:
                return None
            key = uuid.uuid4().hex
            self.replies[key] = asyncio.get_running_loop().create_future()
            self.waiting.setdefault(replica, []).append((key, listener_id, body))
            try:
                return await asyncio.wait_for(self.replies[key], timeout)
            except asyncio.TimeoutError:
                return {"ok": False, "error": "the listener's replica did not answer"}
            finally:
                self.replies.pop(key, None)

        def take(self, replica: str) -> list:
            return self.waiting.pop(replica, [])

        def answer(self, key: str, reply: dict) -> None:
            future = self.replies.get(key)
            if future is not None and not future.done():
                future.set_result(reply)

    return ListenerDirectory


class RemoteControl:
    """The app's hook for listeners held by another replica (see the module docstring)."""

    def __init__(self, hub, directory, replica: str):
        self.hub, self.directory, self.replica = hub, directory, replica
        self._task: asyncio.Task | None = None

    def joined(self, listener) -> None:
        self.directory.register.remote(listener.id, self.replica)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect())

    def left(self, listener) -> None:
        self.directory.unregister.remote(listener.id)

    async def ask(self, listener_id: str, body: dict) -> dict | None:
        return await self.directory.ask.remote(listener_id, body)

    async def _collect(self) -> None:
        while True:
            for key, listener_id, body in await self.directory.take.remote(self.replica):
                listener = self.hub.listeners.get(listener_id)
                reply = listener.live.handle(body) if listener and listener.live else \
                    {"ok": False, "error": "no such listener (it has disconnected?)"}
                self.directory.answer.remote(key, reply)
            await asyncio.sleep(POLL_S)


def _replica_class():
    from ray import serve

    @serve.ingress()
    class SoundscapeReplica:
        def __init__(self, settings: dict, scene_files: dict, token: str | None):
            import ray
            import torch

            from ..model.loading import load_model
            from ..scene import load_scene
            from .hub import Hub

            device = settings["device"]
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            model = load_model(settings["model"], device=device, dtype=settings["dtype"], quiet=True,
                               runtime=settings["runtime"])
            scenes = {name: (path, load_scene(path)) for name, path in scene_files.items()}
            self.hub = Hub(model, scenes, max_listeners=settings["max_listeners"], quality=settings["quality"],
                           steps=settings["steps"])
            self.hub.calibrate(quiet=True)
            self.hub.start()
            self.token = token
            self.port = settings["port"]  # the proxy's: the one in the Host header
            self.replica = serve.get_replica_context().replica_id.unique_id
            self.remote = RemoteControl(self.hub, ray.get_actor(DIRECTORY, namespace=NAMESPACE), self.replica)

        def __serve_build_asgi_app__(self):
            from .app import build_app

            return build_app(self.hub, self.token, remote=self.remote, replica=self.replica, port=self.port)

        def __del__(self):
            hub = getattr(self, "hub", None)
            if hub is not None:
                hub.stop()

    return SoundscapeReplica


def run_ray(opts, token: str | None, scenes: dict) -> int:
    import os

    # A cluster we start ourselves is one node: Ray then binds loopback only, not this machine's address.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        from ray import serve
    except ImportError:
        raise UsageError('serve --ray needs Ray Serve, an optional extra: pip install -e ".[ray]"') from None
    from ..model.loading import choose_model, resolve_source

    if opts.port == 0:
        raise UsageError("--port 0: Ray Serve's proxy needs a fixed port; give one, e.g. --port 8000")
    bind(opts.host, opts.port).close()  # a taken port fails before Ray starts
    first = next(iter(scenes.values()))[1]
    model = choose_model(opts.model.name, first.model)
    resolve_source(model)
    try:
        if opts.ray == "auto":
            try:
                ray.init(address="auto", namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
            except ConnectionError:  # no cluster on this machine: start a local one, on loopback only
                ray.init(namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        else:
            why = unreachable(opts.ray)
            if why:
                raise UsageError(f"--ray {opts.ray}: nothing answers there ({why}); start a cluster with "
                                 f"`ray start --head`, or leave the address out for a local one")
            ray.init(address=opts.ray, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--ray {opts.ray}: cannot reach a Ray cluster ({str(exc).splitlines()[0]}); "
                         f"start one with `ray start --head`, or leave the address out for a local one") from None
    gpus = opts.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) else 0.0
    # Held for as long as we serve: a named actor without a handle is collected.
    directory = _directory_class().options(name=DIRECTORY, namespace=NAMESPACE, get_if_exists=True).remote()
    settings = {"model": str(model), "device": "cuda" if gpus else "cpu", "dtype": opts.model.dtype,
                "runtime": opts.model.runtime, "quality": opts.model.quality, "steps": opts.model.steps,
                "max_listeners": opts.max_listeners, "port": opts.port}
    scaling = ({"num_replicas": opts.min_replicas} if opts.min_replicas == opts.max_replicas else
               {"autoscaling_config": {"min_replicas": opts.min_replicas, "max_replicas": opts.max_replicas,
                                       "target_ongoing_requests": max(1.0, 0.75 * opts.max_listeners)}})
    # A listener is one long request: room for every slot, plus the page, metrics and control calls.
    deployment = serve.deployment(_replica_class(), name="soundscape", max_ongoing_requests=opts.max_listeners + 4,
                                  ray_actor_options={"num_gpus": gpus, "num_cpus": 0 if gpus else 1}, **scaling)
    serve.start(http_options={"host": opts.host, "port": opts.port})
    app = deployment.bind(settings, {name: str(path) for name, (path, _) in scenes.items()}, token)
    serve.run(app, name="soundscape", route_prefix="/")
    shown = f"[{opts.host}]" if ":" in opts.host else opts.host
    url = f"http://{shown}:{opts.port}/" + (f"?token={token}" if token else "")
    print(f"serve: {opts.min_replicas}-{opts.max_replicas} Ray Serve replicas of {opts.max_listeners} listeners "
          f"each, {gpus:g} GPU per replica", file=sys.stderr, flush=True)
    print(f"serve: listening on {url}", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        del directory
        ray.shutdown()
    print("serve: stopped", file=sys.stderr)
    return 0
