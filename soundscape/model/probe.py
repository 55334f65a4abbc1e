"""Measure, then choose: which runtime runs each decoder fastest on this CPU, within a precision gate.

Why: the fastest choice is not the same on every CPU. On a 2-core AMX Xeon torch's prepacked bf16 VAE
decoder beat OpenVINO's, on other CPUs OpenVINO's won (docs/benchmarks.md, "Measure, then choose"), and
a fixed table in the code is right on one CPU family only. So on a CPU, `--runtime auto` times the
candidates here once per machine, model and library versions, and keeps the answer beside the other
caches (`~/.cache/soundscape/probe/`); later starts read it. A user's `--runtime` or `--dtype` wins.

    stage          candidates                                  inputs
    VAE decoder    torch (prepacked bf16 / fp32), OpenVINO     seeded latents, a later chunk's decode window
    vocoder        torch, OpenVINO                              the fp32 VAE's mel of those latents

The UNet is not probed: OpenVINO ran it 1.4-2.2x faster than torch on every CPU measured, and timing
torch's UNet would add half a minute to a first start.

Per candidate: one warm-up call, then REPEATS calls; the median time. Its error is the SNR (dB) of its
output against the same stage in fp32 on the same inputs; a candidate passes the gate when that SNR is
no more than GATE_DB below torch's in the stage's own precision (the issue's rule: a faster runtime may
not buy its speed with audible error). The fastest passing candidate is chosen.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .precision import dtype_name, snr_db

PROBE_FORMAT = 1  # bump when the candidates or the measurement change, so old answers are not reused
REPEATS = 3
GATE_DB = 6.0
CLEAN_DB = 90.0  # an SNR past this is float rounding: fp32 against fp32
PROBED = ("vae", "vocoder")
# Another runtime than the default (DEFAULT) must be this much faster to be chosen: two runs on one machine
# then choose alike even where the two are close (timings drift 1.5x between runs on these VMs), and
# renders at fixed settings stay the same from one start to the next.
MARGIN = 1.10
DEFAULT = {"vae": "torch", "vocoder": "openvino"}


@dataclass(frozen=True)
class Row:
    stage: str
    runtime: str
    precision: str
    seconds: float  # median of REPEATS calls
    snr_db: float  # against fp32 on the same inputs
    passed: bool
    chosen: bool = False


@dataclass(frozen=True)
class Choice:
    runtimes: dict  # {stage: "torch" | "openvino"} for the probed stages
    rows: tuple  # every candidate measured (Row)
    key: str
    cached: bool  # read from the cache, not measured in this process

    def openvino_stages(self, base: tuple[str, ...]) -> tuple[str, ...]:
        """`base` (the stages OpenVINO runs by default) with the probed stages set as measured."""
        chosen = [s for s in base if s not in self.runtimes] + [s for s, r in self.runtimes.items() if r == "openvino"]
        return tuple(s for s in ("unet", "vae", "vocoder") if s in chosen)


def cache_dir() -> Path:
    from ..caches import folder

    return folder("probe")


def cpu_identity(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, list[str]]:
    """(the CPU's name, its feature flags) from `cpuinfo`: x86's `model name`/`flags`, ARM's
    `Hardware`/`Model`/`Features`; the platform's processor name and no flags where there is no such file."""
    import platform

    name, flags = "", []
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if not name and key in ("model name", "Model", "Hardware", "cpu model"):
                    name = value.strip()
                elif not flags and key in ("flags", "Features"):
                    flags = sorted(set(value.split()))
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), flags


def cpu_name() -> str:
    return cpu_identity()[0]


def cpu_key() -> str:
    """A short key of this CPU (name, flags, cores), threads and OpenVINO's version: what a speed answer holds for."""
    import openvino as ov

    name, flags = cpu_identity()
    return hashlib.sha256(json.dumps([name, flags, os.cpu_count(), torch.get_num_threads(), ov.get_version()])
                          .encode()).hexdigest()[:16]


def probe_key(pipe, precision, cpuinfo: str = "/proc/cpuinfo") -> str:
    """What the answer depends on: the CPU (name, every flag, cores), the VAE decoder's weights, the vocoder's
    config, the stage precisions, torch's and OpenVINO's versions and PROBE_FORMAT."""
    import openvino as ov

    from .openvino_runtime import weights_fingerprint

    name, flags = cpu_identity(cpuinfo)
    h = hashlib.sha256(json.dumps({
        "format": PROBE_FORMAT, "cpu": name, "flags": flags, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "openvino": ov.get_version(), "vae": dtype_name(precision.vae), "vocoder": dtype_name(precision.vocoder),
    }, sort_keys=True).encode())
    # The VAE decoder's weights name the model: it is always loaded with them, while a second start builds
    # the vocoder without weights (model/prepared.py); the vocoder's config still counts.
    h.update(weights_fingerprint(pipe.vae.decoder))
    vocoder = {k: v for k, v in pipe.vocoder.config.to_dict().items()
               if not k.startswith("_") and k not in ("transformers_version", "name_or_path")}  # bookkeeping
    h.update(json.dumps(vocoder, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def _timed(run, repeats: int = REPEATS) -> tuple[float, torch.Tensor]:
    out = run()  # warm-up: OpenVINO's first call of a shape, torch's first allocation
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _candidates(model, stage: str, inputs: torch.Tensor):
    """(runtime, callable) for each way this CPU can run `stage` on `inputs`, torch's first."""
    from .openvino_runtime import OpenVINOVAEDecoder, OpenVINOVocoder
    from .prepack import available, prepack

    dtype = getattr(model.precision, stage)
    module = model.pipe.vae if stage == "vae" else model.pipe.vocoder
    local = copy.deepcopy(module)
    if available(model.device, dtype):
        prepack(local)
    if stage == "vae":
        yield "torch", lambda: local.decode(inputs.to(dtype)).sample.float()
        ov = OpenVINOVAEDecoder(module, dtype, keep_torch=True, announce=model.announce)
        yield "openvino", lambda: ov(inputs).sample.float()
    else:
        yield "torch", lambda: local(inputs.to(dtype)).float()
        ov = OpenVINOVocoder(module, dtype, keep_torch=True, announce=model.announce)
        yield "openvino", lambda: ov(inputs).float()


@torch.inference_mode()
def measure(model, frames: int = 212, seed: int = 0, progress=None, stages=PROBED) -> list[Row]:
    """Every candidate of every probed stage, timed and compared with fp32 (see the module docstring).

    `frames`: latent frames of the decode window timed (212: a balanced chunk's later decode).
    """
    pipe = model.pipe
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn((1, pipe.vae.config.latent_channels, frames, pipe.vocoder.config.model_in_dim // 4),
                          generator=gen) / pipe.vae.config.scaling_factor
    ref_vae = copy.deepcopy(pipe.vae).float()
    mel_ref = ref_vae.decode(latents).sample.float()
    del ref_vae
    mel = mel_ref.squeeze(1)
    refs = {"vae": mel_ref, "vocoder": copy.deepcopy(pipe.vocoder).float()(mel).float()}
    rows = []
    for stage in stages:
        inputs = latents if stage == "vae" else mel
        measured = []
        for runtime, run in _candidates(model, stage, inputs):
            if progress is not None:
                progress(f"timing the {stage} on {runtime}")
            seconds, out = _timed(run)
            measured.append((runtime, seconds, snr_db(out[..., :refs[stage].shape[-1]], refs[stage])))
        # torch's own SNR in this precision, less the gate; in fp32 torch is the reference itself (inf dB), and
        # anything past CLEAN_DB is as good as exact
        floor = min(measured[0][2], CLEAN_DB) - GATE_DB
        dtype = dtype_name(getattr(model.precision, stage))
        # torch in the stage's precision is the yardstick, so it always passes
        stage_rows = [Row(stage, r, dtype, round(s, 4), round(q, 2), k == 0 or q >= floor)
                      for k, (r, s, q) in enumerate(measured)]
        default = next(r for r in stage_rows if r.runtime == DEFAULT[stage])
        best = min((r for r in stage_rows if r.passed), key=lambda r: r.seconds * (1 if r is default else MARGIN))
        rows += [Row(**{**asdict(r), "chosen": r is best}) for r in stage_rows]
    return rows


def choose(model, fresh: bool = False, progress=None) -> Choice | None:
    """The measured choice for `model` on this CPU: from the cache, or measured now and saved.

    None where it cannot be measured (a GPU; OpenVINO missing; stages built without weights and no answer
    cached, which only happens when the cache was cleared between two starts): the defaults then apply.
    """
    from .openvino_runtime import openvino_available, torch_weights_freed

    if model.device.type != "cpu" or not openvino_available():
        return None
    try:
        key = probe_key(model.pipe, model.precision)
    except ValueError:  # a stage's weights are on the meta device (built from the OpenVINO cache)
        return None
    path = cache_dir() / f"{key}.json"
    # One process measures at a time (render's workers start together): the others wait, then read its answer.
    with _lock(path.parent):
        if not fresh:
            saved = _read(path, key)
            if saved is not None:
                return saved
        # A stage built without torch weights (a second start, model/prepared.py) cannot be timed on torch:
        # it keeps its default (OpenVINO), the others are measured.
        stages = [s for s in PROBED if not torch_weights_freed(model.pipe.vae if s == "vae" else model.pipe.vocoder)]
        if not stages:
            return None
        rows = measure(model, progress=progress, stages=stages)
        return _save(path, key, rows)


def _read(path: Path, key: str) -> Choice | None:
    try:
        saved = json.loads(path.read_text())
        rows = tuple(Row(**r) for r in saved["rows"])
        runtimes = dict(saved["runtimes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or damaged: measure again
    if not runtimes or not set(runtimes) <= set(PROBED) or not set(runtimes.values()) <= {"torch", "openvino"}:
        return None
    return Choice(runtimes=runtimes, rows=rows, key=key, cached=True)


class _lock:
    """An exclusive lock on `folder`/.lock (fcntl); a no-op where the folder or fcntl is not to be had."""

    def __init__(self, folder: Path):
        self.folder, self.fd = folder, None

    def __enter__(self):
        try:
            import fcntl

            self.folder.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (OSError, ImportError):
            self.fd = None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock


def _save(path: Path, key: str, rows: list[Row]) -> Choice:
    runtimes = {r.stage: r.runtime for r in rows if r.chosen}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"runtimes": runtimes, "rows": [asdict(r) for r in rows], "cpu": cpu_name(),
                                   "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: the answer holds for this process only
    return Choice(runtimes=runtimes, rows=tuple(rows), key=key, cached=False)
