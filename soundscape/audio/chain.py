"""The one after-model chain: 16 kHz mono chunks in, finished output audio out.

  join       audio/crossfade.Joiner: drop the decode edges, crossfade each seam once (16 kHz mono)
  resample   audio/resample.StreamResampler: 16 kHz to the output rate, the same in pieces as whole
  air        audio/air.Air: the spectrum above 8 kHz continued from 4-7 kHz (off on a 16 kHz output)
  width      audio/width.Width: mono to a stereo image, bass centred, mono sum untouched (2 channels)
  loudness   audio/loudness.LoudnessController: a slow BS.1770 gain (K-weighted at the output rate,
             the channels' powers summed) and a true-peak limiter, one gain for all channels
  fade       the scene's fade-in over its first `fade_in_s`, times its `volume`
Why this order: air and width change the level and the peaks, so they run before the loudness
control, which then holds the target and the -1 dBTP ceiling for what is actually played.

Every stage is `(audio, state) -> (audio, state)`; their states travel together as a ChainState,
so a plain render, `play`, `serve`, a segmented render, a loop file and `enhance` all finish audio
with the same code, and a resumed render continues exactly where the saved state left off. The chain
takes plain numbers, not a scene: audio/ knows nothing of scene files or the model. `stage_s` adds up
the CPU seconds air and width took (this thread's, so other threads' work does not count; the render
summary, `enhance` and `bench` report it).

A loop file is finished cyclically instead (`finish_cycle`), so its end runs into its start like any seam:
  resampling y's end is the resampler's history and y's start its lookahead; the cycle length P is
             a multiple of its `down`, so the result is exactly periodic, P·up/down long.
  air, width each first runs over the cycle's last CYCLE_WARM_S (its filters and followers settle on
             what comes before the start), then over the cycle; air's noise repeats with the cycle and
             width's weights turn a whole number of times per cycle, so both are periodic.
  loudness   the controller runs over the cycle until it has heard WARM_S (at least once), then
             once more for the output, starting from the state the cycle's end left. The limiter's
             delay D moves the content D samples later, cyclically (the first D come from the end).
No fade-in: a loop has no beginning.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import UsageError
from .air import Air, AirState
from .crossfade import Joiner, JoinState
from .loudness import LoudnessController, LoudnessState
from .resample import ResamplerState, StreamResampler
from .width import Width, WidthState

WARM_S = 150.0  # > 7 attack time constants of the level follower: what is left of its start is < 0.1 %
CYCLE_WARM_S = 3.0  # > 10 of air's slowest time constant (0.3 s): what is left of its start is < 0.005 %
CHAIN_VERSION = 2  # 2: air and width, loudness at the output rate (issue 25); 1 had no key


@dataclass
class ChainState:
    join: JoinState = field(default_factory=JoinState)
    loud: LoudnessState | None = None  # None until the first chunk primes it
    resample: ResamplerState = field(default_factory=ResamplerState)
    samples_out: int = 0  # output-rate samples emitted so far (drives the fade-in)
    air: AirState | None = None  # None: fresh (or the stage is off)
    width: WidthState | None = None

    def to_arrays(self) -> dict:
        """Plain arrays for OUT.state.npz (no pickle): the keys of version 1, prefixed air_ and width_ for
        the new stages, and `chain` (the version)."""
        arrays = {"chain": np.array(CHAIN_VERSION), "samples_out": np.array(self.samples_out),
                  "pending": self.resample.pending}
        if self.join.tail is not None:
            arrays["join_tail"] = self.join.tail
        if self.resample.history is not None:
            arrays["history"] = self.resample.history
        if self.loud is not None:
            arrays.update(self.loud.to_arrays(prefix="loud_"))
        if self.air is not None:
            arrays.update(self.air.to_arrays(prefix="air_"))
        if self.width is not None:
            arrays.update(self.width.to_arrays(prefix="width_"))
        return arrays

    @classmethod
    def from_arrays(cls, f) -> "ChainState":
        """The inverse of to_arrays, from an open npz. A state saved before air and width (no `chain` key)
        levelled at 16 kHz mono: it cannot continue in this chain, so it is refused with what to do."""
        version = int(f["chain"]) if "chain" in f else 1
        if version != CHAIN_VERSION:
            raise UsageError(f"--resume: the saved state is from an output chain of version {version} (this "
                             f"soundscape's is {CHAIN_VERSION}: stereo width and air, loudness at the output "
                             f"rate); render again without --resume")
        return cls(join=JoinState(tail=f["join_tail"] if "join_tail" in f else None),
                   loud=LoudnessState.from_arrays(f, prefix="loud_") if "loud_level" in f else None,
                   resample=ResamplerState(history=f["history"] if "history" in f else None, pending=f["pending"]),
                   samples_out=int(f["samples_out"]),
                   air=AirState.from_arrays(f, prefix="air_") if "air_n" in f else None,
                   width=WidthState.from_arrays(f, prefix="width_") if "width_n" in f else None)


class OutputChain:
    def __init__(self, *, xfade: int, edge: int, loudness_lufs: float, volume: float, fade_in_s: float,
                 model_rate: int, out_rate: int, channels: int, width: float = 0.0, air: float = 0.0,
                 seed: int = 0):
        """`xfade` and `edge` in model-rate samples; `loudness_lufs` for the whole output (all channels);
        `width` and `air` 0..1 (0: off); `seed` picks air's noise."""
        if channels not in (1, 2):
            raise ValueError(f"OutputChain: expected 1 or 2 channels, got {channels!r}")
        self.volume, self.fade_in_s = float(volume), float(fade_in_s)
        self.out_rate, self.channels = out_rate, channels
        self.joiner = Joiner(xfade, edge)
        self.resampler = StreamResampler(model_rate, out_rate)
        self.air = Air(out_rate, air, seed)
        self.width = Width(out_rate, width)
        self.loudness = LoudnessController(out_rate, target_lufs=float(loudness_lufs), channels=channels)
        self.stage_s = 0.0  # CPU seconds (this thread's) spent in air and width so far

    def push(self, audio: np.ndarray, state: ChainState, presence: float = 1.0) -> tuple[np.ndarray, ChainState]:
        """One decoded chunk (model rate, mono) -> its new output audio, (n, channels) float32.

        `presence` (0..1) tells the loudness control how much the scene asks for sound, so a scene
        fading to silence is not turned up.
        """
        new, join = self.joiner.join(audio, state.join)
        return self.push_joined(new, replace(state, join=join), presence)

    def push_joined(self, new: np.ndarray, state: ChainState, presence: float = 1.0) -> tuple[np.ndarray, ChainState]:
        """The chain after the join: continuous mono audio at the model rate (`enhance` feeds a file here)."""
        out, resample = self.resampler.push(new, state.resample)
        out, air, width = self.stereo(out, state.air, state.width)
        # The loudness controller carries its gain across seams, so no gain ever steps at one.
        out, loud = self.loudness.process(out, state.loud, presence)
        out = self.fade_and_volume(out.reshape(len(out), self.channels), state.samples_out)
        return out, ChainState(join=state.join, loud=loud, resample=resample, samples_out=state.samples_out + len(out),
                               air=air, width=width)

    def stereo(self, out: np.ndarray, air: AirState | None, width: WidthState | None):
        """Air, then width (2 channels): (audio (n, 2) or mono (n,), air state, width state)."""
        started = time.thread_time()
        out, air = self.air.process(out, air)
        if self.channels == 2:
            out, width = self.width.process(out, width)
        self.stage_s += time.thread_time() - started
        return out, air, width

    def fade_and_volume(self, out: np.ndarray, offset: int) -> np.ndarray:
        """The volume, and the fade-in over the first fade_in_s (`offset`: samples already out); (n, channels)."""
        gain = np.full(len(out), self.volume, np.float32)
        fade = int(self.fade_in_s * self.out_rate)
        if offset < fade:
            n = np.arange(offset, offset + len(out), dtype=np.float64)
            gain *= (0.5 - 0.5 * np.cos(np.pi * np.clip(n / fade, 0, 1))).astype(np.float32)
        return np.ascontiguousarray(np.asarray(out, np.float32) * gain[:, None])

    # Loop files ------------------------------------------------------------------------------------
    def finish_cycle(self, blocks: list[tuple[np.ndarray, float]]) -> np.ndarray:
        """A whole joined cycle, given as (model-rate block, presence) pairs -> one period of output
        audio, (n, channels) float32 at the output rate with the volume applied."""
        rs = self.resampler
        y = resample_cycle(np.concatenate([b for b, _ in blocks]), rs)
        period = len(y)
        warm = min(period, int(CYCLE_WARM_S * self.out_rate))
        started = time.thread_time()
        if self.air.active:
            y = _cyclic(Air(self.out_rate, self.air.air, self.air.seed, period=period), y, warm)
        if self.channels == 2:
            y = _cyclic(Width(self.out_rate, self.width.width, period=period), y, warm)
        self.stage_s += time.thread_time() - started
        # The blocks' presences, at the output rate: block k covers [edges[k], edges[k + 1]).
        edges = np.cumsum([0] + [len(b) for b, _ in blocks]) * rs.up // rs.down
        out_blocks = [(y[a:b], p) for a, b, (_, p) in zip(edges[:-1], edges[1:], blocks) if b > a]
        levelled = np.concatenate(level_cycle(out_blocks, self.loudness))
        return np.ascontiguousarray((levelled.reshape(period, self.channels) * np.float32(self.volume)).astype(np.float32))


def _cyclic(stage, y: np.ndarray, warm: int) -> np.ndarray:
    """One period of a streaming stage's output for the periodic input y: the stage first hears the cycle's
    last `warm` samples (at their place in the cycle, for its clock), then the cycle from its start."""
    _, state = stage.process(y[len(y) - warm:], replace(stage.initial_state(), n=len(y) - warm))
    return stage.process(y, replace(state, n=0))[0]


def level_cycle(blocks: list[tuple[np.ndarray, float]], loudness: LoudnessController) -> list[np.ndarray]:
    """The loudness controller over a cycle given as (block, presence) pairs, warmed up on itself."""
    total = sum(len(b) for b, _ in blocks)
    passes = max(1, math.ceil(WARM_S * loudness.rate / max(total, 1)))
    state = None
    for _ in range(passes):
        for block, presence in blocks:
            _, state = loudness.process(block, state, presence)
    out = []
    for block, presence in blocks:
        y, state = loudness.process(block, state, presence)
        out.append(y)
    return out


def resample_cycle(cycle: np.ndarray, resampler: StreamResampler, block: int = 1 << 20) -> np.ndarray:
    """Resample one period of a periodic signal to exactly len * up / down samples, periodic too."""
    cycle = np.asarray(cycle, np.float32)
    if resampler.up == resampler.down:
        return cycle
    if len(cycle) % resampler.down or len(cycle) < resampler.context + resampler.down:
        raise ValueError(f"resample_cycle: expected a cycle of a multiple of {resampler.down} samples "
                         f"and at least {resampler.context + resampler.down}, got {len(cycle)}")
    want = len(cycle) * resampler.up // resampler.down
    state = ResamplerState(history=cycle[-resampler.context:].copy())
    out = []
    for i in range(0, len(cycle), block):
        y, state = resampler.push(cycle[i:i + block], state)
        out.append(y)
    y, state = resampler.push(cycle[: resampler.context + resampler.down], state)
    out.append(y)
    return np.concatenate(out)[:want]
