"""`soundscape render`: a scene to a file of an exact length, resumable, never losing audio.

After every chunk the audio is written (header kept valid), then the stream
state is saved atomically beside the output (OUT.state.npz). A render that is
stopped can continue with --resume; a finished render removes the state file.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..audio.files import GrowingAudioFile, check_output_path, copy_prefix
from ..errors import UsageError
from ..stream.scene_stream import SceneStream


@dataclass
class RenderResult:
    path: Path
    frames: int
    rate: int
    seconds_generated: float
    wall_s: float
    interrupted: bool = False
    loudness: dict | None = None  # integrated LUFS, loudness range, true peak of the whole file
    stage_s: float | None = None  # seconds the chain's air and width took (audio/chain.py)


@contextmanager
def _signals_deferred():
    """Hold Ctrl-C / SIGTERM until the block is done (they are delivered right after).

    Why a Python handler and not a signal mask: with other threads running (the segmented render's
    executor, the progress bar), the kernel hands a process signal to any thread that does not mask
    it, and Python then runs the handler on the main thread mid-block: the audio was written but not
    the state that resumes after it (seen as "nothing to resume yet" under load).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if held:
            handler = old[held[0]]
            if callable(handler):
                handler(held[0], None)  # Python's default raises KeyboardInterrupt, as the signal would have
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), held[0])


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.npz")


def check_resume_clock(state_file: Path, start_time: float | None) -> None:
    """A resumed render keeps the clock it began on: a different --start-time is refused, not obeyed silently
    (the first part would follow one clock and the rest another)."""
    import numpy as np

    from ..units import format_time_of_day

    if start_time is None:
        return
    try:
        with np.load(state_file, allow_pickle=False) as f:
            saved = float(f["day_start"]) if "day_start" in f else None
    except (OSError, ValueError, KeyError):
        return  # no state or an unreadable one: resuming says so in its own words
    if saved is not None and abs(saved - start_time) >= 1.0:
        raise UsageError(f"--start-time {format_time_of_day(start_time)}: the render being resumed began at "
                         f"{format_time_of_day(saved)}; resume with --start-time {format_time_of_day(saved)} "
                         f"or without --start-time")


def _progress(total_s: float, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=round(total_s, 2), unit="s", desc="rendering", file=sys.stderr, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s audio "
                           "[{elapsed}<{remaining}{postfix}]")


def advance(bar, seconds: float) -> None:
    """Show `seconds` of audio done. Set, not added: a float sum of many small steps overshoots the
    total, and tqdm then warns and shows a negative ETA."""
    bar.n = min(round(seconds, 2), bar.total)
    bar.refresh()


def render(stream: SceneStream, out: str | Path, duration_s: float, *, timeline: str | Path | None = None,
           resume: bool = False, quiet: bool = False) -> RenderResult:
    out = check_output_path(out)
    rate = stream.out_rate
    total = int(round(duration_s * rate))
    state_file = state_path(out)
    done = 0
    if resume:
        if not state_file.exists() or not out.exists():
            raise UsageError(f"--resume: no saved state {state_file} beside {out}; render without --resume")
        stream.load_state(state_file)
        done = min(stream.state.samples_out, total)
        partial = out.with_name(out.name + ".partial")
        out.replace(partial)
    elif state_file.exists():
        state_file.unlink()  # a stale state from an older render of this file
    bar = _progress(duration_s, quiet)
    timeline_f = open(timeline, "a" if resume else "w", encoding="utf-8") if timeline else None
    started = time.perf_counter()
    generated = 0.0
    interrupted = True
    try:
        with GrowingAudioFile(out, rate, stream.channels) as f:
            if resume:
                copy_prefix(partial, f, done)
                partial.unlink()
            if bar:
                advance(bar, done / rate)
            while f.frames < total:
                seg = stream.next_segment()
                take = seg.audio[: total - f.frames]
                # The audio and the state that resumes after it are written as one step.
                with _signals_deferred():
                    f.write(take)
                    stream.save_state(state_file)
                generated += seg.end_s - seg.start_s
                if timeline_f:
                    timeline_f.write(json.dumps(seg.timeline_row()) + "\n")
                    timeline_f.flush()
                if bar:
                    rtf = generated / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix_str(f"{rtf:.2f}x real time", refresh=False)
                    advance(bar, f.frames / rate)
            frames = f.frames
        interrupted = False
        state_file.unlink(missing_ok=True)
        loudness = _measure_file(out)
        if timeline_f and loudness:
            target = stream.scene.output.loudness_lufs + 20 * math.log10(max(stream.scene.output.volume, 1e-6))
            timeline_f.write(json.dumps({"summary": {"duration_s": round(frames / rate, 3),
                                                     "target_lufs": round(target, 2), **loudness}}) + "\n")
    finally:
        if bar:
            bar.close()
        if timeline_f:
            timeline_f.close()
    return RenderResult(path=out, frames=frames, rate=rate, seconds_generated=generated,
                        wall_s=time.perf_counter() - started, interrupted=interrupted, loudness=loudness,
                        stage_s=stream.chain.stage_s)


MEASURE_MAX_S = 4 * 3600  # longer files are not read back whole for the loudness summary


def _measure_file(path: Path) -> dict | None:
    """Integrated loudness, loudness range and true peak of the finished file (EBU R128 figures)."""
    import soundfile as sf

    from ..audio.loudness import measure

    info = sf.info(str(path))
    if info.frames == 0 or info.frames > MEASURE_MAX_S * info.samplerate:
        return None
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    m = measure(audio, rate)
    return {k: (round(v, 2) if math.isfinite(v) else None) for k, v in m.items()}
