"""Which precision each stage runs in, and how far half precision strays from fp32.

Policy (`--dtype auto`):
  CUDA / MPS                     fp16 everywhere (as before)
  CPU with native bf16           bf16 for the text encoders, UNet and VAE; see KEEP_FP32 for the rest
  other CPUs                     fp32 (emulated bf16 is slower than fp32)
`--dtype fp32|fp16|bf16` asks for one precision; stages in KEEP_FP32 still stay in fp32 under a
half precision, because their error was measured too large (docs/benchmarks.md, "Precision").

Error of a stage = SNR of its half-precision output against fp32 on the same inputs:
  SNR = 10 log10( Σ ref² / Σ (out - ref)² )   in dB; 40 dB is our floor for the waveform.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

STAGES = ("text", "unet", "vae", "vocoder")
# Stages kept in fp32 whatever the half precision: measured below the floor (see measure_errors).
KEEP_FP32: frozenset[str] = frozenset()
SNR_FLOOR_DB = 40.0


@dataclass(frozen=True)
class Precision:
    text: torch.dtype
    unet: torch.dtype
    vae: torch.dtype
    vocoder: torch.dtype

    @classmethod
    def of(cls, dtype: torch.dtype, keep_fp32: frozenset[str] = KEEP_FP32) -> "Precision":
        half = dtype in (torch.float16, torch.bfloat16)
        return cls(**{s: torch.float32 if half and s in keep_fp32 else dtype for s in STAGES})

    def names(self) -> dict[str, str]:
        return {s: dtype_name(getattr(self, s)) for s in STAGES}


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX): what torch itself reports first."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_flags(wanted=("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")) -> list[str]:
    """The CPU flags that matter for speed, as named in /proc/cpuinfo (for benchmark reports)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return []
    return [w for w in wanted if w in flags]


def apply(pipe, precision: Precision):
    """Cast each pipeline component to its stage's dtype, in place."""
    text = [pipe.text_encoder, pipe.text_encoder_2, pipe.projection_model, pipe.language_model]
    for module, dtype in [(m, precision.text) for m in text] + [
            (pipe.unet, precision.unet), (pipe.vae, precision.vae), (pipe.vocoder, precision.vocoder)]:
        if module is None:  # a text encoder not loaded yet (model/text_encoders.py)
            continue
        if next(module.parameters()).dtype != dtype:  # loaded in it already: no cast (and no warning)
            module.to(dtype=dtype)
    return pipe


# Measurement -------------------------------------------------------------------------------------

def snr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    err = float(((out - ref) ** 2).sum())
    power = float((ref ** 2).sum())
    if err == 0:
        return float("inf")
    return 10 * torch.log10(torch.tensor(power / err)).item()


@torch.inference_mode()
def measure_errors(pipe, dtype: torch.dtype, frames: int = 256, seed: int = 0,
                   others: dict | None = None) -> dict[str, float]:
    """SNR (dB) of each stage in `dtype` against the same fp32 stage on the same inputs.

    `pipe` is an fp32 pipeline on the CPU; each stage is copied, cast and run on its own, so one
    stage's error does not feed the next. Inputs: seeded latents, the fp32 VAE's mel for the vocoder.
    `others` ({stage: module}, called like the torch stage) are measured on the same inputs too, as
    "<stage> <key>" entries: another runtime's stages (bench --precision-error).
    """
    gen = torch.Generator().manual_seed(seed)
    unet, vae, vocoder = pipe.unet, pipe.vae, pipe.vocoder
    freq = vocoder.config.model_in_dim // 4
    latents = torch.randn((1, unet.config.in_channels, frames, freq), generator=gen)
    t5 = torch.randn((2, 16, pipe.text_encoder_2.config.d_model), generator=gen)
    gpt = torch.randn((2, 8, pipe.language_model.config.n_embd), generator=gen)
    mask = torch.ones((2, 16), dtype=torch.long)
    t = torch.tensor(500)

    def run_unet(m, d):
        return m(torch.cat([latents] * 2).to(d), t, encoder_hidden_states=gpt.to(d),
                 encoder_hidden_states_1=t5.to(d), encoder_attention_mask_1=mask, return_dict=False)[0].float()

    def run_vae(m, d):
        return m.decode((latents / m.config.scaling_factor).to(d)).sample.float()

    mel = run_vae(vae, torch.float32)

    def run_vocoder(m, d):
        return m(mel.squeeze(1).to(d)).float()

    def run_text(m, d):
        ids = torch.randint(5, min(200, m.config.vocab_size), (1, 16), generator=gen)
        return m(input_ids=ids).last_hidden_state.float()

    out = {}
    for name, module, run in (("unet", unet, run_unet), ("vae", vae, run_vae), ("vocoder", vocoder, run_vocoder),
                              ("text", pipe.text_encoder_2, run_text)):
        if name == "text":
            gen.manual_seed(seed + 1)
        ref = run(module, torch.float32)
        half = copy.deepcopy(module).to(dtype=dtype)
        if name == "text":
            gen.manual_seed(seed + 1)
        out[name] = snr_db(run(half, dtype), ref)
        del half
        for key, other in (others or {}).get(name, {}).items():
            out[f"{name} {key}"] = snr_db(run(other, dtype), ref)
    return out
