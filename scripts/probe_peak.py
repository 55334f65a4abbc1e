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

# The UNet's attention at its three sizes (batch 2, 8 heads): torch's flash kernel against the math path.
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

for length, head in ((1024, 32), (256, 48), (64, 80)):
    q, k, v = (torch.randn(2, 8, length, head, dtype=torch.bfloat16) for _ in range(3))
    with torch.inference_mode():
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.MATH):
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(q, k, v)  # warm-up
                t0 = time.perf_counter()
                for _ in range(10):
                    F.scaled_dot_product_attention(q, k, v)
                ms = (time.perf_counter() - t0) / 10 * 1e3
            print(f"attention {length} tokens, head size {head}, {backend.name.lower()}: {ms:.2f} ms "
                  f"({4 * 2 * 8 * length ** 2 * head / ms / 1e9:.2f} TFLOP/s)", flush=True)
