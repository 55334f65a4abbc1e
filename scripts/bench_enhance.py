"""Peak memory of `soundscape enhance` on a long file (issue 30's target: an hour in well under 500 MB).

    python scripts/bench_enhance.py [--minutes 60] [--out wide.flac]

Writes MINUTES of 16 kHz mono noise with a slow swell (PCM_16 WAV) into a temporary folder, runs
`python -m soundscape enhance IN -o OUT` on it as a child process, and prints the child's peak resident
memory (getrusage's ru_maxrss), its wall and CPU time, and the sizes of IN and OUT.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_input(path: Path, minutes: float, rate: int = 16000) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for second in range(int(minutes * 60)):  # written a second at a time: the script stays small too
            swell = 0.05 + 0.04 * np.sin(2 * np.pi * second / 90.0)
            f.write((swell * rng.standard_normal(rate)).astype(np.float32))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--out", default="wide.flac", help="the output's name (its suffix picks the format)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "long.wav", Path(tmp) / args.out
        make_input(src, args.minutes)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", "soundscape", "enhance", str(src), "-o", str(out)]).returncode
        wall = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"enhance of {args.minutes:g} min (16 kHz mono, {src.stat().st_size / 1e6:.0f} MB) -> {out.name} "
              f"({out.stat().st_size / 1e6 if out.exists() else 0:.0f} MB): exit {code}, peak RSS "
              f"{usage.ru_maxrss / 1024:.0f} MB, wall {wall:.0f} s, CPU {usage.ru_utime + usage.ru_stime:.0f} s, "
              f"load before {os.getloadavg()[0]:.1f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
