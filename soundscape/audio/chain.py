"""The one after-model chain: 16 kHz chunks in, finished output audio out.

  join       audio/crossfade.Joiner: drop the decode edges, crossfade each seam once
  loudness   audio/loudness.LoudnessController: a slow BS.1770 gain and a true-peak limiter
  resample   audio/resample.StreamResampler: 16 kHz to the output rate, the same in pieces as whole
  fade       the scene's fade-in over its first `fade_in_s`, times its `volume`
  channels   mono to (n, channels) float32 (the model is mono; stereo is the same signal twice)

Every stage is `(audio, state) -> (audio, state)`; their states travel together as a ChainState,
so a plain render, `play`, `serve`, a segmented render and a loop file all finish audio with the
same code, and a resumed render continues exactly where the saved state left off. The chain takes
plain numbers, not a scene: audio/ knows nothing of scene files or the model.

A loop file is finished cyclically instead (`finish_cycle`): its loudness is run around the loop
until it has settled, and its resampling wraps, so its end runs into its start like any seam:
  loudness   the controller runs over the cycle y until it has heard WARM_S (at least once), then
             once more for the output, starting from the state the cycle's end left. The limiter's
             delay D moves the content D samples later, cyclically (the first D come from the end).
  resampling y's end is the resampler's history and y's start its lookahead; the cycle length P is
             a multiple of its `down`, so the result is exactly periodic, P·up/down long.
No fade-in: a loop has no beginning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .crossfade import Joiner, JoinState
from .loudness import LoudnessController, LoudnessState
from .resample import ResamplerState, StreamResampler

WARM_S = 150.0  # > 7 attack time constants of the level follower: what is left of its start is < 0.1 %


@dataclass
class ChainState:
    join: JoinState = field(default_factory=JoinState)
    loud: LoudnessState | None = None  # None until the first chunk primes it
    resample: ResamplerState = field(default_factory=ResamplerState)
    samples_out: int = 0  # output-rate samples emitted so far (drives the fade-in)

    def to_arrays(self) -> dict:
        """Plain arrays for OUT.state.npz (no pickle); the keys resume files have always had."""
        arrays = {"samples_out": np.array(self.samples_out), "pending": self.resample.pending}
        if self.join.tail is not None:
            arrays["join_tail"] = self.join.tail
        if self.resample.history is not None:
            arrays["history"] = self.resample.history
        if self.loud is not None:
            arrays.update(self.loud.to_arrays(prefix="loud_"))
        return arrays

    @classmethod
    def from_arrays(cls, f) -> "ChainState":
        """The inverse of to_arrays, from an open npz."""
        return cls(join=JoinState(tail=f["join_tail"] if "join_tail" in f else None),
                   loud=LoudnessState.from_arrays(f, prefix="loud_") if "loud_level" in f else None,
                   resample=ResamplerState(history=f["history"] if "history" in f else None, pending=f["pending"]),
                   samples_out=int(f["samples_out"]))


class OutputChain:
    def __init__(self, *, xfade: int, edge: int, loudness_lufs: float, volume: float, fade_in_s: float,
                 model_rate: int, out_rate: int, channels: int):
        """`xfade` and `edge` in model-rate samples; `loudness_lufs` for the whole output (all channels)."""
        self.volume, self.fade_in_s = float(volume), float(fade_in_s)
        self.out_rate, self.channels = out_rate, channels
        self.joiner = Joiner(xfade, edge)
        # BS.1770 sums the channels' power: dual-mono stereo measures 3 dB above its mono source.
        self.loudness = LoudnessController(model_rate, target_lufs=float(loudness_lufs - 10 * np.log10(channels)))
        self.resampler = StreamResampler(model_rate, out_rate)

    def push(self, audio: np.ndarray, state: ChainState, presence: float = 1.0) -> tuple[np.ndarray, ChainState]:
        """One decoded chunk (model rate, mono) -> its new output audio, (n, channels) float32.

        `presence` (0..1) tells the loudness control how much the scene asks for sound, so a scene
        fading to silence is not turned up.
        """
        new, join = self.joiner.join(audio, state.join)
        # The loudness controller carries its gain across seams, so no gain ever steps at one.
        new, loud = self.loudness.process(new, state.loud, presence)
        out, resample = self.resampler.push(new, state.resample)
        out = self.fade_and_volume(out, state.samples_out)
        return self.to_channels(out), ChainState(join=join, loud=loud, resample=resample,
                                                 samples_out=state.samples_out + len(out))

    def fade_and_volume(self, out: np.ndarray, offset: int) -> np.ndarray:
        """The volume, and the fade-in over the first fade_in_s (`offset`: samples already out)."""
        gain = np.full(len(out), self.volume, np.float32)
        fade = int(self.fade_in_s * self.out_rate)
        if offset < fade:
            n = np.arange(offset, offset + len(out), dtype=np.float64)
            gain *= (0.5 - 0.5 * np.cos(np.pi * np.clip(n / fade, 0, 1))).astype(np.float32)
        return out * gain

    def to_channels(self, out: np.ndarray) -> np.ndarray:
        """Mono -> (n, channels) float32."""
        out = np.asarray(out, np.float32)
        if self.channels == 1:
            return np.ascontiguousarray(out[:, None])
        return np.ascontiguousarray(np.repeat(out[:, None], self.channels, axis=1))

    # Loop files ------------------------------------------------------------------------------------
    def finish_cycle(self, blocks: list[tuple[np.ndarray, float]]) -> np.ndarray:
        """A whole joined cycle, given as (model-rate block, presence) pairs -> one period of output
        audio, mono at the output rate with the volume applied (`to_channels` in slices to write it)."""
        cycle = np.concatenate(level_cycle(blocks, self.loudness))
        return resample_cycle(cycle, self.resampler) * np.float32(self.volume)


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
