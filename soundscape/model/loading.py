"""Loading AudioLDM2: the one place that knows where weights come from.

`--model` (then `model:` in the scene, then $SOUNDSCAPE_MODEL, then
cvssp/audioldm2) names a hub id or a local diffusers-format folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ModelError, UsageError
from ..memory import give_back_heap
from .precision import Precision, apply as apply_precision, cpu_has_native_bf16
from .source import (DEFAULT_MODEL, _check_folder, _hub_reachable, looks_like_path,  # noqa: F401 (callers import them here)
                     _resolve_hub_id, choose_model, resolve_source)

TEXT_STAGES = ("text_encoder", "text_encoder_2", "projection_model", "language_model")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class LoadedModel:
    pipe: object  # diffusers.AudioLDM2Pipeline
    model_id: str
    device: torch.device
    dtype: torch.dtype  # the UNet's; each stage's is in `precision`
    precision: Precision | None = None
    vocoder_runtime: object = None  # an OpenVINO vocoder (model/openvino_runtime.py), or None: torch's
    unet_runtime: object = None  # an OpenVINO UNet, or None: torch's
    vae_runtime: object = None  # an OpenVINO VAE decoder (installed as pipe.vae.decode), or None: torch's
    # Stages whose torch weights are prepacked for oneDNN (model/prepack.py): in place, or as copies in
    # `packed` when the plain modules must stay usable (keep_torch).
    prepacked: tuple[str, ...] = ()
    packed: dict = field(default_factory=dict)
    # Where the text encoders come from when a prompt must be encoded (model/text_encoders.py): the
    # weights' folder or hub id; None when they stay resident (built in memory, or --keep-encoders).
    text_source: object = None
    source: object = None  # the weights' folder or hub id; None for a model built in memory
    text_loads: int = 0  # times the text encoders were loaded on demand (the status line, tests)
    keep_clap: bool = False  # the watchdog's CLAP score needs CLAP resident
    # Where OpenVINO says what it prepares on a first start (a line on stderr from load_model), or None.
    announce: object = None
    # Stages built without weights, their OpenVINO cache entries found from the source files (model/prepared.py).
    prepared: dict = field(default_factory=dict)
    weights_folder: Path | None = None  # the weights' folder on this machine (the hub cache's snapshot for a hub id)
    # What `--runtime auto` measured on this CPU to choose the decoders' runtimes (model/probe.py), or None.
    probe: object = None
    quantized: tuple[str, ...] = ()  # stages running an int8 IR (model/int8.py)
    # True where the UNet could run in int8 on this CPU but `bench --probe` has not measured it yet: the
    # status line then says so when generation is slower than real time (a first `play` never quantizes).
    int8_unmeasured: bool = False

    def __post_init__(self):
        if self.precision is None:
            self.precision = Precision.of(self.dtype)

    @property
    def vocoder(self):
        """What turns log-mel into audio: OpenVINO's compiled vocoder where enabled, else the pipeline's."""
        for runtime in (self.vocoder_runtime, self.packed.get("vocoder")):
            if runtime is not None:
                return runtime
        return self.pipe.vocoder

    @property
    def unet(self):
        for runtime in (self.unet_runtime, self.packed.get("unet")):
            if runtime is not None:
                return runtime
        return self.pipe.unet

    @property
    def runtimes(self) -> dict[str, str]:
        """What runs each stage, e.g. {"unet": "openvino", "vae": "openvino", "vocoder": "openvino"}."""
        return {stage: "torch" if runtime is None else "openvino" for stage, runtime in
                (("unet", self.unet_runtime), ("vae", self.vae_runtime), ("vocoder", self.vocoder_runtime))}

    def ready_for(self, frames: int, decode_frames: int) -> bool:
        """Whether a chunk of `frames` latent frames, decoding `decode_frames`, runs now without compiling a
        static shape first (always, on torch). Where OpenVINO lacks the shape, it compiles it in the background
        and says False until then (play's short chunk after a change: generator/chunks.py, `short_frames`)."""
        ready = True
        for runtime, n in ((self.unet_runtime, frames), (self.vae_runtime, decode_frames)):
            if runtime is not None and not runtime.ready_for(n):
                ready = False  # both start compiling, not one after the other
        return ready

    def runtime_names(self) -> dict[str, str]:
        """What runs each stage and in what precision, e.g. {"unet": "openvino int8", "vae": "torch bf16", ...}:
        `status --json` and play's first line say it (the choice `--runtime auto` measured, model/probe.py)."""
        from .precision import dtype_name

        return {stage: f"{runtime} {'int8' if stage in self.quantized else dtype_name(getattr(self.precision, stage))}"
                for stage, runtime in self.runtimes.items()}

    def use_runtime(self, name: str = "auto", keep_torch: bool = False) -> str:
        """Run the UNet and vocoder (by default) with OpenVINO: `auto` on a CPU with the package installed.

        Returns the runtime. With OpenVINO, torch's copies of those weights are freed (moved to the
        meta device; their configs stay) unless `keep_torch`; then there is no way back to torch.
        `auto` falls back to torch, with one line through `announce`, when OpenVINO cannot convert a
        stage (nothing is freed before every stage has converted). The stages torch runs get prepacked
        bf16 weights where that applies (model/prepack.py), in place, or on copies with `keep_torch`.
        """
        from .openvino_runtime import choose_runtime, openvino_available, torch_weights_freed

        runtime = choose_runtime(name, self.device)
        if name == "auto" and self.device.type == "cpu" and not openvino_available() and self.announce is not None:
            self.announce("--runtime auto: OpenVINO is not installed (pip install openvino, where it has wheels); "
                          "running on torch")
        if runtime == "openvino":
            if self.unet_runtime is not None:
                return runtime
            try:
                self._use_openvino(keep_torch, self._measured_stages() if name == "auto" else None)
                return runtime
            except ModelError as exc:
                if name != "auto":
                    raise
                if self.announce is not None:
                    self.announce(f"--runtime auto: OpenVINO is not usable here ({exc}); running on torch")
                runtime = "torch"
        if torch_weights_freed(self.pipe.unet):
            raise UsageError("--runtime torch: this model's torch weights were freed when OpenVINO took them "
                             "over; load it again")
        self.vocoder_runtime = self.unet_runtime = None
        if self.vae_runtime is not None:
            del self.pipe.vae.decode  # the class's method again
            self.vae_runtime = None
        self._prepack(["unet", "vae", "vocoder"], keep_torch)
        return runtime

    def _measured_stages(self) -> tuple[str, ...] | None:
        """`auto` on a CPU: the stages OpenVINO runs as this CPU's probe measured them (model/probe.py); None
        for the defaults ($SOUNDSCAPE_OPENVINO_STAGES set, or nothing could be measured). A stage built
        without torch weights (model/prepared.py) stays OpenVINO's whatever the probe says."""
        import os

        from . import probe
        from .openvino_runtime import OPENVINO_STAGES

        if os.environ.get("SOUNDSCAPE_OPENVINO_STAGES") or os.environ.get("SOUNDSCAPE_PROBE", "1") == "0":
            return None
        if self.probe is None:
            # "fresh": measure again even with an answer cached (bench --probe)
            self.probe = probe.choose(self, fresh=os.environ.get("SOUNDSCAPE_PROBE") == "fresh",
                                      progress=self.announce)
            if self.probe is not None and not self.probe.cached and self.announce is not None:
                self.announce("measured this CPU once (cached): " + ", ".join(
                    f"{s} on {r}" for s, r in self.probe.runtimes.items()))
        if self.probe is None:
            return None
        stages = set(self.probe.openvino_stages(OPENVINO_STAGES)) | set(self.prepared)
        return tuple(s for s in ("unet", "vae", "vocoder") if s in stages)

    def _use_openvino(self, keep_torch: bool, stages: tuple[str, ...] | None = None) -> None:
        """Convert (or find cached) every OpenVINO stage, then free torch's copies; ModelError when one fails."""
        from .openvino_runtime import (OpenVINOUNet, OpenVINOVAEDecoder, OpenVINOVocoder, free_torch_weights,
                                       openvino_stages)

        pipe, p = self.pipe, self.precision
        stages = stages or openvino_stages()
        if set(stages) & set(self.prepacked) - set(self.packed):
            raise UsageError("--runtime openvino: this model's torch weights were prepacked for torch's "
                             "runtime; load it again with --runtime openvino")
        kinds = {"unet": (OpenVINOUNet, pipe.unet, [pipe.unet]), "vocoder": (OpenVINOVocoder, pipe.vocoder, [pipe.vocoder]),
                 "vae": (OpenVINOVAEDecoder, pipe.vae, [pipe.vae.decoder, pipe.vae.post_quant_conv])}
        made = {}
        for stage in stages:
            cls, module, _ = kinds[stage]
            try:  # torch's weights stay until every stage has converted: a failure can still fall back
                made[stage] = cls(module, getattr(p, stage), keep_torch=True, announce=self.announce,
                                  entry=self.prepared.get(stage))
            except ModelError:
                raise
            except Exception as exc:  # tracing and conversion fail in many ways
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                raise ModelError(f"--runtime openvino: could not convert the {stage} ({type(exc).__name__}: "
                                 f"{first}); use --runtime torch") from None
        if not keep_torch:
            for stage in stages:
                free_torch_weights(kinds[stage][2], getattr(p, stage))
        self._unpack(stages)
        self.vocoder_runtime = made.get("vocoder")
        self.vae_runtime = made.get("vae")
        if self.vae_runtime is not None:
            pipe.vae.decode = self.vae_runtime  # denoise.latents_to_mel calls pipe.vae.decode
        self.unet_runtime = made["unet"]
        if self.probe is not None:  # `auto` on a CPU: the int8 UNet where this CPU measured it faster and it passed
            self.use_int8()
        if self.weights_folder is not None and not self.prepared:
            from .prepared import STAGES, remember

            remember(self.weights_folder, p, {s: made[s].model.entry for s in STAGES if s in made})
        self._prepack([s for s in ("unet", "vae", "vocoder") if s not in stages], keep_torch)

    def use_int8(self) -> None:
        """Run the UNet's int8 IR (model/int8.py) where `bench --probe` measured it on this CPU and chose it."""
        import os

        from . import int8
        from .openvino_runtime import MAX_SHAPES, StaticModel
        from .probe import cpu_key

        if os.environ.get("SOUNDSCAPE_INT8", "1") == "0" or self.precision.unet not in (torch.bfloat16, torch.float32):
            return
        static = self.unet_runtime.model
        verdict = int8.read_choice(static.entry, cpu_key())
        self.int8_unmeasured = verdict is None and int8.available()
        if verdict is not None and verdict.chosen:
            self.unet_runtime.model = StaticModel("unet (int8)", int8.folder(static.entry), self.precision.unet,
                                                  MAX_SHAPES["unet"], self.announce)
            self.quantized = ("unet",)

    def _prepack(self, stages, keep_torch: bool) -> None:
        import copy

        from .prepack import available, is_prepacked, prepack

        before = self.prepacked
        for stage in stages:
            module = getattr(self.pipe, stage)
            if (stage in self.prepacked or not available(self.device, getattr(self.precision, stage))
                    or hasattr(module, "_orig_mod") or is_prepacked(module)):
                continue  # `_orig_mod`: compiled with --compile, where inductor packs its own
            if keep_torch:
                module = self.packed[stage] = copy.deepcopy(module)
            prepack(module)
            if keep_torch and stage == "vae":
                self.pipe.vae.decode = module.decode  # denoise.latents_to_mel calls pipe.vae.decode
            self.prepacked += (stage,)
        if self.prepacked != before:
            # The plain weights just freed stay in glibc's heap otherwise: 250-330 MB RSS for the full model.
            give_back_heap()

    def _unpack(self, stages) -> None:
        """Drop packed copies of the stages another runtime takes over."""
        for stage in stages:
            if self.packed.pop(stage, None) is not None:
                if stage == "vae":
                    del self.pipe.vae.decode
                self.prepacked = tuple(s for s in self.prepacked if s != stage)


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def choose_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: this torch has no CUDA (or no GPU is visible); "
                         "use --device cpu or install a CUDA build of torch (soundscape docs performance, section GPUs)")
    return device


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (for timing; never inside the denoising loop)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def choose_dtype(name: str, device: torch.device) -> torch.dtype:
    """fp16 on GPUs; bf16 on CPUs that compute it natively (AVX512-BF16, AMX), else fp32.

    Why not bf16 everywhere: without hardware support torch emulates it, slower than fp32.
    """
    if name == "auto":
        if device.type in ("cuda", "mps"):
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if name not in DTYPES:
        raise UsageError(f"--dtype: expected auto, fp32, fp16 or bf16, got {name!r}")
    return DTYPES[name]


def load_model(model: str, device: str = "auto", dtype: str = "auto", quiet: bool = False,
               compile_mode: str | None = None, runtime: str = "auto", keep_torch: bool = False,
               keep_encoders: bool = False, use_prepared: bool = True) -> LoadedModel:
    """Load an AudioLDM2 pipeline onto a device. Raises ModelError (exit 3) when it can't.

    With OpenVINO (a CPU's default), a model folder loaded before has its UNet and vocoder built without
    weights and taken from OpenVINO's cache (model/prepared.py); `use_prepared=False` reads them anyway.

    Without `keep_encoders`, the text encoders (CLAP, Flan-T5, projection, GPT-2: 57 % of the
    weights, used once per new prompt) are not loaded now but when a prompt must be encoded, and
    released after (model/text_encoders.py). The VAE's encoder is never kept: nothing encodes audio.
    """
    import warnings

    from diffusers import AudioLDM2Pipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    # Our own line says what loads; the libraries' per-component and per-file bars and their warnings are
    # not for our users (the hub's download bars stay: a first download takes minutes).
    for lib in (hf_logging, diffusers_logging):
        lib.disable_progress_bar()
        lib.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*torch_dtype.*")

    dev = choose_device(device)
    torch_dtype = choose_dtype(dtype, dev)
    source = resolve_source(model)
    if not quiet:
        print(f"loading {model} on {dev.type} ({str(torch_dtype).removeprefix('torch.')})...", file=sys.stderr)
    try:
        # The hub's model_index.json names GPT2Model, whose missing generation helpers break
        # the pipeline with current transformers (diffusers issue 12630): load the LM head model.
        if keep_encoders:
            language_model = GPT2LMHeadModel.from_pretrained(source, subfolder="language_model",
                                                             torch_dtype=torch_dtype)
            text = {"language_model": language_model}
        else:
            text = dict.fromkeys(TEXT_STAGES)  # loaded when a prompt needs them
        folder, prepared = _prepared_stages(source, runtime, dev, torch_dtype, keep_torch, compile_mode, use_prepared)
        pipe = AudioLDM2Pipeline.from_pretrained(source, torch_dtype=torch_dtype, **text,
                                                 **dict.fromkeys(prepared))
    except (OSError, ValueError, EnvironmentError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(source, Path):
            raise ModelError(f"--model {model}: the folder is incomplete or corrupt ({first}); "
                             f"download it again") from None
        raise ModelError(
            f"--model {model}: the weights are not in the local cache and the hub cannot be reached "
            f"({first[:160]}). On a connected machine run `hf download {model} "
            f"--local-dir DIR` (about 4.5 GB), copy DIR here and pass --model DIR") from None
    except Exception as exc:  # corrupt weights surface as many error types
        raise ModelError(f"--model {model}: could not load the pipeline: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.encoder = pipe.vae.quant_conv = None  # never used: we only decode (55 M parameters of the VAE are the encoder's half)
    pipe = pipe.to(dev)
    if prepared:  # the stages OpenVINO takes from its cache: configs only, no weights read (after .to: meta stays meta)
        from .prepared import build_without_weights

        pipe.register_modules(**{stage: build_without_weights(folder, stage, torch_dtype) for stage in prepared})
    precision = Precision.of(torch_dtype)
    apply_precision(pipe, precision)
    if compile_mode:
        # Chunks have one fixed shape, so the UNet compiles once (CUDA graphs with reduce-overhead).
        pipe.unet = torch.compile(pipe.unet, mode=None if compile_mode == "default" else compile_mode)
    loaded = LoadedModel(pipe=pipe, model_id=str(model), device=dev, dtype=torch_dtype, precision=precision,
                         text_source=None if keep_encoders else source, source=source,
                         announce=None if quiet else to_stderr, prepared=prepared, weights_folder=folder)
    try:
        loaded.use_runtime(runtime, keep_torch=keep_torch)  # torch: prepacks bf16 CPU weights (model/prepack.py)
    except (ModelError, UsageError):
        if not prepared:
            raise
        # The noted cache entry failed (removed meanwhile, or OpenVINO cannot load it): read the weights.
        return load_model(model, device, dtype, quiet, compile_mode, runtime, keep_torch, keep_encoders,
                          use_prepared=False)
    return loaded


def _prepared_stages(source, runtime: str, dev: torch.device, dtype: torch.dtype, keep_torch: bool,
                     compile_mode, use_prepared: bool) -> tuple[Path | None, dict]:
    """(the model's local folder or None, {stage: OpenVINO cache entry} for the stages to build without weights)."""
    from .openvino_runtime import choose_runtime, openvino_stages

    if not use_prepared or keep_torch or compile_mode or choose_runtime(runtime, dev) != "openvino":
        return None, {}
    from .prepared import STAGES, find, local_folder

    folder = local_folder(source)
    if folder is None or not set(STAGES) <= set(openvino_stages()):
        return folder, {}
    return folder, find(folder, Precision.of(dtype))
