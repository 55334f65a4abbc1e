"""`soundscape bench`'s measurement: the model loaded as asked, then chunks made by the code `play` runs,
timed stage by stage through its hooks (see the package's docstring for what each figure is).

  step          one UNet call: a thin wrapper in place of the model's UNet times it
  denoise, vae, vocoder   `generator/chunks.generate_chunks`, timed at its `on_stage` hooks
  resample, air + width   each stream's real OutputChain (audio/chain.py) at the scene defaults: air and
                width as the chain counts them (this thread's CPU time), the rest of the chain as resample
"""

from __future__ import annotations

import math
import resource
import sys
import time

import numpy as np
import torch

from ..errors import UsageError
from ..model.geometry import MODEL_RATE, SAMPLES_PER_FRAME
from ..model.loading import sync

PROMPTS = ("birds singing in the forest", "gentle rain on a roof")
NEGATIVE = "low quality"
WARM_PROMPT = "distant thunder and wind in the leaves"
OUT_RATE = 48000
GUIDANCE_SCALE = 3.5  # the scene default


# Setup -------------------------------------------------------------------------------------------

def geometry(opts, preset_chunk_s: float) -> tuple[int, int]:
    """Chunk and overlap in latent frames (40 ms each), checked like a scene's `generation:`."""
    from ..model.geometry import CHUNK_QUANTUM_S, FRAME_S as LATENT_FRAME_S

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


def load(opts):
    """The model to time: real weights (the normal path), the full random architecture, or the tiny one."""
    from ..model.loading import LoadedModel, to_stderr, choose_device, choose_dtype, choose_model, load_model

    if (opts.random_weights or opts.tiny) and opts.model.name:
        flag = "--random-weights" if opts.random_weights else "--tiny"
        raise UsageError(f"--model {opts.model.name}: cannot be combined with {flag}; pass one of them")
    if not (opts.random_weights or opts.tiny):
        return load_model(choose_model(opts.model.name), device=opts.model.device, dtype=opts.model.dtype, runtime=opts.model.runtime,
                          keep_torch=_keeps_torch(opts))
    device = choose_device(opts.model.device)
    dtype = choose_dtype(opts.model.dtype, device)
    if opts.random_weights:
        from ..model.architecture import build_random_audioldm2

        print("building the cvssp/audioldm2 architecture with random weights (~1.1B parameters)...",
              file=sys.stderr)
        model = build_random_audioldm2(dtype=dtype, device=device)
        model.announce = to_stderr  # what OpenVINO prepares on a first start, as load_model says it
        model.use_runtime(opts.model.runtime, keep_torch=_keeps_torch(opts))
        return model
    from ..model.tiny import build_tiny_pipeline

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


class PeakRSS:
    """Samples the process's resident memory every few milliseconds in a background thread."""

    # Why 50 ms: a 5 ms sampler woke 200 times a second and took a share of a 2-core CPU from torch.
    def __init__(self, interval: float = 0.05):
        import psutil

        from ..periodic import Periodic

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

def _chunk(view, unet, jobs, chunk_spec, chains, states):
    """One chunk of each stream through the code play runs, stage by stage: `generate_chunks` (timed at its
    stage hooks; the UNet inside it by `unet`), then each stream's OutputChain. Returns (timings, results,
    new chain states)."""
    from ..generator.chunks import generate_chunks

    first_step = len(unet.times)
    marks = [("start", time.perf_counter())]

    def mark(stage: str) -> None:
        sync(view.device)
        marks.append((stage, time.perf_counter()))

    # 1-3. denoise (the UNet steps, timed inside, plus scheduler and inpainting), VAE, vocoder
    results = generate_chunks(view, jobs, chunk_spec, on_stage=mark)
    spent = {stage: t - marks[i][1] for i, (stage, t) in enumerate(marks[1:])}
    # 4-5. the output chain: join, resample, air and width (their CPU time, this thread's: stereo_s), loudness
    t0, c0 = time.perf_counter(), sum(c.stage_s for c in chains)
    pushed = [chain.push(r.audio.numpy(), st) for chain, r, st in zip(chains, results, states)]
    stereo_s = sum(c.stage_s for c in chains) - c0
    chain_s = time.perf_counter() - t0
    timings = {"step_s": unet.times[first_step:], "step_guided": unet.guided[first_step:],
               "denoise_s": spent["denoise"], "vae_s": spent["vae"], "vocoder_s": spent["vocoder"],
               # The chain's other stages (join, resample, loudness, fade), wall time.
               "resample_s": max(chain_s - stereo_s, 0.0), "stereo_s": stereo_s,
               "finite": all(bool(np.isfinite(r.audio.numpy()).all()) for r in results)}
    return timings, results, [st for _, st in pushed]


def _chains(chunk_spec, streams: int, seed: int) -> list:
    """Each stream's output chain at the scene defaults (48 kHz stereo, width and air on), fresh."""
    from ..audio.chain import OutputChain
    from ..scene.schema import Output

    out = Output()
    return [OutputChain(xfade=chunk_spec.xfade * SAMPLES_PER_FRAME, edge=chunk_spec.edge * SAMPLES_PER_FRAME,
                        loudness_lufs=out.loudness_lufs, volume=out.volume, fade_in_s=out.fade_in_seconds,
                        model_rate=MODEL_RATE, out_rate=OUT_RATE, channels=2, width=out.width, air=out.air,
                        seed=seed + k) for k in range(streams)]


def drive(runs: list) -> list[dict]:
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


def measure_steps(model, opts, frames: int, overlap: int, gen):
    """The measurement as a generator that yields after each chunk (so two runtimes can interleave);
    returns the measured dict."""
    from dataclasses import replace

    from ..audio.chain import ChainState
    from ..generator.chunks import ChunkJob, ChunkSpec, GeneratorState
    from ..generator.conditioning import PromptEncoder, blend, with_negative
    from ..generator.denoise import DenoiseSpec

    spec = DenoiseSpec(frames=frames, steps=gen.steps, scheduler=opts.scheduler,
                       guidance_scale=1.0 if opts.no_guidance else GUIDANCE_SCALE,
                       guidance_interval=gen.guidance_interval)
    chunk_spec = ChunkSpec(frames=frames, overlap=overlap, denoise=spec)
    _set_attention(model.pipe.unet, opts.attention)
    unet_impl = model.unet  # torch's, or OpenVINO's with --runtime openvino
    if opts.model.compile:
        unet_impl = torch.compile(unet_impl, mode=None if opts.model.compile == "default" else opts.model.compile)
    unet = _TimedUNet(unet_impl, model.device, opts.batch)
    # The model as generate_chunks sees it, with the timed UNet in place of the one it would run.
    view = replace(model, pipe=_PipeView(model.pipe, unet), unet_runtime=None,
                   packed={k: v for k, v in model.packed.items() if k != "unet"})
    encoder = PromptEncoder(model)
    seed = 0 if opts.model.seed is None else opts.model.seed

    # 1. First-time prompt encoding (CLAP, Flan-T5, projection, 8 GPT-2 steps per prompt)
    start = time.perf_counter()
    for prompt in (*PROMPTS, NEGATIVE):
        encoder.encode(prompt)
    sync(model.device)
    encode_first = (time.perf_counter() - start) / (len(PROMPTS) + 1)

    # 2. The chunks: continuing streams (each its own seed) whose layer weights drift every chunk
    chunks, gens = [], [GeneratorState() for _ in range(opts.batch)]
    chains, states = _chains(chunk_spec, opts.batch, seed), [ChainState() for _ in range(opts.batch)]
    for i in range(opts.chunks):
        t0 = time.perf_counter()
        w = 0.5 + 0.4 * math.sin(i)
        cond = with_negative(blend([encoder.encode(p) for p in PROMPTS], [w, 1 - w]), encoder.encode(NEGATIVE))
        t_cond = time.perf_counter() - t0
        jobs = [ChunkJob(cond, g, seed + k) for k, g in enumerate(gens)]
        timings, results, states = _chunk(view, unet, jobs, chunk_spec, chains, states)
        gens = [r.state for r in results]
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
    _chunk(view, unet, [ChunkJob(cond, GeneratorState(), seed + 1 + k) for k in range(opts.batch)], chunk_spec,
           _chains(chunk_spec, opts.batch, seed + 1), [ChainState() for _ in range(opts.batch)])
    warm_start = time.perf_counter() - t0
    del unet.times[steps_before:], unet.guided[steps_before:]
    # 4. Each stage alone, back to back, on the last chunk's inputs: what a stage costs without the others
    #    beside it (two runtimes' thread pools taking turns on the cores)
    alone = _stages_alone(model, unet_impl, cond, results[0].latents, chunk_spec) if opts.compare_runtimes else None
    return {"encode_first_s": encode_first, "chunks": chunks, "first_audio_s": first_audio,
            "warm_start_s": warm_start, "alone": alone, "steps": spec.steps, "guidance_scale": spec.guidance_scale,
            "guidance_interval": list(spec.guidance_interval),
            "guided_steps": sum(spec.guided_at(i) for i in range(spec.steps)),
            "decode_frames": frames - chunk_spec.decode_start(first=False), "edge": chunk_spec.edge,
            "xfade": chunk_spec.xfade}


def _stages_alone(model, unet, cond, latents, chunk_spec, repeats: int = 3) -> dict:
    """Median seconds of each stage called `repeats` times in a row (after one warm-up call), nothing between."""
    import statistics

    from ..generator.denoise import latents_to_mel, mel_to_audio

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






def rss_max_mb() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if sys.platform == "darwin" else kib / 1024  # bytes on macOS, KiB on Linux


def generation(opts, device_type: str):
    """The quality preset's settings under bench's explicit options (as a scene's values win in play)."""
    from ..scene.quality import resolve
    from ..scene.schema import Generation

    gen = resolve(Generation(), opts.model.quality, device_type, opts.model.steps).generation
    if opts.compare_diffusers == "same":  # like for like: diffusers guides every step
        gen = gen.model_copy(update={"guidance_interval": (0.0, 1.0)})
    return gen



def load_torch_twin(opts, rss_before: int):
    """The same model on torch (prepacked bf16 where that applies), for --compare-runtimes: (model, load s, RSS added)."""
    from dataclasses import replace

    import psutil

    if opts.model.runtime == "torch":
        raise UsageError("--compare-runtimes: compares the chosen runtime with torch; leave out --runtime torch "
                         "(the default, auto, picks OpenVINO on a CPU)")
    print("loading the same model again on torch, for --compare-runtimes...", file=sys.stderr)
    t0 = time.perf_counter()
    twin = load(replace(opts, model=replace(opts.model, runtime="torch"), compare_runtimes=False))
    return twin, time.perf_counter() - t0, psutil.Process().memory_info().rss - rss_before



def compare_diffusers(model, opts, ours: dict) -> dict:
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


def precision_error(model, opts) -> dict:
    """Per-stage SNR of the model's half precision against fp32 (an fp32 copy is made: memory doubles)."""
    import copy

    from ..model.precision import measure_errors

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




