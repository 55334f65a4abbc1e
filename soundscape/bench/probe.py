"""`bench --probe`: measure this CPU afresh (model/probe.py's decoders, model/int8.py's UNet) and say what won.

The decoders are measured by the load itself (SOUNDSCAPE_PROBE=fresh: before torch's stages are prepacked, which
no copy survives), the UNet's int8 here; both answers are cached as a first start's are, so `play`, `render` and
`serve` with `--runtime auto` use them from the next start on, and the chunks this bench then times already run
what was chosen (the int8 UNet applied in place).
"""

from __future__ import annotations

from dataclasses import asdict

# Prompts to record the UNet's trajectories on: one layer of each of these shipped scenes (the last is held out)
CALIBRATION_SCENES = ("cafe", "fireplace", "forest")
NEGATIVE = "low quality, noise"


def calibration_prompts() -> list[str]:
    from ..scene import load_scene
    from ..scene.shipped import shipped_scenes

    shipped = shipped_scenes()
    names = [n for n in CALIBRATION_SCENES if n in shipped] or list(shipped)[:3]
    return [next(iter(load_scene(shipped[n]).layers.values())).prompt for n in names]


def run_probe(model, opts, gen, frames: int, overlap: int, say) -> dict:
    """Measure, choose, cache: {"decoders": rows, "runtimes": {...}, "int8": verdict or a reason}."""
    import torch

    from ..generator.calibrate import tune_int8
    from ..generator.chunks import ChunkSpec
    from ..generator.denoise import DenoiseSpec
    from ..model import int8, probe

    out: dict = {}
    choice = model.probe  # measured afresh by the load (run_bench asked for it), with what runs now
    if choice is None:
        out["decoders"] = "not measured (a GPU, no OpenVINO, or the decoders' torch weights were freed)"
    else:
        out["decoders"] = [asdict(r) for r in choice.rows]
        out["decoder_runtimes"] = choice.runtimes
    if not int8.available():
        out["int8"] = "not measured: NNCF is not installed (pip install nncf)"
    elif model.unet_runtime is None or model.precision.unet not in (torch.bfloat16, torch.float32):
        out["int8"] = "not measured: int8 is tried on OpenVINO's bf16 or fp32 UNet only (this run has another)"
    else:
        spec = ChunkSpec(frames=frames, overlap=overlap, denoise=DenoiseSpec(
            frames=frames, steps=gen.steps, scheduler=opts.scheduler, guidance_scale=gen.guidance_scale,
            guidance_interval=tuple(gen.guidance_interval)))
        verdict = tune_int8(model, calibration_prompts(), NEGATIVE, spec, progress=say)
        out["int8"] = {**asdict(verdict), "speedup": round(verdict.speedup, 3)}
        model.use_int8()
    return out


def lines(p: dict) -> list[str]:
    """The probe's part of bench's table."""
    out = ["measured on this CPU (cached for --runtime auto):"]
    if isinstance(p["decoders"], str):
        out.append(f"  decoders: {p['decoders']}")
    else:
        out.append(f"  {'stage':8s} {'runtime':9s} {'precision':9s} {'time':>8s} {'SNR vs fp32':>12s}  gate  chosen")
        for r in p["decoders"]:
            out.append(f"  {r['stage']:8s} {r['runtime']:9s} {r['precision']:9s} {r['seconds']:7.3f}s "
                       f"{r['snr_db']:9.1f} dB  {'pass' if r['passed'] else 'FAIL':5s} {'*' if r['chosen'] else ''}")
    v = p["int8"]
    if isinstance(v, str):
        out.append(f"  int8 UNet: {v}")
    else:
        out.append(f"  UNet call {v['precision']} {v['plain_s']:.3f} s ({v['plain_snr_db']:.1f} dB), int8 {v['int8_s']:.3f} s "
                   f"({v['int8_snr_db']:.1f} dB): {v['speedup']:.2f}x, gate {'pass' if v['passed'] else 'FAIL'}, "
                   f"{'chosen' if v['chosen'] else 'not chosen'}; quantized in {v['quantize_s']:.0f} s")
    return out
