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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..conditioning import Conditioning
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
def denoise(model: LoadedModel, cond: Conditioning, known: torch.Tensor | None, seed: int,
            spec: DenoiseSpec, should_stop=None, known_tail: torch.Tensor | None = None) -> torch.Tensor:
    """Generate one chunk of latents (1, 8, T, F), its first frames held to `known`, its last to `known_tail`."""
    pipe, device, dtype = model.pipe, model.device, model.precision.unet
    unet = model.unet
    # 1. Shapes and guidance
    channels = unet.config.in_channels
    freq = pipe.vocoder.config.model_in_dim // pipe.vae_scale_factor
    shape = (1, channels, spec.frames, freq)
    # [negative, positive] for guided steps, [positive] for the others (cast once, not per step)
    gpt, t5, mask = cond.gpt.to(device, dtype), cond.t5.to(device, dtype), cond.mask.to(device)
    pos = (gpt[1:], t5[1:], mask[1:])

    # 2. Timesteps from a fresh scheduler (multistep history must not leak between chunks)
    scheduler = make_scheduler(spec.scheduler, pipe.scheduler.config)
    scheduler.set_timesteps(spec.steps, device=device)
    timesteps = scheduler.timesteps

    # 3. Initial noise and the known region
    x_t, eps_k = chunk_noise(seed, shape)
    latents = (x_t * scheduler.init_noise_sigma).to(device)
    overlap = 0 if known is None else known.shape[2]
    tail = 0 if known_tail is None else known_tail.shape[2]
    if overlap + tail > spec.frames:
        raise ValueError(f"denoise: expected the known head ({overlap}) and tail ({tail}) frames to fit in "
                         f"the chunk's {spec.frames}")
    if tail:
        # q(k', t) likewise, from the last O' frames of the same ε_k draw (disjoint from the head's)
        known_tail = known_tail.to(device, torch.float32)
        eps_tail = eps_k[:, :, spec.frames - tail:].to(device)
        tail_at = [scheduler.add_noise(known_tail, eps_tail, timesteps[j:j + 1]) for j in range(len(timesteps))]
        latents[:, :, spec.frames - tail:] = tail_at[0]
    if overlap:
        known = known.to(device, torch.float32)
        eps_k = eps_k[:, :, :overlap].to(device)
        # q(k, t) for every timestep, up front: add_noise looks timesteps up on the host, and doing
        # that between UNet calls would stall the GPU queue once per step.
        known_at = [scheduler.add_noise(known, eps_k, timesteps[j:j + 1]) for j in range(len(timesteps))]
        latents[:, :, :overlap] = known_at[0]
    gen = torch.Generator(device="cpu").manual_seed(int(seed) ^ 0x5EED)
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
            # 4b. predict the noise residual (one batch of two, or two of one to save memory)
            if not guided:
                noise_pred = unet(model_in, t, encoder_hidden_states=pos[0], encoder_hidden_states_1=pos[1],
                                  encoder_attention_mask_1=pos[2], return_dict=False)[0].float()
            elif spec.split_guidance:
                noise_pred = torch.cat([
                    unet(model_in[k:k + 1], t, encoder_hidden_states=gpt[k:k + 1], encoder_hidden_states_1=t5[k:k + 1],
                         encoder_attention_mask_1=mask[k:k + 1], return_dict=False)[0].float()
                    for k in (0, 1)])
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
            # 4e. hold the overlap to the previous chunk's tail, noised to t' (exact at the end)
            if overlap:
                if last:
                    latents[:, :, :overlap] = known
                else:
                    latents[:, :, :overlap] = known_at[i + 1]
            # 4e'. and a bridge's last frames to the start of what follows it
            if tail:
                latents[:, :, spec.frames - tail:] = known_tail if last else tail_at[i + 1]
            # 4f. RePaint: jump back from t' to t and redo the step (DDIM is stateless, so this is exact)
            if r < spec.resample_passes and not last:
                a_ratio = alphas[t] / alphas[timesteps[i + 1]]
                noise = torch.randn(latents.shape, generator=gen).to(device)
                latents = a_ratio.sqrt() * latents + (1 - a_ratio).sqrt() * noise
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


def decode(model: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    """Latents (1, 8, T, F) -> mono waveform (T * 640,) at 16 kHz, float32 on the CPU."""
    return mel_to_audio(model, latents_to_mel(model, latents))[0]


def samples_per_mel_frame(pipe) -> int:
    rates = pipe.vocoder.config.upsample_rates
    n = 1
    for r in rates:
        n *= r
    return n
