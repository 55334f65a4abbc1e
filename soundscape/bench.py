"""`soundscape bench`: per-stage timings, real-time factor and memory. (Being written.)"""

from __future__ import annotations


def add_bench_parser(sub, add_model_args) -> None:
    p = sub.add_parser("bench", help="measure generation speed (per stage, real-time factor, memory)")
    add_model_args(p)


def run_bench(args) -> int:
    raise NotImplementedError("soundscape bench is not written yet")
