"""Probe: each bf16 network plain against prepacked (soundscape/model/prepack.py), calls interleaved.

Used for docs/benchmarks.md ("Prepacked weights"); DTYPE=float32 measures packing in fp32 (not used:
slower there):
    OMP_WAIT_POLICY=PASSIVE python scripts/probe_prepack.py
    DTYPE=float32 OMP_WAIT_POLICY=PASSIVE python scripts/probe_prepack.py
"""

import copy
import os
import time

import torch

from soundscape.model.architecture import _unet, _vae, _vocoder
from soundscape.model.prepack import prepack

DTYPE = getattr(torch, os.environ.get("DTYPE", "bfloat16"))
torch.manual_seed(0)
latents = torch.randn(2, 8, 256, 16, dtype=DTYPE)
gpt = torch.randn(2, 8, 768, dtype=DTYPE)
t5 = torch.randn(2, 32, 1024, dtype=DTYPE)
mask = torch.ones(2, 32, dtype=torch.long)
mel = torch.randn(1, 848, 64, dtype=DTYPE)


def unet_call(batch):
    return lambda m: m(latents[:batch], torch.tensor(500), encoder_hidden_states=gpt[:batch],
                       encoder_hidden_states_1=t5[:batch], encoder_attention_mask_1=mask[:batch], return_dict=False)


cases = [("UNet, guided batch of 2, T5 of 32", _unet, unet_call(2)), ("UNet, batch 1", _unet, unet_call(1)),
         ("VAE decode, 212 latent frames", _vae, lambda m: m.decode(latents[:1, :, :212])),
         ("vocoder, 848 mel frames", _vocoder, lambda m: m(mel))]
with torch.inference_mode():
    built = {}
    for name, build, call in cases:
        if build not in built:
            plain = build().eval().to(DTYPE)
            packed = copy.deepcopy(plain)
            prepack(packed)
            built[build] = (plain, packed)
        plain, packed = built[build]
        call(plain), call(packed)  # warm-up: oneDNN creates its kernels for this shape
        times = {"plain": [], "packed": []}
        for _ in range(4):
            for label, m in (("plain", plain), ("packed", packed)):
                t0 = time.perf_counter()
                call(m)
                times[label].append(time.perf_counter() - t0)
        p, q = sorted(times["plain"])[1:3], sorted(times["packed"])[1:3]  # the middle two of four
        print(f"| {name} | {p[0]:.2f}-{p[1]:.2f} s | {q[0]:.2f}-{q[1]:.2f} s | {sum(p) / sum(q):.2f}x |", flush=True)
