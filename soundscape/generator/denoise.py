"""The denoising loop with latent continuation (inpainting of the overlap).

Notation (per chunk; latents are (1, C=8, T frames, F=16)):
  x_t        the noisy latents at timestep t; x_T starts as seeded Gaussian noise
  k          known latents: the last O frames of the previous chunk's final x_0
  M          the mask, 1 on the first O frames (the overlap), 0 elsewhere
  q(k, t)    k noised to timestep t with a fixed per-chunk noise ε_k:
             sqrt(ᾱ_t) k + sqrt(1 - ᾱ_t) ε_k   (scheduler.add_noise)
  After every step:  x_{t'} <- M q(k, t') + (1 - M) x_{t'}, and at the end x_0 <- M k + (1 - M) x_0,
  so the overlap is exactly the previous tail and the rest is denoised around it
  (the inpainting AudioLDM itself uses).
  Two-sided (a bridge chunk): k' known latents for the last O' frames (the start of the piece
  that follows), M' their mask, 1 on the last O' frames; ε_k' the same draw's last O' frames.
  After every step also x_{t'} <- M' q(k', t') + (1 - M') x_{t'}, exact at the end, so the new
  middle is denoised between two fixed ends. RePaint resampling (DDIM only) re-noises
  x_{t'} back to x_t and repeats the step, letting the new region settle with the known one:
             x_t = sqrt(ᾱ_t / ᾱ_t') x_t' + sqrt(1 - ᾱ_t / ᾱ_t') ε
Guidance:    ε̂ = ε_u + s (ε_c - ε_u), computed as one batch [negative, positive], on the steps i
             whose position (i + 1/2) / steps lies in guidance_interval [a, b]; elsewhere ε̂ = ε_c
             from the UNet at batch 1 (the positive half only).
Batches:     B streams (serve's listeners, bench --batch) denoise together: latents (B, 8, T, F),
             one UNet call per step with rows [negatives..., positives...] (B on unguided steps).
             Every stream keeps its own seed, noise, known regions and RePaint draws; they share
             the timesteps, so a batch shares steps, scheduler, guidance and chunk length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .conditioning import Conditioning, stack_conditioning
from ..model.loading import LoadedModel
from .schedulers import make_scheduler


class Cancelled(Exception):
    """Raised between denoising steps when the caller asked to stop."""


@dataclass(frozen=True)
class DenoiseSpec:
    frames: int  # T, latent frames per chunk (25 per second)
    steps: int = 25
    guidance_scale: float = 3.5
    scheduler: str = "dpmsolver++"
    resample_passes: int = 0
    split_guidance: bool = False  # run the guidance pair as two UNet calls: less memory, a little slower
    guidance_interval: tuple[float, float] = (0.0, 1.0)  # fractions of the schedule that are guided

    def guided_at(self, i: int, steps: int | None = None) -> bool:
        n = steps or self.steps
        lo, hi = self.guidance_interval
        return self.guidance_scale > 1.0 and lo <= (i + 0.5) / n <= hi


def chunk_noise(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The initial noise x_T and the known-region noise ε_k of one chunk, drawn on the CPU.

    Why the CPU: the same seed then gives the same audio on any device.
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    x_t = torch.randn(shape, generator=gen, dtype=torch.float32)
    eps_k = torch.randn(shape, generator=gen, dtype=torch.float32)
    return x_t, eps_k


@torch.inference_mode()
def denoise_batch(model: LoadedModel, conds: list[Conditioning], knowns: list[torch.Tensor | None],
                  seeds: list[int], spec: DenoiseSpec, should_stop=None,
                  known_tails: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    """Generate B chunks at once, one per stream: latents (B, 8, T, F).

    Stream b has its own conditioning, seed, known head and known tail; every step is one UNet
    call for all B streams (2B on guided steps: [negatives..., positives...]). A batch of one
    is `denoise`; each stream's samples match its batch-of-one samples to the UNet's precision.
    """
    pipe, device, dtype = model.pipe, model.device, model.precision.unet
    unet = model.unet
    n = len(conds)
    known_tails = known_tails or [None] * n
    if not (len(knowns) == len(seeds) == len(known_tails) == n) or n == 0:
        raise ValueError(f"denoise_batch: expected one known, seed and known_tail per conditioning, got "
                         f"{len(knowns)}, {len(seeds)}, {len(known_tails)} for {n}")
    # 1. Shapes and guidance
    channels = unet.config.in_channels
    freq = pipe.vocoder.config.model_in_dim // pipe.vae_scale_factor
    shape = (1, channels, spec.frames, freq)
    # [negatives..., positives...] for guided steps, [positives...] for the others (cast once, not per step)
    gpt, t5, mask = stack_conditioning(conds)
    gpt, t5, mask = gpt.to(device, dtype), t5.to(device, dtype), mask.to(device)
    pos = (gpt[n:], t5[n:], mask[n:])

    # 2. Timesteps from a fresh scheduler (multistep history must not leak between chunks)
    scheduler = make_scheduler(spec.scheduler, pipe.scheduler.config)
    scheduler.set_timesteps(spec.steps, device=device)
    timesteps = scheduler.timesteps

    # 3. Initial noise and the known regions, per stream
    noise = [chunk_noise(seed, shape) for seed in seeds]
    latents = (torch.cat([x for x, _ in noise]) * scheduler.init_noise_sigma).to(device)
    holds = []  # (stream, frame slice, exact latents, the same noised to each timestep)
    for b, (known, known_tail, (_, eps_k)) in enumerate(zip(knowns, known_tails, noise)):
        overlap = 0 if known is None else known.shape[2]
        tail = 0 if known_tail is None else known_tail.shape[2]
        if overlap + tail > spec.frames:
            raise ValueError(f"denoise: expected the known head ({overlap}) and tail ({tail}) frames to fit in "
                             f"the chunk's {spec.frames}")
        if tail:
            # q(k', t) likewise, from the last O' frames of the same ε_k draw (disjoint from the head's)
            region = slice(spec.frames - tail, spec.frames)
            exact = known_tail.to(device, torch.float32)
            eps = eps_k[:, :, region].to(device)
            holds.append((b, region, exact, [scheduler.add_noise(exact, eps, timesteps[j:j + 1])
                                             for j in range(len(timesteps))]))
        if overlap:
            # q(k, t) for every timestep, up front: add_noise looks timesteps up on the host, and doing
            # that between UNet calls would stall the GPU queue once per step.
            region = slice(0, overlap)
            exact = known.to(device, torch.float32)
            eps = eps_k[:, :, region].to(device)
            holds.append((b, region, exact, [scheduler.add_noise(exact, eps, timesteps[j:j + 1])
                                             for j in range(len(timesteps))]))
    for b, region, _, noised in holds:
        latents[b:b + 1, :, region] = noised[0]
    gens = [torch.Generator(device="cpu").manual_seed(int(seed) ^ 0x5EED) for seed in seeds]
    alphas = scheduler.alphas_cumprod.to(device)

    # 4. Denoising loop
    for i, t in enumerate(timesteps):
        if should_stop is not None and should_stop():
            raise Cancelled()
        guided = spec.guided_at(i, len(timesteps))
        for r in range(spec.resample_passes + 1):
            # 4a. expand the latents for guidance and scale them for the scheduler
            model_in = torch.cat([latents] * 2) if guided else latents
            model_in = scheduler.scale_model_input(model_in, t).to(dtype)
            # 4b. predict the noise residual (one batch of 2B, or two of B to save memory)
            if not guided:
                noise_pred = unet(model_in, t, encoder_hidden_states=pos[0], encoder_hidden_states_1=pos[1],
                                  encoder_attention_mask_1=pos[2], return_dict=False)[0].float()
            elif spec.split_guidance:
                half = (slice(0, n), slice(n, 2 * n))
                noise_pred = torch.cat([
                    unet(model_in[k], t, encoder_hidden_states=gpt[k], encoder_hidden_states_1=t5[k],
                         encoder_attention_mask_1=mask[k], return_dict=False)[0].float()
                    for k in half])
            else:
                noise_pred = unet(
                    model_in, t, encoder_hidden_states=gpt, encoder_hidden_states_1=t5,
                    encoder_attention_mask_1=mask, return_dict=False,
                )[0].float()
            # 4c. perform guidance
            if guided:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + spec.guidance_scale * (text - uncond)
            # 4d. compute the previous noisy sample x_t -> x_t'
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            last = i == len(timesteps) - 1
            # 4e. hold each stream's overlap to its previous chunk's tail, noised to t' (exact at the end),
            #     and a bridge's last frames to the start of what follows it
            for b, region, exact, noised in holds:
                latents[b:b + 1, :, region] = exact if last else noised[i + 1]
            # 4f. RePaint: jump back from t' to t and redo the step (DDIM is stateless, so this is exact)
            if r < spec.resample_passes and not last:
                a_ratio = alphas[t] / alphas[timesteps[i + 1]]
                fresh = torch.cat([torch.randn(shape, generator=g) for g in gens]).to(device)
                latents = a_ratio.sqrt() * latents + (1 - a_ratio).sqrt() * fresh
            elif r < spec.resample_passes:
                break
    return latents


@torch.inference_mode()
def latents_to_mel(model: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    """VAE: latents (B, 8, T, F) -> log-mel spectrogram (B, 1, 4T, 64)."""
    vae = model.pipe.vae
    return vae.decode((latents / vae.config.scaling_factor).to(model.precision.vae)).sample


@torch.inference_mode()
def mel_to_audio(model: LoadedModel, mel: torch.Tensor) -> torch.Tensor:
    """Vocoder: log-mel -> waveforms (B, 4T * 160) at 16 kHz, float32 on the CPU.

    The vocoder emits a few samples more than 160 per mel frame; they are trimmed.
    """
    audio = model.vocoder(mel.squeeze(1).to(model.precision.vocoder))
    return audio[:, : mel.shape[2] * samples_per_mel_frame(model.pipe)].float().cpu()


def samples_per_mel_frame(pipe) -> int:
    rates = pipe.vocoder.config.upsample_rates
    n = 1
    for r in rates:
        n *= r
    return n
