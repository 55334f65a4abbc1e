"""Which decoder layers int8 can take: the VAE decoder and the vocoder (full architecture, random weights)
quantized with NNCF in several scopes, each compared with fp32 on held-out inputs and timed interleaved.

    python scripts/probe_int8_decoders.py [--model DIR] [--frames 212]

Why scopes: int8 on every layer cost 15-20 dB in both decoders (VAE 21.6 dB, vocoder 18.1 dB, the issue's
shared probes), far under the gate. Both decoders upsample step by step: the early stages (many channels,
few frames) hold most of the arithmetic, the late ones (few channels, the waveform's or the mel's own
resolution) shape the output sample by sample. So the scopes keep the late stages in bf16 and quantize
the early ones, to find a scope that keeps the gate (6 dB under bf16's SNR) and still runs faster.

Inputs: seeded latents of a later chunk's decode window (`--frames` latent frames; the vocoder gets the
fp32 VAE's mel of them), 6 windows to calibrate, 2 held out. Each variant: SNR against fp32 (mean of
the held-out windows) and time (median of 5, interleaved). Takes about 10 minutes on 2 cores.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# VAE decoder: conv_in -> mid_block -> up_blocks.0 (512 ch, latent rate) .. up_blocks.3 (128 ch, mel rate) -> conv_out
VAE_SCOPES = {
    "all layers": [],
    "mid and up_blocks.0-1": [r".*conv_in.*", r".*up_blocks\.[23].*", r".*conv_out.*", r".*conv_norm_out.*"],
    "mid and up_blocks.0": [r".*conv_in.*", r".*up_blocks\.[123].*", r".*conv_out.*", r".*conv_norm_out.*"],
}
# Vocoder: conv_pre -> upsampler.i and resblocks.3i..3i+2 per stage i (1024/2^(i+1) channels) -> conv_post
VOC_SCOPES = {
    "all layers": [],
    "stages 0-1": [r".*conv_pre.*", r".*upsampler\.[2-4]\b.*", r".*resblocks\.([6-9]|1[0-4])\b.*", r".*conv_post.*"],
    "stage 0": [r".*conv_pre.*", r".*upsampler\.[1-4]\b.*", r".*resblocks\.([3-9]|1[0-4])\b.*", r".*conv_post.*"],
}


def snr(out, ref):
    import numpy as np

    n = min(out.shape[-1], ref.shape[-1])
    out, ref = out[..., :n].astype(np.float64), ref[..., :n].astype(np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / (np.sum((out - ref) ** 2) + 1e-30))


def run_stage(name, module, inputs, scopes, core, hint):
    import nncf
    import openvino as ov
    import torch
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    calib, test = inputs[:-2], inputs[-2:]
    with torch.inference_mode():
        refs = [module(torch.from_numpy(x)).float().numpy() for x in test]
    model = ov.convert_model(module, example_input=torch.from_numpy(test[0]))
    model.reshape({0: ov.PartialShape(list(test[0].shape))})
    variants = {hint: model}
    for label, patterns in scopes.items():
        t0 = time.perf_counter()
        variants[f"int8, {label}"] = nncf.quantize(
            model.clone(), nncf.Dataset(calib), subset_size=len(calib), preset=nncf.QuantizationPreset.MIXED,
            ignored_scope=nncf.IgnoredScope(patterns=patterns, validate=False),
            advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=True))
        print(f"{name} {label}: quantized in {time.perf_counter() - t0:.0f} s", flush=True)
    compiled = {k: core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": hint}) for k, m in variants.items()}
    times = {k: [] for k in compiled}
    for c in compiled.values():
        c(test[0])
    for _ in range(5):
        for k, c in compiled.items():
            t0 = time.perf_counter()
            c(test[0])
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times[hint])
    print(f"{name}, input {tuple(test[0].shape)}; load {os.getloadavg()[0]:.2f}")
    for k, c in compiled.items():
        s = statistics.mean(snr(c(x)[0], r) for x, r in zip(test, refs))
        t = statistics.median(times[k])
        print(f"  {k:32s} {t:6.3f} s  {base / t:4.2f}x {hint}  SNR vs fp32 {s:5.1f} dB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", "--tiny", dest="tiny",
                    help="a diffusers AudioLDM2 folder (real weights, or the tiny model to try the script) instead of "
                         "the full architecture with random weights")
    ap.add_argument("--frames", type=int, default=212)
    ap.add_argument("--stages", default="vocoder,vae")
    args = ap.parse_args()
    import logging

    import numpy as np
    import openvino as ov
    import torch

    logging.getLogger("nncf").setLevel(logging.WARNING)
    if args.tiny:
        from diffusers import AudioLDM2Pipeline

        pipe = AudioLDM2Pipeline.from_pretrained(args.tiny)
    else:
        from soundscape.model.architecture import build_random_audioldm2

        pipe = build_random_audioldm2(dtype=torch.float32).pipe
    vae, vocoder = pipe.vae.float().eval(), pipe.vocoder.float().eval()
    gen = torch.Generator().manual_seed(0)
    shape = (1, vae.config.latent_channels, args.frames, vocoder.config.model_in_dim // 4)
    latents = [(torch.randn(shape, generator=gen) / vae.config.scaling_factor) for _ in range(8)]

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, z):
            return self.vae.decode(z).sample

    decode = Decode().eval()
    with torch.inference_mode():
        mels = [decode(z).squeeze(1).float().numpy() for z in latents]
    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "NUM_STREAMS": 1})
    hint = "bf16" if "avx512_bf16" in open("/proc/cpuinfo").read() or "amx" in open("/proc/cpuinfo").read() else "f32"
    if "vocoder" in args.stages:
        run_stage("vocoder", vocoder, [np.ascontiguousarray(m) for m in mels], VOC_SCOPES, core, hint)
    if "vae" in args.stages:
        run_stage("VAE decoder", decode, [z.numpy() for z in latents], VAE_SCOPES, core, hint)


if __name__ == "__main__":
    main()
