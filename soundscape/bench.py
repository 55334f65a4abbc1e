"""`soundscape bench`: per-stage timings, real-time factor and memory.

Each chunk goes through the code `play` runs, timed stage by stage:
  conditioning  cached prompt embeddings blended with weights that change per chunk, plus the negative
  step          one UNet call (a thin wrapper around `pipe.unet` times it; `denoise` is unchanged)
  denoise       the whole `denoise()` call: the steps plus scheduler updates and overlap inpainting
  vae, vocoder  the two halves of `decode()`, called here the same way
  resample      the chunk's new audio, 16 kHz -> 48 kHz with StreamResampler
  air + width   then air above 8 kHz and the stereo width (audio/air.py, audio/width.py) at the scene
                defaults, one stream's on one core (this thread's CPU time): what they add to a chunk
Real-time factor = streams * hop / wall seconds per chunk, where hop = chunk - overlap is the new
audio a chunk adds. Steady-state figures leave out chunk 0 (warm-up: first kernel calls, compilation).
First audio = from the loaded model to chunk 0's audio ready, prompt encoding included.
Warm start = the same for a new, uncached prompt after warm-up.

`--batch N` runs N streams through `denoise_batch`, the code `serve` batches its listeners with:
each stream has its own seed and continues its own tail, every step is one UNet call for all N
([N negatives, N positives] on guided steps), and the VAE and vocoder decode N chunks at once.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UsageError
from .stream.options import ModelOptions
from .model.geometry import FRAME_S, MODEL_RATE, SAMPLES_PER_FRAME
from .model.loading import sync

PROMPTS = ("birds singing in the forest", "gentle rain on a roof")
NEGATIVE = "low quality"
WARM_PROMPT = "distant thunder and wind in the leaves"
OUT_RATE = 48000
GUIDANCE_SCALE = 3.5  # the scene default


@dataclass(frozen=True)
class BenchOptions:
    """What `soundscape bench` was asked (cli/bench.py makes it from the flags)."""

    model: ModelOptions = ModelOptions()
    random_weights: bool = False
    tiny: bool = False
    chunks: int = 3
    chunk_seconds: float | None = None
    overlap_seconds: float = 2.56
    scheduler: str = "dpmsolver++"
    no_guidance: bool = False
    batch: int = 1
    attention: str = "default"
    threads: int | None = None
    compare_diffusers: str | None = None
    diffusers_clips: int = 3
    compare_runtimes: bool = False
    precision_error: bool = False
    json: bool = False


# Setup -------------------------------------------------------------------------------------------

def _geometry(opts, preset_chunk_s: float) -> tuple[int, int]:
    """Chunk and overlap in latent frames (40 ms each), checked like a scene's `generation:`."""
    from .model.geometry import CHUNK_QUANTUM_S, FRAME_S as LATENT_FRAME_S

    chunk = preset_chunk_s if opts.chunk_seconds is None else opts.chunk_seconds
    overlap = opts.overlap_seconds
    frames, o_frames = chunk / LATENT_FRAME_S, overlap / LATENT_FRAME_S
    if not (math.isfinite(chunk) and CHUNK_QUANTUM_S <= chunk <= 20.48 and abs(frames / 8 - round(frames / 8)) < 1e-6):
        raise UsageError(f"--chunk-seconds: expected a multiple of {CHUNK_QUANTUM_S} from {CHUNK_QUANTUM_S} "
                         f"to 20.48 (e.g. 5.12 or 10.24), got {chunk:g}")
    if not (math.isfinite(overlap) and overlap >= 0 and abs(o_frames - round(o_frames)) < 1e-6):
        raise UsageError(f"--overlap-seconds: expected a multiple of {LATENT_FRAME_S} (e.g. 2.56), got {overlap:g}")
    if overlap > chunk / 2:
        raise UsageError(f"--overlap-seconds: expected at most half of --chunk-seconds ({chunk / 2:g}), got {overlap:g}")
    return int(round(frames)), int(round(o_frames))


def _load(opts):
    """The model to time: real weights (the normal path), the full random architecture, or the tiny one."""
    from .model.loading import LoadedModel, to_stderr, choose_device, choose_dtype, choose_model, load_model

    if (opts.random_weights or opts.tiny) and opts.model.name:
        flag = "--random-weights" if opts.random_weights else "--tiny"
        raise UsageError(f"--model {opts.model.name}: cannot be combined with {flag}; pass one of them")
    if not (opts.random_weights or opts.tiny):
        return load_model(choose_model(opts.model.name), device=opts.model.device, dtype=opts.model.dtype, runtime=opts.model.runtime,
                          keep_torch=_keeps_torch(opts))
    device = choose_device(opts.model.device)
    dtype = choose_dtype(opts.model.dtype, device)
    if opts.random_weights:
        from .model.architecture import build_random_audioldm2

        print("building the cvssp/audioldm2 architecture with random weights (~1.1B parameters)...",
              file=sys.stderr)
        model = build_random_audioldm2(dtype=dtype, device=device)
        model.announce = to_stderr  # what OpenVINO prepares on a first start, as load_model says it
        model.use_runtime(opts.model.runtime, keep_torch=_keeps_torch(opts))
        return model
    from .model.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    model = LoadedModel(pipe=pipe.to(device, dtype), model_id="tiny", device=device, dtype=dtype, announce=to_stderr)
    model.use_runtime(opts.model.runtime, keep_torch=_keeps_torch(opts))
    return model


def _keeps_torch(opts) -> bool:
    """diffusers' pipeline and the fp32 copy for --precision-error need torch's weights beside OpenVINO's."""
    return bool(opts.compare_diffusers or opts.precision_error)


def _set_attention(unet, name: str) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if name != "default":
        unet.set_attn_processor(AttnProcessor2_0() if name == "sdpa" else AttnProcessor())


class _TimedUNet:
    """Stands in for `pipe.unet` inside `denoise_batch`: times each call."""

    def __init__(self, unet, device: torch.device, streams: int):
        self.unet, self.device, self.streams = unet, device, streams
        self.times: list[float] = []
        self.guided: list[bool] = []  # per call: a guidance pair (batch 2 per stream) or batch 1

    def __getattr__(self, name):  # config, dtype, ... come from the real UNet
        return getattr(self.unet, name)

    def __call__(self, sample, t, *, encoder_hidden_states, encoder_hidden_states_1, encoder_attention_mask_1,
                 return_dict=False):
        sync(self.device)
        t0 = time.perf_counter()
        out = self.unet(sample, t, encoder_hidden_states=encoder_hidden_states,
                        encoder_hidden_states_1=encoder_hidden_states_1,
                        encoder_attention_mask_1=encoder_attention_mask_1, return_dict=False)[0]
        sync(self.device)
        self.times.append(time.perf_counter() - t0)
        self.guided.append(sample.shape[0] == 2 * self.streams)
        return (out,)


class _PipeView:
    """The pipeline as `denoise` sees it, with the timed UNet in place of the real one."""

    def __init__(self, pipe, unet):
        self._pipe, self.unet = pipe, unet

    def __getattr__(self, name):
        return getattr(self._pipe, name)


class _PeakRSS:
    """Samples the process's resident memory every few milliseconds in a background thread."""

    # Why 50 ms: a 5 ms sampler woke 200 times a second and took a share of a 2-core CPU from torch.
    def __init__(self, interval: float = 0.05):
        import psutil

        from .periodic import Periodic

        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self.peak_anon = 0  # RSS less file-backed pages (mmapped weights the kernel can drop and reread)
        self._sampler = Periodic(self._sample, interval, "bench-rss")

    def _sample(self) -> None:
        info = self._proc.memory_info()
        self.peak = max(self.peak, info.rss)
        self.peak_anon = max(self.peak_anon, info.rss - info.shared)

    def __enter__(self):
        self._sampler.__enter__()
        return self

    def __exit__(self, *exc):
        self._sampler.__exit__(*exc)
        self._sample()


# Measurement -------------------------------------------------------------------------------------

def _chunk(model, view, unet, cond, known, seed, chunk_spec, hop, streams, resampler, rs_states, stereo):
    """One chunk of each of `streams` streams, stage by stage; returns (timings, latents (streams, ...) on
    the CPU, new resampler states). `known`: the streams' tails (streams, 8, O, F), or None. `stereo`: per
    stream a dict with its air and width stages and their states (updated)."""
    from .generator.chunks import prefer_vocoder_window
    from .generator.denoise import denoise_batch, latents_to_mel, mel_to_audio

    dev = model.device
    spec = chunk_spec.denoise
    first_step = len(unet.times)
    # 1. denoise: the UNet steps (timed inside) plus scheduler and inpainting
    t0 = time.perf_counter()
    knowns = [None] * streams if known is None else list(known.split(1))
    latents = denoise_batch(view, [cond] * streams, knowns, [seed + k for k in range(streams)], spec)
    sync(dev)
    t1 = time.perf_counter()
    # 2. VAE: latents -> log-mel for the decode window play uses, every stream at once
    start = chunk_spec.decode_start(first=known is None)
    prefer_vocoder_window(model, chunk_spec)  # as play's generate_chunks does
    mel = latents_to_mel(model, latents[:, :, start:])
    sync(dev)
    t2 = time.perf_counter()
    # 3. vocoder: log-mel -> 16 kHz waveform
    audio = mel_to_audio(model, mel).numpy()
    t3 = time.perf_counter()
    # 4. resample each stream's new audio (one hop: the joiner holds the overlap back) to the output rate
    pushed = [resampler.push(a[-hop * SAMPLES_PER_FRAME:], st) for a, st in zip(audio, rs_states)]
    rs_states = [st for _, st in pushed]
    t4 = time.perf_counter()
    # 5. air and width on each stream's resampled audio (the chain's next stages), in this thread's CPU time
    c0 = time.thread_time()
    for (out, _), stages in zip(pushed, stereo):
        air_state, width_state = stages.get("air"), stages.get("width")
        out, stages["air"] = stages["stages"][0].process(out, air_state)
        _, stages["width"] = stages["stages"][1].process(out, width_state)
    stereo_s = time.thread_time() - c0
    timings = {"step_s": unet.times[first_step:], "step_guided": unet.guided[first_step:], "denoise_s": t1 - t0, "vae_s": t2 - t1,
               "vocoder_s": t3 - t2, "resample_s": t4 - t3, "stereo_s": stereo_s, "finite": bool(np.isfinite(audio).all())}
    return timings, latents.float().cpu(), rs_states


def _stereo_stages(streams: int, seed: int) -> list[dict]:
    """Each stream's air and width stages at the scene defaults, fresh."""
    from .audio.air import Air
    from .audio.width import Width
    from .scene.schema import Output

    defaults = Output()
    return [{"stages": (Air(OUT_RATE, defaults.air, seed + k), Width(OUT_RATE, defaults.width))} for k in range(streams)]


def _measure(model, opts, frames: int, overlap: int, gen) -> dict:
    return _drive([_measure_steps(model, opts, frames, overlap, gen)])[0]


def _drive(runs: list) -> list[dict]:
    """Advance the measurement generators in turn, one chunk each, until all are done: their results."""
    results: list = [None] * len(runs)
    while any(r is None for r in results):
        for i, run in enumerate(runs):
            if results[i] is None:
                try:
                    next(run)
                except StopIteration as done:
                    results[i] = done.value
    return results


def _measure_steps(model, opts, frames: int, overlap: int, gen):
    """The measurement as a generator that yields after each chunk (so two runtimes can interleave);
    returns the measured dict."""
    from .audio.resample import ResamplerState, StreamResampler
    from .generator.conditioning import PromptEncoder, blend, with_negative
    from .generator.chunks import ChunkSpec, chunk_seed
    from .generator.denoise import DenoiseSpec

    spec = DenoiseSpec(frames=frames, steps=gen.steps, scheduler=opts.scheduler,
                       guidance_scale=1.0 if opts.no_guidance else GUIDANCE_SCALE,
                       guidance_interval=gen.guidance_interval)
    chunk_spec = ChunkSpec(frames=frames, overlap=overlap, denoise=spec)
    _set_attention(model.pipe.unet, opts.attention)
    unet_impl = model.unet  # torch's, or OpenVINO's with --runtime openvino
    if opts.model.compile:
        unet_impl = torch.compile(unet_impl, mode=None if opts.model.compile == "default" else opts.model.compile)
    unet = _TimedUNet(unet_impl, model.device, opts.batch)
    view = type(model)(pipe=_PipeView(model.pipe, unet), model_id=model.model_id, device=model.device,
                       dtype=model.dtype, precision=model.precision)
    resampler = StreamResampler(MODEL_RATE, OUT_RATE)
    encoder = PromptEncoder(model)
    seed = 0 if opts.model.seed is None else opts.model.seed

    # 1. First-time prompt encoding (CLAP, Flan-T5, projection, 8 GPT-2 steps per prompt)
    start = time.perf_counter()
    for prompt in (*PROMPTS, NEGATIVE):
        encoder.encode(prompt)
    sync(model.device)
    encode_first = (time.perf_counter() - start) / (len(PROMPTS) + 1)

    # 2. The chunks: a continuing stream whose layer weights drift every chunk
    chunks, tail, states = [], None, [ResamplerState() for _ in range(opts.batch)]
    stereo = _stereo_stages(opts.batch, seed)
    for i in range(opts.chunks):
        t0 = time.perf_counter()
        w = 0.5 + 0.4 * math.sin(i)
        cond = with_negative(blend([encoder.encode(p) for p in PROMPTS], [w, 1 - w]), encoder.encode(NEGATIVE))
        t_cond = time.perf_counter() - t0
        timings, latents, states = _chunk(model, view, unet, cond, tail, chunk_seed(seed, i), chunk_spec,
                                          frames - overlap, opts.batch, resampler, states, stereo)
        tail = latents[:, :, frames - overlap:].clone() if overlap else None
        tail_latents = latents
        total = time.perf_counter() - t0
        chunks.append({"index": i, "conditioning_s": t_cond, **timings, "total_s": total})
        if i == 0:
            first_audio = time.perf_counter() - start
        print(f"chunk {i + 1}/{opts.chunks}: {total:.3f} s" + (f" ({model.runtimes['unet']})" if opts.compare_runtimes
                                                                 else ""), file=sys.stderr)
        yield

    # 3. Warm start: a new prompt after warm-up, to its first audio
    t0 = time.perf_counter()
    cond = with_negative(encoder.encode(WARM_PROMPT), encoder.encode(NEGATIVE))
    steps_before = len(unet.times)
    _chunk(model, view, unet, cond, None, chunk_seed(seed + 1, 0), chunk_spec, frames - overlap, opts.batch,
           resampler, [ResamplerState() for _ in range(opts.batch)], _stereo_stages(opts.batch, seed + 1))
    warm_start = time.perf_counter() - t0
    del unet.times[steps_before:], unet.guided[steps_before:]
    # 4. Each stage alone, back to back, on the last chunk's inputs: what a stage costs without the others
    #    beside it (two runtimes' thread pools taking turns on the cores)
    alone = _stages_alone(model, unet_impl, cond, tail_latents, chunk_spec) if opts.compare_runtimes else None
    return {"encode_first_s": encode_first, "chunks": chunks, "first_audio_s": first_audio,
            "warm_start_s": warm_start, "alone": alone, "steps": spec.steps, "guidance_scale": spec.guidance_scale,
            "guidance_interval": list(spec.guidance_interval),
            "guided_steps": sum(spec.guided_at(i) for i in range(spec.steps)),
            "decode_frames": frames - chunk_spec.decode_start(first=False), "edge": chunk_spec.edge,
            "xfade": chunk_spec.xfade}


def _stages_alone(model, unet, cond, latents, chunk_spec, repeats: int = 3) -> dict:
    """Median seconds of each stage called `repeats` times in a row (after one warm-up call), nothing between."""
    import statistics

    from .generator.denoise import latents_to_mel, mel_to_audio

    dev = model.device
    x = latents[:1].to(dev, model.precision.unet)
    gpt, t5, mask = (c.to(dev) for c in (cond.gpt, cond.t5, cond.mask))
    start = chunk_spec.decode_start(first=False)
    calls = {
        "step_guided_s": lambda: unet(torch.cat([x] * 2), torch.tensor(500), encoder_hidden_states=gpt.to(x.dtype),
                                      encoder_hidden_states_1=t5.to(x.dtype), encoder_attention_mask_1=mask),
        "step_single_s": lambda: unet(x, torch.tensor(500), encoder_hidden_states=gpt[1:].to(x.dtype),
                                      encoder_hidden_states_1=t5[1:].to(x.dtype), encoder_attention_mask_1=mask[1:]),
        "vae_s": lambda: latents_to_mel(model, latents[:1, :, start:].to(dev)),
    }
    out = {}
    with torch.inference_mode():
        mel = calls["vae_s"]()
        calls["vocoder_s"] = lambda: mel_to_audio(model, mel)
        for name, call in calls.items():
            call()
            times = []
            for _ in range(repeats):
                sync(dev)
                t0 = time.perf_counter()
                call()
                sync(dev)
                times.append(time.perf_counter() - t0)
            out[name] = statistics.median(times)
    return out


# Report ------------------------------------------------------------------------------------------

def _device_name(device: torch.device) -> str:
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


def _versions() -> dict:
    import diffusers
    import transformers

    from . import __version__

    return {"soundscape": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def _stats(xs: list[float]) -> dict:
    return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs)} if xs else {}


def _summary(chunks: list[dict]) -> dict:
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
    out["step_s"] = _stats(steps)
    out["step_guided_s"] = _stats([s for c in steady for s, g in zip(c["step_s"], c["step_guided"]) if g])
    out["step_single_s"] = _stats([s for c in steady for s, g in zip(c["step_s"], c["step_guided"]) if not g])
    out["denoise_other_s"] = out["denoise_s"] - sum(steps) / len(steady)
    return out


def _rss_max_mb() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if sys.platform == "darwin" else kib / 1024  # bytes on macOS, KiB on Linux


def _generation(opts, device_type: str):
    """The quality preset's settings under bench's explicit options (as a scene's values win in play)."""
    from .scene.quality import resolve
    from .scene.schema import Generation

    gen = resolve(Generation(), opts.model.quality, device_type, opts.model.steps).generation
    if opts.compare_diffusers == "same":  # like for like: diffusers guides every step
        gen = gen.model_copy(update={"guidance_interval": (0.0, 1.0)})
    return gen


def run_bench(opts) -> int:
    from .model.architecture import parameter_counts
    from .model.loading import choose_device
    from .model.precision import cpu_flags

    gen = _generation(opts, choose_device(opts.model.device).type)
    frames, overlap = _geometry(opts, gen.chunk_seconds)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    model = _load(opts)
    load_s = time.perf_counter() - t0
    import psutil

    rss_loaded = psutil.Process().memory_info().rss
    other = None
    if opts.compare_runtimes:
        other, other_load_s, other_rss = _load_torch_twin(opts, rss_loaded)
    on_cuda = model.device.type == "cuda"
    with _PeakRSS() as rss:
        try:
            runs = [_measure_steps(model, opts, frames, overlap, gen)]
            if other is not None:
                runs.append(_measure_steps(other, opts, frames, overlap, gen))
            measured, *other_measured = _drive(runs)
        except RuntimeError as exc:  # out of memory, kernels missing for a dtype/device, compiler failures
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            if isinstance(exc, torch.OutOfMemoryError):
                raise UsageError(f"bench ran out of memory on {model.device} with --batch {opts.batch}: "
                                 f"lower --batch or --chunk-seconds ({first})") from None
            raise UsageError(f"bench failed on {model.device.type} with {str(model.dtype).removeprefix('torch.')}"
                             f"{' and --compile' if opts.model.compile else ''}: {first}; try --dtype fp32"
                             f"{' or leave out --compile' if opts.model.compile else ''}") from None
    hop_s = (frames - overlap) * FRAME_S
    steady = _summary(measured["chunks"])
    result = {
        "model": model.model_id,
        "parameters": sum(parameter_counts(model.pipe).values()),
        "device": str(model.device), "device_name": _device_name(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "precision": model.precision.names(),
        "vocoder_runtime": model.runtimes["vocoder"],
        "runtimes": model.runtimes,
        "prepacked": list(model.prepacked),  # stages with oneDNN-prepacked bf16 weights (model/prepack.py)
        "cpu_flags": cpu_flags() if model.device.type == "cpu" else None,
        "quality": opts.model.quality or "auto",
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        # Other work on the machine skews CPU figures (OpenMP threads spin while waiting for a core).
        "load_avg_1m": [load_before, os.getloadavg()[0] if load_before is not None else None],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": _versions(),
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
                   "ru_maxrss_mb": _rss_max_mb(),
                   "cuda_max_allocated_mb": torch.cuda.max_memory_allocated(model.device) / 2**20 if on_cuda else None},
    }
    if other is not None:
        result["compare_runtimes"] = _runtime_comparison(result, other, other_measured[0], other_load_s, other_rss,
                                                         hop_s, opts.batch)
    if opts.compare_diffusers:
        result["diffusers"] = _compare_diffusers(model, opts, result)
    if opts.precision_error:
        result["precision_error_db"] = _precision_error(model, opts)
    print(json.dumps(result, indent=1) if opts.json else _table(result))
    return 0


def _load_torch_twin(opts, rss_before: int):
    """The same model on torch (prepacked bf16 where that applies), for --compare-runtimes: (model, load s, RSS added)."""
    import argparse

    import psutil

    if opts.model.runtime == "torch":
        raise UsageError("--compare-runtimes: compares the chosen runtime with torch; leave out --runtime torch "
                         "(the default, auto, picks OpenVINO on a CPU)")
    print("loading the same model again on torch, for --compare-runtimes...", file=sys.stderr)
    t0 = time.perf_counter()
    twin = _load(argparse.Namespace(**{**vars(opts), "runtime": "torch", "compare_runtimes": False}))
    return twin, time.perf_counter() - t0, psutil.Process().memory_info().rss - rss_before


def _runtime_comparison(ours: dict, twin, measured: dict, load_s: float, rss_added: int, hop_s: float,
                        streams: int) -> dict:
    """Torch's figures from the interleaved run, beside ours: per-stage means, RTF and the ratio."""
    steady = _summary(measured["chunks"])
    rtf = streams * hop_s / steady["total_s"]
    return {"runtimes": twin.runtimes, "prepacked": list(twin.prepacked), "load_s": load_s,
            "rss_added_mb": rss_added / 2**20, "chunks": measured["chunks"], "steady": steady, "rtf": rtf,
            "first_audio_s": measured["first_audio_s"], "warm_start_s": measured["warm_start_s"],
            "alone": measured["alone"], "ratio": ours["rtf"] / rtf}


def _compare_diffusers(model, opts, ours: dict) -> dict:
    """diffusers' AudioLDM2Pipeline on the same weights, 10.24 s clips back to back, in this run.

    `same`: our steps, dtype and guidance scale (ours guided every step too). `blog`: 20 DPM-Solver++
    steps, fp32, guidance 3.5 on every step, as the HF blog runs it (the weights are cast to fp32 first
    when ours ran in half precision, and cast back after).
    """
    from diffusers import DPMSolverMultistepScheduler

    pipe = model.pipe
    ov_decode = pipe.vae.__dict__.pop("decode", None)  # diffusers runs its own VAE decode, not OpenVINO's
    blog = opts.compare_diffusers == "blog"
    steps = 20 if blog else ours["config"]["steps"]
    guidance = GUIDANCE_SCALE if blog else ours["config"]["guidance_scale"]
    dtypes = {name: next(m.parameters()).dtype for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}
    if blog:
        pipe.to(dtype=torch.float32)
    else:  # diffusers runs one dtype throughout: the UNet's
        pipe.to(dtype=model.dtype)
    scheduler = pipe.scheduler
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(scheduler.config, algorithm_type="dpmsolver++")
    clip_s = 10.24
    times = []
    try:
        for i in range(opts.diffusers_clips):
            sync(model.device)
            t0 = time.perf_counter()
            pipe(PROMPTS[i % 2], negative_prompt=NEGATIVE, num_inference_steps=steps, audio_length_in_s=clip_s,
                 guidance_scale=guidance, generator=torch.Generator().manual_seed(i), output_type="np")
            sync(model.device)
            times.append(time.perf_counter() - t0)
            print(f"diffusers clip {i + 1}/{opts.diffusers_clips}: {times[-1]:.3f} s", file=sys.stderr)
    finally:
        pipe.scheduler = scheduler
        if ov_decode is not None:
            pipe.vae.decode = ov_decode
        for name, m in pipe.components.items():
            if isinstance(m, torch.nn.Module):
                m.to(dtype=dtypes[name])
    steady = times[1:] or times
    per_clip = sum(steady) / len(steady)
    rtf = clip_s / per_clip
    return {"mode": opts.compare_diffusers, "steps": steps, "guidance_scale": guidance,
            "dtype": "fp32" if blog else str(model.dtype).removeprefix("torch."), "clip_s": clip_s,
            "clip_times_s": times, "per_clip_s": per_clip, "rtf": rtf,
            "ratio": ours["rtf_per_stream"] / rtf}


def _precision_error(model, opts) -> dict:
    """Per-stage SNR of the model's half precision against fp32 (an fp32 copy is made: memory doubles)."""
    import copy

    from .model.precision import measure_errors

    if model.dtype == torch.float32:
        return {}
    ov_decode = model.pipe.vae.__dict__.pop("decode", None)  # OpenVINO's (not copyable): torch's VAE is measured
    pipe32 = copy.deepcopy(model.pipe).to(dtype=torch.float32)
    others = {}  # the stages another runtime runs, measured on the same inputs
    if model.unet_runtime is not None:
        others["unet"] = {"openvino": model.unet_runtime}
    if model.vocoder_runtime is not None:
        others["vocoder"] = {"openvino": model.vocoder_runtime}
    if model.vae_runtime is not None:
        import types

        others["vae"] = {"openvino": types.SimpleNamespace(decode=ov_decode, config=model.pipe.vae.config)}
    try:
        return measure_errors(pipe32, model.dtype, others=others)
    finally:
        del pipe32
        if ov_decode is not None:
            model.pipe.vae.decode = ov_decode


def _load_avg(pair) -> str:
    return "unknown" if pair[0] is None else f"{pair[0]:.1f} before, {pair[1]:.1f} after"


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _table(r: dict) -> str:
    c, s, first, mem = r["config"], r["steady"], r["chunks"][0], r["memory"]
    v = r["versions"]
    idx = s["chunks"]
    steady_label = ("steady (=chunk 0)" if len(r["chunks"]) == 1 else
                    f"steady (chunk {idx[0]})" if len(idx) == 1 else f"steady (chunks {idx[0]}-{idx[-1]})")
    lines = [
        f"model     {r['model']} ({r['parameters'] / 1e6:.0f}M parameters), loaded in {r['load_s']:.1f} s",
        f"device    {r['device']}: {r['device_name']}, {r['torch_threads']} torch threads "
        f"of {r['cpu_count']} CPUs, load average {_load_avg(r['load_avg_1m'])}"
        + (f", flags {' '.join(r['cpu_flags'])}" if r.get("cpu_flags") else ""),
        "precision " + ", ".join(f"{k} {v}" for k, v in r["precision"].items())
        + "; run by " + ", ".join(f"{k} {v}" for k, v in r.get("runtimes", {"vocoder": r.get("vocoder_runtime", "torch")}).items())
        + (f"; prepacked {', '.join(r['prepacked'])}" if r.get("prepacked") else ""),
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
    step0 = _stats(first["step_s"])
    rows = [("conditioning", first["conditioning_s"], s["conditioning_s"]),
            ("UNet step (mean)", step0.get("mean", 0), s["step_s"].get("mean", 0)),
            ("UNet step (min)", step0.get("min", 0), s["step_s"].get("min", 0)),
            ("UNet step (max)", step0.get("max", 0), s["step_s"].get("max", 0)),
            ("  guided (batch 2)", _stats([t for t, g in zip(first["step_s"], first["step_guided"]) if g]).get("mean", 0),
             s["step_guided_s"].get("mean", 0)),
            ("  unguided (batch 1)", _stats([t for t, g in zip(first["step_s"], first["step_guided"]) if not g]).get("mean", 0),
             s["step_single_s"].get("mean", 0)),
            ("denoise (all steps)", first["denoise_s"], s["denoise_s"]),
            ("VAE decode", first["vae_s"], s["vae_s"]),
            ("vocoder", first["vocoder_s"], s["vocoder_s"]),
            ("resample 16k->48k", first["resample_s"], s["resample_s"]),
            ("air + width (CPU)", first["stereo_s"], s["stereo_s"]),
            ("chunk total", first["total_s"], s["total_s"])]
    lines += [f"{name:<22}{_fmt(a):>12}{_fmt(b):>28}" for name, a, b in rows]
    cuda = mem["cuda_max_allocated_mb"]
    lines += [
        "",
        f"real-time factor      {r['rtf']:.3g}x ({r['rtf_per_stream']:.3g}x per stream; >1 keeps up)",
        f"air + width           {100 * r['stereo_share']:.2f}% of real time per stream on one core "
        f"(48 kHz stereo, the scene defaults)",
        f"first audio           {_fmt(r['first_audio_s'])} from the loaded model "
        f"(prompt encoding {_fmt(r['encode_first_s'])} per prompt, first time)",
        f"warm start            {_fmt(r['warm_start_s'])} for a new prompt after warm-up",
        f"peak memory           RSS {mem['peak_rss_mb']:.0f} MiB while generating (of it not file-backed "
        f"{mem.get('peak_rss_anon_mb', 0):.0f} MiB), {mem['rss_after_load_mb']:.0f} MiB "
        f"after loading, ru_maxrss {mem['ru_maxrss_mb']:.0f} MiB"
        + (f", CUDA max allocated {cuda:.0f} MiB" if cuda is not None else ""),
    ]
    cmp = r.get("compare_runtimes")
    if cmp:
        t = cmp["steady"]
        ours_name = "+".join(sorted(set(r["runtimes"].values())))
        lines += ["", f"{'interleaved, steady':<22}{ours_name:>14}{'torch':>14}"]
        for name, key in (("guided step", "step_guided_s"), ("unguided step", "step_single_s")):
            lines.append(f"{name:<22}{_fmt(s[key].get('mean', 0)):>14}{_fmt(t[key].get('mean', 0)):>14}")
        for name, key in (("denoise", "denoise_s"), ("VAE decode", "vae_s"), ("vocoder", "vocoder_s"),
                          ("chunk total", "total_s")):
            lines.append(f"{name:<22}{_fmt(s[key]):>14}{_fmt(t[key]):>14}")
        lines.append(f"{'real-time factor':<22}{r['rtf']:>14.3g}{cmp['rtf']:>14.3g}   ratio {cmp['ratio']:.2f}x")
        a, b = r.get("alone") or {}, cmp.get("alone") or {}
        if a and b:
            lines.append(f"{'each stage alone':<22}{ours_name:>14}{'torch':>14}   (in the pipeline / alone)")
            for name, key in (("guided step", "step_guided_s"), ("unguided step", "step_single_s"),
                              ("VAE decode", "vae_s"), ("vocoder", "vocoder_s")):
                ours_in = s[key].get("mean", 0) if isinstance(s[key], dict) else s[key]
                theirs_in = t[key].get("mean", 0) if isinstance(t[key], dict) else t[key]
                lines.append(f"{name:<22}{_fmt(a[key]):>14}{_fmt(b[key]):>14}   "
                             f"{ours_in / a[key]:.2f}x / {theirs_in / b[key]:.2f}x")
        lines.append(f"{'first audio':<22}{_fmt(r['first_audio_s']):>14}{_fmt(cmp['first_audio_s']):>14}")
        lines.append(f"{'load':<22}{_fmt(r['load_s']):>14}{_fmt(cmp['load_s']):>14}")
    d = r.get("diffusers")
    if d:
        lines.append(f"diffusers             {d['per_clip_s']:.2f} s per {d['clip_s']:.2f} s clip ({d['steps']} DPM-Solver++ "
                     f"steps, {d['dtype']}, guidance {d['guidance_scale']:g} every step): {d['rtf']:.3g}x real time; "
                     f"ours/diffusers = {d['ratio']:.2f}x per second of new audio")
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
