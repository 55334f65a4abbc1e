"""The flags every command shares, and the one way each kind of value is read off the command line.

`ranged` reads every number with bounds (counts, ports, 0..1 levels); `duration`, `seed` and `time_of_day`
read the other kinds. Each refuses a bad value in one line that names the flag and what it expects
(argparse prints it and exits 2). `model_options` turns the shared model flags into ModelOptions.
"""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import EXIT_USAGE, UsageError
from ..stream.options import ModelOptions
from ..units import parse_duration, parse_seed, parse_time_of_day


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2, like ours
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def ranged(lo: float, hi: float, *, kind=int, expected: str | None = None):
    """A number from `lo` to `hi` (a whole one for kind=int); `expected` words the refusal's first half."""
    noun = "a whole number" if kind is int else "a number"
    expected = expected or f"{noun} from {lo:g} to {hi:g}"

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            v = math.nan
        if not lo <= v <= hi:  # NaN fails too
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return v
    return parse


PORT = ranged(0, 65535, expected="a port from 1 to 65535 (0: a free one)")
UNIT = ranged(0.0, 1.0, kind=float)


def duration(what: str):
    def parse(text):
        try:
            return parse_duration(text, what=what)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    return parse


def seed(text):
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def time_of_day(text):
    seconds = parse_time_of_day(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"expected a time of day like 21:30 or 06:45:30 (24-hour), got {text!r}")
    return seconds


def add_model_args(p) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="hub id or local diffusers folder (default: scene's `model:`, "
                                   "$SOUNDSCAPE_MODEL, then cvssp/audioldm2)")
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="auto: fp16 on GPUs, bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32")
    g.add_argument("--runtime", default="auto", choices=["auto", "torch", "openvino"],
                   help="what runs the UNet and vocoder: auto (default) = OpenVINO on a CPU (compiled for the "
                        "session's static shapes, faster than torch there; the first start converts and compiles, "
                        "later starts load the cache), torch on GPUs or where OpenVINO is missing or fails to "
                        "convert; torch = always torch; openvino = OpenVINO or an error (compare both on this machine: "
                        "`soundscape bench --compare-runtimes`)")
    g.add_argument("--quality", choices=["auto", "eco", "balanced", "best"],
                   help="preset for steps, guidance interval and chunk length (default: the scene's "
                        "generation.quality; auto = best on a GPU, balanced on a CPU); the scene's own values win")
    g.add_argument("--steps", type=ranged(1, 500), help="denoising steps per chunk, fixed (default: the quality "
                                                        "preset's; play adapts within its range)")
    g.add_argument("--seed", type=seed, help="scene seed override")
    g.add_argument("--keep-encoders", action="store_true",
                   help="keep the text encoders (CLAP, Flan-T5, GPT-2: 1.2 GB in bf16) loaded; by default they "
                        "load when a new prompt must be encoded and are released after, and prompts already "
                        "encoded come from the prompt cache (`soundscape cache`); serve keeps them until no new prompt "
                        "has come for 5 minutes")
    g.add_argument("--compile", nargs="?", const="default", choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile the UNet; reduce-overhead adds CUDA graphs (the first chunk pays the "
                        "compile; off by default: it did not pay on CPU; measure it here with `soundscape bench --compile`)")


def model_options(ns: argparse.Namespace) -> ModelOptions:
    return ModelOptions(name=ns.model, device=ns.device, dtype=ns.dtype, runtime=ns.runtime, quality=ns.quality,
                        steps=ns.steps, seed=ns.seed, keep_encoders=ns.keep_encoders, compile=ns.compile)


def load_scene_arg(path: str):
    """A scene named on the command line: a file, or a shipped scene's name (a path that exists wins)."""
    from ..scene import load_scene
    from ..scene.shipped import find_scene

    found = str(find_scene(path))
    return found, load_scene(found)


def add_budget(p, scheduled: bool = False) -> None:
    """--budget PERCENT (play, serve): the generator's share of wall time (stream/budget.py). `scheduled`
    (play): the default is None, so that the scene's `generation.budget` schedule applies unless given."""
    default = "100, or the scene's generation.budget schedule" if scheduled else "100"
    p.add_argument("--budget", type=ranged(1, 100, kind=float, expected="a percentage from 1 to 100"),
                   default=None if scheduled else 100.0, metavar="PERCENT",
                   help="the generator works only this share of the time, at the lowest priority, and earlier "
                        f"material fills the rest (e.g. 30 for the night; default {default}: as fast as needed)")
