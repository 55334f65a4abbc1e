"""int8 where it holds: the UNet's linear layers quantized (weights and activations) with NNCF, gated, cached.

Measured on the full architecture (docs/benchmarks.md, "int8 where it holds"; random weights, inputs
recorded from the model's own denoising trajectories of shipped scene prompts, SNR against fp32 on
held-out steps, 2-core AMD EPYC):

    UNet call (batch 1, 256 frames)                  time vs bf16    SNR vs fp32
    bf16 (the default)                               1.00x           47.1 dB
    int8, every layer (MIXED preset, SmoothQuant)    1.58x           19.8 dB   fails the gate
    int8, convolutions only                          1.27x           22.3 dB   fails the gate
    int8, linear layers only (what this module does) 1.25x           44.9 dB   passes

The error comes from the convolutions' activations (per-tensor int8 after GroupNorm and SiLU), not from
the attention and feed-forward projections, which hold 45 dB. So the convolutions, the time embedding
path and the first and last layers stay in bf16, and every linear layer (attention projections,
feed-forward, the cross-attention's keys and values) runs in int8.

What happens (`quantize`): the UNet's dynamic-shape IR (the OpenVINO cache entry) is quantized with the
recorded inputs as calibration (CALIBRATION calls), saved as `<entry>/int8/model.xml`, and compiled for
static shapes like the bf16 one (its `StaticModel`). `gate` times both on the same held-out inputs,
interleaved, and compares each with fp32: int8 passes when its SNR is no more than GATE_DB below bf16's,
and is chosen when it also runs at least MARGIN faster. The answer is kept per CPU beside the IR
(`<entry>/int8/choice-<cpu>.json`), so `--runtime auto` uses it on later starts.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CALIBRATION = 10  # recorded UNet calls the quantizer sees (more cost minutes, not decibels)
GATE_DB = 6.0
# The yardstick where the UNet runs in fp32 (CPUs without native bf16): torch's bf16 UNet's SNR against fp32
# (docs/benchmarks.md, "Precision, each runtime"), as the gate names it; fp32 itself is exact.
TORCH_BF16_UNET_DB = 40.0
MARGIN = 1.10
# Kept in bf16: every convolution, and the time embedding's layers (the timestep's path into every block)
IGNORED_TYPES = ["Convolution"]
IGNORED_PATTERNS = [".*time_embedding.*", ".*time_emb_proj.*"]


def available() -> bool:
    try:
        import nncf  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Int8Verdict:
    plain_s: float  # the UNet without int8, in the stage's precision (`precision`)
    int8_s: float
    plain_snr_db: float
    int8_snr_db: float
    passed: bool
    chosen: bool
    quantize_s: float
    cpu: str
    precision: str = "bf16"

    @property
    def speedup(self) -> float:
        return self.plain_s / self.int8_s


def folder(entry: Path) -> Path:
    return Path(entry) / "int8"


def _choice_path(entry: Path, cpu_key: str) -> Path:
    return folder(entry) / f"choice-{cpu_key}.json"


def read_choice(entry: Path, cpu_key: str) -> Int8Verdict | None:
    """The answer measured on this CPU for this UNet entry, or None (never measured, or unreadable)."""
    try:
        v = Int8Verdict(**json.loads(_choice_path(entry, cpu_key).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return v if (folder(entry) / "model.xml").is_file() or not v.chosen else None


def quantize(entry: Path, calibration: list[list[np.ndarray]], progress=None) -> Path:
    """Quantize the UNet IR in `entry` on `calibration` (recorded inputs, each a list of 5 arrays): the int8 IR."""
    import contextlib
    import logging
    import sys

    import nncf
    import openvino as ov

    from .openvino_runtime import _core

    logging.getLogger("nncf").setLevel(logging.WARNING)  # its INFO lines name every layer it skips
    model = _core().read_model(str(Path(entry) / "model.xml"))
    if progress is not None:
        progress(f"quantizing the UNet's linear layers to int8 on {len(calibration)} recorded calls")
    # NNCF draws its progress bars on stdout, where `bench --json` prints its report: to stderr with them
    with contextlib.redirect_stdout(sys.stderr):
        quantized = _quantize(nncf, model, calibration)
    target = folder(entry)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-int8-", dir=entry))
    try:
        ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "model.xml"


def _quantize(nncf, model, calibration):
    from nncf.parameters import ModelType
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    return nncf.quantize(
        model, nncf.Dataset(calibration), subset_size=len(calibration), model_type=ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(types=IGNORED_TYPES, patterns=IGNORED_PATTERNS, validate=False),
        # Bias correction re-runs every layer's subgraph (minutes on 2 cores) and moved the SNR by < 0.5 dB.
        advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=True))


def _snr(out: np.ndarray, ref: np.ndarray) -> float:
    err = float(np.sum((out.astype(np.float64) - ref) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err)


def gate(entry: Path, held_out: list[list[np.ndarray]], cpu_key: str, cpu: str, quantize_s: float,
         repeats: int = 5, hint: str = "bf16") -> Int8Verdict:
    """Time the plain UNet and int8 on `held_out` (interleaved, median), both with OpenVINO's precision `hint`
    (the stage's: bf16, or f32 where the CPU has no native bf16), compare each with fp32; save and return the
    verdict (`plain_*`: the UNet without int8, in that precision)."""
    from .openvino_runtime import _core

    core = _core()
    shapes = {i: list(a.shape) for i, a in enumerate(held_out[0])}

    def compiled(xml: Path, hint: str):
        m = core.read_model(str(xml))
        m.reshape(shapes)
        return core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": hint})

    plain, int8_xml = Path(entry) / "model.xml", folder(entry) / "model.xml"
    fp32 = compiled(plain, "f32")
    refs = [fp32(x)[0].copy() for x in held_out]
    del fp32
    runs = {"plain": compiled(plain, hint), "int8": compiled(int8_xml, hint)}
    snr = {k: statistics.mean(_snr(c(x)[0], r) for x, r in zip(held_out, refs)) for k, c in runs.items()}
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, c in runs.items():
            t0 = time.perf_counter()
            c(held_out[0])
            times[k].append(time.perf_counter() - t0)
    t = {k: statistics.median(v) for k, v in times.items()}
    yardstick = snr["plain"] if hint == "bf16" else TORCH_BF16_UNET_DB
    passed = bool(snr["int8"] >= min(yardstick, 90.0) - GATE_DB)
    verdict = Int8Verdict(plain_s=round(t["plain"], 4), int8_s=round(t["int8"], 4), plain_snr_db=round(float(snr["plain"]), 2),
                      int8_snr_db=round(float(snr["int8"]), 2), passed=passed,
                      chosen=bool(passed and t["plain"] >= MARGIN * t["int8"]), quantize_s=round(quantize_s, 1), cpu=cpu,
                      precision="bf16" if hint == "bf16" else "fp32")
    try:
        _choice_path(entry, cpu_key).write_text(json.dumps(asdict(verdict), indent=1))
    except OSError:
        pass  # a read-only cache: the verdict holds for this process
    return verdict
