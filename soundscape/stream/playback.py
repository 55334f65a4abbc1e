"""The consumer side of one stream, built the same way for `play` and for each `serve` listener.

  generator (StreamSlot, generation_loop.py) -> queue of one -> Feeder (crossfades, cover-ups from
  earlier material) -> RingBuffer -> whatever plays it: play's Player (the PortAudio callback) or a
  serve listener's `PulledClock` (moved as its HTTP response takes audio off the ring).

`Playback` owns the ring, the queue, the feeder and the slot, and says how far ahead the buffer is
(`ahead`, which the step controller reads on the generator thread) and what the status shows. Its
owner's thread (play's main thread, serve's event loop) calls `pump`; nothing here blocks.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Callable, Protocol

from ..audio.feeder import MARGIN_S, XFADE_S, Feeder
from ..audio.ringbuffer import RingBuffer


class Clock(Protocol):
    """What plays the ring, as the status and the night clock read it: frames taken so far, blocks short."""

    frames_played: int
    underruns: int


@dataclass
class PulledClock:
    """A clock moved by whoever pulls audio off the ring at real-time pace (serve's listener)."""

    frames_played: int = 0
    underruns: int = 0


def ring_frames(rate: int, hop_s: float, buffer_s: float | None = None, prefill_s: float | None = None) -> int:
    """The ring's size: `buffer_s` (default two hops), at least the prefill and three cover-up margins."""
    return max(int(max(buffer_s or 2 * hop_s, prefill_s or 0) * rate), int(3 * MARGIN_S * rate))


class Playback:
    def __init__(self, ring: RingBuffer, player: Clock, *, rate: int, device: str, on_fresh=None,
                 labels: dict | None = None, pool_s: float | None = None):
        """`ring` and the `player` that reads it (see `build`); `on_fresh(segment)` sees every fresh segment;
        `labels` lead the status and win over its own keys (serve: the listener, its scene's name, its seed);
        `pool_s`: seconds of earlier audio the weave keeps (default audio/weave.POOL_S)."""
        self.ring, self.player, self.rate, self.device = ring, player, rate, device
        self.labels = labels or {}
        self.channels = ring.channels
        self.fresh: queue.Queue = queue.Queue(maxsize=1)
        self.feeder = Feeder(ring, self.fresh, xfade=int(XFADE_S * rate), margin=int(MARGIN_S * rate),
                             rate=rate, on_fresh=on_fresh, pool_s=pool_s)
        self.stream = None
        self.budget = None  # the generation loop's Budget, once attached
        self.slot = None  # the generator's side, once the stream is attached
        self._held = False  # nobody hears it now (play paused): the generator rests (`hold`)

    @classmethod
    def build(cls, rate: int, channels: int, device: str, hop_s: float, *, buffer_s: float | None = None,
              prefill_s: float | None = None, tapped: bool = False,
              player: Callable[[RingBuffer, int], Clock] | None = None, on_fresh=None,
              labels: dict | None = None, pool_s: float | None = None) -> Playback:
        """The one way both commands make it: a ring of `ring_frames`, a TappedRing when the web mixer
        reads it (`tapped`), played by `player(ring, rate)` (default: a PulledClock)."""
        frames = ring_frames(rate, hop_s, buffer_s, prefill_s)
        if tapped:
            from ..audio.mixer import TappedRing

            ring = TappedRing(frames, channels, rate)
        else:
            ring = RingBuffer(frames, channels)
        return cls(ring, player(ring, rate) if player else PulledClock(), rate=rate, device=device,
                   on_fresh=on_fresh, labels=labels, pool_s=pool_s)

    def attach(self, stream, *, timeline: str | None = None, name: str = "", budget=None,
               changing_s: float | None = None):
        """The stream, once its model is loaded: returns its slot for the generation loop; `budget` (the
        loop's, stream/budget.py) is what the status reports; `changing_s`: how long the buffer stays shallow
        after a live change (default generation_loop.CHANGING_S)."""
        # Imported here: torch takes seconds to import, and an instant start sounds before (play/instant.py).
        from .generation_loop import CHANGING_S, StreamSlot

        self.stream = stream
        self.budget = budget
        self.slot = StreamSlot(stream, self.fresh, timeline, name=name, ahead=self.ahead,
                               changing_s=CHANGING_S if changing_s is None else changing_s,
                               held=lambda: self._held)
        self.feeder.cover_from(int(stream.chain.fade_in_s * self.rate), stream.seed)  # the fade-in is no cover
        return self.slot

    # The owner's thread ------------------------------------------------------------------------------
    def hold(self, on: bool) -> None:
        """Nobody hears this stream now (`on`): the generator starts no chunk for it, beyond the first and a
        live change's (stream/generation_loop.StreamSlot.held); False: it works again."""
        self._held = on

    def pump(self) -> None:
        """Move what the generator made into the ring (stale audio skipped after a live change)."""
        if self.slot is not None:
            self.feeder.epoch_wanted = self.slot.epoch
        self.feeder.pump()

    def buffered_s(self) -> float:
        return (self.ring.level() + self.feeder.buffered_fresh()) / self.rate

    def ahead(self) -> float:
        """Seconds buffered ahead of what plays, the segment waiting in the queue included (any thread)."""
        return self.buffered_s() + self.fresh.qsize() * self.stream.hop_s

    def fresh_share(self) -> float:
        """The share of what was written to the ring that was fresh audio, not earlier material (0..1)."""
        fresh, cover = self.feeder.fresh_frames, self.feeder.cover_frames
        return fresh / (fresh + cover) if fresh + cover else 0.0

    def played_s(self) -> float:
        return self.player.frames_played / self.rate

    def log(self, row: dict) -> None:
        """A timeline row from the owner's side (tweaks, pauses, timers)."""
        if self.slot is not None:
            self.slot.log(row)

    def status(self) -> dict:
        """What `soundscape status`, the web mixer and serve's listeners show."""
        feeder, gen, stream = self.feeder, self.slot, self.stream
        status = {
            "scene": stream.scene.name,
            "elapsed_s": round(self.played_s(), 2),
            "buffered_s": round(self.buffered_s(), 2),
            "buffer": "shallow" if gen.changing() else "deep",  # shallow while someone is changing things
            "generator_rtf": round(gen.stats.rtf, 3),
            "chunks": gen.stats.chunks,
            "steps": gen.stats.steps,
            "steps_range": [stream.resolved.min_steps, stream.resolved.max_steps],
            "quality": stream.resolved.preset,
            "weights": feeder.segments[-1].weights if feeder.segments else {},
            "layers": {k: v.prompt for k, v in stream.scene.layers.items()},
            "coverups": feeder.coverups,
            "fresh_percent": round(100 * self.fresh_share()),  # "fresh 30 %": under a budget, the rest is earlier
            # The weave's shortest repeat of any stretch among recent plays (audio/weave.py); null: none yet.
            "repeat_distance_s": None if (r := feeder.repeat_distance_s()) is None else round(r, 1),
            "budget_percent": self.budget.percent if self.budget is not None else 100.0,
            "generator_priority": self.budget.priority if self.budget is not None else "unchanged",
            "generator_resting": self._held,  # play paused: no chunk starts (Playback.hold)
            "underruns": self.player.underruns,
            # What the listener hears and what the generator does (issue 23's start-up states).
            "audio": "recording" if feeder.warm else "earlier material" if feeder.covering else "fresh",
            "encoding": bool(getattr(stream.encoder, "encoding", False)),
            "generator_errors": gen.stats.errors,
            "device": self.device,
            "runtimes": stream.model.runtime_names(),  # what runs each stage, as measured on this CPU
            "sample_rate": self.rate,
        }
        return {**self.labels, **{k: v for k, v in status.items() if k not in self.labels}}
