"""`soundscape bench`'s report: the measured figures as one dict (the JSON keys), their steady-state
means, the comparison with a second runtime, and the table printed without --json."""

from __future__ import annotations

import os
import platform

import torch

from ..model.geometry import FRAME_S


def build(opts, model, measured: dict, frames: int, overlap: int, *, load_s: float, load_before, rss_loaded: int,
           rss) -> dict:
    """The report as one dict (the JSON `bench --json` prints): the machine, the settings, every chunk's
    timings and their steady means, the real-time factor and memory."""
    from ..model.architecture import parameter_counts
    from ..model.precision import cpu_flags
    from .measure import rss_max_mb

    on_cuda = model.device.type == "cuda"
    hop_s = (frames - overlap) * FRAME_S
    steady = summary(measured["chunks"])
    result = {
        "model": model.model_id,
        "parameters": sum(parameter_counts(model.pipe).values()),
        "device": str(model.device), "device_name": device_name(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "precision": model.precision.names(),
        "vocoder_runtime": model.runtimes["vocoder"],
        "runtimes": model.runtimes,
        "int8": list(model.quantized),  # stages running an int8 IR (model/int8.py)
        "probe_choice": None if model.probe is None else model.probe.runtimes,  # measured decoders (model/probe.py)
        "prepacked": list(model.prepacked),  # stages with oneDNN-prepacked bf16 weights (model/prepack.py)
        "cpu_flags": cpu_flags() if model.device.type == "cpu" else None,
        "quality": opts.model.quality or "auto",
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        # Other work on the machine skews CPU figures (OpenMP threads spin while waiting for a core).
        "load_avg_1m": [load_before, os.getloadavg()[0] if load_before is not None else None],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": versions(),
        "config": {"chunks": opts.chunks, "chunk_s": frames * FRAME_S, "overlap_s": overlap * FRAME_S, "hop_s": hop_s,
                   "steps": measured["steps"], "scheduler": opts.scheduler,
                   "guidance_scale": measured["guidance_scale"], "guidance_interval": measured["guidance_interval"],
                   "guided_steps": measured["guided_steps"], "decode_frames": measured["decode_frames"],
                   "edge_frames": measured["edge"], "xfade_frames": measured["xfade"], "streams": opts.batch,
                   "unet_batch": opts.batch * (1 if opts.no_guidance else 2),
                   "compile": opts.model.compile, "attention": opts.attention},
        "load_s": load_s,
        "encode_first_s": measured["encode_first_s"],
        "chunks": measured["chunks"],
        "step_s": [s for c in measured["chunks"] for s in c["step_s"]],
        "steady": steady,
        "rtf": opts.batch * hop_s / steady["total_s"],
        "rtf_per_stream": hop_s / steady["total_s"],
        # Air and width for one stream on one core, as a share of real time (CPU seconds per second of audio).
        "stereo_share": steady["stereo_s"] / (opts.batch * hop_s),
        "first_audio_s": measured["first_audio_s"],
        "warm_start_s": measured["warm_start_s"],
        "alone": measured["alone"],
        "memory": {"rss_after_load_mb": rss_loaded / 2**20, "peak_rss_mb": rss.peak / 2**20,
                   "peak_rss_anon_mb": rss.peak_anon / 2**20,
                   "ru_maxrss_mb": rss_max_mb(),
                   "cuda_max_allocated_mb": torch.cuda.max_memory_allocated(model.device) / 2**20 if on_cuda else None},
    }
    return result


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    import diffusers
    import transformers

    from .. import __version__

    return {"soundscape": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def stats(xs: list[float]) -> dict:
    return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs)} if xs else {}


def summary(chunks: list[dict]) -> dict:
    """Means over the steady chunks: all but those that meet a decode window for the first time.

    Chunk 0 decodes the whole chunk, chunk 1 the first later-chunk window: each is the first call of its
    shape, which both runtimes pay once (oneDNN's kernels, OpenVINO's compile or cache import: 1-2 s
    for the vocoder). So chunks 2 on, when there are at least 3; else all but chunk 0; else chunk 0.
    """
    steady = chunks[2:] if len(chunks) >= 3 else chunks[1:] or chunks
    out = {"chunks": [c["index"] for c in steady]}
    for key in ("conditioning_s", "denoise_s", "vae_s", "vocoder_s", "resample_s", "stereo_s", "total_s"):
        out[key] = sum(c[key] for c in steady) / len(steady)
    steps = [s for c in steady for s in c["step_s"]]
    out["step_s"] = stats(steps)
    out["step_guided_s"] = stats([s for c in steady for s, g in zip(c["step_s"], c["step_guided"]) if g])
    out["step_single_s"] = stats([s for c in steady for s, g in zip(c["step_s"], c["step_guided"]) if not g])
    out["denoise_other_s"] = out["denoise_s"] - sum(steps) / len(steady)
    return out


def runtime_comparison(ours: dict, twin, measured: dict, load_s: float, rss_added: int, hop_s: float,
                        streams: int) -> dict:
    """Torch's figures from the interleaved run, beside ours: per-stage means, RTF and the ratio."""
    steady = summary(measured["chunks"])
    rtf = streams * hop_s / steady["total_s"]
    return {"runtimes": twin.runtimes, "prepacked": list(twin.prepacked), "load_s": load_s,
            "rss_added_mb": rss_added / 2**20, "chunks": measured["chunks"], "steady": steady, "rtf": rtf,
            "first_audio_s": measured["first_audio_s"], "warm_start_s": measured["warm_start_s"],
            "alone": measured["alone"], "ratio": ours["rtf"] / rtf}


def load_avg(pair) -> str:
    return "unknown" if pair[0] is None else f"{pair[0]:.1f} before, {pair[1]:.1f} after"


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(r: dict) -> str:
    c, s, first, mem = r["config"], r["steady"], r["chunks"][0], r["memory"]
    v = r["versions"]
    idx = s["chunks"]
    steady_label = ("steady (=chunk 0)" if len(r["chunks"]) == 1 else
                    f"steady (chunk {idx[0]})" if len(idx) == 1 else f"steady (chunks {idx[0]}-{idx[-1]})")
    lines = [
        f"model     {r['model']} ({r['parameters'] / 1e6:.0f}M parameters), loaded in {r['load_s']:.1f} s",
        f"device    {r['device']}: {r['device_name']}, {r['torch_threads']} torch threads "
        f"of {r['cpu_count']} CPUs, load average {load_avg(r['load_avg_1m'])}"
        + (f", flags {' '.join(r['cpu_flags'])}" if r.get("cpu_flags") else ""),
        "precision " + ", ".join(f"{k} {v}" for k, v in r["precision"].items())
        + "; run by " + ", ".join(f"{k} {v}" for k, v in r.get("runtimes", {"vocoder": r.get("vocoder_runtime", "torch")}).items())
        + (f"; prepacked {', '.join(r['prepacked'])}" if r.get("prepacked") else "")
        + (f"; int8 {', '.join(r['int8'])}" if r.get("int8") else ""),
        f"versions  torch {v['torch']}, diffusers {v['diffusers']}, transformers {v['transformers']}, "
        f"python {v['python']}",
        f"run       {c['chunks']} chunks of {c['chunk_s']:.2f} s (overlap {c['overlap_s']:.2f} s, new audio "
        f"{c['hop_s']:.2f} s each), quality {r['quality']}: {c['steps']} {c['scheduler']} steps, guidance "
        f"{c['guidance_scale']:g} on {c['guided_steps']} of them, decoding {c['decode_frames']} latent frames a chunk "
        f"(edge {c['edge_frames']}, crossfade {c['xfade_frames']}), {c['streams']} stream(s), "
        f"compile {c['compile'] or 'off'}, attention {c['attention']}",
        "",
        f"{'stage':<22}{'chunk 0':>12}{steady_label:>28}",
    ]
    step0 = stats(first["step_s"])
    rows = [("conditioning", first["conditioning_s"], s["conditioning_s"]),
            ("UNet step (mean)", step0.get("mean", 0), s["step_s"].get("mean", 0)),
            ("UNet step (min)", step0.get("min", 0), s["step_s"].get("min", 0)),
            ("UNet step (max)", step0.get("max", 0), s["step_s"].get("max", 0)),
            ("  guided (batch 2)", stats([t for t, g in zip(first["step_s"], first["step_guided"]) if g]).get("mean", 0),
             s["step_guided_s"].get("mean", 0)),
            ("  unguided (batch 1)", stats([t for t, g in zip(first["step_s"], first["step_guided"]) if not g]).get("mean", 0),
             s["step_single_s"].get("mean", 0)),
            ("denoise (all steps)", first["denoise_s"], s["denoise_s"]),
            ("VAE decode", first["vae_s"], s["vae_s"]),
            ("vocoder", first["vocoder_s"], s["vocoder_s"]),
            ("join+resample+loudness", first["resample_s"], s["resample_s"]),
            ("air + width (CPU)", first["stereo_s"], s["stereo_s"]),
            ("chunk total", first["total_s"], s["total_s"])]
    lines += [f"{name:<22}{fmt(a):>12}{fmt(b):>28}" for name, a, b in rows]
    cuda = mem["cuda_max_allocated_mb"]
    lines += [
        "",
        f"real-time factor      {r['rtf']:.3g}x ({r['rtf_per_stream']:.3g}x per stream; >1 keeps up)",
        f"air + width           {100 * r['stereo_share']:.2f}% of real time per stream on one core "
        f"(48 kHz stereo, the scene defaults)",
        f"first audio           {fmt(r['first_audio_s'])} from the loaded model "
        f"(prompt encoding {fmt(r['encode_first_s'])} per prompt, first time)",
        f"warm start            {fmt(r['warm_start_s'])} for a new prompt after warm-up",
        f"peak memory           RSS {mem['peak_rss_mb']:.0f} MiB while generating (of it not file-backed "
        f"{mem.get('peak_rss_anon_mb', 0):.0f} MiB), {mem['rss_after_load_mb']:.0f} MiB "
        f"after loading, ru_maxrss {mem['ru_maxrss_mb']:.0f} MiB"
        + (f", CUDA max allocated {cuda:.0f} MiB" if cuda is not None else ""),
    ]
    lines += comparison_lines(r, r.get("compare_runtimes"))
    d = r.get("diffusers")
    if d:
        lines.append(f"diffusers             {d['per_clip_s']:.2f} s per {d['clip_s']:.2f} s clip ({d['steps']} DPM-Solver++ "
                     f"steps, {d['dtype']}, guidance {d['guidance_scale']:g} every step): {d['rtf']:.3g}x real time; "
                     f"ours/diffusers = {d['ratio']:.2f}x per second of new audio")
    if r.get("tweak_latency"):
        t = r["tweak_latency"]
        lines.append(f"tweak heard           median {t['median_s']} s, 95th percentile {t['p95_s']} s "
                     f"({t['heard']} of {t['tweaks']} changes; {t['abandoned']} chunks abandoned; "
                     f"{t.get('short_chunks', 0)} short; hop {t['hop_s']} s)")
    if r.get("precision_error_db"):
        lines.append("precision error       " + ", ".join(f"{k} {v:.1f} dB" for k, v in r["precision_error_db"].items())
                     + " SNR against fp32")
    busy = r["load_avg_1m"][0]
    if r["device"] == "cpu" and busy is not None and busy > 0.5 and not r["omp_wait_policy"]:
        lines.append(f"note                  the machine was busy (load average {busy:.1f} on {r['cpu_count']} CPUs "
                     f"before the run): torch's threads busy-wait and stall when another process holds a core; "
                     f"for steadier figures run with OMP_WAIT_POLICY=PASSIVE or --threads 1")
    if not all(ch["finite"] for ch in r["chunks"]):
        lines.append("note                  the audio had NaN/inf samples (random weights?); timings still hold")
    return "\n".join(lines)


def comparison_lines(r: dict, cmp: dict | None) -> list[str]:
    """--compare-runtimes: the interleaved run's steady figures beside ours, and each stage alone."""
    if not cmp:
        return []
    s, lines = r["steady"], []
    t = cmp["steady"]
    ours_name = "+".join(sorted(set(r["runtimes"].values())))
    lines += ["", f"{'interleaved, steady':<22}{ours_name:>14}{'torch':>14}"]
    for name, key in (("guided step", "step_guided_s"), ("unguided step", "step_single_s")):
        lines.append(f"{name:<22}{fmt(s[key].get('mean', 0)):>14}{fmt(t[key].get('mean', 0)):>14}")
    for name, key in (("denoise", "denoise_s"), ("VAE decode", "vae_s"), ("vocoder", "vocoder_s"),
                      ("chunk total", "total_s")):
        lines.append(f"{name:<22}{fmt(s[key]):>14}{fmt(t[key]):>14}")
    lines.append(f"{'real-time factor':<22}{r['rtf']:>14.3g}{cmp['rtf']:>14.3g}   ratio {cmp['ratio']:.2f}x")
    a, b = r.get("alone") or {}, cmp.get("alone") or {}
    if a and b:
        lines.append(f"{'each stage alone':<22}{ours_name:>14}{'torch':>14}   (in the pipeline / alone)")
        for name, key in (("guided step", "step_guided_s"), ("unguided step", "step_single_s"),
                          ("VAE decode", "vae_s"), ("vocoder", "vocoder_s")):
            ours_in = s[key].get("mean", 0) if isinstance(s[key], dict) else s[key]
            theirs_in = t[key].get("mean", 0) if isinstance(t[key], dict) else t[key]
            lines.append(f"{name:<22}{fmt(a[key]):>14}{fmt(b[key]):>14}   "
                         f"{ours_in / a[key]:.2f}x / {theirs_in / b[key]:.2f}x")
    lines.append(f"{'first audio':<22}{fmt(r['first_audio_s']):>14}{fmt(cmp['first_audio_s']):>14}")
    lines.append(f"{'load':<22}{fmt(r['load_s']):>14}{fmt(cmp['load_s']):>14}")
    return lines
