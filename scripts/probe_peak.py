"""Probe: what this CPU's bf16 (and fp32) matrix multiply reaches on large square matrices.

The ceiling for every network here: a UNet, VAE or vocoder cannot run faster than its FLOPs at this
rate. Used for docs/benchmarks.md ("The ceiling of this CPU"):
    OMP_WAIT_POLICY=PASSIVE python scripts/probe_peak.py
"""

import time

import torch

for dtype in (torch.bfloat16, torch.float32):
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        print(f"{str(dtype).removeprefix('torch.')} {n}x{n}x{n}: {2 * n ** 3 / best / 1e12:.2f} TFLOP/s", flush=True)
