"""`soundscape enhance IN -o OUT`: any audio file through the output chain's air and width.

A thin front on audio/chain.py, not a second implementation: the file (mixed to mono, at its own rate)
goes into `OutputChain.push_joined` (the chain after the join), so it is resampled, given air and width
and levelled by the same code a render runs. The loudness target is the input's own integrated
loudness (a mono file's as it plays: on both channels), so the result plays at the level of what went in
(A/B by ear), and the true-peak limiter
holds -1 dBTP as in a render. The limiter's delay is taken off, so OUT lines up with IN sample for
sample (at OUT's rate).

For audio that ends at 8 kHz (the model's, another AudioLDM tool's, an old render): air continues a
spectrum that stops there; on a full-band recording it would add to what is already there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import UsageError
from .chain import ChainState, OutputChain
from .files import GrowingAudioFile, check_output_path
from .loudness import measure

BLOCK_S = 10.0  # the input is fed in pieces of this length (the result does not depend on it)
DEFAULT_LUFS = -23.0  # for an input too short or too quiet to measure


@dataclass
class EnhanceResult:
    path: Path
    frames: int
    rate: int
    input_lufs: float | None
    output: dict  # integrated LUFS, loudness range, true peak of OUT
    stage_s: float  # CPU seconds air and width took


def enhance(src: str | Path, out: str | Path, *, width: float, air: float, rate: int, seed: int = 0) -> EnhanceResult:
    src, out = Path(src), check_output_path(out)
    if src.resolve() == out.resolve():
        raise UsageError(f"-o {out}: is the input; write the result to another file")
    try:
        x, in_rate = sf.read(str(src), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, OSError, RuntimeError) as exc:
        raise UsageError(f"{src}: cannot read it as audio ({exc}); expected a WAV, FLAC or Ogg file") from None
    if not len(x):
        raise UsageError(f"{src}: holds no audio")
    level = measure(x, in_rate)["integrated_lufs"]
    if x.shape[1] == 1:  # a mono file plays as the same signal in both channels: 3 dB above its measure
        level += 10 * np.log10(2)
    target = level if math.isfinite(level) and level > -70 else DEFAULT_LUFS
    chain = OutputChain(xfade=1, edge=0, loudness_lufs=float(np.clip(target, -70.0, 0.0)), volume=1.0, fade_in_s=0.0,
                        model_rate=in_rate, out_rate=rate, channels=2, width=width, air=air, seed=seed)
    mono = x.mean(axis=1)
    rs, delay = chain.resampler, chain.loudness.latency
    want = len(mono) * rate // in_rate
    # Zeros after the end: the resampler's lookahead, and the limiter's delay (in input samples), then some.
    tail = np.zeros(rs.context + rs.down + math.ceil(delay * in_rate / rate) + 1, np.float32)
    state, pieces, feed = ChainState(), [], np.concatenate([mono, tail])
    step = max(1, int(BLOCK_S * in_rate))
    for i in range(0, len(feed), step):
        y, state = chain.push_joined(feed[i:i + step], state, 1.0)
        pieces.append(y)
    y = np.concatenate(pieces)[delay:delay + want]
    with GrowingAudioFile(out, rate, 2) as f:
        f.write(y)
    return EnhanceResult(path=out, frames=len(y), rate=rate, input_lufs=level if math.isfinite(level) else None,
                         output=measure(y, rate), stage_s=chain.stage_s)
