"""The UNet's inputs recorded from the model's own denoising trajectories: int8 calibration (model/int8.py).

Why trajectories and not random tensors: a quantizer sets each activation's range from what it sees, and
the latents, timestep embeddings and prompt tokens of a real chunk are distributed nothing like unit
Gaussians (the shared probes calibrated on those and lost 13-20 dB).
"""

from __future__ import annotations

import numpy as np

from .chunks import ChunkJob, ChunkSpec, GeneratorState, generate_chunks
from .conditioning import Conditioning
from ..model.loading import LoadedModel


class _Recorder:
    """Stands in for an OpenVINO UNet's static model: records each call's inputs, then runs it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, inputs):
        self.calls.append([np.array(x, copy=True) for x in inputs])
        return self.inner(inputs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def record_unet_inputs(model: LoadedModel, conds: list[Conditioning], spec: ChunkSpec,
                       chunks: int = 1, seed: int = 0) -> list[list[list[np.ndarray]]]:
    """Generate `chunks` chunks of each conditioning; per conditioning, the inputs of every UNet call in order
    (batch 1, T5 padded as the compiled model sees them). Needs the OpenVINO UNet (`model.unet_runtime`)."""
    unet = model.unet_runtime
    if unet is None:
        raise ValueError("record_unet_inputs: the UNet does not run on OpenVINO here")
    recorded = []
    for k, cond in enumerate(conds):
        recorder, static = _Recorder(unet.model), unet.model
        unet.model = recorder
        try:
            state = GeneratorState()
            for _ in range(chunks):
                state = generate_chunks(model, [ChunkJob(cond, state, seed + k)], spec)[0].state
        finally:
            unet.model = static
        recorded.append(recorder.calls)
    return recorded


def tune_int8(model: LoadedModel, prompts: list[str], negative: str, spec: ChunkSpec, progress=None):
    """Quantize the UNet on trajectories of `prompts` and gate it on this CPU (model/int8.py): its Int8Verdict.

    Every prompt's first chunk is recorded; CALIBRATION calls spread over all but the last prompt calibrate,
    and the last prompt's calls (early, middle and late steps) are held out for the gate.
    """
    import time

    from ..model import int8
    from ..model.probe import cpu_key, cpu_name
    from .conditioning import PromptEncoder, with_negative

    if len(prompts) < 2:
        raise ValueError(f"tune_int8: expected at least two prompts (one is held out), got {len(prompts)}")
    encoder = PromptEncoder(model)
    encoder.encode_all(list(prompts) + [negative])
    neg = encoder.encode(negative)
    conds = [with_negative(encoder.encode(p), neg) for p in prompts]
    if progress is not None:
        progress(f"recording the UNet's inputs over {len(prompts)} chunks")
    recorded = record_unet_inputs(model, conds, spec)
    pool = [call for calls in recorded[:-1] for call in calls]
    step = max(1, len(pool) // int8.CALIBRATION)
    calibration = pool[::step][:int8.CALIBRATION]
    last = recorded[-1]
    held_out = [last[i] for i in sorted({0, len(last) // 2, len(last) - 1})]
    entry = model.unet_runtime.model.entry
    t0 = time.perf_counter()
    int8.quantize(entry, calibration, progress)
    quantize_s = time.perf_counter() - t0
    if progress is not None:
        progress("timing bf16 against int8 and comparing both with fp32")
    import torch

    hint = "bf16" if model.precision.unet == torch.bfloat16 else "f32"
    return int8.gate(entry, held_out, cpu_key(), cpu_name(), quantize_s, hint=hint)
