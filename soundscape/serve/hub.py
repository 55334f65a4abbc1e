"""The listeners of one model: who is connected, the shared generation loop, and who may join.

One GenerationLoop (the loop `play` uses) carries every listener's stream in its batches. A
listener joins at the next batch boundary and leaves at once; prompts are encoded once for all
listeners (one PromptEncoder). `join` refuses a listener past `max_listeners` or past what the
measured batches say stays real time (admission.py): serve answers that with 503.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
import weakref
from pathlib import Path

from ..generator.conditioning import PromptEncoder
from ..errors import UsageError
from ..stream.budget import Budget
from ..stream.first_sound import FirstSound
from ..stream.generation_loop import BatchCost, GenerationLoop, short_error
from ..memory import give_back_heap
from ..scene import Scene, load_scene
from ..stream.scene_stream import SceneStream
from . import admission
from .listener import Listener

CALIBRATION_BATCHES = (1, 2)  # measured at start, so admission knows the cost before anyone joins


class Full(Exception):
    """No slot for another listener: (reason, seconds after which to try again)."""

    def __init__(self, reason: str, retry_after: int):
        super().__init__(reason)
        self.retry_after = retry_after


def load_scenes(folder: str | Path) -> dict[str, tuple[Path, Scene]]:
    """Every scene file in `folder`, by name (the file's stem). Raises SceneError (exit 2) on a bad one."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        raise UsageError(f"--scenes: no scene files (*.yaml) in {folder}; point it at a folder of scenes")
    return {f.stem: (f, load_scene(f)) for f in files}


ENCODER_HOLD_S = 300.0


class Hub:
    def __init__(self, model, scenes: dict[str, tuple[Path, Scene]], *, max_listeners: int = 8,
                 quality: str | None = None, steps: int | None = None, out_rate: int | None = None,
                 budget: float = 100.0):
        self.model = model
        self.scenes = scenes
        self.max_listeners = max_listeners
        self.quality, self.steps, self.out_rate = quality, steps, out_rate
        # Text encoders (1.2 GB in bf16) stay loaded while listeners bring new prompts, and are released once
        # none has for ENCODER_HOLD_S; the prompts met so far stay in memory and in the prompt cache.
        self.encoder = PromptEncoder(model, hold_s=ENCODER_HOLD_S)
        # The shortest hop of any scene: the real-time budget a batch must fit in.
        self.hop_s = min(self._stream(name, 0).hop_s for name in scenes)
        # --budget: the loop rests between batches and runs at the lowest priority (stream/budget.py).
        self.loop = GenerationLoop(max_batch=max_listeners, budget=Budget(budget))
        self.listeners: dict[str, Listener] = {}
        self.stopping = False  # the server is shutting down: streams end
        self.refused = 0  # 503s
        self.joined = 0
        self._lock = threading.Lock()
        # Each listener's stream and buffers, weakly (by number): what `in_memory` counts. A gone listener's
        # should be freed at once (Listener.close, StreamSlot.close break the cycles that kept them).
        self._parts: dict[int, tuple[weakref.ref, ...]] = {}

    # Streams ------------------------------------------------------------------------------------------
    def _stream(self, scene_name: str, seed: int | None) -> SceneStream:
        _, scene = self.scenes[scene_name]
        return SceneStream(self.model, scene, seed=secrets.randbits(31) if seed is None else seed,
                           steps=self.steps, quality=self.quality, encoder=self.encoder, out_rate=self.out_rate)

    def capacity(self) -> int:
        return admission.capacity(list(self.loop.costs), self.hop_s, self.max_listeners)

    def calibrate(self, quiet: bool = False) -> None:
        """Time a batch of each size in CALIBRATION_BATCHES (a first chunk each, so the worst case).

        These are serve's first chunks: a model that makes no usable sound in them is tried on, one stream at
        a time, under play's rule (stream/first_sound.py), and serve stops with NoSoundError (exit code 7)
        before it listens, rather than admit listeners to silence."""
        from ..stream.scene_stream import next_segments

        name = next(iter(self.scenes))
        qc = self.scenes[name][1].quality_check
        silence_db = qc.silence_db if qc.enabled else None  # checks off: quiet audio is no failure
        first = FirstSound()
        # A batch of one first, untimed: a process's first call pays once for what later calls reuse (oneDNN's
        # primitives, OpenVINO's first inference, the allocator's first pages). Timed, it halved the tiny
        # model's measured speed on an AVX2 EPYC (0.50x: one listener admitted where four stay in real time).
        for k, n in enumerate((1,) + CALIBRATION_BATCHES):
            if n > self.max_listeners:
                break
            streams = [self._stream(name, k + j) for j in range(n)]
            first.trying()
            t0 = time.perf_counter()
            outs = next_segments(streams)
            seconds = time.perf_counter() - t0
            if k:
                self.loop.costs.append(BatchCost(n, seconds, streams[0].hop_s))
            self._judge_first(first, outs, silence_db)
        seed = len(CALIBRATION_BATCHES) + 2
        while not first.sounded:
            if first.gave_up is not None:
                raise first.gave_up
            seed += 1
            self._judge_first(first, next_segments([self._stream(name, seed)]), silence_db)
        cap = self.capacity()
        rtf = admission.per_stream_rtf(list(self.loop.costs)[:1])
        if not quiet:
            print(f"serve: one stream generates at {rtf:.2f}x real time; admitting up to {cap} listener"
                  f"{'s' if cap != 1 else ''} (--max-listeners {self.max_listeners})", file=sys.stderr)
        if rtf < 1.0 and not quiet:
            print("serve: slower than real time even for one listener: listeners will hear earlier material "
                  "between chunks (try --quality eco, a GPU, or --ray with more machines)", file=sys.stderr)

    @staticmethod
    def _judge_first(first: FirstSound, outs: list, silence_db: float | None) -> None:
        for out in outs:
            if isinstance(out, BaseException):
                first.failed(short_error(out))
            else:
                first.made(out.audio, out.weights, silence_db)

    def start(self) -> None:
        self.loop.start()

    def stop(self) -> None:
        self.stopping = True
        self.loop.stop.set()

    # Listeners ----------------------------------------------------------------------------------------
    def join(self, scene_name: str, seed: int | None, fmt: str, width: float | None = None) -> Listener:
        """A new listener of `scene_name`; `width` (0..1): its stereo width from the start (else the scene's)."""
        with self._lock:
            if len(self.listeners) >= self.max_listeners:
                self.refused += 1
                raise Full(f"all {self.max_listeners} listener slots are taken (--max-listeners)", 10)
            cap = self.capacity()
            if len(self.listeners) >= cap:
                self.refused += 1
                raise Full(f"the generator keeps {cap} listener{'s' if cap != 1 else ''} in real time on this "
                           f"machine, and all are listening", 30)
            # The id is the listener's key to its own stream's controls: 128 random bits, shown to it alone.
            # Its number is public (the metrics' label).
            stream = self._stream(scene_name, seed)
            if width is not None:  # before the loop has the stream: no chunk is made at the scene's width
                stream.set_width(width)
            listener = Listener(secrets.token_urlsafe(16), scene_name, stream, fmt, number=self.joined + 1,
                                budget=self.loop.budget)
            self.listeners[listener.id] = listener
            self.joined += 1
            self._parts[listener.number] = (weakref.ref(listener.playback), weakref.ref(stream))
        self.loop.add(listener.gen)
        return listener

    def leave(self, listener: Listener) -> None:
        """Free the listener's slot at once (idempotent; on the event loop thread, like its encoder)."""
        if listener.gen is not None:  # None: released by an earlier call
            self.loop.remove(listener.gen)
        with self._lock:
            gone = self.listeners.pop(listener.id, None)
        if gone is not None:
            listener.close()
            listener.release()
            # Its ring, latents and decode windows were a few MB on several threads' arenas: without
            # this, 300 listeners grew the server by 170 MB (fragmented free pages glibc keeps).
            give_back_heap()

    def in_memory(self) -> int:
        """Listeners whose stream or buffers are still in memory: the connected ones, and any gone one whose
        audio something still holds (a leak: its pool alone is 23 MB). Equal to `len(listeners)` when healthy,
        within a batch of a leave (the loop may be generating its last chunk)."""
        with self._lock:
            gone = [n for n, refs in self._parts.items() if all(r() is None for r in refs)]
            for n in gone:
                del self._parts[n]
            return len(self._parts)
