"""The shortest repeat distance of any 2 s stretch in a capture: `python scripts/repeat_distance.py CAPTURE.wav`.

Issue 32's target for the weave ("the shortest repeat distance of any 2 s stretch >= 2 minutes") measured on
what was played, not on what the weaver says it did. How:
  1. mono, resampled to 4 kHz (scipy.signal.resample_poly): the weave copies whole stretches, so the
     band below 2 kHz carries every repeat;
  2. its log envelope in 5 ms frames (200 Hz), with the envelope's 0.25 s moving mean taken off: a repeat
     played at another level or with its level easing (the weave's join match) is still the same shape;
  3. one 2 s query every second, normalised cross-correlation (Pearson, per lag) against the whole capture
     by FFT (scipy.fft, one transform of the capture, one inverse per query): 30 minutes take seconds;
  4. a repeat is a lag of at least the stretch's length where the correlation reaches THRESHOLD; the
     figure is the shortest such lag. Unrelated noise-like stretches correlate near 0 (the maximum over
     every lag of 30 minutes stays under about 0.4), a copy near 1.
Prints the figure (or that nothing repeats); `--json` prints it as an object. A periodic sound (a steady
beat) reads as repeating at its period: that is what a listener hears too.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

RATE = 4000  # the resampled capture
FRAME = 20  # samples per envelope frame at RATE: 5 ms, 200 frames a second
STRETCH_S = 2.0
HOP_S = 1.0  # queries start every second: any repeat of 3 s or more contains a whole query
DETREND_S = 0.25
THRESHOLD = 0.6


def envelope(audio: np.ndarray, rate: int) -> np.ndarray:
    """The detrended log envelope at 200 Hz of `audio` ((n,) or (n, channels) at `rate`)."""
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import resample_poly

    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    g = np.gcd(RATE, rate)
    x = resample_poly(mono.astype(np.float64), RATE // g, rate // g)
    n = len(x) // FRAME
    env = np.log(np.sqrt(np.mean(np.square(x[: n * FRAME]).reshape(n, FRAME), axis=1)) + 1e-6)
    return env - uniform_filter1d(env, int(DETREND_S * RATE / FRAME), mode="nearest")


def shortest_repeat(audio: np.ndarray, rate: int, stretch_s: float = STRETCH_S, threshold: float = THRESHOLD,
                    after_s: float = 0.0):
    """(distance s, first start s, second start s, correlation) of the closest repeat, or None; with
    `after_s`, of stretches heard from then on (their earlier copy may lie anywhere)."""
    from scipy import fft

    env = envelope(audio, rate)
    fps = RATE / FRAME
    m, hop = int(stretch_s * fps), int(HOP_S * fps)
    n = len(env)
    if n < 2 * m:
        return None
    nfft = fft.next_fast_len(n + m)
    spectrum = fft.rfft(env, nfft)
    # Per-lag sums of the capture and its square over m frames: the Pearson normalisation.
    c1, c2 = np.concatenate([[0.0], np.cumsum(env)]), np.concatenate([[0.0], np.cumsum(env * env)])
    s1, s2 = c1[m:] - c1[:-m], c2[m:] - c2[:-m]
    sd = np.sqrt(np.maximum(s2 - s1 * s1 / m, 0.0))
    lags = np.arange(len(sd))
    best = None
    for start in range(int(after_s * fps), n - m + 1, hop):
        q = env[start:start + m] - env[start:start + m].mean()
        qn = float(np.sqrt(np.dot(q, q)))
        if qn < 1e-9:
            continue  # silence matches nothing
        corr = fft.irfft(spectrum * np.conj(fft.rfft(q, nfft)), nfft)[: len(sd)]
        ncc = corr / np.maximum(qn * sd, 1e-12)
        far = (np.abs(lags - start) >= m) & (ncc >= threshold) & (sd > 1e-6)
        if not far.any():
            continue
        hits = lags[far]
        k = int(hits[np.argmin(np.abs(hits - start))])
        d = abs(k - start) / fps
        if best is None or d < best[0]:
            a, b = sorted((start, k))
            best = (d, a / fps, b / fps, float(ncc[k]))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The shortest repeat distance of any 2 s stretch in a capture.")
    parser.add_argument("capture", help="a WAV or FLAC file")
    parser.add_argument("--stretch", type=float, default=STRETCH_S, help="stretch length, seconds (default 2)")
    parser.add_argument("--after", type=float, default=0.0, metavar="S",
                        help="only stretches heard from S seconds on (e.g. once a budget's pool has filled)")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    args = parser.parse_args(argv)
    import soundfile as sf

    try:
        audio, rate = sf.read(args.capture, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as e:
        print(f"repeat_distance: cannot read {args.capture}: {e}", file=sys.stderr)
        return 2
    found = shortest_repeat(audio, rate, args.stretch, after_s=args.after)
    out = {"capture": args.capture, "seconds": round(len(audio) / rate, 1), "stretch_s": args.stretch,
           "after_s": args.after,
           "repeat_distance_s": None if found is None else round(found[0], 2)}
    if found is not None:
        out.update(first_s=round(found[1], 2), second_s=round(found[2], 2), correlation=round(found[3], 3))
    if args.json:
        print(json.dumps(out))
    elif found is None:
        print(f"no {args.stretch:g} s stretch repeats in {out['seconds']} s (correlation < {THRESHOLD})")
    else:
        print(f"shortest repeat distance: {out['repeat_distance_s']} s (the stretch at {out['first_s']} s "
              f"again at {out['second_s']} s, correlation {out['correlation']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
