"""Prepacked oneDNN weights for the bf16 CPU path: the same networks, without a weight reorder per call.

Why: torch's eager `nn.Linear` and `nn.Conv2d` hand oneDNN plain weights, and oneDNN reorders them
into its blocked (AMX/VNNI) layout on every call: 489 reorders per UNet call. Measured on a 2-core
Xeon with AMX (scripts/probe_prepack.py; docs/benchmarks.md, "Prepacked weights"): the UNet 1.17x
faster at batch 2 and 1.44x at batch 1, the VAE decoder 1.69x, the vocoder 1.64x, a balanced chunk
1.21x. Same kernels: the vocoder's output is bit-identical, the UNet's and VAE's differ by bf16 rounding.

What: `prepack(module)` swaps every `nn.Linear`, `nn.Conv2d`, `nn.Conv1d` and `nn.ConvTranspose1d`
inside a module for a module that holds its weight already in oneDNN's layout and calls torch's own
fused-op entry points (`torch.ops.mkldnn._linear_pointwise` / `_convolution_pointwise` /
`_convolution_transpose_pointwise`, the ones inductor's freezing pass emits). 1-D convolutions run
as 2-D ones of height 1 (oneDNN packs only 2-D and 3-D weights).

Only for bf16 on a CPU: in fp32 the packed UNet was 1.35-1.5x slower (torch's MKL path wins there),
and GPUs have their own libraries. The packed weight replaces the plain one (no second copy), so a
packed module cannot be cast, moved or converted again; `LoadedModel.use_runtime` packs copies when
the plain modules must stay usable (diffusers' pipeline in `bench --compare-diffusers`).
$SOUNDSCAPE_PREPACK=0 turns it off (to measure against, or if a torch build lacks the ops).
"""

from __future__ import annotations

import os

import torch
from torch import nn

# A row-count hint for oneDNN's choice of packed layout; any row count still runs.
_ROWS_HINT = 2048


def onednn_has_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (AVX-512 BW/VL/DQ, AVX-NE-CONVERT or AMX). Without them
    (an AVX2-only Ryzen or EPYC) the packed ops refuse bf16 weights outright ("bf16 path needs the cpu
    support ..."), and torch's eager bf16 runs on its own emulated path instead."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `prepack` applies: bf16 on a CPU whose oneDNN has bf16 kernels, the ops there, not turned off."""
    return (device.type == "cpu" and dtype == torch.bfloat16 and os.environ.get("SOUNDSCAPE_PREPACK", "1") != "0"
            and torch.backends.mkldnn.is_available() and onednn_has_bf16()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _bias(layer: nn.Module) -> nn.Parameter | None:
    """The layer's own bias, still a parameter: library code reads a module's dtype and device from
    `next(module.parameters())`, and the vocoder has no other parameters once packed."""
    return None if layer.bias is None else nn.Parameter(layer.bias.detach(), requires_grad=False)


class PackedLinear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), _ROWS_HINT))
        self.bias = _bias(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


class PackedConv(nn.Module):
    """A Conv2d, or a Conv1d run as a Conv2d of height 1."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d):
        super().__init__()
        self.one_d = isinstance(conv, nn.Conv1d)
        lift = (lambda v, unit: [unit, v[0]]) if self.one_d else (lambda v, unit: list(v))
        self.padding, self.stride = lift(conv.padding, 0), lift(conv.stride, 1)
        self.dilation, self.groups = lift(conv.dilation, 1), conv.groups
        weight = conv.weight.detach().unsqueeze(2) if self.one_d else conv.weight.detach()
        self.register_buffer("weight", torch.ops.mkldnn._reorder_convolution_weight(
            weight, self.padding, self.stride, self.dilation, self.groups, None))
        self.bias = _bias(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._convolution_pointwise(x.unsqueeze(2) if self.one_d else x, self.weight, self.bias,
                                                    self.padding, self.stride, self.dilation, self.groups,
                                                    "none", [], "")
        return y.squeeze(2) if self.one_d else y


class PackedConvTranspose1d(nn.Module):
    """A ConvTranspose1d (the vocoder's upsamplers) run as a ConvTranspose2d of height 1."""

    def __init__(self, conv: nn.ConvTranspose1d):
        super().__init__()
        self.padding, self.output_padding = [0, conv.padding[0]], [0, conv.output_padding[0]]
        self.stride, self.dilation, self.groups = [1, conv.stride[0]], [1, conv.dilation[0]], conv.groups
        self.register_buffer("weight", torch.ops.mkldnn._reorder_convolution_transpose_weight(
            conv.weight.detach().unsqueeze(2), self.padding, self.output_padding, self.stride, self.dilation,
            self.groups, None))
        self.bias = _bias(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_transpose_pointwise(
            x.unsqueeze(2), self.weight, self.bias, self.padding, self.output_padding, self.stride, self.dilation,
            self.groups, "none", [], "").squeeze(2)


_PACKED = (PackedLinear, PackedConv, PackedConvTranspose1d)


def _packed(child: nn.Module) -> nn.Module:
    if type(child) is nn.Linear:
        return PackedLinear(child)
    return PackedConvTranspose1d(child) if type(child) is nn.ConvTranspose1d else PackedConv(child)


def _packable(child: nn.Module) -> bool:
    if type(child) is nn.Linear:
        return True
    # Exact types only: subclasses may change forward; string padding ("same") and non-zero padding modes
    # are not what the packed op computes.
    return (type(child) in (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d) and isinstance(child.padding, tuple)
            and child.padding_mode == "zeros")


def prepack(module: nn.Module) -> int:
    """Swap the module's linear and conv layers for prepacked ones, in place; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if _packable(child):
            setattr(module, name, _packed(child))
            count += 1
        else:
            count += prepack(child)
    return count


def is_prepacked(module: nn.Module) -> bool:
    return any(isinstance(m, _PACKED) for m in module.modules())


def packed_numel(module: nn.Module) -> int:
    """Weights held by packed layers (buffers now, not parameters; biases stay parameters), for counts."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, _PACKED))
