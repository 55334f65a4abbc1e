"""Probe: the full-architecture UNet alone in bf16, batch 2 (a guided step) and batch 1.

Used for docs/benchmarks.md ("OpenMP wait policy"): run it in a fresh process per setting, e.g.
    OMP_WAIT_POLICY=PASSIVE python scripts/probe_unet.py
    GOMP_SPINCOUNT=10000 python scripts/probe_unet.py
"""

import os
import time

import torch

from soundscape.model.architecture import _unet

torch.manual_seed(0)
unet = _unet().eval().to(torch.bfloat16)
latents = torch.randn(2, 8, 256, 16, dtype=torch.bfloat16)
gpt = torch.randn(2, 8, 768, dtype=torch.bfloat16)
t5 = torch.randn(2, 32, 1024, dtype=torch.bfloat16)
mask = torch.ones(2, 32, dtype=torch.long)


def call(b: int):
    return unet(latents[:b], torch.tensor(500), encoder_hidden_states=gpt[:b], encoder_hidden_states_1=t5[:b],
                encoder_attention_mask_1=mask[:b], return_dict=False)[0]


with torch.inference_mode():
    for b in (2, 1):
        call(b), call(b)  # warm-up
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            call(b)
            times.append(time.perf_counter() - t0)
        print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')} "
              f"batch {b}: " + " ".join(f"{t:.3f}" for t in times))
