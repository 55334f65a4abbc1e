"""`soundscape bench`: its flags, made into BenchOptions. Nothing here imports torch (bench.py does)."""

from __future__ import annotations

from .flags import add_model_args, model_options, ranged

HELP = "measure generation speed (per stage, real-time factor, memory)"


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help=HELP,
                       description="Time every stage of chunk generation and report the real-time factor "
                                   "and peak memory. Needs the model (or --random-weights / --tiny). Our machines' figures and the "
                                   "commands that measured them: soundscape docs benchmarks (and docs performance).")
    add_model_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--random-weights", action="store_true",
                       help="the full cvssp/audioldm2 architecture with random weights (no download)")
    which.add_argument("--tiny", action="store_true", help="the tiny random pipeline (quick smoke runs)")
    p.add_argument("--chunks", type=ranged(1, 1000), default=3, help="chunks to generate (default 3)")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="chunk length, a multiple of 0.32 (default: the --quality preset's, 10.24)")
    p.add_argument("--overlap-seconds", type=float, default=2.56, help="overlap, a multiple of 0.04 (2.56)")
    p.add_argument("--scheduler", choices=["dpmsolver++", "ddim"], default="dpmsolver++")
    p.add_argument("--no-guidance", action="store_true", help="no classifier-free guidance: UNet batch 1, not 2")
    p.add_argument("--batch", type=ranged(1, 256), default=1, help="concurrent streams in one UNet call (1)")
    p.add_argument("--attention", choices=["default", "sdpa", "math"], default="default",
                   help="UNet attention: as loaded, torch SDPA (AttnProcessor2_0), or explicit matmul (AttnProcessor)")
    p.add_argument("--threads", type=ranged(1, 1024), help="torch CPU threads (default: torch's choice, one per core)")
    p.add_argument("--compare-diffusers", nargs="?", const="same", choices=["same", "blog"],
                   help="also time diffusers' own AudioLDM2Pipeline making 10.24 s clips back to back, in the same "
                        "run: `same` at our steps, dtype and guidance (ours then guides every step); `blog` as the "
                        "HF blog runs it (20 DPM-Solver++ steps, fp32, full guidance) against ours as set")
    p.add_argument("--diffusers-clips", type=ranged(1, 100), default=3,
                   help="clips for --compare-diffusers; the first is warm-up (default 3)")
    p.add_argument("--compare-runtimes", action="store_true",
                   help="also run the same chunks on torch (prepacked bf16) in this run, interleaved chunk by chunk "
                        "with the chosen runtime, and print both per-stage tables, their real-time factors and the "
                        "ratio (loads the model twice)")
    p.add_argument("--precision-error", action="store_true",
                   help="also measure each stage's error (SNR, dB) in the chosen half precision against fp32")
    p.add_argument("--probe", action="store_true",
                   help="first measure this CPU afresh: each decoder on torch and OpenVINO, and the UNet in int8 "
                        "against bf16 (quantized with NNCF on its own trajectories, gated on its error against "
                        "fp32; about 3 minutes with the full model); the answers are cached for --runtime auto")
    p.add_argument("--tweaks", type=ranged(0, 1000), default=0, metavar="N",
                   help="also time N live changes, each at a random moment, from the change to its first sound "
                        "on play's real-time path: median and 95th percentile (each takes a chunk's work or more)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def cmd_bench(ns) -> int:
    from ..bench import BenchOptions, run_bench

    return run_bench(BenchOptions(
        model=model_options(ns), random_weights=ns.random_weights, tiny=ns.tiny, chunks=ns.chunks,
        chunk_seconds=ns.chunk_seconds, overlap_seconds=ns.overlap_seconds, scheduler=ns.scheduler,
        no_guidance=ns.no_guidance, batch=ns.batch, attention=ns.attention, threads=ns.threads,
        compare_diffusers=ns.compare_diffusers, diffusers_clips=ns.diffusers_clips,
        compare_runtimes=ns.compare_runtimes, precision_error=ns.precision_error, probe=ns.probe, tweaks=ns.tweaks,
        json=ns.json))


COMMANDS = {"bench": cmd_bench}
