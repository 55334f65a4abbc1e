"""OpenVINO on a CPU: the UNet and HiFi-GAN vocoder, converted once, compiled for each static shape a session runs.

The default on CPUs (`--runtime auto`): OpenVINO where the package is installed and the conversion
works, torch otherwise (one line says so), and torch on GPUs. Why: with its inputs reshaped to the
call's static shapes, OpenVINO's CPU plugin plans memory and picks kernels once, and ran the UNet and
the vocoder faster than torch's prepacked bf16; the VAE decoder stays torch's, which measured faster
(docs/benchmarks.md, "OpenVINO, static shapes").

What happens at load (`LoadedModel.use_runtime`), per module:
1. A cache key: the module's config, its precision, a fingerprint of its weights (names, shapes,
   dtypes and a strided sample of every tensor), this file's CACHE_FORMAT and OpenVINO's version.
2. Cache miss: the module is cast to fp32 in place, converted with dynamic sizes (the UNet after its
   timestep projection, which stays on the host in fp32: `_UNetCall`), and the IR is saved (fp16
   weights for a half-precision model) to `$XDG_CACHE_HOME/soundscape/openvino/<key>/` (written to a temporary
   folder, then renamed, so concurrent workers never read half a file).
3. torch's copy of the weights is freed (moved to the `meta` device: the module keeps its config,
   dtype and structure, which the pipeline still reads, but holds no memory); `keep_torch=True`
   keeps it (and casts it back) for the parity tests and for `bench --compare-diffusers`.
At the first call with a given set of input shapes (`StaticModel`), the IR is reshaped to them and
compiled with the stage's precision as its inference hint, saved as a static-shape IR of its own (its weights a hard link
to the entry's) and compiled from that path; OpenVINO's model cache (CACHE_DIR, per shape, in the
entry) keeps the compiled blob, so a later start imports it instead of compiling. Each compiled shape
holds its own packed copy of the weights (OpenVINO's CPU plugin shares weights only within one
compiled model), so a stage keeps at most MAX_SHAPES of them, least recently used dropped first, and
the UNet runs guidance as two batch-1 calls of one compiled model (GUIDED_AS_PAIRS). The IR's own
weights are file-backed and only read while compiling: their pages are dropped from the process after
each compile (`_drop_mapped_pages`), so RSS holds one copy of each network once it is compiled (while
a shape compiles or imports, both are resident for a moment: docs/benchmarks.md, "Memory and start").
The cache keeps the MAX_ENTRIES most recently used modules and removes older ones.

Threads: OpenVINO gets as many as torch (`INFERENCE_NUM_THREADS`), one stream, latency hint; torch's
OpenMP threads sleep between regions (OMP_WAIT_POLICY=PASSIVE, set by the CLI), so the two pools take
turns on the cores instead of fighting (docs/benchmarks.md, "One thread pool at a time").
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
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
CACHE_FORMAT = 4
# UNet + VAE decoder + vocoder of two models; each entry is the fp16/fp32 IR plus OpenVINO's compiled blobs.
MAX_ENTRIES = 6
FINGERPRINT_SAMPLES = 1024  # values sampled from each weight tensor for the cache key
# Compiled shapes kept per stage. Each holds a packed copy of the stage's weights (the UNet's: ~0.7 GB in
# bf16), so not one per shape a long session meets: play needs one UNet shape; the vocoder runs a stream's
# longer first chunk as windows of the later chunks' length (OpenVINOVocoder._row).
MAX_SHAPES = {"unet": 1, "vocoder": 1, "vae-decoder": 2}
# Guided steps as two batch-1 calls of the one compiled UNet, not one batch-2 call of a second compiled
# model: a second shape would hold a second copy of the weights (docs/benchmarks.md, "OpenVINO, static shapes").
GUIDED_AS_PAIRS = True
# T5 sequences are zero-padded (mask 0) to the first of these that fits, so a session's UNet keeps one shape
# while its prompts change; longer ones to a multiple of the last.
T5_BUCKETS = (32, 64, 128)


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _cache_dir() -> Path:
    from .. import caches

    return caches.folder("openvino")


_CORE = None


def _core():
    """One OpenVINO Core per process, its CPU threads matched to torch's (see the module docstring)."""
    global _CORE
    if _CORE is None:
        import openvino as ov

        _CORE = ov.Core()
        # Not pinned: a pinned thread waits for its own core while another process holds it (batch-1 UNet calls
        # 1.1-2x slower pinned on a busy 2-core VM in three runs, batch 2 even; docs/benchmarks.md), and
        # torch's threads are not pinned either.
        _CORE.set_property("CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "NUM_STREAMS": 1,
                                   "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False})
    return _CORE


def t5_length(length: int) -> int:
    """The padded T5 length for a sequence of `length` tokens."""
    for bucket in T5_BUCKETS:
        if length <= bucket:
            return bucket
    return -(-length // T5_BUCKETS[-1]) * T5_BUCKETS[-1]


# Static shapes ------------------------------------------------------------------------------------

class StaticModel:
    """One IR compiled for each set of input shapes it is called with: numpy inputs -> first output.

    Compiled models are kept per shape, at most `max_shapes` (least recently used dropped). The first
    compile of a shape says so through `announce`; OpenVINO's CACHE_DIR makes it an import next time.
    """

    def __init__(self, kind: str, entry: Path, precision: torch.dtype, max_shapes: int, announce=None):
        self.kind, self.entry, self.max_shapes, self.announce = kind, entry, max_shapes, announce
        self.hint = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(precision, "f32")
        self.compiled: dict[tuple, object] = {}  # shapes -> compiled model, least recently used first
        self.compiles = 0  # shapes compiled or imported in this process (tests, bench)
        # A shape compiled in the background (`ready`, `prewarm`) lands in `compiled` from another thread; its
        # event is set when it has (or has failed).
        self._lock = threading.Lock()
        self._preparing: dict[tuple, threading.Event] = {}

    def __call__(self, inputs: list[np.ndarray]) -> np.ndarray:
        shapes = tuple(tuple(a.shape) for a in inputs)
        with self._lock:
            compiled = self.compiled.pop(shapes, None)
            pending = self._preparing.get(shapes) if compiled is None else None
        if pending is not None:
            pending.wait()  # being compiled on a thread (a prewarm at start): wait for it rather than compile twice
            with self._lock:
                compiled = self.compiled.pop(shapes, None)
        if compiled is None:
            compiled = self._compile(shapes)
        with self._lock:
            self.compiled[shapes] = compiled
        return compiled(inputs)[0]

    @property
    def latest(self) -> tuple | None:
        """The shapes of the most recent call (or compile)."""
        with self._lock:
            return next(reversed(self.compiled), None)

    def prepare(self, shapes: tuple) -> None:
        """Compile (or import) `shapes` now, e.g. at load, rather than at the first call."""
        if shapes not in self.compiled:
            compiled = self._compile(shapes)
            with self._lock:
                self.compiled[shapes] = compiled
                self.compiled[shapes] = self.compiled.pop(shapes)

    def ready(self, shapes: tuple) -> bool:
        """Whether `shapes` are compiled; if not, compiling them starts on a thread of its own (once), and a later
        call says True once they are. Why: a second shape takes seconds to compile (5-23 s for the full UNet),
        which must not stall the chunk that asks first (play's short chunk after a change)."""
        with self._lock:
            if shapes in self.compiled:
                return True
            if shapes in self._preparing:
                return False
            self._preparing[shapes] = threading.Event()

        def run():
            try:
                compiled = self._compile(shapes, keep=1)
                with self._lock:
                    self.compiled[shapes] = compiled
                    # Least recently used first: the shape in use stays the most recent.
                    for other in [s for s in self.compiled if s != shapes]:
                        self.compiled[other] = self.compiled.pop(other)
            except Exception as exc:  # noqa: BLE001 - the short shape is an optimisation: full chunks go on
                print(f"soundscape: could not compile the OpenVINO {self.kind} for {shapes} in the background "
                      f"({type(exc).__name__}: {exc}); chunks keep their usual length", file=sys.stderr)
            finally:
                with self._lock:
                    self._preparing.pop(shapes).set()

        threading.Thread(target=run, name=f"soundscape-compile-{self.kind}", daemon=True).start()
        return False

    def shapes_on_disk(self) -> list[tuple]:
        """The shapes earlier starts compiled in this precision (their folders), most recently used first."""
        root, prefix = self.entry / "shapes", f"{self.hint}-"
        found = []
        for folder in (root.iterdir() if root.is_dir() else ()):
            if not folder.name.startswith(prefix) or not (folder / "model.xml").is_file():
                continue
            try:
                shapes = tuple(() if part == "scalar" else tuple(int(n) for n in part.split("x"))
                               for part in folder.name[len(prefix):].split("_"))
                found.append((folder.stat().st_mtime, shapes))
            except (ValueError, OSError):
                continue  # not a folder this code named
        return [shapes for _, shapes in sorted(found, reverse=True)]

    def prewarm(self, matches) -> bool:
        """Import, on a thread, the most recently used shape on disk that `matches(shapes)`: a first call of
        it then waits for that import instead of doing it. Why: a start's first chunk imported the int8
        UNet's shape in its first step (4.1 s of a 21 s first chunk at balanced on a 2-core AMD EPYC); begun
        before the prompts are encoded, it runs beside them. Only on a model that has compiled nothing yet (a
        start): a later stream of the same process (serve's next listener) finds its shapes compiled, or
        compiles what it needs itself. Whether anything was begun."""
        with self._lock:
            if self.compiled or self._preparing:
                return False
        for shapes in self.shapes_on_disk():
            if matches(shapes):
                self.ready(shapes)
                return True
        return False

    def _compile(self, shapes: tuple, keep: int = 0):
        """Compile `shapes`, first dropping the least recently used shapes beyond `max_shapes` less one for it
        (`keep`: the most recent shapes never dropped, for a background compile beside the shape in use)."""
        with self._lock:
            while len(self.compiled) >= self.max_shapes and len(self.compiled) > keep:
                del self.compiled[next(iter(self.compiled))]
        release_memory()
        name = "_".join("x".join(map(str, s)) or "scalar" for s in shapes)
        folder = self.entry / "shapes" / f"{self.hint}-{name}"
        if not (folder / "model.xml").is_file() and self.announce is not None:
            self.announce(f"compiling the OpenVINO {self.kind} for inputs {name.replace('_', ', ')} "
                          f"(once per shape; later starts load it from the cache)")
        try:
            try:
                compiled = self._compile_shape(folder, shapes)
            except RuntimeError:
                # A damaged shape (its IR or its compiled blob): made again once from the entry's IR
                shutil.rmtree(folder, ignore_errors=True)
                compiled = self._compile_shape(folder, shapes)
        except RuntimeError as exc:
            shutil.rmtree(self.entry, ignore_errors=True)  # a damaged entry must not fail every later start
            from ..errors import ModelError

            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"--runtime openvino: OpenVINO could not compile the {self.kind} for inputs "
                             f"{name} ({first}); its cached copy was removed. Run again, or use --runtime torch") from None
        os.utime(folder)  # most recently used shape: pruned last
        _prune_shapes(self.entry / "shapes", keep=folder)
        _drop_mapped_pages(self.entry)
        release_memory()  # what compiling left in the heap (its graph transformations, the weights' conversion)
        self.compiles += 1
        return compiled


    def _compile_shape(self, folder: Path, shapes: tuple):
        xml = _static_ir(self.entry, folder, shapes, fp16=self.hint != "f32")
        # By path, not as a model object: OpenVINO's cache then keys the blob on the file's path and
        # imports it without reading the IR. Given a model object it hashes every weight first: 0.7 GB
        # of the UNet's IR paged in for a moment at each start, and 1.4 s (docs/benchmarks.md).
        return _core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": self.hint,
                                                        "CACHE_DIR": str(folder / "blobs")})


def looks_like_ir(xml: Path) -> bool:
    """Whether `xml` starts as an OpenVINO IR does. Why: given anything else, OpenVINO tries its other
    readers too, and TensorFlow's prints its parse errors straight onto the terminal."""
    try:
        with open(xml, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return head.lstrip().startswith(b"<?xml") and b"<net" in head


def _static_ir(entry: Path, folder: Path, shapes: tuple, fp16: bool) -> Path:
    """The entry's IR with its inputs fixed to `shapes`, saved once in `folder`: the path of its model.xml.

    Its weights file is a hard link to the entry's (reshaping changes the graph's shapes, not one weight:
    the two files are byte-identical, checked before linking), so a shape costs 4 MB of disk, not 0.7 GB.
    """
    import openvino as ov

    xml = folder / "model.xml"
    if xml.is_file() and (folder / "model.bin").is_file():
        if looks_like_ir(xml):
            return xml
        shutil.rmtree(folder, ignore_errors=True)  # damaged: saved again below
    if not looks_like_ir(entry / "model.xml"):
        raise RuntimeError(f"{entry / 'model.xml'} is not an OpenVINO IR")
    model = _core().read_model(str(entry / "model.xml"))
    model.reshape({i: ov.PartialShape(list(s)) for i, s in enumerate(shapes)})
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry))
    try:
        # Weights as the entry stores them (fp16 for a half-precision model, as _convert_and_save wrote them)
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=fp16)
        del model
        shared = entry / "model.bin"
        if filecmp.cmp(tmp / "model.bin", shared, shallow=False):
            (tmp / "model.bin").unlink()
            try:
                os.link(shared, tmp / "model.bin")
            except OSError:  # a file system without hard links: a copy, as saved
                shutil.copyfile(shared, tmp / "model.bin")
        folder.parent.mkdir(exist_ok=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process saved the same shape first: theirs is as good
            if not xml.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml


def _prune_shapes(shapes: Path, keep: Path, most: int = 4) -> None:
    """Keep the `most` most recently used static shapes of an entry (each with its compiled blob)."""
    folders = sorted((p for p in shapes.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in folders[most:]:
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)


def _drop_mapped_pages(entry: Path) -> int:
    """Drop this entry's file-backed pages (the IR's weights, a cached blob) from the process: bytes dropped.

    OpenVINO maps the IR's weights and keeps the mapping for the compiled model's lifetime, but reads them
    only while compiling (inference runs on its packed copy). madvise(MADV_DONTNEED) on a file mapping only
    drops the resident pages; a later read faults them back in from the file. Linux only; elsewhere a no-op.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        maps = open("/proc/self/maps").read().splitlines()
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    dropped, prefix = 0, str(entry.resolve())
    for line in maps:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith(prefix):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if libc.madvise(lo, hi - lo, 4) == 0:  # MADV_DONTNEED
                dropped += hi - lo
    return dropped


# The modules as OpenVINO sees them --------------------------------------------------------------

class _GivenEmbedding(torch.nn.Module):
    """Stands in for the UNet's `time_proj` while tracing: returns the embedding passed to `_UNetCall`."""

    def __init__(self):
        super().__init__()
        self.value = None

    def forward(self, timesteps):
        return self.value.expand(timesteps.shape[0], -1)


class _UNetCall(torch.nn.Module):
    """The UNet with plain tensor inputs, for tracing; the timestep comes in already projected.

    Why: the sinusoidal projection sin/cos(t f) needs fp32 (bf16's 8-bit mantissa rounds t f = 430.7 to
    430 or 432, and the embedding's high-frequency half turns to noise). torch's bf16 UNet computes it in
    fp32; OpenVINO's bf16 hint would lower it with everything else, and OpenVINO's Python API cannot mark
    nodes to stay in f32. So the host computes it (`unet.time_proj`, no weights) and the IR starts after it.
    """

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.given = _GivenEmbedding()

    def forward(self, sample, t_emb, gpt, t5, mask):
        proj, self.unet.time_proj = self.unet.time_proj, self.given
        self.given.value = t_emb
        try:
            return self.unet(sample, torch.zeros(1), encoder_hidden_states=gpt, encoder_hidden_states_1=t5,
                             encoder_attention_mask_1=mask, return_dict=False)[0]
        finally:
            self.unet.time_proj = proj
            self.given.value = None


class _VAEDecode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z).sample


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class OpenVINOVocoder:
    """Callable like `pipe.vocoder`: log-mel (B, frames, 64) -> waveforms (B, samples), float32."""

    def __init__(self, vocoder: torch.nn.Module, precision: torch.dtype, keep_torch: bool = False, announce=None,
                 entry: Path | None = None):
        import openvino as ov

        bins = vocoder.config.model_in_dim

        def convert():
            return ov.convert_model(vocoder, example_input=torch.zeros(1, 64, bins),
                                    input=[ov.PartialShape([-1, -1, bins])])

        self.config = vocoder.config
        self.hop = int(np.prod(vocoder.config.upsample_rates))  # samples per mel frame
        self.window: int | None = None  # the length to compile, when a caller knows it (`prefer`)
        self.model, self.cached = _prepare("vocoder", vocoder, [vocoder], precision, convert, keep_torch, announce,
                                           entry)

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        # Row by row: serve's batches of any size use the compiled shapes of one stream
        return torch.from_numpy(np.concatenate([self._row(row) for row in _numpy(mel)[:, None]]))

    def _row(self, row: np.ndarray) -> np.ndarray:
        """One log-mel (1, frames, bins) -> (1, samples): through the shortest compiled length, in windows.

        Why: a compiled vocoder shape holds ~0.4 GB (its weights and the activations of 160 samples per
        frame, planned for that length), and a stream's first chunk decodes 1024 frames where every later
        one decodes 848. So the vocoder keeps one shape (MAX_SHAPES): a shorter input compiles its own
        (and drops the longer one), a longer one runs as overlapping windows of the compiled length.
        """
        frames = row.shape[1]
        window = self.window or min((shape[0][1] for shape in self.model.compiled), default=None)
        if window is None or frames == window or (frames < window and not self.window):
            return self.model([row])
        if frames < window:
            return pad_to_window(lambda part: self.model([part]), row, window, self.hop)
        return stitch_windows(lambda part: self.model([part]), row, window, self.hop)

    def prewarm(self) -> bool:
        """Import, on a thread, the length an earlier start compiled (the vocoder keeps one; see `_row`)."""
        return self.model.prewarm(lambda shapes: self.window is None or shapes[0][1] == self.window)

    def prefer(self, frames: int) -> None:
        """Compile for `frames` mel frames (a stream's later chunks): its first chunk then runs as windows of
        that length too, and the vocoder compiles one shape per session instead of two. A short chunk (after a
        change) does not ask: it runs padded to this length rather than compiling a shape of its own."""
        self.window = frames


class OpenVINOUNet:
    """Callable like `pipe.unet` in the denoising loop; returns (noise prediction,) as float32.

    The T5 sequence is padded to `t5_length` (its mask with 0: a padded token is never attended to),
    and a batch runs as batch-1 calls of one compiled shape (GUIDED_AS_PAIRS): a guided step, and serve's
    batches of any number of listeners, use the shape that play's unguided steps compiled.
    """

    def __init__(self, unet: torch.nn.Module, precision: torch.dtype, keep_torch: bool = False, announce=None,
                 entry: Path | None = None):
        import openvino as ov

        self.config, self.dtype = unet.config, precision
        self.time_proj = unet.time_proj  # sin/cos of the timestep, no weights: stays torch's, in fp32
        channels, freq = unet.config.in_channels, 16
        gpt_dim = _cross_dim(unet, 1)
        t5_dim = _cross_dim(unet, 2)
        self.t_dim = self.time_proj(torch.zeros(1)).shape[-1]

        def convert():
            example = (torch.zeros(2, channels, 64, freq), torch.zeros(1, self.t_dim), torch.zeros(2, 8, gpt_dim),
                       torch.zeros(2, 16, t5_dim), torch.ones(2, 16, dtype=torch.long))
            shapes = [ov.PartialShape([-1, channels, -1, freq]), ov.PartialShape([1, self.t_dim]),
                      ov.PartialShape([-1, -1, gpt_dim]), ov.PartialShape([-1, -1, t5_dim]),
                      ov.PartialShape([-1, -1])]
            return ov.convert_model(_UNetCall(unet), example_input=example, input=shapes)

        self.model, self.cached = _prepare("unet", unet, [unet], precision, convert, keep_torch, announce, entry)

    def __call__(self, sample, t, *, encoder_hidden_states, encoder_hidden_states_1, encoder_attention_mask_1,
                 return_dict=False):
        t_emb = _numpy(self.time_proj(torch.as_tensor(t).reshape(1).float()))
        t5, mask = encoder_hidden_states_1, encoder_attention_mask_1
        extra = t5_length(t5.shape[1]) - t5.shape[1]
        if extra:
            t5 = torch.nn.functional.pad(t5, (0, 0, 0, extra))
            mask = torch.nn.functional.pad(mask, (0, extra))
        inputs = [_numpy(sample), t_emb, _numpy(encoder_hidden_states), _numpy(t5), mask.long().cpu().numpy()]
        rows = range(sample.shape[0]) if GUIDED_AS_PAIRS and sample.shape[0] > 1 else [None]
        outs = [self.model(inputs if b is None else [x if k == 1 else x[b:b + 1] for k, x in enumerate(inputs)])
                for b in rows]
        return (torch.from_numpy(outs[0] if len(outs) == 1 else np.concatenate(outs)),)

    def ready_for(self, frames: int) -> bool:
        """Whether chunks of `frames` latent frames run without a compile now: the shape of the latest call with
        that many frames is compiled. If not, it starts compiling in the background (StaticModel.ready)."""
        latest = self.model.latest
        if latest is None or latest[0][2] == frames:
            return True  # nothing run yet (the first chunk compiles its own), or the shape in use
        sample = latest[0][:2] + (frames,) + latest[0][3:]
        return self.model.ready((sample,) + latest[1:])

    def prewarm(self, frames: int) -> bool:
        """Import the shape an earlier start used for chunks of `frames` latent frames, on a thread (StaticModel)."""
        return self.model.prewarm(lambda shapes: shapes[0][2] == frames)

    def prepare(self, frames: int, t5_tokens: int = 1) -> None:
        """Compile the UNet for chunks of `frames` latent frames now (play calls it before its first chunk)."""
        cfg = self.config
        self.model.prepare(((1, cfg.in_channels, frames, 16), (1, self.t_dim), (1, 8, _cross_dim(self, 1)),
                            (1, t5_length(t5_tokens), _cross_dim(self, 2)), (1, t5_length(t5_tokens))))


class OpenVINOVAEDecoder:
    """Stands in for `pipe.vae.decode` (installed on the VAE instance): latents -> DecoderOutput, float32.

    Only the decoder half moves (decoder and post_quant_conv); the encoder, which generation never
    uses, stays torch's. `vae.enable_tiling()` (an out-of-memory fallback) has no effect on it.
    """

    def __init__(self, vae: torch.nn.Module, precision: torch.dtype, keep_torch: bool = False, announce=None,
                 entry: Path | None = None):
        import openvino as ov

        latent = vae.config.latent_channels

        def convert():
            return ov.convert_model(_VAEDecode(vae), example_input=torch.zeros(1, latent, 64, 16),
                                    input=[ov.PartialShape([-1, latent, -1, -1])])

        self.config = vae.config
        self.model, self.cached = _prepare("vae-decoder", vae, [vae.decoder, vae.post_quant_conv], precision,
                                           convert, keep_torch, announce, entry)

    def __call__(self, z: torch.Tensor, return_dict: bool = True):
        from diffusers.models.autoencoders.vae import DecoderOutput

        out = torch.from_numpy(np.concatenate([self.model([row]) for row in _numpy(z)[:, None]]))  # row by row
        return DecoderOutput(sample=out) if return_dict else (out,)

    def ready_for(self, frames: int) -> bool:
        """Whether a decode of `frames` latent frames runs without a compile now (see OpenVINOUNet.ready_for)."""
        latest = self.model.latest
        if latest is None or latest[0][2] == frames:
            return True
        return self.model.ready(((latest[0][:2] + (frames,) + latest[0][3:]),))


# Frames each window keeps beside a seam: the vocoder's receptive field is far shorter (a seam then falls
# where both windows see the same context, and their samples agree to float rounding; tests/test_openvino_static.py).
STITCH_MARGIN = 32


def pad_to_window(run, mel: np.ndarray, window: int, hop: int) -> np.ndarray:
    """A convolutional vocoder over (1, frames, bins) shorter than its compiled `window`: (1, frames * hop).

    Why: play's short chunk after a change decodes fewer frames than the one length the vocoder keeps
    compiled. It runs that length with the last frame repeated, and the real part is kept; the padding
    reaches back only the vocoder's receptive field (under STITCH_MARGIN frames), within the decode edge that
    the joiner drops (generator/chunks.py, EDGE_FRAMES: 32 mel frames)."""
    frames = mel.shape[1]
    padded = np.concatenate([mel, np.repeat(mel[:, -1:], window - frames, axis=1)], axis=1)
    return run(np.ascontiguousarray(padded))[:, : frames * hop]


def stitch_windows(run, mel: np.ndarray, window: int, hop: int, margin: int = STITCH_MARGIN) -> np.ndarray:
    """A convolutional vocoder over (1, frames, bins) as windows of `window` frames: (1, frames * hop + tail).

    Windows overlap by at least 2 * `margin` frames and are evenly spaced; each seam sits in the middle of an
    overlap, so every kept sample is at least `margin` frames from its window's edges.
    """
    frames = mel.shape[1]
    step = window - 2 * margin
    if step <= 0:
        raise ValueError(f"stitch_windows: window {window} is too short for margin {margin}")
    count = 1 + -(-(frames - window) // step)
    starts = np.linspace(0, frames - window, count).round().astype(int)
    seams = [0] + [(a + window + b) // 2 for a, b in zip(starts[:-1], starts[1:])]
    pieces = []
    for k, start in enumerate(starts):
        out = run(np.ascontiguousarray(mel[:, start:start + window]))
        lo = (seams[k] - start) * hop
        hi = (seams[k + 1] - start) * hop if k + 1 < count else out.shape[1]
        pieces.append(out[:, lo:hi])
    return np.concatenate(pieces, axis=1)


def _cross_dim(unet, i: int) -> int:
    dims = unet.config.cross_attention_dim
    dims = dims[-1] if isinstance(dims[0], (list, tuple)) else dims
    return int(dims[i])


# Conversion, cache, freeing ---------------------------------------------------------------------

def _prepare(kind: str, module: torch.nn.Module, parts: list[torch.nn.Module], precision: torch.dtype,
             convert, keep_torch: bool, announce=None, entry: Path | None = None):
    """The `StaticModel` for `module`, from the IR cache (converting on a miss); frees `parts` unless kept.

    `entry`: a cache entry found from the weights' source files (model/prepared.py), for a module built
    without weights. Returns (static model, whether the IR came from the cache).
    """
    root = _cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from ..errors import ModelError

        raise ModelError(f"--runtime openvino: cannot keep OpenVINO's converted models in {root} ({exc.strerror}); "
                         f"set XDG_CACHE_HOME to a writable folder, or use --runtime torch") from None
    if entry is None:
        entry = root / cache_key(kind, module, precision)
    elif not (entry / "model.xml").is_file():
        from ..errors import ModelError

        raise ModelError(f"--runtime openvino: the cached {kind} in {entry} is gone; run again")
    xml = entry / "model.xml"
    cached = xml.is_file() and (entry / "model.bin").is_file() and looks_like_ir(xml)
    if not cached:
        if xml.exists():  # a damaged entry: converted again in its place
            shutil.rmtree(entry, ignore_errors=True)
        if announce is not None:
            announce(f"converting the {kind} for OpenVINO (first start with this model; cached for later starts)")
        _convert_and_save(module, precision, convert, root, entry)
    os.utime(entry)  # most recently used: pruned last
    if not keep_torch:
        free_torch_weights(parts, precision)
    _prune(root, keep=entry)
    return StaticModel(kind, entry, precision, MAX_SHAPES.get(kind, 2), announce), cached


def _convert_and_save(module, precision, convert, root: Path, entry: Path) -> None:
    import openvino as ov

    # Convert from fp32 (OpenVINO applies the precision hint when it compiles). In place, not a copy:
    # bf16/fp16 -> fp32 -> bf16/fp16 is exact, and a copy would hold a second fp32 UNet (1.4 GB).
    _cast(module, torch.float32)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():  # not inference_mode: conversion traces the module
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches: shapes are fixed per call
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
            elif p.is_dir() and p.name != "sources":  # sources/: model/prepared.py's index, not an entry
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
