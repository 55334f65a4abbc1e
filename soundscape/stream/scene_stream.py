"""A scene as an endless stream of output audio: controller -> conditioning -> generator -> output chain.

`SceneStream.next_segment()` returns the next piece of finished audio at the
output rate (fade-in and volume applied) plus what the timeline records about it.
`render` writes these segments to a file and `play` feeds them to the ring buffer,
so streaming equals rendering by construction. `next_segments` makes the next segment of many
streams in one batch (the generation loop's call, for play and serve).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import controller
from ..audio.chain import ChainState, OutputChain
from . import watchdog
from ..errors import ChunkRejected, UsageError
from ..generator.conditioning import Conditioning, PromptEncoder, blend, with_negative
from ..generator.chunks import ChunkJob, ChunkResult, ChunkSpec, GeneratorState, generate_chunks, prewarm
from ..generator.denoise import DenoiseSpec
from ..model.geometry import MODEL_RATE, SAMPLES_PER_FRAME
from ..model.loading import LoadedModel
from ..scene import Scene
from ..scene.quality import resolve
from ..units import time_of_day

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
FALLBACK_AFTER = 2  # tries at a chunk's conditioning (the first and one retry) before the last good one is used


def chunk_spec(g, **denoise_overrides) -> ChunkSpec:
    """The chunk geometry and denoising settings of a resolved `generation` (scene/quality.py)."""
    return ChunkSpec(
        frames=g.chunk_frames, overlap=g.overlap_frames,
        denoise=DenoiseSpec(frames=g.chunk_frames, steps=g.steps, guidance_scale=g.guidance_scale,
                            guidance_interval=g.guidance_interval, scheduler=g.scheduler,
                            resample_passes=g.resample_passes, **denoise_overrides),
    )


def output_chain(spec: ChunkSpec, scene: Scene, out_rate: int, channels: int, fade_in: bool = True,
                 seed: int | None = None) -> OutputChain:
    """The after-model chain of a scene: its seam geometry, loudness, volume, fade-in, width and air as
    numbers; `seed` (the stream's, default the scene's) picks air's noise."""
    out = scene.output
    return OutputChain(xfade=spec.xfade * SAMPLES_PER_FRAME, edge=spec.edge * SAMPLES_PER_FRAME,
                       loudness_lufs=out.loudness_lufs, volume=out.volume,
                       fade_in_s=out.fade_in_seconds if fade_in else 0.0, model_rate=MODEL_RATE,
                       out_rate=out_rate, channels=channels, width=out.width, air=out.air,
                       seed=scene.seed if seed is None else seed)


def presence_of(by_prompt: dict[str, float]) -> float:
    """1 while any layer sounds; fades to 0 (silence) only as all layers reach weight 0."""
    return min(1.0, sum(by_prompt.values()) / 0.05)


@dataclass
class StreamState:
    gen: GeneratorState = field(default_factory=GeneratorState)  # before the model: the chunk index, tail latents
    out: ChainState = field(default_factory=ChainState)  # after it: join, loudness, resampler, samples out

    @property
    def samples_out(self) -> int:
        return self.out.samples_out


@dataclass
class Segment:
    audio: np.ndarray  # (n, channels) float32 at the output rate
    chunk: int
    start_s: float  # where this chunk's new audio sits in the output
    end_s: float
    weights: dict[str, float]
    seed: int
    gen_s: float
    steps: int = 0
    denoise_s: float = 0.0
    quality: dict | None = None  # the watchdog's scores for the chunk that passed
    rejected: list | None = None  # tries the watchdog turned down: seed, failed checks, scores
    epoch: int = 0  # bumped by every live change; the feeder crossfades into a new epoch at once
    short_frames: int | None = None  # a short chunk's latent frames (the first after a live change), else None

    def timeline_row(self) -> dict:
        row = {"chunk": self.chunk, "start_s": round(self.start_s, 4), "end_s": round(self.end_s, 4),
               "weights": self.weights, "seed": self.seed, "steps": self.steps, "gen_s": round(self.gen_s, 4)}
        if self.short_frames is not None:
            row["frames"] = self.short_frames
        if self.quality is not None:
            row["quality"] = self.quality
        if self.rejected:
            row["rejected"] = self.rejected
        return row


class SceneStream:
    def __init__(self, model: LoadedModel, scene: Scene, *, steps: int | None = None, seed: int | None = None,
                 out_rate: int | None = None, channels: int | None = None, encoder: PromptEncoder | None = None,
                 quality: str | None = None, fade_in: bool = True, day_start: float | None = None,
                 heard_at=None):
        self.model = model
        self.scene = scene
        self.encoder = encoder or PromptEncoder(model)
        self.seed = scene.seed if seed is None else seed
        self.out_rate = out_rate or scene.output.sample_rate
        self.channels = channels or scene.output.channels
        self.overrides: tuple[controller.Override, ...] = ()
        self.change: controller.SceneChange | None = None
        self.state = StreamState()
        # Scene seconds the short chunks after live changes did not make (play only; 0 in a render): the scene's
        # clock runs behind chunk index x hop by this much.
        self.shortfall_s = 0.0
        self._cond_cache: tuple[tuple, Conditioning] | None = None
        self._denoise_overrides: dict = {}
        self._steps = steps  # --steps, or fewer after an out-of-memory error; None: the scene's
        self.quality = quality  # --quality; None: the scene's
        self._attempts: dict[int, int] = {}  # chunk -> next seed attempt, after the watchdog turned all down
        self._clap: watchdog.ClapScorer | None = None
        self._fade_in = fade_in  # False after an instant start: the recording played the fade-in (play/instant.py)
        # Recovery from conditioning that cannot be made (see `_conditioning_or_fallback`):
        self._good: tuple[Conditioning, Scene, tuple] | None = None  # the last that worked, and its scene
        self._cond_failures = 0  # tries in a row that failed to condition
        self.falling_back = False  # chunks are made from self._good's conditioning
        self._said: set[str] = set()  # fallback reasons already reported
        # A clock scene (keyframes at times of day): the local time of day at scene time 0 (`render
        # --start-time`; default: now), unless `heard_at` (play) says when each chunk will be heard.
        self.day_start = time_of_day(time.time()) if day_start is None else float(day_start)
        self._day_start_given = day_start is not None  # else a resumed render keeps the one it started with
        self.heard_at = heard_at  # play: scene time -> the wall-clock time (epoch seconds) it will be heard
        self._prewarmed = False
        self.set_scene(scene)

    def reduce_memory(self) -> str | None:
        """After an out-of-memory error: the next smaller setting, or None when there is none left.

        Order: split the guidance batch, decode the VAE in tiles, then halve the steps (down to 10).
        """
        spec = self.spec.denoise
        pipe = self.model.pipe
        if spec.guidance_scale > 1 and not spec.split_guidance:
            self._denoise_overrides["split_guidance"] = True
            change = "guidance as two UNet calls"
        elif not getattr(self, "_vae_tiled", False) and hasattr(pipe.vae, "enable_tiling"):
            pipe.vae.enable_tiling()
            self._vae_tiled = True
            change = "VAE decoding in tiles"
        elif spec.steps > 10:
            self._steps = max(10, spec.steps // 2)
            change = f"{self._steps} steps"
        else:
            return None
        self.set_scene(self.scene)
        return change

    def set_scene(self, scene: Scene) -> None:
        self.resolved = resolve(scene.generation, self.quality, self.model.device.type, self._steps)
        self.scene = scene
        self.spec = chunk_spec(self.resolved.generation, **self._denoise_overrides)
        self.chain = output_chain(self.spec, scene, self.out_rate, self.channels, self._fade_in, self.seed)
        self._cond_cache = None
        if not self._prewarmed:  # the compiled shapes load on threads while the prompts are encoded below
            prewarm(self.model, self.spec)
            self._prewarmed = True
        try:
            # Every prompt of the scene at once: the text encoders are loaded at most once and released
            # after (model/text_encoders.py), so no chunk waits for them unless a prompt changes.
            self.encoder.encode_all([scene.negative_prompt, "", *(layer.prompt for layer in scene.layers.values())])
        except Exception:  # noqa: BLE001 - the chunk that needs the prompt reports it, as it always has
            pass

    # Time geometry ---------------------------------------------------------
    @property
    def hop_s(self) -> float:
        return self.spec.hop * SAMPLES_PER_FRAME / MODEL_RATE

    def chunk_time(self, index: int) -> float:
        return index * self.hop_s - self.shortfall_s

    def output_span(self, index: int) -> tuple[float, float]:
        """Where chunk `index`'s emitted audio sits in the output (the first chunk emits `lead` more)."""
        lead_s = self.spec.lead * SAMPLES_PER_FRAME / MODEL_RATE
        start = 0.0 if index == 0 else index * self.hop_s + lead_s - self.shortfall_s
        return start, (index + 1) * self.hop_s + lead_s - self.shortfall_s

    def control_time(self, index: int) -> float:
        """The scene time a chunk's weights are taken at: the middle of its new audio."""
        return (index + 0.5) * self.hop_s - self.shortfall_s  # exactly as before when no chunk was short

    def short_frames(self) -> int | None:
        """The latent frames of a short chunk (the first after a live change, generator/chunks.py) if the next
        chunk may be one now: it continues a tail, and the model runs that length without compiling first
        (OpenVINO compiles the short shape in the background at the first change: full chunks until then)."""
        frames = self.spec.short_frames
        if frames is None or self.state.gen.tail_latents is None:
            return None
        decode = frames - self.spec.decode_start(first=False)
        return frames if self.model.ready_for(frames, decode) else None

    def day_start_at(self, t: float) -> float:
        """A clock scene's time of day at scene time 0, as seen from the chunk at scene time `t`.

        play follows the wall clock: each chunk takes the time of day when it will be heard, so a pause,
        a wake alarm hours later or a suspended machine leave the scene at the hour it is, not the hour
        the player started. render counts from --start-time, so a file is the same on every run."""
        if self.heard_at is None:
            return self.day_start
        return time_of_day(self.heard_at(t)) - t

    # Live changes (called by the generator thread between chunks) ----------
    def apply_overrides(self, values: dict[str, float]) -> None:
        at = self.chunk_time(self.state.gen.chunk_index)
        self.overrides = self.overrides + tuple(controller.Override(k, float(v), at) for k, v in values.items())

    def set_width(self, width: float) -> None:
        """A live width change (stream/live.py): the new target of the chain's width stage, which ramps there
        from where it is (audio/width.py); the scene says it too, for a chain built later from it."""
        self.scene = self.scene.model_copy(update={"output": self.scene.output.model_copy(update={"width": width})})
        self.chain.width.set_target(width)

    def replace_scene(self, scene: Scene) -> None:
        """Switch to an edited scene, easing from the old one over its transition time.

        While falling back, the ease starts from the last scene whose conditioning worked, not the one that
        failed: easing from a prompt that cannot be encoded would keep failing until the ease was over.
        """
        at = self.chunk_time(self.state.gen.chunk_index)
        before, before_overrides = (self._good[1], self._good[2]) if self.falling_back and self._good else \
            (self.scene, self.overrides)
        self.change = controller.SceneChange(before=before, before_overrides=before_overrides, at=at)
        self._cond_failures, self.falling_back = 0, False
        self.overrides = tuple(o for o in self.overrides if o.layer in scene.layers)
        self.set_scene(scene)

    # Conditioning ----------------------------------------------------------
    def conditioning(self, weights: dict[str, float]) -> Conditioning:
        """One conditioning from prompt -> weight (see generator/conditioning.py for the blend)."""
        key = (self.scene.negative_prompt, tuple(sorted(weights.items())))
        if self._cond_cache and self._cond_cache[0] == key:
            return self._cond_cache[1]
        negative = self.encoder.encode(self.scene.negative_prompt)
        prompts = [p for p, w in weights.items() if w > 0]
        if prompts:
            embs = [self.encoder.encode(p) for p in prompts]
            positive = blend(embs, [weights[p] for p in prompts], self.scene.evolution.interpolation)
        else:
            positive = self.encoder.encode("")  # all layers at 0: the joiner mutes the chunk
        cond = with_negative(positive, negative)
        self._cond_cache = (key, cond)
        return cond

    # Generation ------------------------------------------------------------
    def next_segment(self, should_stop=None) -> Segment:
        """The next segment of this stream: a batch of one through `next_segments`."""
        out = next_segments([self], should_stop)[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def _prepare(self, steps: int | None = None, frames: int | None = None) -> _Prepared:
        """What the next chunk is made from: the scene's weights at its time, its conditioning and settings;
        `steps` its denoising steps (the generation loop's adaptive choice), None for the scene's; `frames`
        a short chunk's length (`short_frames`), None for the scene's."""
        index = self.state.gen.chunk_index
        t = self.control_time(index)
        spec = self.spec if frames is None or frames == self.spec.frames else self.spec.shortened(frames)
        if steps is not None and steps != spec.denoise.steps:
            spec = replace(spec, denoise=replace(spec.denoise, steps=steps))
        day = self.day_start_at(t) if self.scene.evolution.follows_clock else None
        return self._prepared(index, controller.prompt_weights(self.scene, t, self.overrides, self.change, day), spec,
                              controller.weights_at(self.scene, t, self.overrides, day))

    def _prepared(self, index: int, by_prompt: dict[str, float], spec: ChunkSpec,
                  weights: dict[str, float]) -> _Prepared:
        qc = self.scene.quality_check
        if qc.enabled and qc.clap and self._clap is None:
            self._clap = watchdog.ClapScorer(self.model)
        return _Prepared(stream=self, index=index, started=time.perf_counter(), weights=weights,
                         by_prompt=by_prompt, cond=self._conditioning_or_fallback(by_prompt), spec=spec,
                         presence=presence_of(by_prompt), attempt=self._first_attempt(index),
                         tries=qc.max_tries if qc.enabled else 1)

    def _conditioning_or_fallback(self, by_prompt: dict[str, float]) -> Conditioning:
        """The chunk's conditioning; when it fails FALLBACK_AFTER times in a row, the last one that worked.

        Why: the encoders are deterministic, so a prompt they cannot take (a tokenizer error) fails on
        every retry, and the stream would play earlier material for good. Falling back keeps fresh
        audio coming from the last sound that worked, says so once, and lasts until the next change.
        """
        try:
            cond = self.conditioning(by_prompt)
        except Exception as exc:
            self._cond_failures += 1
            if self._good is None or self._cond_failures < FALLBACK_AFTER:
                raise
            why = f"{type(exc).__name__}: {exc}"
            if why not in self._said:
                self._said.add(why)
                print(f"\nsoundscape: the scene's prompts cannot be encoded ({why}); playing on from the last "
                      f"prompts that worked until the next change", file=sys.stderr, flush=True)
            self.falling_back = True
            return self._good[0]
        self._cond_failures = 0
        if not self.falling_back:
            self._good = (cond, self.scene, self.overrides)
        return cond

    def _first_attempt(self, index: int) -> int:
        """The seed attempt a chunk starts from: past those the watchdog turned down before (tests override)."""
        return self._attempts.get(index, 0)

    def _received(self, result: ChunkResult, attempt: int) -> ChunkResult:
        """Each chunk as the generator made it (tests override this to break some)."""
        return result

    def _check(self, p: _Prepared, result: ChunkResult):
        """The watchdog's verdict on one try, or None when the scene turns the check off."""
        qc = self.scene.quality_check
        if not qc.enabled:
            return None
        score = (lambda audio: self._clap.score(audio, p.by_prompt)) if qc.clap else None
        return watchdog.check(result.audio.numpy(), p.presence, qc, score)

    def _finish(self, p: _Prepared, result: ChunkResult, verdict) -> Segment:
        """Join the chunk to the stream (the output chain) and advance the state."""
        self._attempts.pop(p.index, None)
        audio, out = self.chain.push(result.audio.numpy(), self.state.out, p.presence)
        self.state = StreamState(gen=result.state, out=out)
        start_s = self.output_span(p.index)[0]
        short = p.spec.frames if p.spec.frames != self.spec.frames else None
        if short is not None:
            self.shortfall_s += (self.spec.frames - short) * SAMPLES_PER_FRAME / MODEL_RATE
        return Segment(audio=audio, chunk=p.index, start_s=start_s, end_s=self.output_span(p.index)[1],
                       weights=p.weights, seed=result.seed, gen_s=time.perf_counter() - p.started,
                       steps=p.spec.denoise.steps, denoise_s=result.denoise_s,
                       quality=verdict.scores if verdict else None, rejected=p.rejected or None, short_frames=short)

    # State -----------------------------------------------------------------
    def save_state(self, path: str | Path) -> None:
        """Write the stream state as plain arrays (npz, no pickle) to resume later."""
        st = self.state
        arrays = {"chunk_index": np.array(st.gen.chunk_index), "out_rate": np.array(self.out_rate),
                  "seed": np.array(self.seed), "day_start": np.array(self.day_start), **st.out.to_arrays()}
        if st.gen.tail_latents is not None:
            arrays["tail_latents"] = st.gen.tail_latents.numpy()
        tmp = Path(str(path) + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)  # atomic: a crash never leaves half a state file

    def load_state(self, path: str | Path) -> None:
        with np.load(path, allow_pickle=False) as f:
            if int(f["out_rate"]) != self.out_rate:
                raise UsageError(f"--resume: {path} was saved at {int(f['out_rate'])} Hz but the scene now "
                                 f"renders at {self.out_rate} Hz; render again without --resume")
            tail = torch.from_numpy(f["tail_latents"]) if "tail_latents" in f else None
            self.seed = int(f["seed"])
            if "day_start" in f and not self._day_start_given:  # a clock scene resumes on the clock it began
                self.day_start = float(f["day_start"])
            self.chain = output_chain(self.spec, self.scene, self.out_rate, self.channels, self._fade_in, self.seed)
            self.state = StreamState(gen=GeneratorState(chunk_index=int(f["chunk_index"]), tail_latents=tail),
                                     out=ChainState.from_arrays(f))


@dataclass
class _Prepared:
    """One stream's chunk while its batch is made: inputs, the seed attempt, the watchdog's rejections."""

    stream: SceneStream
    index: int
    started: float
    weights: dict[str, float]
    by_prompt: dict[str, float]
    cond: Conditioning
    spec: ChunkSpec
    presence: float
    attempt: int
    tries: int  # attempts left
    rejected: list = field(default_factory=list)

    def job(self) -> ChunkJob:
        return ChunkJob(self.cond, self.stream.state.gen, self.stream.seed, self.attempt)


def _judge(p: _Prepared, result: ChunkResult):
    """One try through the watchdog: (result, verdict) when it passes, None to try the next seed,
    or ChunkRejected when the stream has used its tries."""
    stream = p.stream
    result = stream._received(result, p.attempt)
    verdict = stream._check(p, result)
    if verdict is None or verdict.ok:
        return result, verdict
    p.rejected.append({"seed": result.seed, "failed": verdict.failed, "scores": verdict.scores})
    p.attempt += 1
    p.tries -= 1
    if p.tries > 0:
        return None
    stream._attempts[p.index] = p.attempt
    qc = stream.scene.quality_check
    return ChunkRejected(f"chunk {p.index} failed the quality check {qc.max_tries} times "
                         f"({', '.join(p.rejected[-1]['failed'])}); quality_check in the scene sets the limits",
                         failed=p.rejected[-1]["failed"])


def checked_chunk(stream: SceneStream, gen: GeneratorState, seed: int, by_prompt: dict[str, float], spec: ChunkSpec):
    """One chunk of `stream` from an explicit generator state and seed, passed by the watchdog.

    For segmented renders (render/workers.py): the caller places the chunk; returns
    (ChunkResult, Verdict or None, rejected tries, presence).
    """
    stream.seed = seed
    stream.state = replace(stream.state, gen=gen)
    p = stream._prepared(gen.chunk_index, by_prompt, spec, weights={})
    while True:
        result = generate_chunks(stream.model, [p.job()], spec)[0]
        out = _judge(p, result)
        if out is not None:
            if isinstance(out, BaseException):
                raise out
            return result, out[1], p.rejected, p.presence


def next_segments(streams: list[SceneStream], should_stop=None,
                  steps: int | None = None, frames: int | None = None) -> list[Segment | BaseException]:
    """The next segment of every stream, their chunks generated together (one UNet call per step), each
    with `steps` denoising steps (None: each stream's own setting) and `frames` latent frames (a short chunk
    after a live change; None: each stream's own length).

    Streams with the same chunk settings share a batch. A chunk the watchdog turns down is made
    again with its next seed, in a batch of the streams still waiting. One stream's rejection is
    returned in its place (a ChunkRejected), and so is an error preparing its chunk (its conditioning),
    so one stream's failure never stalls the others; an error of the batch itself (out of memory,
    Cancelled) is raised for all.
    """
    if not streams:
        return []
    model = streams[0].model
    done: dict[int, Segment | BaseException] = {}
    prepared: dict[int, _Prepared] = {}
    for i, s in enumerate(streams):
        try:
            prepared[i] = s._prepare(steps, frames)
        except _OOM:
            raise  # the batch's trouble: the loop makes every stream smaller
        except Exception as exc:  # this stream's own trouble (its conditioning): never the batch's
            done[i] = exc
    waiting = list(prepared)
    while waiting:
        groups: dict[ChunkSpec, list[int]] = {}
        for i in waiting:
            groups.setdefault(prepared[i].spec, []).append(i)
        waiting = []
        for spec, members in groups.items():
            results = generate_chunks(model, [prepared[i].job() for i in members], spec, should_stop)
            for i, result in zip(members, results):
                out = _judge(prepared[i], result)
                if out is None:
                    waiting.append(i)
                elif isinstance(out, BaseException):
                    done[i] = out
                else:
                    done[i] = streams[i]._finish(prepared[i], *out)
    return [done[i] for i in range(len(streams))]
