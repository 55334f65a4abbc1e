"""Where a segmented render's pieces are made: this process, local worker processes, or Ray tasks.

A job is one segment (its K chunks, continuing each other from a fresh start) or one bridge
(inpainted between the latents that end one segment and start the next). `run_job` makes it and
returns raw 16 kHz decodes and the latents that bridges need; everything after (joining,
loudness, resampling, writing) is the driver's, in timeline order (segmented.py). A job's result
depends only on the job and the settings, never on the worker that ran it, so any worker may run
any job and a job that failed may simply run again.

Executors, one interface: `free` (how many more jobs it takes now), `submit(job, settings)`,
`poll(timeout) -> [(key, JobResult or exception)]`, `close()`.
  InProcess   runs a job inside `poll` (a loop render without --workers).
  Local       N spawned processes; each loads the model once, on its first job, and keeps it. A
              process that dies is reported as WorkerLost for its job and replaced.
  Ray         one Ray task per job on an existing cluster; the model is cached per Ray worker
              process, so a worker that runs many tasks loads it once. GPUs are requested when
              the cluster has them.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import loop_file as loop
from ..errors import SoundscapeError, UsageError
from ..units import unreachable
from ..generator.chunks import ChunkSpec, GeneratorState
from ..scene import Scene
from ..model.geometry import FRAME_S
from .plan import PlannedBridge, PlannedSegment


class WorkerLost(RuntimeError):
    """The process or Ray worker running a job died; the job runs again elsewhere."""


class WorkerFailed(SoundscapeError):
    """A job failed on every try (exit code 1)."""


@dataclass(frozen=True)
class Settings:
    """What every worker needs to make any piece, resolved once by the driver."""

    scene: Scene
    seed: int  # the scene seed (or --seed)
    model: str
    spec: ChunkSpec  # chunk geometry and denoising (steps, guidance) as the driver resolved them
    quality: str  # the preset name the spec came from (for the worker's SceneStream)
    device: str = "auto"
    dtype: str = "auto"
    compile_mode: str | None = None
    runtime: str = "torch"  # or openvino (model/loading.py)
    threads: int | None = None  # torch intra-op threads in the worker; None: torch's default
    loop_s: float | None = None  # a loop's length: weights ease back to the start over its last chunk
    day_start: float = 0.0  # a clock scene's time of day at the start (render --start-time)

    def model_key(self) -> tuple:
        return (self.model, self.device, self.dtype, self.compile_mode, self.runtime)


@dataclass(frozen=True)
class SegmentJob:
    segment: PlannedSegment
    head: int  # latent frames of its first chunk a bridge will end on (0: none)
    tail: bool  # whether a bridge follows (return the last chunk's overlap latents)

    @property
    def key(self) -> tuple[str, int]:
        return ("segment", self.segment.index)


@dataclass(frozen=True)
class BridgeJob:
    bridge: PlannedBridge
    seed: int  # the seed family of the segment it follows; the bridge is that segment's next chunk
    chunk_index: int
    head: np.ndarray  # (1, 8, O, F): the end of the segment before
    tail: np.ndarray  # (1, 8, O_b, F): the start of the segment after

    @property
    def key(self) -> tuple[str, int]:
        return ("bridge", self.bridge.index)


@dataclass
class JobResult:
    key: tuple[str, int]
    audio: list[np.ndarray]  # per piece: its decode window, float32 at 16 kHz
    presence: list[float]
    rows: list[dict]  # per piece: seed, steps, gen_s, weights, watchdog scores
    head: np.ndarray | None = None
    tail: np.ndarray | None = None
    worker: str = ""  # who made it (pid or Ray node), for the log only

    def to_arrays(self) -> dict[str, np.ndarray]:
        import json

        arrays = {f"audio_{i}": a for i, a in enumerate(self.audio)}
        arrays["presence"] = np.asarray(self.presence, np.float64)
        arrays["rows"] = np.array(json.dumps(self.rows))
        if self.head is not None:
            arrays["head"] = self.head
        if self.tail is not None:
            arrays["tail"] = self.tail
        return arrays

    @classmethod
    def from_arrays(cls, key, f) -> "JobResult":
        import json

        n = len(f["presence"])
        return cls(key=key, audio=[f[f"audio_{i}"] for i in range(n)], presence=[float(p) for p in f["presence"]],
                   rows=json.loads(str(f["rows"])), head=f["head"] if "head" in f else None,
                   tail=f["tail"] if "tail" in f else None)


# Making pieces (runs in whichever process holds the model) -----------------------------------------

_MODELS: dict = {}
_MAKERS: dict = {}


def _model(settings: Settings):
    from ..model.loading import load_model

    key = settings.model_key()
    if key not in _MODELS:
        # A worker draws no bars of its own: the driver's one progress bar covers them all.
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
        _MODELS[key] = load_model(settings.model, device=settings.device, dtype=settings.dtype, quiet=True,
                                  compile_mode=settings.compile_mode, runtime=settings.runtime)
    return _MODELS[key]


def use_model(settings: Settings, model) -> None:
    """Make `model` the one jobs with these settings use (a process that has it loaded already)."""
    _MODELS[settings.model_key()] = model


class PieceMaker:
    """Chunks and bridges at given places of the timeline, through the stream's watchdog."""

    def __init__(self, model, settings: Settings):
        from ..model.geometry import MODEL_RATE
        from ..stream.scene_stream import SceneStream

        self.settings = settings
        self.stream = SceneStream(model, settings.scene, steps=settings.spec.denoise.steps, seed=settings.seed,
                                  quality=settings.quality, out_rate=MODEL_RATE, channels=1)

    def run(self, job, progress=None) -> JobResult:
        """Make a job; `progress(k)` is called as its piece k is done."""
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        if isinstance(job, SegmentJob):
            return self._segment(job, progress)
        return self._bridge(job)

    def _piece(self, gen: GeneratorState, seed: int, start: int, spec: ChunkSpec, plan_hop: int):
        from ..stream.scene_stream import checked_chunk

        st = self.settings
        t = (start + plan_hop / 2) * FRAME_S  # as a plain render: half a hop into the piece
        chunk_s = spec.frames * FRAME_S
        by_prompt = loop.prompt_weights(st.scene, t, st.loop_s, chunk_s, st.day_start)
        t0 = time.perf_counter()
        result, verdict, rejected, presence = checked_chunk(self.stream, gen, seed, by_prompt, spec)
        row = {"weights": loop.weights(st.scene, t, st.loop_s, chunk_s, st.day_start), "seed": result.seed,
               "steps": spec.denoise.steps, "gen_s": round(time.perf_counter() - t0, 4)}
        if verdict is not None:
            row["quality"] = verdict.scores
        if rejected:
            row["rejected"] = rejected
        return result, presence, row

    def _segment(self, job: SegmentJob, progress=None) -> JobResult:
        seg, spec = job.segment, self.settings.spec
        gen = GeneratorState()
        audio, presence, rows, head = [], [], [], None
        for k in range(seg.chunks):
            result, p, row = self._piece(gen, seg.seed, seg.start + k * spec.hop, spec, spec.hop)
            if k == 0 and job.head:
                head = result.latents[:, :, :job.head].numpy().copy()
            audio.append(result.audio.numpy())
            presence.append(p)
            rows.append(row)
            gen = result.state
            if progress and k < seg.chunks - 1:
                progress(k)
        tail = gen.tail_latents.numpy().copy() if job.tail else None
        return JobResult(job.key, audio, presence, rows, head=head, tail=tail)

    def _bridge(self, job: BridgeJob) -> JobResult:
        from dataclasses import replace

        b, spec = job.bridge, self.settings.spec
        bspec = ChunkSpec(frames=b.frames, overlap=spec.overlap, edge=spec.edge, xfade=spec.xfade,
                          denoise=replace(spec.denoise, frames=b.frames))
        gen = GeneratorState(chunk_index=job.chunk_index, tail_latents=torch.from_numpy(job.head),
                             known_tail=torch.from_numpy(job.tail))
        result, p, row = self._piece(gen, job.seed, b.start, bspec, spec.hop)
        return JobResult(job.key, [result.audio.numpy()], [p], [row])


def run_job(settings: Settings, job, progress=None) -> JobResult:
    """Make one job's pieces in this process (the model and maker are cached per process)."""
    key = repr(settings)  # the scene, seed, spec and model: one maker per distinct render
    if key not in _MAKERS:
        _MAKERS.clear()  # one scene at a time per process; the model itself stays cached
        _MAKERS[key] = PieceMaker(_model(settings), settings)
    result = _MAKERS[key].run(job, progress)
    result.worker = f"pid {os.getpid()}"
    return result


def _portable(exc: BaseException) -> BaseException:
    """An exception that survives pickling to the driver: ours as they are, others as RuntimeError."""
    import pickle

    if isinstance(exc, SoundscapeError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:
            pass
    return RuntimeError(f"{type(exc).__name__}: {exc}")


# In this process ----------------------------------------------------------------------------------

class InProcessExecutor:
    """Runs each job in this process when polled: one job at a time, the model already loaded here."""

    def __init__(self):
        self._queue: list = []
        self.on_progress = None  # (key, piece k of the job) as each piece is done

    @property
    def free(self) -> int:
        return 0 if self._queue else 1

    @property
    def size(self) -> int:
        return 1

    def submit(self, job, settings: Settings) -> None:
        self._queue.append((job, settings))

    def poll(self, timeout: float | None = None) -> list:
        if not self._queue:
            return []
        job, settings = self._queue.pop(0)
        progress = (lambda k: self.on_progress(job.key, k)) if self.on_progress else None
        try:
            return [(job.key, run_job(settings, job, progress))]
        except SoundscapeError as exc:
            return [(job.key, exc)]

    def close(self) -> None:
        self._queue.clear()


# Local processes ----------------------------------------------------------------------------------

def _worker_main(conn) -> None:
    """A local worker: take (settings, job); send ("progress", k) as piece k is done, then ("done", result)
    or ("error", exception)."""
    # Ctrl-C goes to the whole process group: the driver stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import warnings

    warnings.filterwarnings("ignore")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if msg is None:
            return
        settings, job = msg
        try:
            reply = ("done", run_job(settings, job, lambda k: conn.send(("progress", k))))
        except BaseException as exc:  # reported to the driver, which decides whether to retry
            reply = ("error", _portable(exc))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Slot:
    process: object
    conn: object
    job: tuple | None = None


class LocalExecutor:
    """N worker processes on this machine (spawned: safe with torch's threads).

    `threads`: torch threads per worker; `on_start(pid, key)` is called as a job is handed to a
    process (the tests use it to kill one mid-job).
    """

    def __init__(self, n: int, threads: int | None = None, on_start=None):
        import multiprocessing as mp

        if n < 1:
            raise UsageError(f"--workers: expected at least 1, got {n}")
        self._ctx = mp.get_context("spawn")
        self.threads = threads
        self.on_start = on_start
        self.on_progress = None  # (key, piece k of the job) as each piece is done
        self._slots = [self._spawn(i) for i in range(n)]

    @property
    def size(self) -> int:
        return len(self._slots)

    def _spawn(self, i: int) -> _Slot:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child,), name=f"soundscape-worker-{i}", daemon=True)
        proc.start()
        child.close()
        return _Slot(proc, parent)

    @property
    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots]

    @property
    def free(self) -> int:
        return sum(1 for s in self._slots if s.job is None)

    def submit(self, job, settings: Settings) -> None:
        slot = next(s for s in self._slots if s.job is None)
        if self.threads and not settings.threads:
            from dataclasses import replace

            settings = replace(settings, threads=self.threads)
        try:
            slot.conn.send((settings, job))
        except (BrokenPipeError, OSError):  # it died while idle: a new one takes the job
            i = self._slots.index(slot)
            slot.conn.close()
            slot = self._slots[i] = self._spawn(i)
            slot.conn.send((settings, job))
        slot.job = job.key
        if self.on_start:
            self.on_start(slot.process.pid, job.key)

    def poll(self, timeout: float | None = None) -> list:
        from multiprocessing.connection import wait

        busy = [s for s in self._slots if s.job is not None]
        if not busy:
            return []
        ready = set(wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout))
        out = []
        for i, s in enumerate(self._slots):
            if s.job is None or (s.conn not in ready and s.process.sentinel not in ready):
                continue
            key, msg = s.job, None
            try:
                while s.conn.poll():
                    msg = s.conn.recv()
                    if msg[0] != "progress":
                        break
                    if self.on_progress:
                        self.on_progress(key, msg[1])
                    msg = ("progress",)
            except (EOFError, OSError):
                msg = None
            if msg == ("progress",):
                continue  # still working on it
            if msg is None:
                # Died mid-job (killed, out of memory, a crash in native code): start a new process.
                s.process.join(timeout=5)
                out.append((key, WorkerLost(f"worker process {s.process.pid} died (exit code "
                                            f"{s.process.exitcode}) while making {key[0]} {key[1]}")))
                s.conn.close()
                self._slots[i] = self._spawn(i)
                continue
            s.job = None
            out.append((key, msg[1]))
        return out

    def close(self) -> None:
        for s in self._slots:
            try:
                s.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 2.0
        for s in self._slots:
            if s.job is not None:
                s.process.terminate()  # mid-job: the job is lost, and resume makes it again
            s.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if s.process.is_alive():
                s.process.kill()
                s.process.join(timeout=5)
            s.conn.close()
        self._slots = []


def worker_threads(device_type: str) -> int | None:
    """torch threads per worker: one on a CPU, whatever the worker count; torch's default on a GPU.

    Why one: torch's CPU kernels split their sums by thread, so 1 and 2 threads differ in the
    last bits (measured: up to 1e-6), and the file must not depend on how many workers share the
    cores. Processes scale as well as threads for this work: use --workers equal to the cores.
    """
    return 1 if device_type == "cpu" else None


# Ray ---------------------------------------------------------------------------------------------

def _ray_job(settings: Settings, job) -> JobResult:
    try:
        result = run_job(settings, job)
    except SoundscapeError:
        raise
    import ray

    result.worker = f"node {ray.get_runtime_context().get_node_id()[:8]} pid {os.getpid()}"
    return result


class RayExecutor:
    """Jobs as Ray tasks on a running cluster (`address`: host:port, or auto for the local one).

    With GPUs in the cluster each task asks for one (and runs on cuda); otherwise for
    `cpus_per_task` CPUs, with as many torch threads. `max_in_flight` caps the tasks submitted at
    once (default: what the cluster can run at a time).
    """

    def __init__(self, address: str | None, cpus_per_task: int = 1, max_in_flight: int | None = None):
        try:
            import ray
        except ImportError:
            raise UsageError('--ray needs Ray, an optional extra: pip install -e ".[ray]"') from None
        self.ray = ray
        if not ray.is_initialized():
            why = unreachable(address) if address else None
            if why:
                raise UsageError(f"--ray {address}: nothing answers there ({why}); start a cluster with "
                                 f"`ray start --head` and pass the address it prints, or --ray auto")
            try:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UsageError(f"--ray {address}: cannot reach a Ray cluster ({str(exc).splitlines()[0]}); "
                                 f"start one with `ray start --head` or pass its address") from None
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus_per_task = cpus_per_task
        if self.gpus:
            self._options = {"num_gpus": 1, "num_cpus": 1, "max_retries": 0}
            self.device = "cuda"
            slots = self.gpus
        else:
            self._options = {"num_cpus": cpus_per_task, "max_retries": 0}
            self.device = "cpu"
            slots = max(1, int(resources.get("CPU", 1)) // cpus_per_task)
        self.size = max_in_flight or slots
        self._remote = ray.remote(_ray_job)
        self._refs: dict = {}  # ObjectRef -> job key
        self.on_progress = None  # unused: a Ray task reports when it is done, not per piece

    @property
    def free(self) -> int:
        return self.size - len(self._refs)

    def submit(self, job, settings: Settings) -> None:
        from dataclasses import replace

        threads = None if self.gpus else self.cpus_per_task
        settings = replace(settings, device=self.device if settings.device == "auto" else settings.device,
                           threads=settings.threads or threads)
        ref = self._remote.options(**self._options).remote(settings, job)
        self._refs[ref] = job.key

    def poll(self, timeout: float | None = None) -> list:
        ray = self.ray
        if not self._refs:
            return []
        done, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            key = self._refs.pop(ref)
            try:
                out.append((key, ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:  # the job itself raised
                cause = getattr(exc, "cause", None)
                out.append((key, cause if isinstance(cause, SoundscapeError) else RuntimeError(str(exc))))
            except ray.exceptions.RayError as exc:  # a worker or node died, out of memory, ...
                out.append((key, WorkerLost(f"Ray lost the worker making {key[0]} {key[1]}: {type(exc).__name__}")))
        return out

    def close(self) -> None:
        for ref in list(self._refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        self._refs.clear()
