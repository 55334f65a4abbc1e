"""Probe: the bf16 UNet (guided batch of 2), VAE decode and vocoder, prepacked, with glibc's adaptive
mmap threshold (the default) or a fixed one (`MMAP=262144`, what `serve` used to set).

Used for docs/benchmarks.md ("Prepacked weights"): run each setting in a fresh process, e.g.
    OMP_WAIT_POLICY=PASSIVE python scripts/probe_malloc.py
    MMAP=262144 OMP_WAIT_POLICY=PASSIVE python scripts/probe_malloc.py
"""

import ctypes
import os
import resource
import time

import torch

from soundscape.model.architecture import _unet, _vae, _vocoder
from soundscape.model.prepack import prepack

if os.environ.get("MMAP"):
    ctypes.CDLL("libc.so.6").mallopt(-3, int(os.environ["MMAP"]))  # M_MMAP_THRESHOLD, fixed
torch.manual_seed(0)
unet, vae, vocoder = (m().eval().to(torch.bfloat16) for m in (_unet, _vae, _vocoder))
for m in (unet, vae, vocoder):
    prepack(m)
latents = torch.randn(2, 8, 256, 16, dtype=torch.bfloat16)
gpt = torch.randn(2, 8, 768, dtype=torch.bfloat16)
t5 = torch.randn(2, 32, 1024, dtype=torch.bfloat16)
mask = torch.ones(2, 32, dtype=torch.long)
mel = torch.randn(1, 848, 64, dtype=torch.bfloat16)
calls = {
    "unet": lambda: unet(latents, torch.tensor(500), encoder_hidden_states=gpt, encoder_hidden_states_1=t5,
                         encoder_attention_mask_1=mask, return_dict=False),
    "vae": lambda: vae.decode(latents[:1, :, :212]),
    "vocoder": lambda: vocoder(mel),
}


def timed(f):
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    f()
    return f"{time.perf_counter() - t0:.3f} s ({(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) // 1000}k page faults)"


with torch.inference_mode():
    for f in calls.values():
        f()  # warm-up
    for _ in range(3):
        print(f"MMAP={os.environ.get('MMAP', 'adaptive')} " + "  ".join(f"{k} {timed(f)}" for k, f in calls.items()),
              flush=True)
