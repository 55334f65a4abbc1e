"""`ServeOptions`: what `soundscape serve` was asked, typed and checked once (cli/serve.py makes it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..stream.options import ModelOptions


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: a free one
    scenes: str | None = None  # a folder of scene files; None: the shipped ones
    max_listeners: int = 8
    token: str | None = None  # checked against the host by serve/access.py
    model: ModelOptions = ModelOptions()
    quiet: bool = False
    ray: str | None = None  # a Ray address, or "auto"; None: this process serves
    min_replicas: int = 1
    max_replicas: int = 1
    gpus_per_replica: float | None = None
    budget: float = 100.0  # --budget: the generator's share of wall time, in percent (stream/budget.py)

    def __post_init__(self):
        if self.ray and self.budget < 100:
            raise UsageError(f"--budget {self.budget:g}: applies to serve in this process, not to Ray replicas "
                             f"(--ray); leave one of them out")
        if self.max_replicas < self.min_replicas:
            raise UsageError(f"--max-replicas: expected at least --min-replicas ({self.min_replicas}), "
                             f"got {self.max_replicas}")
