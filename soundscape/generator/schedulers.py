"""Noise schedulers by scene name, built from the pipeline's own training config."""

from __future__ import annotations

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from ..errors import UsageError

SCHEDULERS = ("dpmsolver++", "ddim")


def make_scheduler(name: str, base_config):
    """A fresh scheduler per chunk: multistep solvers keep history that must not leak across chunks."""
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(base_config, algorithm_type="dpmsolver++")
    if name == "ddim":
        return DDIMScheduler.from_config(base_config)
    raise UsageError(f"scheduler: expected one of {', '.join(SCHEDULERS)}, got {name!r}")
