"""`soundscape enhance IN -o OUT`: any audio file through the output chain's air and width, as a file tool.

The same stages a render runs (resample, air, width: audio/chain.py's order), but not the endless chain's
slow loudness control: a finished file keeps its own level and dynamics, so one gain is applied to the
whole of it. In three streaming passes over IN, each in blocks of BLOCK_S (memory stays bounded for any
length; libsndfile's Vorbis writer also crashes on one write of 44 s or more):

  1. scan      every sample finite (else exit 2 naming the first), the peak (a float file beyond full
               scale is scaled down to it, said on one line), channels mixed to mono
  2. measure   the mono mix resampled to --rate, as it plays on both channels (L_in, its true peak TP_in),
               and the same through air and width (L_out), by StreamMeter; the gain is
                 G = L_in - L_out  dB
               exact, not iterated: resampling, air and width are all homogeneous (twice the input gives
               twice the output), so G applied before them or after gives the same samples
  3. write     the stages again, times G, through the true-peak limiter, into a temporary file in OUT's
               folder, renamed over OUT at the end; a failure removes it (IN and an old OUT are untouched)

The limiter's ceiling is -1 dBTP, or TP_in where that is higher (plus a hair): a file that already peaks
over -1 dBTP is not squashed, only what air and width would push beyond it is held. With width 0 and air
0 the stages are the identity, G is exactly 0 dB and nothing reaches the ceiling: OUT is the resampled
input. The limiter's delay is taken off, so OUT lines up with IN sample for sample (at OUT's rate).

For audio that ends at 8 kHz (the model's, another AudioLDM tool's, an old render): air continues a
spectrum that stops there; on a full-band recording it would add to what is already there.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ..errors import UsageError, WriteError
from .air import Air
from .files import FORMATS, check_output_path
from .loudness import LoudnessController, StreamMeter
from .resample import ResamplerState, StreamResampler
from .width import Width

BLOCK_S = 1.0  # read, processed and written in pieces of this length (the result does not depend on it)
MIN_RATE = 8000  # IN's sample rate at least this (telephone band); below it nothing is left to extend
CEILING_DBTP = -1.0
# Vorbis quality 0.6 (libsndfile's compression level 0.4; its default is about 0.6, quality 0.4): at the
# default the encoder's stereo coupling folds the channels together above 8 kHz (L/R coherence 0.90 where
# the .wav has 0.39); at 0.6 it is 0.29, for 182 kbit/s instead of 121 (noise, width 0.5, air 0.5).
OGG_COMPRESSION = 0.4


@dataclass(frozen=True)
class EnhanceOptions:
    input: Path
    output: Path
    width: float = 0.5
    air: float = 0.5
    rate: int = 48000
    seed: int = 0
    progress: bool = False  # a bar on stderr, when it is a terminal


@dataclass
class EnhanceResult:
    path: Path
    frames: int
    rate: int
    input_lufs: float  # the mono mix as it plays (both channels), at OUT's rate; -inf: too short or silent
    input_lra: float
    output_lufs: float
    output_lra: float
    gain_db: float  # the one gain
    scaled_db: float  # how far IN was scaled down to fit full scale (0: it fitted)
    limited_s: float  # seconds of OUT the limiter touched
    stage_s: float  # CPU seconds air and width took in the writing pass


@dataclass(frozen=True)
class _Input:
    path: Path
    frames: int
    rate: int
    channels: int
    scale: float  # applied to the mono mix: 1, or 1/peak for a file beyond full scale


def enhance(opts: EnhanceOptions) -> EnhanceResult:
    # 1. Check the paths and scan the input
    src, out = Path(opts.input), check_output_path(opts.output)
    if out.exists() and src.exists() and os.path.samefile(src, out):
        raise UsageError(f"-o {out}: is the input file itself (the same file under another name); "
                         f"write the result to another file")
    Air(opts.rate, opts.air), Width(opts.rate, opts.width)  # their range checks, before any work
    bar = _Bar(opts.progress, 3)
    info = _scan(src, bar)
    # 2. Measure: the resampled input as it plays, and the same through air and width
    before, after, peak = StreamMeter(opts.rate, 1, dual_mono=True), StreamMeter(opts.rate, 2), _TruePeak()
    for mono, stereo in _stages(info, opts, bar, "measuring"):
        before.add(mono)
        peak.add(mono)
        after.add(stereo)
    l_in, l_out = before.integrated(), after.integrated()
    gain_db = l_in - l_out if math.isfinite(l_in) and math.isfinite(l_out) else 0.0
    # 3. Write through the limiter into a temporary file, renamed over OUT at the end
    ceiling_db = max(CEILING_DBTP, 20 * math.log10(peak.peak) + 0.05 if peak.peak > 0 else CEILING_DBTP)
    written, limited, stage_s, meter = _write(info, opts, out, 10 ** (gain_db / 20), ceiling_db, bar)
    bar.close()
    return EnhanceResult(path=out, frames=written, rate=opts.rate, input_lufs=l_in, input_lra=before.loudness_range(),
                         output_lufs=meter.integrated(), output_lra=meter.loudness_range(), gain_db=gain_db,
                         scaled_db=-20 * math.log10(info.scale), limited_s=limited / opts.rate, stage_s=stage_s)


def _scan(src: Path, bar: "_Bar") -> _Input:
    """IN's facts, or the one line that refuses it: unreadable, empty, too low a rate, a non-finite sample."""
    try:
        f = sf.SoundFile(str(src))
    except (sf.LibsndfileError, OSError, RuntimeError) as exc:
        raise UsageError(f"{src}: cannot read it as audio ({exc}); expected a WAV, FLAC or Ogg file") from None
    with f:
        if f.samplerate < MIN_RATE:
            raise UsageError(f"{src}: its sample rate is {f.samplerate} Hz; expected at least {MIN_RATE} Hz "
                             f"(resample it first, e.g. with sox or ffmpeg)")
        step, peak, at = max(1, int(BLOCK_S * f.samplerate)), 0.0, 0
        bar.start("checking", f.frames / f.samplerate)
        for block in f.blocks(step, dtype="float64", always_2d=True):
            bad = ~np.isfinite(block)
            if bad.any():
                i = int(np.argmax(bad.any(axis=1)))
                value = block[i][bad[i]][0]
                raise UsageError(f"{src}: sample {at + i} (at {(at + i) / f.samplerate:.3f} s) is {value}; every "
                                 f"sample must be a finite number: repair or cut the file there")
            peak = max(peak, float(np.abs(block).max()) if len(block) else 0.0)
            at += len(block)
            bar.advance(at / f.samplerate)
        if at == 0:
            raise UsageError(f"{src}: holds no audio (0 samples)")
        # The mono mix is at most the largest channel's peak; the file's peak over 1 means beyond full scale.
        return _Input(src, at, f.samplerate, f.channels, 1.0 / peak if peak > 1.0 else 1.0)


def _mono_blocks(info: _Input) -> Iterator[np.ndarray]:
    """IN's channels mixed to mono (their mean), scaled, float32, in blocks; then the zeros the stages need."""
    with sf.SoundFile(str(info.path)) as f:
        for block in f.blocks(max(1, int(BLOCK_S * info.rate)), dtype="float64", always_2d=True):
            yield (block.mean(axis=1) * info.scale).astype(np.float32)


def _stages(info: _Input, opts: EnhanceOptions, bar: "_Bar", label: str,
            clock: list | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(resampled mono, after air and width (n, 2)) in blocks, exactly OUT's length in all."""
    rs = StreamResampler(info.rate, opts.rate)
    air, width = Air(opts.rate, opts.air, opts.seed), Width(opts.rate, opts.width)
    rs_state, air_state, width_state = ResamplerState(), None, None
    want, done = info.frames * opts.rate // info.rate, 0
    bar.start(label, info.frames / info.rate)
    # Zeros after the end: the resampler's lookahead, so its last output is IN's last sample.
    tail = np.zeros(rs.context + rs.down, np.float32)
    for block in _chain(_mono_blocks(info), tail):
        y, rs_state = rs.push(block, rs_state)
        y = y[: want - done]
        if not len(y):
            continue
        started = time.thread_time()
        z, air_state = air.process(y, air_state)
        stereo, width_state = width.process(z, width_state)
        if clock is not None:
            clock[0] += time.thread_time() - started
        done += len(y)
        bar.advance(done / opts.rate)
        yield y, stereo


def _chain(blocks: Iterator[np.ndarray], tail: np.ndarray) -> Iterator[np.ndarray]:
    yield from blocks
    yield tail


def _write(info: _Input, opts: EnhanceOptions, out: Path, gain: float, ceiling_db: float,
           bar: "_Bar") -> tuple[int, int, float, StreamMeter]:
    """Pass 3: (frames written, samples the limiter touched, stage CPU seconds, OUT's meter)."""
    fmt, subtype = FORMATS[out.suffix.lower()]
    limiter = LoudnessController(opts.rate, channels=2, ceiling_dbtp=ceiling_db)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as a plainly created file would be, not mkstemp's 0600
    meter, clock, written, touched, state = StreamMeter(opts.rate, 2), [0.0], 0, 0, None
    skip = limiter.latency  # the limiter's delay: its first D samples are silence, then OUT's
    try:
        with sf.SoundFile(tmp, "w", samplerate=opts.rate, channels=2, format=fmt, subtype=subtype,
                          compression_level=OGG_COMPRESSION if fmt == "OGG" else None) as f:
            def emit(y: np.ndarray) -> None:
                nonlocal written, skip
                cut = min(skip, len(y))
                y, skip = y[cut:], skip - cut
                if len(y):
                    f.write(y)
                    meter.add(y)
                    written += len(y)

            late = np.zeros((limiter.latency, 2), np.float32)  # the limiter's input, as late as its output
            for _, stereo in _stages(info, opts, bar, "enhancing", clock):
                v = stereo * np.float32(gain)
                y, state = limiter.limit(v, state)
                late = np.concatenate([late, v])
                touched += int(np.count_nonzero(np.abs(y - late[: len(y)]).max(axis=1) > 1e-6))
                late = late[len(y):]
                emit(y)
            y, state = limiter.limit(np.zeros((limiter.latency, 2), np.float32), state)
            emit(y)
        os.replace(tmp, out)
    except BaseException as exc:
        _remove(tmp)
        if _disk_full(exc):
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).rstrip(".")
            raise WriteError(f"-o {out}: cannot write the output ({why}: is the disk full?); nothing was "
                             f"written, make room and run it again") from None
        raise
    return written, touched, clock[0], meter


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _disk_full(exc: BaseException) -> bool:
    """A full disk or a file-size limit, as the OS (ENOSPC, EDQUOT, EFBIG) or libsndfile ("System error") says it."""
    import errno

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return isinstance(exc, sf.LibsndfileError)


class _TruePeak:
    """The largest |x| of a mono stream oversampled 4x (as loudness.measure reads a true peak), in blocks."""

    EDGE = 16  # input samples either side that the 4x filter's reach (10) makes uncertain at a block's edge

    def __init__(self):
        self._tail = np.zeros(0)
        self.peak = 0.0

    def add(self, block: np.ndarray) -> None:
        x = np.concatenate([self._tail, np.asarray(block, np.float64)])
        if len(x) <= 2 * self.EDGE:
            self.peak = max(self.peak, float(np.abs(x).max()) if len(x) else 0.0)
            self._tail = x
            return
        y = resample_poly(x, 4, 1)
        # The last EDGE samples wait for the next block; what it does not bring is read plainly here.
        start = 4 * self.EDGE if len(self._tail) >= 2 * self.EDGE else 0
        self.peak = max(self.peak, float(np.abs(y[start:len(y) - 4 * self.EDGE]).max()),
                        float(np.abs(x[-self.EDGE:]).max()))
        self._tail = x[-2 * self.EDGE:]


class _Bar:
    """tqdm's bar on a terminal, one per pass ("checking", "measuring", "enhancing"); otherwise nothing."""

    def __init__(self, wanted: bool, passes: int):
        self._on = wanted and sys.stderr.isatty()
        self._bar, self._pass, self._passes = None, 0, passes

    def start(self, label: str, total_s: float) -> None:
        self.close()
        if not self._on:
            return
        from tqdm import tqdm

        self._pass += 1
        self._bar = tqdm(total=round(total_s, 1), unit="s", desc=f"{label} ({self._pass}/{self._passes})",
                         file=sys.stderr, dynamic_ncols=True, leave=False,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")

    def advance(self, seconds: float) -> None:
        if self._bar is not None:
            self._bar.n = min(round(seconds, 1), self._bar.total)
            self._bar.refresh() if self._bar.n >= self._bar.total else self._bar.update(0)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None



def summary(result: EnhanceResult, width: float, air: float) -> list[str]:
    """The lines `enhance` prints when it is done."""
    lines = []
    if result.scaled_db > 0:
        lines.append(f"note: the input peaks {result.scaled_db:.1f} dB beyond full scale; it was scaled down by "
                     f"{result.scaled_db:.1f} dB first")
    lines.append(f"wrote {result.path}: {result.frames / result.rate:.2f} s at {result.rate} Hz, stereo "
                 f"(width {width:g}, air {air:g})")
    if math.isfinite(result.input_lufs) and math.isfinite(result.output_lufs):
        lra = (f", loudness range {result.input_lra:.1f} -> {result.output_lra:.1f} LU"
               if math.isfinite(result.input_lra) and math.isfinite(result.output_lra) else "")
        lines.append(f"loudness {result.input_lufs:.1f} -> {result.output_lufs:.1f} LUFS (one gain of "
                     f"{result.gain_db:+.2f} dB){lra}; the limiter held {result.limited_s:.2f} s over -1 dBTP")
    else:
        lines.append("input too short or too quiet to measure: written at its own level")
    return lines
