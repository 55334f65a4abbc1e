"""Which layers int8 can take: the full UNet (random weights) quantized with NNCF in several scopes, each
compared with fp32 on held-out inputs recorded from the model's own trajectories, and timed interleaved.

    python scripts/probe_int8_scopes.py [--dir DIR]

1. records the UNet's inputs over 2 chunks of 4 prompts (the default runtime, bf16, OpenVINO);
2. quantizes the cached UNet IR in each scope (all layers; convolutions only; linear layers only), the
   convolutions' and time embedding's edges kept in bf16 in the last two;
3. prints each variant's SNR against fp32 (held-out calls of the last prompt) and its time, interleaved,
   median of 5. What it found is in docs/benchmarks.md, "Real time without AMX"; model/int8.py keeps the
   linear-layers scope. Takes 10-20 minutes on 2 cores.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EDGES = [".*conv_in.*", ".*conv_out.*", ".*time_embedding.*", ".*time_emb_proj.*"]
SCOPES = {"all layers": dict(patterns=[], types=[]),
          "convolutions only": dict(patterns=EDGES, types=["MatMul"]),
          "linear layers only": dict(patterns=EDGES, types=["Convolution"])}


def snr(out, ref):
    import numpy as np

    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / (np.sum((out.astype(np.float64) - ref) ** 2) + 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/soundscape-int8-scopes"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    import nncf
    import openvino as ov
    import torch
    from nncf.parameters import ModelType
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    from soundscape.generator.calibrate import record_unet_inputs
    from soundscape.generator.chunks import ChunkSpec
    from soundscape.generator.conditioning import PromptEncoder, with_negative
    from soundscape.generator.denoise import DenoiseSpec
    from soundscape.model.architecture import build_random_audioldm2
    from soundscape.model.openvino_runtime import _core

    model = build_random_audioldm2(dtype=torch.bfloat16)
    model.use_runtime("openvino")
    enc = PromptEncoder(model, disk=False)
    neg = enc.encode("low quality, distorted")
    prompts = ["gentle rain on leaves, distant thunder", "birdsong in a forest at dawn, a stream",
               "wind through pine trees", "crackling campfire at night, crickets"]
    spec = ChunkSpec(frames=256, overlap=64, denoise=DenoiseSpec(frames=256, steps=10, guidance_interval=(0.0, 0.5)))
    recorded = record_unet_inputs(model, [with_negative(enc.encode(p), neg) for p in prompts], spec, chunks=2)
    calib = [c for calls in recorded[:-1] for c in calls][::9][:10]
    test = recorded[-1][5::6]
    core = _core()
    plain = core.read_model(str(model.unet_runtime.model.entry / "model.xml"))
    plain.reshape({i: ov.PartialShape(list(a.shape)) for i, a in enumerate(test[0])})
    fp32 = core.compile_model(plain, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    refs = [fp32(x)[0].copy() for x in test]
    del fp32
    variants = {"bf16": plain}
    for name, scope in SCOPES.items():
        t0 = time.perf_counter()
        variants[name] = nncf.quantize(
            plain.clone(), nncf.Dataset(calib), subset_size=len(calib), model_type=ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED, ignored_scope=nncf.IgnoredScope(**scope, validate=False),
            advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=True))
        print(f"{name}: quantized in {time.perf_counter() - t0:.0f} s", flush=True)
    compiled = {k: core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"}) for k, m in variants.items()}
    times = {k: [] for k in compiled}
    for c in compiled.values():
        c(test[0])
    for _ in range(5):
        for k, c in compiled.items():
            t0 = time.perf_counter()
            c(test[0])
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["bf16"])
    print(f"UNet call, batch 1, 256 frames; load {os.getloadavg()[0]:.2f}")
    for k, c in compiled.items():
        s = statistics.mean(snr(c(x)[0], r) for x, r in zip(test, refs))
        t = statistics.median(times[k])
        print(f"  {k:20s} {t:6.3f} s  {base / t:4.2f}x bf16  SNR vs fp32 {s:5.1f} dB")


if __name__ == "__main__":
    main()
