"""A live change's switch (audio/feeder.py): the old audio is kept only for SWITCH_KEEP_S (the block the
callback may be reading), not the weave's 1 s margin, then crossfaded into the new mix's audio, which is
written at once. Real Feeder and RingBuffer; two constant signals, so every sample says whose it is."""

import queue
from dataclasses import dataclass, field

import numpy as np

from soundscape.audio.feeder import MARGIN_S, SWITCH_KEEP_S, XFADE_S, Feeder
from soundscape.audio.ringbuffer import RingBuffer

RATE = 8000


@dataclass
class Seg:
    audio: np.ndarray
    epoch: int = 0
    weights: dict = field(default_factory=dict)


def _switched(keep_frames: int | None = None) -> tuple[Feeder, np.ndarray]:
    ring = RingBuffer(8 * RATE, 1)
    fresh: queue.Queue = queue.Queue(maxsize=1)
    feeder = Feeder(ring, fresh, xfade=int(XFADE_S * RATE), margin=int(MARGIN_S * RATE), rate=RATE)
    if keep_frames is not None:
        feeder.switch_keep = keep_frames  # the engine's: the device's latency, where longer
    fresh.put(Seg(np.full((5 * RATE, 1), 0.5, np.float32)))  # the old mix, 5 s buffered ahead
    feeder.pump()
    ring.read_into(np.zeros((RATE // 2, 1), np.float32))  # half a second plays
    fresh.put(Seg(np.full((4 * RATE, 1), -0.5, np.float32), epoch=1))  # the change's audio arrives
    feeder.pump()
    out = np.zeros((ring.level(), 1), np.float32)
    ring.read_into(out)
    return feeder, out[:, 0]


def test_a_change_keeps_a_quarter_second_of_the_old_audio_then_crossfades_into_the_new():
    feeder, out = _switched()
    keep, x = int(SWITCH_KEEP_S * RATE), int(XFADE_S * RATE)
    assert keep < int(MARGIN_S * RATE)
    assert np.all(out[:keep] == 0.5)  # the old mix up to the cut
    fade = out[keep:keep + x]
    assert fade[0] > 0.4 and fade[-1] < -0.4 and np.all(np.diff(fade) <= 1e-6)  # one smooth crossfade
    assert np.all(out[keep + x:] == -0.5) and len(out) >= keep + 3 * RATE  # the new mix, written at once
    assert feeder.switches[-1] == (1, RATE // 2 + keep)  # heard from there (the timeline's tweak_heard)


def test_the_device_s_latency_is_kept_where_it_is_longer():
    feeder, out = _switched(keep_frames=RATE)  # a warm start's device: 1 s
    assert np.all(out[:RATE] == 0.5) and out[RATE + int(XFADE_S * RATE)] == -0.5
