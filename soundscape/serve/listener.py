"""One listener of `soundscape serve`: its own stream, buffer, clock and encoder.

The same parts as `play`, with the sound card replaced by an HTTP response:
  SceneStream (own seed and state) -> StreamSlot in the shared GenerationLoop -> queue of one
  -> Feeder (crossfades, cover-ups from earlier material) -> RingBuffer -> `pull()`, which takes
  audio off the ring at real-time pace (the listener's clock) and encodes it (encode.py).
Live changes go through `LiveControl.handle`, the code `play`'s control socket and web mixer use;
this object stands in for play's Engine (stream, gen, feeder, player, config, status_dict).
Everything here but the generation runs on the server's event loop thread.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

import numpy as np

from ..audio.feeder import Feeder
from ..audio.ringbuffer import RingBuffer
from ..stream.generation_loop import MARGIN_S, XFADE_S, StreamSlot
from ..stream.live import LiveControl
from .encode import StreamEncoder

LEAD_S = 1.0  # audio sent ahead of the listener's clock: the browser's buffer against network jitter
BLOCK_S = 0.1  # the pace at which audio is taken off the ring and encoded


@dataclass
class _Clock:
    """What LiveControl reads of play's Player: frames played so far (serve allows no timer, stop or
    volume command, the ones that would fade a player)."""

    frames_played: int = 0
    underruns: int = 0


@dataclass(frozen=True)
class _Config:
    name: str
    rate: int
    channels: int


class Listener:
    def __init__(self, listener_id: str, scene_name: str, stream, fmt: str, number: int = 0):
        self.id = listener_id  # secret: whoever holds it controls this stream
        self.number = number  # public: the metrics' label
        self.scene_name = scene_name
        self.stream = stream
        rate, channels = stream.out_rate, stream.channels
        self.config = _Config(f"http:{fmt}", rate, channels)
        capacity = max(int(2 * stream.hop_s * rate), int(3 * MARGIN_S * rate))
        self.ring = RingBuffer(capacity, channels)
        self.fresh: queue.Queue = queue.Queue(maxsize=1)
        self.gen = StreamSlot(stream, self.fresh, name=f"listener {number}")
        self.feeder = Feeder(self.ring, self.fresh, xfade=int(XFADE_S * rate), margin=int(MARGIN_S * rate),
                             skip_pool=int(stream.scene.output.fade_in_seconds * rate), seed=stream.seed)
        self.gen.ahead = lambda: (self.ring.level() + self.feeder.buffered_fresh()) / rate \
            + self.fresh.qsize() * stream.hop_s
        self.player = _Clock()
        self.encoder = StreamEncoder(fmt, rate, channels)
        self.live = LiveControl(self, None)
        self._block = np.zeros((int(BLOCK_S * rate), channels), np.float32)
        self.started = False  # the first segment has arrived: the clock runs from here

    # What play's Engine offers LiveControl --------------------------------------------------------
    def status_dict(self) -> dict:
        rate = self.config.rate
        return {
            "listener": self.number, "scene": self.scene_name, "seed": self.stream.seed,
            "elapsed_s": round(self.player.frames_played / rate, 2),
            "buffered_s": round((self.ring.level() + self.feeder.buffered_fresh()) / rate, 2),
            "generator_rtf": round(self.gen.stats.rtf, 3), "chunks": self.gen.stats.chunks,
            "steps": self.gen.stats.steps,
            "steps_range": [self.stream.resolved.min_steps, self.stream.resolved.max_steps],
            "quality": self.stream.resolved.preset,
            "weights": self.feeder.segments[-1].weights if self.feeder.segments else {},
            "layers": {k: v.prompt for k, v in self.stream.scene.layers.items()},
            "coverups": self.feeder.coverups, "underruns": self.player.underruns,
            "generator_errors": self.gen.stats.errors, "device": self.config.name, "sample_rate": rate,
        }

    # The listener's clock -------------------------------------------------------------------------
    def pump(self) -> None:
        self.feeder.epoch_wanted = self.gen.epoch
        self.feeder.pump()
        if not self.started and self.ring.level() >= min(self.ring.capacity, int(LEAD_S * self.config.rate)):
            self.started = True

    def pull(self, frames: int) -> bytes:
        """Take `frames` of audio off the ring (the clock moves on), encoded; an empty ring is an underrun."""
        out = []
        while frames > 0:
            self.pump()
            block = self._block[: min(frames, len(self._block))]
            missing = self.ring.read_into(block)
            if missing:
                self.player.underruns += 1
            self.player.frames_played += len(block)
            out.append(self.encoder.encode(block))
            frames -= len(block)
        self.pump()
        self.live.tick()
        return b"".join(out)

    def close(self) -> bytes:
        """The listener has gone: flush the encoder and break the cycles (LiveControl and the slot's
        `ahead` point back here), so its buffers go at once, not at the next full garbage collection."""
        self.live = None
        self.gen.ahead = lambda: 0.0
        return self.encoder.close()
