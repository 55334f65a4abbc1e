"""One listener of `soundscape serve`: its own stream, buffer, clock and encoder.

The same consumer side as `play` (stream/playback.py: queue of one -> Feeder -> RingBuffer), with the
sound card replaced by an HTTP response: `pull()` takes audio off the ring at real-time pace (the
listener's PulledClock) and encodes it (encode.py). Live changes go through `LiveControl.handle`, the
code `play`'s control socket and web mixer use, without a transport (a listener's player is its browser).
Everything here but the generation runs on the server's event loop thread.
"""

from __future__ import annotations

import numpy as np

from ..stream.live import LiveControl
from ..stream.playback import Playback
from .encode import StreamEncoder

LEAD_S = 1.0  # audio sent ahead of the listener's clock: the browser's buffer against network jitter
BLOCK_S = 0.1  # the pace at which audio is taken off the ring and encoded


SERVE_POOL_S = 60.0


class Listener:
    def __init__(self, listener_id: str, scene_name: str, stream, fmt: str, number: int = 0, budget=None):
        self.id = listener_id  # secret: whoever holds it controls this stream
        self.number = number  # public: the metrics' label
        self.scene_name = scene_name
        self.stream = stream
        rate, channels = stream.out_rate, stream.channels
        # The status names the listener and its scene as serve knows it (the file's stem), and its own seed.
        # A minute of earlier audio to weave, not play's four: serve holds one pool per listener (23 MB each at
        # 48 kHz stereo instead of 92), and its admission control keeps listeners fed with fresh chunks.
        self.playback = Playback.build(rate, channels, f"http:{fmt}", stream.hop_s, pool_s=SERVE_POOL_S,
                                       labels={"listener": number, "scene": scene_name, "seed": stream.seed})
        self.gen = self.playback.attach(stream, name=f"listener {number}", budget=budget)
        self.rate = rate
        self.encoder = StreamEncoder(fmt, rate, channels)
        self.live = LiveControl(self.playback, None)
        self._block = np.zeros((int(BLOCK_S * rate), channels), np.float32)
        self.started = False  # the first segment has arrived: the clock runs from here

    # The listener's clock -------------------------------------------------------------------------
    def pump(self) -> None:
        playback = self.playback
        playback.pump()
        if not self.started and playback.ring.level() >= min(playback.ring.capacity, int(LEAD_S * self.rate)):
            self.started = True

    def pull(self, frames: int) -> bytes:
        """Take `frames` of audio off the ring (the clock moves on), encoded; an empty ring is an underrun."""
        out = []
        clock, ring = self.playback.player, self.playback.ring
        while frames > 0:
            self.pump()
            block = self._block[: min(frames, len(self._block))]
            missing = ring.read_into(block)
            if missing:
                clock.underruns += 1
            clock.frames_played += len(block)
            out.append(self.encoder.encode(block))
            frames -= len(block)
        self.pump()
        self.live.tick()
        return b"".join(out)

    def close(self) -> bytes:
        """The listener has gone: flush the encoder and break the cycle (LiveControl points back at the
        playback), so its buffers go at once, not at the next full garbage collection."""
        self.live = None
        return self.encoder.close()

    def release(self) -> None:
        """After it has left (Hub.leave): let go of its stream, buffers and encoder. The response's frames can
        outlive it: a disconnect's exception keeps its traceback, and so this object, until the next full
        garbage collection (measured: 3 of 40 churned listeners still held). Then only this shell stays."""
        self.live = None
        self.playback = self.gen = self.stream = self.encoder = self._block = None
