"""OpenVINO on a CPU: the same UNet and HiFi-GAN vocoder, converted once, run by OpenVINO's CPU plugin.

Opt-in (`--runtime openvino`, or `auto`: OpenVINO on a CPU where the package is installed); torch
stays the default and the fallback, and the only runtime on GPUs. Why not the default: on a
2-core Xeon with AMX the vocoder ran 1.2-2.2x faster than torch bf16, but the UNet only 0.9-1.1x,
so a balanced chunk was not clearly faster on a busy machine, and the peak memory was 4.6 GiB
against torch's 3.7 GiB: OpenVINO packs a second copy of each network's weights for its kernels
beside the IR's (docs/benchmarks.md, "OpenVINO").

What happens at load (`LoadedModel.use_runtime`), per module:
1. A cache key: the module's config, its precision, a fingerprint of its weights (names, shapes,
   dtypes and a strided sample of every tensor), this file's CACHE_FORMAT and OpenVINO's version.
2. Cache miss: the module is cast to fp32 in place, converted with dynamic sizes (batch 1 or 2 for
   guidance, any chunk length, any T5 length) and saved as IR (`ov.save_model`; fp16 weights for a
   half-precision model, fp32 for fp32) to
   `$XDG_CACHE_HOME/soundscape/openvino/<key>/` (written to a temporary folder, then renamed, so
   concurrent workers never read half a file). A second start finds it and skips conversion.
3. torch's copy of the weights is freed (moved to the `meta` device: the module keeps its config,
   dtype and structure, which the pipeline still reads, but holds no memory); `keep_torch=True`
   keeps it (and casts it back) for the parity tests and for `bench --compare-diffusers`.
4. OpenVINO compiles the IR with the stage's precision as its inference hint, caching the
   compiled blob beside the IR (CACHE_DIR), so a second start imports it instead of compiling.
The cache keeps the MAX_ENTRIES most recently used modules and removes older ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..memory import give_back_heap

RUNTIMES = ("auto", "torch", "openvino")
# The stages OpenVINO runs; $SOUNDSCAPE_OPENVINO_STAGES (e.g. "unet,vae,vocoder") overrides it, to measure
# another CPU. The VAE decoder stays torch's by default: docs/benchmarks.md, "OpenVINO".
OPENVINO_STAGES = ("unet", "vocoder")


def openvino_stages() -> tuple[str, ...]:
    env = os.environ.get("SOUNDSCAPE_OPENVINO_STAGES")
    if not env:
        return OPENVINO_STAGES
    stages = tuple(s.strip() for s in env.split(",") if s.strip())
    unknown = set(stages) - {"unet", "vae", "vocoder"}
    if unknown or "unet" not in stages:
        from ..errors import UsageError

        raise UsageError(f"SOUNDSCAPE_OPENVINO_STAGES: expected unet plus any of vae, vocoder, comma-separated, "
                         f"got {env!r}")
    return stages
# Bump when what is converted changes (the call wrappers below, their inputs), so old IR is not reused.
CACHE_FORMAT = 2
# UNet + VAE decoder + vocoder of two models; each entry is the fp32 IR plus OpenVINO's compiled blob.
MAX_ENTRIES = 6
FINGERPRINT_SAMPLES = 1024  # values sampled from each weight tensor for the cache key


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "soundscape" / "openvino"


# The modules as OpenVINO sees them --------------------------------------------------------------

class _UNetCall(torch.nn.Module):
    """The UNet with plain tensor inputs, for tracing."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, gpt, t5, mask):
        return self.unet(sample, timestep, encoder_hidden_states=gpt, encoder_hidden_states_1=t5,
                         encoder_attention_mask_1=mask, return_dict=False)[0]


class _VAEDecode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z).sample


class OpenVINOVocoder:
    """Callable like `pipe.vocoder`: log-mel (B, frames, 64) -> waveforms (B, samples), float32."""

    def __init__(self, vocoder: torch.nn.Module, precision: torch.dtype, keep_torch: bool = False):
        import openvino as ov

        bins = vocoder.config.model_in_dim

        def convert():
            return ov.convert_model(vocoder, example_input=torch.zeros(1, 64, bins),
                                    input=[ov.PartialShape([-1, -1, bins])])

        self.config = vocoder.config
        self.compiled, self.cached = _prepare("vocoder", vocoder, [vocoder], precision, convert, keep_torch)

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        out = self.compiled(mel.float().cpu().numpy())[0]
        return torch.from_numpy(np.ascontiguousarray(out))


class OpenVINOUNet:
    """Callable like `pipe.unet` in the denoising loop; returns (noise prediction,) as float32."""

    def __init__(self, unet: torch.nn.Module, precision: torch.dtype, keep_torch: bool = False):
        import openvino as ov

        self.config, self.dtype = unet.config, precision
        channels, freq = unet.config.in_channels, 16
        gpt_dim = _cross_dim(unet, 1)
        t5_dim = _cross_dim(unet, 2)

        def convert():
            example = (torch.zeros(2, channels, 64, freq), torch.tensor(500), torch.zeros(2, 8, gpt_dim),
                       torch.zeros(2, 16, t5_dim), torch.ones(2, 16, dtype=torch.long))
            shapes = [ov.PartialShape([-1, channels, -1, freq]), ov.PartialShape([]),
                      ov.PartialShape([-1, -1, gpt_dim]), ov.PartialShape([-1, -1, t5_dim]),
                      ov.PartialShape([-1, -1])]
            return ov.convert_model(_UNetCall(unet), example_input=example, input=shapes)

        self.compiled, self.cached = _prepare("unet", unet, [unet], precision, convert, keep_torch)

    def __call__(self, sample, t, *, encoder_hidden_states, encoder_hidden_states_1, encoder_attention_mask_1,
                 return_dict=False):
        t = torch.as_tensor(t).reshape(())
        out = self.compiled([sample.float().numpy(), t.numpy(), encoder_hidden_states.float().numpy(),
                             encoder_hidden_states_1.float().numpy(), encoder_attention_mask_1.long().numpy()])[0]
        return (torch.from_numpy(np.ascontiguousarray(out)),)


class OpenVINOVAEDecoder:
    """Stands in for `pipe.vae.decode` (installed on the VAE instance): latents -> DecoderOutput, float32.

    Only the decoder half moves (decoder and post_quant_conv); the encoder, which generation never
    uses, stays torch's. `vae.enable_tiling()` (an out-of-memory fallback) has no effect on it.
    """

    def __init__(self, vae: torch.nn.Module, precision: torch.dtype, keep_torch: bool = False):
        import openvino as ov

        latent = vae.config.latent_channels

        def convert():
            return ov.convert_model(_VAEDecode(vae), example_input=torch.zeros(1, latent, 64, 16),
                                    input=[ov.PartialShape([-1, latent, -1, -1])])

        self.config = vae.config
        self.compiled, self.cached = _prepare("vae-decoder", vae, [vae.decoder, vae.post_quant_conv], precision,
                                              convert, keep_torch)

    def __call__(self, z: torch.Tensor, return_dict: bool = True):
        from diffusers.models.autoencoders.vae import DecoderOutput

        out = torch.from_numpy(np.ascontiguousarray(self.compiled(z.float().cpu().numpy())[0]))
        return DecoderOutput(sample=out) if return_dict else (out,)


def _cross_dim(unet, i: int) -> int:
    dims = unet.config.cross_attention_dim
    dims = dims[-1] if isinstance(dims[0], (list, tuple)) else dims
    return int(dims[i])


# Conversion, cache, freeing ---------------------------------------------------------------------

def _prepare(kind: str, module: torch.nn.Module, parts: list[torch.nn.Module], precision: torch.dtype,
             convert, keep_torch: bool):
    """The compiled model for `module`, from the IR cache (converting on a miss); frees `parts` unless kept.

    Returns (compiled model, whether the IR came from the cache).
    """
    import openvino as ov

    root = _cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    entry = root / cache_key(kind, module, precision)
    xml = entry / "model.xml"
    cached = xml.is_file() and (entry / "model.bin").is_file()
    if not cached:
        _convert_and_save(module, precision, convert, root, entry)
    os.utime(entry)  # most recently used: pruned last
    if not keep_torch:
        free_torch_weights(parts, precision)
    hint = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(precision, "f32")
    try:
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                             "CACHE_DIR": str(entry / "blobs")})
    except RuntimeError as exc:
        shutil.rmtree(entry, ignore_errors=True)  # a damaged entry must not fail every later start
        from ..errors import ModelError

        raise ModelError(f"--runtime openvino: OpenVINO could not compile the {kind} "
                         f"({str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__}); "
                         f"its cached copy was removed. Run again, or use --runtime torch") from None
    _prune(root, keep=entry)
    return compiled, cached


def _convert_and_save(module, precision, convert, root: Path, entry: Path) -> None:
    import openvino as ov

    # Convert from fp32 (OpenVINO applies the precision hint when it compiles). In place, not a copy:
    # bf16/fp16 -> fp32 -> bf16/fp16 is exact, and a copy would hold a second fp32 UNet (1.4 GB).
    _cast(module, torch.float32)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        with torch.no_grad():  # not inference_mode: conversion traces the module
            model = convert()
        # Half precision: fp16 weights in the IR (marked as decompressed, so OpenVINO keeps them in fp16
        # instead of folding them back to fp32): the compiled UNet holds 1.7 GB instead of 2.4 GB.
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=precision != torch.float32)
        del model
        try:
            os.replace(tmp, entry)
        except OSError:  # another process saved the same entry first: theirs is as good
            if not (entry / "model.xml").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if precision != torch.float32:
            _cast(module, precision)
        release_memory()


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Floating-point weights to `dtype`, in place (not `.to()`: diffusers warns on every cast with it)."""
    module._apply(lambda t: t.to(dtype) if t.is_floating_point() else t)


def cache_key(kind: str, module: torch.nn.Module, precision: torch.dtype) -> str:
    """`kind-<hash>` of the module's config, precision, weights, CACHE_FORMAT and OpenVINO's version."""
    import openvino as ov

    cfg = module.config
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    # Not the bookkeeping entries (diffusers' `_use_default_values` lists a set, in a different order
    # in every process; versions and paths do not change the network).
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("transformers_version", "name_or_path")}
    meta = {"kind": kind, "class": type(module).__name__, "format": CACHE_FORMAT, "openvino": ov.get_version(),
            "precision": str(precision), "config": cfg}
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    h.update(weights_fingerprint(module))
    return f"{kind}-{h.hexdigest()[:24]}"


def weights_fingerprint(module: torch.nn.Module, samples: int = FINGERPRINT_SAMPLES) -> bytes:
    """Names, shapes, dtypes and an evenly strided sample of each tensor: cheap (no full pass over the
    weights) and deterministic. Two checkpoints of one architecture differ in every sampled value."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in module.state_dict().items():
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            if t.device.type == "meta":
                raise ValueError(f"--runtime openvino: the {name} weights were freed already")
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // samples)
            h.update(flat[::step][:samples].float().cpu().numpy().tobytes())
    return h.digest()


def free_torch_weights(parts: list[torch.nn.Module], dtype: torch.dtype) -> None:
    """Move the modules' parameters and buffers to the meta device (no storage), keeping dtype and config."""
    for part in parts:
        part._apply(lambda t: t.to(device="meta", dtype=dtype if t.is_floating_point() else t.dtype))
    release_memory()


def torch_weights_freed(module: torch.nn.Module) -> bool:
    return any(p.device.type == "meta" for p in module.parameters())


def release_memory() -> None:
    """Collect, then hand freed heap pages back to the OS."""
    give_back_heap(collect=True)


def _prune(root: Path, keep: Path) -> None:
    """Keep the MAX_ENTRIES most recently used entries; drop abandoned temporary folders and the
    loose blobs that earlier versions (OpenVINO CACHE_DIR in the root) left."""
    now = time.time()
    entries = []
    for p in root.iterdir():
        try:
            if p.name.startswith(".tmp-"):
                if now - p.stat().st_mtime > 3600:
                    shutil.rmtree(p, ignore_errors=True)
            elif p.is_dir():
                entries.append((p.stat().st_mtime, p))
            elif p.suffix == ".blob":
                p.unlink()
        except OSError:
            continue
    entries.sort(reverse=True)
    for _, p in entries[MAX_ENTRIES:]:
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)


def choose_runtime(name: str, device: torch.device) -> str:
    """`auto`: OpenVINO on a CPU when the package is installed, else torch."""
    if name == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if name == "openvino" and not openvino_available():
        from ..errors import UsageError

        raise UsageError("--runtime openvino: the openvino package is not installed; "
                         "pip install openvino, or use --runtime torch")
    if name == "openvino" and device.type != "cpu":
        from ..errors import UsageError

        raise UsageError(f"--runtime openvino: runs on the CPU only, got --device {device.type}; use --runtime torch")
    return name
