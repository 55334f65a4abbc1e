"""OpenVINO on a CPU: the same UNet and HiFi-GAN vocoder, converted once, run by OpenVINO's CPU plugin.

Why: on a 2-core Xeon with AMX, a balanced bf16 chunk ran 1.32x faster than with torch's bf16
kernels, back to back (vocoder 1.8x, batch-1 UNet step 1.5x, guided step 1.1x; docs/benchmarks.md,
"OpenVINO"). It costs about 40 s of conversion at start and holds a second copy of both networks. torch stays the fallback: without the `openvino` package,
on a GPU, or with `--runtime torch`, nothing changes.

Each module is converted with dynamic sizes (batch 1 or 2 for guidance, any chunk length, any
T5 length) and compiled with the stage's precision as OpenVINO's inference hint. Conversion takes
a minute or two on two cores; OpenVINO caches the compiled blobs on disk (CACHE_DIR).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

RUNTIMES = ("auto", "torch", "openvino")


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "soundscape" / "openvino"


class OpenVINOVocoder:
    """Callable like `pipe.vocoder`: log-mel (B, frames, 64) -> waveforms (B, samples), float32."""

    def __init__(self, vocoder: torch.nn.Module, precision: torch.dtype):
        import openvino as ov

        # Convert from an fp32 copy: OpenVINO applies its own precision (the hint) when it compiles.
        module = vocoder.float() if precision == torch.float32 else _fp32_copy(vocoder)
        bins = vocoder.config.model_in_dim
        with torch.no_grad():  # not inference_mode: conversion traces the module
            model = ov.convert_model(module, example_input=torch.zeros(1, 64, bins),
                                     input=[ov.PartialShape([-1, -1, bins])])
        self.compiled = _compile(model, precision)

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        out = self.compiled(mel.float().cpu().numpy())[0]
        return torch.from_numpy(np.ascontiguousarray(out))


class _UNetCall(torch.nn.Module):
    """The UNet with plain tensor inputs, for tracing."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, gpt, t5, mask):
        return self.unet(sample, timestep, encoder_hidden_states=gpt, encoder_hidden_states_1=t5,
                         encoder_attention_mask_1=mask, return_dict=False)[0]


class OpenVINOUNet:
    """Callable like `pipe.unet` in the denoising loop; returns (noise prediction,) as float32."""

    def __init__(self, unet: torch.nn.Module, precision: torch.dtype):
        import openvino as ov

        self.config, self.dtype = unet.config, precision
        module = _UNetCall(unet.float() if precision == torch.float32 else _fp32_copy(unet))
        channels, freq = unet.config.in_channels, 16
        gpt_dim = _cross_dim(unet, 1)
        t5_dim = _cross_dim(unet, 2)
        example = (torch.zeros(2, channels, 64, freq), torch.tensor(500), torch.zeros(2, 8, gpt_dim),
                   torch.zeros(2, 16, t5_dim), torch.ones(2, 16, dtype=torch.long))
        shapes = [ov.PartialShape([-1, channels, -1, freq]), ov.PartialShape([]), ov.PartialShape([-1, -1, gpt_dim]),
                  ov.PartialShape([-1, -1, t5_dim]), ov.PartialShape([-1, -1])]
        with torch.no_grad():
            model = ov.convert_model(module, example_input=example, input=shapes)
        self.compiled = _compile(model, precision)

    def __call__(self, sample, t, *, encoder_hidden_states, encoder_hidden_states_1, encoder_attention_mask_1,
                 return_dict=False):
        t = torch.as_tensor(t).reshape(())
        out = self.compiled([sample.float().numpy(), t.numpy(), encoder_hidden_states.float().numpy(),
                             encoder_hidden_states_1.float().numpy(), encoder_attention_mask_1.long().numpy()])[0]
        return (torch.from_numpy(np.ascontiguousarray(out)),)


def _cross_dim(unet, i: int) -> int:
    dims = unet.config.cross_attention_dim
    dims = dims[-1] if isinstance(dims[0], (list, tuple)) else dims
    return int(dims[i])


def _compile(model, precision: torch.dtype):
    import openvino as ov

    hint = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(precision, "f32")
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "CACHE_DIR": str(cache)})


def _fp32_copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).float()


def choose_runtime(name: str, device: torch.device) -> str:
    """`auto`: OpenVINO on a CPU when the package is installed, else torch."""
    if name == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if name == "openvino" and not openvino_available():
        from ..errors import UsageError

        raise UsageError("--runtime openvino: the openvino package is not installed; "
                         "pip install openvino, or use --runtime torch")
    if name == "openvino" and device.type != "cpu":
        from ..errors import UsageError

        raise UsageError(f"--runtime openvino: runs on the CPU only, got --device {device.type}; use --runtime torch")
    return name
