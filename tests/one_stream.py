"""Test-only conveniences over what the package runs in batches: one chunk, one denoise, one decode; and
one stream in the generation loop, as serve wires a listener (`looped`).

The package makes every chunk through `generate_chunks` / `denoise_batch` (a batch of one
for play and render); the tests often want a single stream's call, and `slerp` as the reference the
blend's norm-keeping is checked against. None of it ships.
"""

from __future__ import annotations

import torch

from soundscape.generator.chunks import ChunkJob, ChunkResult, generate_chunks
from soundscape.generator.denoise import denoise_batch, latents_to_mel, mel_to_audio


def generate_chunk(model, cond, state, spec, scene_seed: int, should_stop=None, attempt: int = 0) -> ChunkResult:
    """Chunk `state.chunk_index`, continuing `state.tail_latents` if present (a bridge with `known_tail` too)."""
    return generate_chunks(model, [ChunkJob(cond, state, scene_seed, attempt)], spec, should_stop)[0]


def denoise(model, cond, known, seed: int, spec, should_stop=None, known_tail=None) -> torch.Tensor:
    """One chunk of latents (1, 8, T, F), its first frames held to `known`, its last to `known_tail`."""
    return denoise_batch(model, [cond], [known], [seed], spec, should_stop, [known_tail])


def decode(model, latents: torch.Tensor) -> torch.Tensor:
    """Latents (1, 8, T, F) -> mono waveform (T * 640,) at 16 kHz: the VAE, then the vocoder."""
    return mel_to_audio(model, latents_to_mel(model, latents))[0]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation per token vector (last dim); exact at t=0 and t=1."""
    if t <= 0:
        return a
    if t >= 1:
        return b
    an, bn = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / an.clamp_min(1e-8), b / bn.clamp_min(1e-8)
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    return direction * ((1 - t) * an + t * bn)


def is_cached(encoder, prompt: str) -> bool:
    """Whether the PromptEncoder holds `prompt`'s embedding in memory."""
    return (encoder.model.model_id, prompt) in encoder._cache


def looped(model, changes: dict, timeline, rate: int = 16000, **attach):
    """One mono stream of the test scene with `changes` in the generation loop (not started), wired as serve
    wires a listener: (stream, playback, slot, live control, loop). `attach`: Playback.attach's options."""
    from conftest import SCENE_DATA, merged
    from soundscape.scene import Scene
    from soundscape.stream.generation_loop import GenerationLoop
    from soundscape.stream.live import LiveControl
    from soundscape.stream.playback import Playback
    from soundscape.stream.scene_stream import SceneStream

    stream = SceneStream(model, Scene.model_validate(merged(SCENE_DATA, changes)), out_rate=rate, channels=1)
    playback = Playback.build(rate, 1, "test", stream.hop_s)
    slot = playback.attach(stream, timeline=str(timeline), **attach)
    return stream, playback, slot, LiveControl(playback, None), GenerationLoop([slot])
