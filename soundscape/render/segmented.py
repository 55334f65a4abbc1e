"""`render --workers N`, `--ray ADDRESS` and `--loop`: a render made of independently generated segments.

The driver plans the timeline (plan.py), hands segment and bridge jobs to an executor
(workers.py) and, as results come in, joins, levels, resamples and writes the pieces in
timeline order through the same output chain a plain render runs (audio/chain.py: join,
loudness, resampler, fade-in and volume), so the file does not depend on which worker made which piece, on
how many there were, or on the order they finished in.

Scheduling: a bridge as soon as both segments it joins are done (it unblocks writing), else
the lowest segment not started; never more jobs than the executor has room for. A job whose
worker died runs again (up to `max_retries` more times); its result is taken once, whoever
sends it first, so no piece is written twice or lost.

On disk beside OUT, while the render runs:
  OUT.state.npz    plain arrays: the plan's fingerprint, the pieces written, and the chain's state
                   after them (join tail, loudness, resampler, samples out)
  OUT.segments/    each finished job's raw result (segment-00003.npz, bridge-00003.npz), written
                   atomically as it arrives and removed once its pieces are in OUT and no bridge
                   still needs its latents
--resume keeps OUT's prefix, reads the finished jobs back and makes only the rest. A loop is
written in one go at the end (its start depends on its end: OutputChain.finish_cycle), so it resumes from the
finished jobs alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio.chain import ChainState, OutputChain
from ..audio.crossfade import JoinState
from ..audio.files import GrowingAudioFile, check_output_path, copy_prefix
from ..audio.resample import StreamResampler
from ..errors import SoundscapeError, UsageError
from ..model.geometry import FRAME_S, MODEL_RATE, SAMPLES_PER_FRAME
from ..stream.scene_stream import output_chain
from .plain import RenderResult, _measure_file, _progress, _signals_deferred, advance, state_path
from .plan import Piece, Plan, loop_frames_for, plan_loop, plan_render
from .options import RenderOptions
from .workers import BridgeJob, JobResult, SegmentJob, Settings, WorkerFailed, WorkerLost

STATE_VERSION = 2  # 2: the chain has air and width and levels at the output rate (issue 25)


def cache_dir(out: Path) -> Path:
    return out.with_name(out.name + ".segments")


def is_segmented_state(path: Path) -> bool:
    """Whether a saved state belongs to a segmented or looping render (not a plain one)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return "fingerprint" in f
    except (OSError, ValueError):
        return False


# The sequential chain ---------------------------------------------------------------------------

@dataclass
class Chain:
    """The output chain (audio/chain.py) and its state, carried across pieces in timeline order."""

    chain: OutputChain
    state: ChainState = field(default_factory=ChainState)

    @classmethod
    def of(cls, settings: Settings, out_rate: int, channels: int) -> "Chain":
        return cls(output_chain(settings.spec, settings.scene, out_rate, channels, seed=settings.seed))

    def push(self, audio: np.ndarray, presence: float) -> np.ndarray:
        out, self.state = self.chain.push(audio, self.state, presence)
        return out


# Planning ---------------------------------------------------------------------------------------

def make_plan(settings: Settings, duration_s: float, out_rate: int, loop: bool,
              segment_chunks: int | None = None) -> tuple[Plan, int]:
    """The plan, and the output samples to write."""
    spec = settings.spec
    if loop:
        frames = loop_frames_for(duration_s)
        total = frames * SAMPLES_PER_FRAME * out_rate // MODEL_RATE
        return plan_loop(spec, frames, settings.seed, segment_chunks), total
    total = int(round(duration_s * out_rate))
    rs = StreamResampler(MODEL_RATE, out_rate)
    # Joined 16 kHz audio the resampler needs to give `total` samples: whole `down` groups, plus its lookahead.
    needed = total if rs.up == rs.down else -(-total // rs.up) * rs.down + rs.context
    return plan_render(spec, -(-needed // SAMPLES_PER_FRAME), settings.seed, segment_chunks), total


def fingerprint(settings: Settings, plan: Plan, duration_s: float, out_rate: int, channels: int) -> str:
    """What makes the audio what it is; a resume must match it (the worker count does not count)."""
    what = {"v": STATE_VERSION, "scene": settings.scene.model_dump(mode="json"), "seed": settings.seed,
            "model": settings.model, "dtype": settings.dtype, "runtime": settings.runtime,
            "spec": repr(settings.spec), "duration": duration_s, "loop": plan.loop_frames,
            "segments": [(s.start, s.chunks) for s in plan.segments], "rate": out_rate, "channels": channels}
    if settings.scene.evolution.follows_clock:  # where the scene's day starts is part of the audio
        what["day_start"] = settings.day_start
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


# The driver -------------------------------------------------------------------------------------

class Driver:
    def __init__(self, settings: Settings, plan: Plan, out: Path, executor, *, max_retries: int = 3, log=None):
        self.settings, self.plan, self.out, self.executor = settings, plan, out, executor
        self.pieces = plan.pieces()
        self.cache = cache_dir(out)
        self.max_retries = max_retries
        self.log = log or (lambda msg: None)
        self.last_piece: dict = {}  # job -> the index of its last piece
        for p in self.pieces:
            self.last_piece[self.job_of(p)] = p.index
        # segment -> the bridges that use its latents (the one before it and the one after)
        self.users = {s.index: [("bridge", b.index) for b in plan.bridges if s.index in (b.index, b.to)]
                      for s in plan.segments}
        self.tries: dict = {}
        self.done: set = set()  # job keys whose results are in the cache
        self.running: set = set()
        self.heads: dict[int, np.ndarray] = {}
        self.tails: dict[int, np.ndarray] = {}
        self.written = 0  # pieces written to OUT
        self.on_result = None  # called with each new result's key (progress)

    # Jobs --------------------------------------------------------------------------------------
    def job_of(self, piece: Piece) -> tuple[str, int]:
        return ("bridge", piece.segment) if piece.bridge else ("segment", piece.segment)

    def _path(self, key) -> Path:
        return self.cache / f"{key[0]}-{key[1]:05d}.npz"

    def _needed(self, key) -> bool:
        """A job is needed while any of its pieces is unwritten, or a needed bridge waits for its latents."""
        if self.last_piece[key] >= self.written:
            return True
        if key[0] == "segment":
            return any(b not in self.done and self._needed(b) for b in self.users[key[1]])
        return False

    def _ready(self, key) -> bool:
        if key[0] == "segment":
            return True
        b = self.plan.bridges[key[1]]
        return b.index in self.tails and b.to in self.heads

    def _job(self, key):
        s = key[1]
        if key[0] == "segment":
            return SegmentJob(self.plan.segments[s], head=self.plan.head_frames(s), tail=self.plan.needs_tail(s))
        b = self.plan.bridges[s]
        seg = self.plan.segments[b.index]
        return BridgeJob(b, seed=seg.seed, chunk_index=seg.chunks, head=self.tails[b.index],
                         tail=self.heads[b.to][:, :, :b.tail])

    def all_keys(self) -> list:
        return [("segment", s.index) for s in self.plan.segments] + [("bridge", b.index) for b in self.plan.bridges]

    def _next_job(self):
        todo = [k for k in self.all_keys() if k not in self.done and k not in self.running and self._ready(k)
                and self._needed(k)]
        bridges = [k for k in todo if k[0] == "bridge"]
        return (bridges or todo or [None])[0]

    # Results -----------------------------------------------------------------------------------
    def load_cache(self) -> None:
        """Read back the finished jobs (resume): their latents now, their audio when it is written."""
        for key in self.all_keys():
            path = self._path(key)
            if path.exists():
                with np.load(path, allow_pickle=False) as f:
                    self._keep_latents(JobResult.from_arrays(key, f))
                self.done.add(key)

    def _keep_latents(self, result: JobResult) -> None:
        if result.key[0] == "segment":
            if result.head is not None:
                self.heads[result.key[1]] = result.head
            if result.tail is not None:
                self.tails[result.key[1]] = result.tail

    def _store(self, result: JobResult) -> None:
        self.cache.mkdir(exist_ok=True)
        path = self._path(result.key)
        tmp = path.with_name(path.name + ".tmp.npz")
        with _signals_deferred():
            np.savez(tmp, **result.to_arrays())
            tmp.replace(path)  # atomic: a stop never leaves half a result
        self._keep_latents(result)
        self.done.add(result.key)

    def result(self, key) -> JobResult:
        with np.load(self._path(key), allow_pickle=False) as f:
            return JobResult.from_arrays(key, f)

    def forget_finished(self) -> None:
        """Remove cached results nothing needs any more."""
        for key in list(self.done):
            if not self._needed(key):
                self._path(key).unlink(missing_ok=True)

    # The loop ----------------------------------------------------------------------------------
    def run(self, write_ready) -> None:
        """Make every needed job; after each result, `write_ready()` writes what can be written."""
        write_ready()
        while any(self._needed(k) and k not in self.done for k in self.all_keys()):
            while self.executor.free > 0:
                key = self._next_job()
                if key is None:
                    break
                self.executor.submit(self._job(key), self.settings)
                self.running.add(key)
            if not self.running:
                raise RuntimeError("segmented render: nothing running and nothing ready (a bug: please report it)")
            for key, outcome in self.executor.poll(timeout=0.5):
                self.running.discard(key)
                if isinstance(outcome, BaseException):
                    self._failed(key, outcome)
                elif key not in self.done:  # a second result for the same job is dropped
                    self._store(outcome)
                    if self.on_result:
                        self.on_result(key)
            write_ready()

    def _failed(self, key, exc: BaseException) -> None:
        if isinstance(exc, SoundscapeError):
            raise exc  # the scene or the model: the same on every try
        n = self.tries.get(key, 0) + 1
        self.tries[key] = n
        if n > self.max_retries:
            raise WorkerFailed(f"{key[0]} {key[1]} failed {n} times; the last: {exc}")
        kind = "worker lost" if isinstance(exc, WorkerLost) else "error"
        self.log(f"{kind}: {exc}; running {key[0]} {key[1]} again (try {n + 1} of {self.max_retries + 1})")


def render_segmented(settings: Settings, out: str | Path, duration_s: float, executor, *, out_rate: int,
                     channels: int, loop: bool = False, timeline: str | Path | None = None, resume: bool = False,
                     quiet: bool = False, segment_chunks: int | None = None, max_retries: int = 3) -> RenderResult:
    """Render `duration_s` (or a loop of exactly that length) from segments made by `executor`."""
    out = check_output_path(out)
    plan, total = make_plan(settings, duration_s, out_rate, loop, segment_chunks)
    finger = fingerprint(settings, plan, duration_s, out_rate, channels)
    state_file, cache = state_path(out), cache_dir(out)
    driver = Driver(settings, plan, out, executor, max_retries=max_retries)
    chain = Chain.of(settings, out_rate, channels)
    started = time.perf_counter()
    if resume:
        _check_resume(state_file, out, finger, loop)
        with np.load(state_file, allow_pickle=False) as f:
            driver.written = int(f["written"])
            if not loop:
                chain.state = ChainState.from_arrays(f)
        driver.load_cache()
    else:
        state_file.unlink(missing_ok=True)
        shutil.rmtree(cache, ignore_errors=True)

    bar = _progress(duration_s, quiet)
    driver.log = (lambda msg: bar.write(msg, file=sys.stderr)) if bar else (lambda msg: print(msg, file=sys.stderr))
    timeline_f = open(timeline, "a" if resume else "w", encoding="utf-8") if timeline else None
    progress = _Progress(driver, bar, duration_s, executor.size)
    interrupted = True
    try:
        for p in driver.pieces:  # what an earlier run made already
            if driver.job_of(p) in driver.done or p.index < driver.written:
                progress.piece(driver.job_of(p), p.chunk or 0, made_now=False)
        driver.on_result = progress.job
        executor.on_progress = progress.piece
        if loop:
            _state(state_file, finger, driver.written, None)
            if not out.exists():
                GrowingAudioFile(out, out_rate, channels).close()  # a valid (empty) file from the start
            driver.run(lambda: None)
            frames = _write_loop(driver, chain, out, total, timeline_f)
        else:
            frames = _write_stream(driver, chain, out, total, state_file, finger, timeline_f, resume)
        interrupted = False
    finally:
        if bar:
            bar.close()
        executor.close()
        if interrupted and timeline_f:
            timeline_f.close()
    state_file.unlink(missing_ok=True)
    shutil.rmtree(cache, ignore_errors=True)
    loudness = _measure_file(out)
    if timeline_f:
        if loudness:
            target = settings.scene.output.loudness_lufs + 20 * math.log10(max(settings.scene.output.volume, 1e-6))
            timeline_f.write(json.dumps({"summary": {"duration_s": round(frames / out_rate, 3),
                                                     "target_lufs": round(target, 2), **loudness}}) + "\n")
        timeline_f.close()
    return RenderResult(path=out, frames=frames, rate=out_rate, seconds_generated=progress.generated,
                        wall_s=time.perf_counter() - started, interrupted=False, loudness=loudness,
                        stage_s=chain.chain.stage_s)


class _Progress:
    """The one progress bar, in seconds of the file: a piece counts once, as its worker reports it."""

    def __init__(self, driver: Driver, bar, duration_s: float, workers: int):
        self.bar, self.workers = bar, workers
        self.piece_s: dict = {}  # job -> seconds of audio of each of its pieces
        for p in driver.pieces:
            self.piece_s.setdefault(driver.job_of(p), []).append((p.emit[1] - p.emit[0]) * FRAME_S)
        self.scale = duration_s / max(sum(map(sum, self.piece_s.values())), 1e-9)
        self.counted: set = set()
        self.generated = 0.0  # seconds made by this run (the real-time factor)
        self.shown = 0.0  # seconds of the file the bar shows done
        self.started = time.perf_counter()

    def piece(self, key, k: int, made_now: bool = True) -> None:
        if (key, k) in self.counted:
            return
        self.counted.add((key, k))
        seconds = self.piece_s[key][k]
        self.generated += seconds if made_now else 0.0
        if self.bar:
            rtf = self.generated / max(time.perf_counter() - self.started, 1e-9)
            self.bar.set_postfix_str(f"{self.workers} worker{'s' if self.workers > 1 else ''}, "
                                     f"{rtf:.2f}x real time", refresh=False)
            self.shown += seconds * self.scale
            advance(self.bar, self.shown)

    def job(self, key) -> None:
        for k in range(len(self.piece_s[key])):
            self.piece(key, k)


def _check_resume(state_file: Path, out: Path, finger: str, loop: bool) -> None:
    if not state_file.exists() or (not loop and not out.exists()):
        raise UsageError(f"--resume: no saved state {state_file} beside {out}; render without --resume")
    with np.load(state_file, allow_pickle=False) as f:
        if "fingerprint" not in f:
            raise UsageError(f"--resume: {out} was started as a plain render; resume it without "
                             f"--workers, --ray and --loop")
        if str(f["fingerprint"]) != finger:
            raise UsageError(f"--resume: {state_file} is from a different render (scene, duration, --loop, "
                             f"--seed, --steps, --quality, --model, --dtype or --runtime changed); render again "
                             f"without --resume")


def _state(path: Path, finger: str, written: int, chain: Chain | None) -> None:
    arrays = {"fingerprint": np.array(finger), "written": np.array(written)}
    if chain is not None:
        arrays.update(chain.state.to_arrays())
    tmp = Path(str(path) + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _row(plan: Plan, piece: Piece, row: dict) -> dict:
    start, end = ((e - plan.origin) * FRAME_S for e in piece.emit)
    out = {"chunk": piece.index, "start_s": round(start, 4), "end_s": round(end, 4), "segment": piece.segment}
    if piece.bridge:
        out["bridge"] = True
    return {**out, **row}


def _write_stream(driver: Driver, chain: Chain, out: Path, total: int, state_file: Path, finger: str,
                  timeline_f, resume: bool) -> int:
    """Write pieces in timeline order as their jobs finish; save the chain's state after each."""
    done = min(chain.state.samples_out, total) if resume else 0
    partial = out.with_name(out.name + ".partial")
    if resume:
        out.replace(partial)
    with GrowingAudioFile(out, chain.chain.out_rate, chain.chain.channels) as f:
        if resume:
            copy_prefix(partial, f, done)
            partial.unlink()
        loaded: dict = {}

        def write_ready():
            while driver.written < len(driver.pieces) and f.frames < total:
                piece = driver.pieces[driver.written]
                key = driver.job_of(piece)
                if key not in driver.done:
                    return
                if key not in loaded:
                    loaded.clear()  # pieces come in job order: one job's audio in memory at a time
                    loaded[key] = driver.result(key)
                res = loaded[key]
                i = piece.chunk if not piece.bridge else 0
                audio = chain.push(res.audio[i], res.presence[i])
                take = audio[: total - f.frames]
                # The audio and the state that resumes after it are written as one step.
                with _signals_deferred():
                    f.write(take)
                    driver.written += 1
                    _state(state_file, finger, driver.written, chain)
                if timeline_f:
                    timeline_f.write(json.dumps(_row(driver.plan, piece, res.rows[i])) + "\n")
                    timeline_f.flush()
            driver.forget_finished()

        driver.run(write_ready)
        if f.frames < total:
            raise RuntimeError(f"segmented render: the plan gave {f.frames} of {total} samples "
                               f"(a bug: please report it)")
        return f.frames


def _write_loop(driver: Driver, chain: Chain, out: Path, total: int, timeline_f) -> int:
    """Join the whole cycle, finish it cyclically (OutputChain.finish_cycle) and write it in one go.

    The joins are the chain's joiner's; only the first piece is special: the loop starts after the
    wrap seam, so segment 0's first crossfade waits for the cycle's end."""
    plan, out_chain = driver.plan, chain.chain
    joiner = out_chain.joiner
    blocks, join, head, rows = [], JoinState(), None, []
    results: dict = {}
    for piece in driver.pieces:
        key = driver.job_of(piece)
        if key not in results:
            results.clear()
            results[key] = driver.result(key)
        res = results[key]
        i = piece.chunk if not piece.bridge else 0
        if piece.index == 0:
            new, head, join = joiner.open_cycle(res.audio[i])
        else:
            new, join = joiner.join(res.audio[i], join)
        blocks.append((new, res.presence[i]))
        rows.append(_row(plan, piece, res.rows[i]))
    blocks.append((joiner.close_cycle(join, head), blocks[-1][1]))  # the wrap seam, the file's last x samples
    joined = sum(len(b) for b, _ in blocks)
    if joined != plan.loop_frames * SAMPLES_PER_FRAME:
        raise RuntimeError(f"loop: joined {joined} samples for a cycle of {plan.loop_frames} frames (a bug)")
    audio = out_chain.finish_cycle(blocks)
    with _signals_deferred(), GrowingAudioFile(out, out_chain.out_rate, out_chain.channels) as f:
        for i in range(0, total, 1 << 20):
            f.write(audio[i:i + (1 << 20)])
        frames = f.frames
    if timeline_f:
        for row in rows:
            timeline_f.write(json.dumps(row) + "\n")
    return frames


# From the command line --------------------------------------------------------------------------

def render_with(opts: RenderOptions) -> RenderResult:
    """`render` with --loop, --workers or --ray: resolve the settings once, start the workers, render."""
    from ..model.loading import choose_device, load_model, resolve_source
    from ..model.source import looks_like_path
    from ..scene.quality import resolve
    from ..stream.scene_stream import chunk_spec
    from .workers import InProcessExecutor, LocalExecutor, RayExecutor, use_model, worker_threads

    scene, m, out = opts.scene, opts.model, opts.output
    rate, channels = scene.output.sample_rate, scene.output.channels
    loop_s = loop_frames_for(opts.duration) * FRAME_S if opts.loop else None
    model = m.model_id(scene.model)
    if looks_like_path(model):
        model = str(Path(model).expanduser().resolve())  # workers (and Ray nodes) may start elsewhere
    executor = None
    try:
        if opts.ray:
            executor = RayExecutor(opts.ray, max_in_flight=opts.workers)
            device_type = executor.device
        else:
            resolve_source(model)  # a bad --model fails here (exit 3), before any worker starts
            device_type = choose_device(m.device).type
        # The quality preset and steps are resolved here, once, for every worker ("auto" depends on the device).
        resolved = resolve(scene.generation, m.quality, device_type, m.steps)
        settings = Settings(scene=scene, seed=scene.seed if m.seed is None else m.seed, model=model,
                            spec=chunk_spec(resolved.generation), quality=resolved.preset, device=m.device,
                            dtype=m.dtype, compile_mode=m.compile, runtime=m.runtime, loop_s=loop_s,
                            day_start=opts.start_time)
        plan, _ = make_plan(settings, opts.duration, rate, opts.loop)  # a loop too short fails here
        if opts.resume:
            _check_resume(state_path(out), out, fingerprint(settings, plan, opts.duration, rate, channels), opts.loop)
        if executor is None and opts.workers:
            executor = LocalExecutor(opts.workers, threads=worker_threads(device_type))
        elif executor is None:  # --loop alone: this process makes the pieces, one after another
            use_model(settings, load_model(model, device=m.device, dtype=m.dtype, quiet=opts.quiet,
                                           compile_mode=m.compile, runtime=m.runtime))
            executor = InProcessExecutor()
        return render_segmented(settings, out, opts.duration, executor, out_rate=rate, channels=channels,
                                loop=opts.loop, timeline=opts.timeline, resume=opts.resume, quiet=opts.quiet)
    finally:
        if executor is not None:
            executor.close()
