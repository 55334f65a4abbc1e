"""Chunk-by-chunk generation with explicit state (magenta-realtime style).

    result = generate_chunks(model, [ChunkJob(cond, state, scene_seed)], spec)[0]
    result.audio        16 kHz mono of the chunk's decode window (see ChunkSpec.decode_start)
    result.state        what the next chunk needs: the tail latents and the index
With `state.known_tail` too a chunk is a bridge: inpainted from both sides, and decoded from
`decode_start` to `decode_end(O')`, with margins on both sides (see render/plan.py).

The state is plain data: it can be saved, restored and continued, and
"restore, then continue" gives the same samples as an uninterrupted run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from .conditioning import Conditioning
from ..model.geometry import FRAME_QUANTUM
from ..model.loading import LoadedModel
from .denoise import DenoiseSpec, denoise_batch, latents_to_mel, mel_to_audio


# Decode only what is heard. The VAE and vocoder were measured (docs/benchmarks.md, "Decode window")
# to disturb the audio within about 6 latent frames of a decode's edge; beyond that a decode of part
# of a chunk matches the whole-chunk decode to the model's precision. So a later chunk decodes its new
# frames plus 2 EDGE + XFADE frames of its overlap, not the whole overlap again.
EDGE_FRAMES = 8  # 0.32 s dropped at each decode edge
XFADE_FRAMES = 4  # 0.16 s crossfade at each seam


@dataclass(frozen=True)
class ChunkSpec:
    """Chunk geometry in latent frames (one frame = 40 ms = 640 samples at 16 kHz)."""

    frames: int  # T
    overlap: int  # O
    denoise: DenoiseSpec
    edge: int | None = None  # e; None: EDGE_FRAMES, or less when the overlap is short
    xfade: int | None = None  # x; None: XFADE_FRAMES, or less
    short: bool = False  # the short first chunk after a live change (`shortened`; play only)

    def __post_init__(self):
        x = min(XFADE_FRAMES, self.overlap) if self.xfade is None else self.xfade
        e = max(0, min(EDGE_FRAMES, (self.overlap - x) // 2)) if self.edge is None else self.edge
        if self.overlap and not (1 <= x and 2 * e + x <= self.overlap):
            raise ValueError(f"ChunkSpec: expected 2 * edge + xfade <= overlap ({self.overlap}), "
                             f"got edge={e}, xfade={x}")
        object.__setattr__(self, "edge", e)
        object.__setattr__(self, "xfade", x)

    @property
    def hop(self) -> int:
        return self.frames - self.overlap

    def decode_start(self, first: bool) -> int:
        """The first latent frame decoded: 0 for a stream's first chunk, else 2e + x before the overlap's end."""
        return 0 if first or not self.overlap else self.overlap - 2 * self.edge - self.xfade

    def decode_end(self, tail: int = 0) -> int:
        """One past the last latent frame decoded: the chunk's end, or for a bridge with a known tail of
        `tail` frames, 2e + x into that tail (its crossfade into what follows, and an edge to drop)."""
        return self.frames - tail + 2 * self.edge + self.xfade if tail else self.frames

    def shortened(self, frames: int) -> "ChunkSpec":
        """The same chunk with `frames` latent frames (the overlap, edges and denoising settings kept)."""
        return replace(self, frames=frames, denoise=replace(self.denoise, frames=frames), short=True)

    @property
    def short_frames(self) -> int | None:
        """The first chunk after a live change (play): T' = the smaller multiple of FRAME_QUANTUM that is at
        least half the chunk and twice the overlap, or None when that is no shorter than T.

        Why these bounds: the UNet takes multiples of FRAME_QUANTUM frames; its cost grows with the frames, so
        half the chunk is heard in about half the wait; shorter would leave too little new audio (T' - O) to
        cover the making of the full-length chunk after it, and the old mix would come back as cover-up
        material; at least O new frames keep the continuation's known region no longer than what it continues.
        E.g. 10.24 s chunks with 2.56 s overlap: 5.12 s (2.56 s new) after a change, then 10.24 s again."""
        half = -(-max(self.frames // 2, 2 * self.overlap) // FRAME_QUANTUM) * FRAME_QUANTUM
        return half if half < self.frames else None

    @property
    def lead(self) -> int:
        """Frames of audio the first chunk emits beyond one hop (its overlap minus the held and dropped edge)."""
        return self.overlap - self.edge - self.xfade if self.overlap else 0


@dataclass
class GeneratorState:
    chunk_index: int = 0
    tail_latents: torch.Tensor | None = None  # (1, 8, O, F), float32 on the CPU
    # A bridge chunk also knows where it must end: the first O' frames of the piece after it.
    known_tail: torch.Tensor | None = None  # (1, 8, O', F), float32 on the CPU


@dataclass
class ChunkResult:
    index: int
    seed: int
    audio: torch.Tensor  # the decode window's samples (see decode_start/decode_end), float32, 16 kHz
    latents: torch.Tensor  # (1, 8, T, F) float32 on the CPU
    state: GeneratorState
    denoise_s: float = 0.0  # wall time of the denoising loop (adaptive steps fit their cost model to it)


def chunk_seed(scene_seed: int, index: int, attempt: int = 0) -> int:
    """Deterministic, well-mixed per-chunk seed from the scene seed and the chunk index.

    `attempt` > 0 gives the chunk's next seeds, for a chunk the watchdog turned down.
    """
    key = [int(scene_seed), int(index)] + ([int(attempt)] if attempt else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


@dataclass(frozen=True)
class ChunkJob:
    """One stream's next chunk in a batch: what to continue, and with which seed."""

    cond: Conditioning
    state: GeneratorState
    scene_seed: int
    attempt: int = 0

    @property
    def seed(self) -> int:
        return chunk_seed(self.scene_seed, self.state.chunk_index, self.attempt)


def prefer_vocoder_window(model: LoadedModel, spec: ChunkSpec) -> None:
    """OpenVINO's vocoder compiles one shape: the later chunks' decode length (a first chunk runs as windows
    of it; model/openvino_runtime.py). A no-op on torch, and for a short chunk, which runs padded to it."""
    prefer = getattr(model.vocoder_runtime, "prefer", None)
    if prefer is not None and not spec.short:
        prefer((spec.frames - spec.decode_start(first=False)) * model.pipe.vae_scale_factor)


PREWARM_SPARE_BYTES = 4 << 30  # memory available for a prewarm beside the text encoders (about 1 GB used)


def prewarm(model: LoadedModel, spec: ChunkSpec) -> None:
    """Begin importing, on threads, the OpenVINO shapes an earlier start used for `spec`'s chunks (the UNet's,
    the vocoder's), so that they load beside the prompts' encoding rather than in the first chunk's first
    step; the first call of a shape waits for its import. A no-op on torch and where nothing was compiled yet.
    SceneStream calls it once, as it is made.

    The cost: where the prompts are new, the text encoders and the UNet's compiled shape are in memory at
    once (peak RSS 3.1 GB against 2.1 GB at balanced on the full model; first sound 24.6 s against 28.6 s:
    docs/benchmarks.md), so it is skipped where less than PREWARM_SPARE_BYTES of memory is available."""
    prefer_vocoder_window(model, spec)
    import psutil

    if psutil.virtual_memory().available < PREWARM_SPARE_BYTES:
        return
    if getattr(model.unet_runtime, "prewarm", None) is not None:
        model.unet_runtime.prewarm(spec.frames)
    if getattr(model.vocoder_runtime, "prewarm", None) is not None:
        model.vocoder_runtime.prewarm()


def generate_chunks(model: LoadedModel, jobs: list[ChunkJob], spec: ChunkSpec, should_stop=None,
                    on_stage=None) -> list[ChunkResult]:
    """The next chunk of every job's stream, denoised as one batch and decoded in batches.

    Streams whose decode windows match (all later chunks do) share one VAE and one vocoder call.
    `on_stage(name)`, if given, is called as each stage ends ("denoise", then "vae" and "vocoder" per
    decode window): `soundscape bench` times this code, the code play runs, through it.
    """
    mark = on_stage or (lambda name: None)
    t0 = time.perf_counter()
    latents = denoise_batch(model, [j.cond for j in jobs], [j.state.tail_latents for j in jobs],
                            [j.seed for j in jobs], spec.denoise, should_stop, [j.state.known_tail for j in jobs])
    denoise_s = time.perf_counter() - t0
    mark("denoise")
    prefer_vocoder_window(model, spec)
    windows = [(spec.decode_start(first=j.state.tail_latents is None),
                spec.decode_end(0 if j.state.known_tail is None else j.state.known_tail.shape[2])) for j in jobs]
    audio: list[torch.Tensor | None] = [None] * len(jobs)
    for window in dict.fromkeys(windows):
        members = [b for b, w in enumerate(windows) if w == window]
        mel = latents_to_mel(model, latents[members, :, window[0]:window[1]])
        mark("vae")
        decoded = mel_to_audio(model, mel)
        mark("vocoder")
        for b, a in zip(members, decoded):
            audio[b] = a
    latents = latents.float().cpu()
    results = []
    for b, job in enumerate(jobs):
        own = latents[b:b + 1]
        tail = own[:, :, spec.frames - spec.overlap:].clone()
        results.append(ChunkResult(
            index=job.state.chunk_index, seed=job.seed, audio=audio[b], latents=own,
            state=GeneratorState(chunk_index=job.state.chunk_index + 1, tail_latents=tail), denoise_s=denoise_s,
        ))
    return results
