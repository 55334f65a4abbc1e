"""Chunk-by-chunk generation with explicit state (magenta-realtime style).

    result = generate_chunk(model, cond, state, spec, scene_seed)
    result.audio        16 kHz mono of the whole chunk (T * 640 samples)
    result.state        what the next chunk needs: the tail latents and the index

The state is plain data: it can be saved, restored and continued, and
"restore, then continue" gives the same samples as an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..conditioning import Conditioning
from ..model.loading import LoadedModel
from .denoise import DenoiseSpec, decode, denoise


@dataclass(frozen=True)
class ChunkSpec:
    """Chunk geometry in latent frames (one frame = 40 ms = 640 samples at 16 kHz)."""

    frames: int  # T
    overlap: int  # O
    denoise: DenoiseSpec

    @property
    def hop(self) -> int:
        return self.frames - self.overlap


@dataclass
class GeneratorState:
    chunk_index: int = 0
    tail_latents: torch.Tensor | None = None  # (1, 8, O, F), float32 on the CPU


@dataclass
class ChunkResult:
    index: int
    seed: int
    audio: torch.Tensor  # (T * 640,) float32, 16 kHz
    latents: torch.Tensor  # (1, 8, T, F) float32 on the CPU
    state: GeneratorState


def chunk_seed(scene_seed: int, index: int) -> int:
    """Deterministic, well-mixed per-chunk seed from the scene seed and the chunk index."""
    return int(np.random.SeedSequence([int(scene_seed), int(index)]).generate_state(1)[0])


def generate_chunk(model: LoadedModel, cond: Conditioning, state: GeneratorState, spec: ChunkSpec,
                   scene_seed: int, should_stop=None) -> ChunkResult:
    """Generate chunk `state.chunk_index`, continuing `state.tail_latents` if present."""
    seed = chunk_seed(scene_seed, state.chunk_index)
    latents = denoise(model, cond, state.tail_latents, seed, spec.denoise, should_stop)
    audio = decode(model, latents)
    latents = latents.float().cpu()
    tail = latents[:, :, spec.frames - spec.overlap:].clone()
    return ChunkResult(
        index=state.chunk_index, seed=seed, audio=audio, latents=latents,
        state=GeneratorState(chunk_index=state.chunk_index + 1, tail_latents=tail),
    )
