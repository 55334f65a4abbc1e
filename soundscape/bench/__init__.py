"""`soundscape bench`: per-stage timings, real-time factor and memory.

Each chunk goes through the code `play` runs, timed stage by stage:
  conditioning  cached prompt embeddings blended with weights that change per chunk, plus the negative
  step          one UNet call (a thin wrapper in place of the model's UNet times it)
  denoise       the batch's denoising in `generate_chunks` (generator/chunks.py): the steps plus scheduler
                updates and overlap inpainting, timed at its `on_stage` hooks
  vae, vocoder  the two halves of its decode, for the window play decodes, timed the same way
  resample      the rest of each stream's OutputChain (audio/chain.py): the join, 16 kHz -> 48 kHz, the
                loudness controller and the fade, wall time
  air + width   air above 8 kHz and the stereo width in that chain at the scene defaults, one stream's on
                one core (this thread's CPU time, as the chain counts it): what they add to a chunk
Real-time factor = streams * hop / wall seconds per chunk, where hop = chunk - overlap is the new
audio a chunk adds. Steady-state figures leave out chunk 0 (warm-up: first kernel calls, compilation).
First audio = from the loaded model to chunk 0's audio ready, prompt encoding included.
Warm start = the same for a new, uncached prompt after warm-up.

measure.py makes and times the chunks; report.py turns the figures into the JSON and the table.
May import anything: a tool at the top, like cli/ (torch only once it runs).

`--batch N` runs N streams through `generate_chunks`, the code `serve` batches its listeners with:
each stream has its own seed and continues its own tail, every step is one UNet call for all N
([N negatives, N positives] on guided steps), and the VAE and vocoder decode N chunks at once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from ..errors import UsageError
from ..model.geometry import FRAME_S
from ..stream.options import ModelOptions


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
    probe: bool = False  # measure this CPU afresh first (bench/probe.py)
    tweaks: int = 0  # --tweaks N: also measure N live changes' latency (bench/tweaks.py)
    json: bool = False


def run_bench(opts: BenchOptions) -> int:
    import torch

    from . import measure, report
    from ..model.loading import choose_device

    gen = measure.generation(opts, choose_device(opts.model.device).type)
    frames, overlap = measure.geometry(opts, gen.chunk_seconds)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    before = os.environ.get("SOUNDSCAPE_PROBE")
    if opts.probe:  # the load measures the decoders afresh, before torch's stages are prepacked (bench/probe.py)
        os.environ["SOUNDSCAPE_PROBE"] = "fresh"
    t0 = time.perf_counter()
    try:
        model = measure.load(opts)
    finally:
        if opts.probe:
            os.environ.pop("SOUNDSCAPE_PROBE") if before is None else os.environ.update(SOUNDSCAPE_PROBE=before)
    load_s = time.perf_counter() - t0
    import psutil

    rss_loaded = psutil.Process().memory_info().rss
    probed = None
    if opts.probe:
        from .probe import run_probe
        from ..model.loading import to_stderr

        probed = run_probe(model, opts, gen, frames, overlap, to_stderr)
    other = None
    if opts.compare_runtimes:
        other, other_load_s, other_rss = measure.load_torch_twin(opts, rss_loaded)
    with measure.PeakRSS() as rss:
        try:
            runs = [measure.measure_steps(model, opts, frames, overlap, gen)]
            if other is not None:
                runs.append(measure.measure_steps(other, opts, frames, overlap, gen))
            measured, *other_measured = measure.drive(runs)
        except RuntimeError as exc:  # out of memory, kernels missing for a dtype/device, compiler failures
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            if isinstance(exc, torch.OutOfMemoryError):
                raise UsageError(f"bench ran out of memory on {model.device} with --batch {opts.batch}: "
                                 f"lower --batch or --chunk-seconds ({first})") from None
            raise UsageError(f"bench failed on {model.device.type} with {str(model.dtype).removeprefix('torch.')}"
                             f"{' and --compile' if opts.model.compile else ''}: {first}; try --dtype fp32"
                             f"{' or leave out --compile' if opts.model.compile else ''}") from None
    hop_s = (frames - overlap) * FRAME_S
    result = report.build(opts, model, measured, frames, overlap, load_s=load_s, load_before=load_before,
                          rss_loaded=rss_loaded, rss=rss)
    if other is not None:
        result["compare_runtimes"] = report.runtime_comparison(result, other, other_measured[0], other_load_s,
                                                               other_rss, hop_s, opts.batch)
    if opts.compare_diffusers:
        result["diffusers"] = measure.compare_diffusers(model, opts, result)
    if opts.precision_error:
        result["precision_error_db"] = measure.precision_error(model, opts)
    if probed is not None:
        result["probe"] = probed
    if opts.tweaks:
        from .tweaks import tweak_latency

        result["tweak_latency"] = tweak_latency(model, gen, frames, overlap, opts.tweaks, measure.PROMPTS)
    text = report.table(result)
    if probed is not None and not opts.json:
        from .probe import lines

        text += "\n" + "\n".join(lines(probed))
    print(json.dumps(result, indent=1) if opts.json else text)
    return 0
