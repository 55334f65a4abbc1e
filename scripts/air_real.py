"""Air on real recordings: how close `Air` at the default 0.5 comes to what a full-band recording holds
above 8 kHz, once the recording is band-limited to 16 kHz mono as the model outputs it.

    python scripts/air_real.py                 # ufoai-sound's seven (19 MB)
    python scripts/air_real.py --megaglest     # and rain, birds and wind from megaglest-data (242 MB): the test's set
    python scripts/air_real.py --markdown      # the table in docs/air-real.md

The recordings come from Debian packages: an installed one is read where it lies (CI and the README's
install command install ufoai-sound); otherwise `apt-get download` fetches the .deb into a cache folder
(SOUNDSCAPE_AIR_CACHE, default ~/.cache/soundscape/air-real) and only the files used are unpacked.

For each recording x (mono mix, at 48 kHz):
  m     = x taken to 16 kHz and back through the chain's resampler: the model's band, nothing above 8 kHz
  y     = Air(48000, 0.5)(m)
  E_b   = y's level in third octave b (8, 10, 12.5, 16 kHz) minus x's, dB, over the whole recording,
          and over its loud and quiet seconds apart (above and below the median second's level)
  burst = the most any 1-second window of y exceeds x in a band, dB (air that x never had then)
  drop  = the most any 1-second window of y falls short of x in a band, dB, among the seconds where x's
          band is within 30 dB of its loudest second (quiet seconds of x itself do not count)
A band counts only where x holds it: its PSD no more than HOLD_DB below x's 5.3-7 kHz PSD, its upper
half no more than CUT_DB below its lower half, and the band below held too (lossy files are often
low-passed, and what lies above such a cut is the encoder's debris, not the band).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

FS = 48000
CENTRES = (8000.0, 10000.0, 12500.0, 16000.0)
HOLD_DB = 45.0
CUT_DB = 15.0
UFOAI = ("ufoai-sound", "/usr/share/games/ufoai/base/0snd.pk3")
MEGAGLEST = ("megaglest-data", "/usr/share/games/megaglest/tilesets")


@dataclass(frozen=True)
class Recording:
    name: str  # what it is
    package: str
    path: str  # inside the package's pk3 (ufoai-sound) or under its tilesets/ folder (megaglest-data)


# ufoai-sound: the set the test uses (fire, water, a town, wind, night insects); megaglest-data adds rain and birds.
SMALL = (
    Recording("fire", "ufoai-sound", "sound/ambience/fire2.ogg"),
    Recording("small fire", "ufoai-sound", "sound/ambience/smallfire.ogg"),
    Recording("water", "ufoai-sound", "sound/ambience/water01.ogg"),
    Recording("fountain", "ufoai-sound", "sound/ambience/waterfontain.ogg"),
    Recording("town", "ufoai-sound", "sound/ambience/city_abnd_ufoai_atm.ogg"),
    Recording("night", "ufoai-sound", "sound/ambience/ufo_night_atm.ogg"),
    Recording("arctic wind", "ufoai-sound", "sound/ambience/arcticwind.ogg"),
)
LARGE = (
    Recording("rain", "megaglest-data", "birch_forest/sounds/rain.ogg"),
    Recording("rain 2", "megaglest-data", "autumn/sounds/rain.ogg"),
    Recording("birds", "megaglest-data", "spring/sounds/day.ogg"),
    Recording("birds 2", "megaglest-data", "birch_forest/sounds/day.ogg"),
    Recording("forest night", "megaglest-data", "dark_forest/sounds/night.ogg"),
    Recording("wind", "megaglest-data", "winter/sounds/wind.ogg"),
)


def cache_dir() -> Path:
    return Path(os.environ.get("SOUNDSCAPE_AIR_CACHE", Path.home() / ".cache" / "soundscape" / "air-real"))


def _unpacked(package: str, installed: str, members: list[str]) -> Path:
    """Where the package's file `installed` lies (with `members`: its folder, holding those files):
    installed, or unpacked from a downloaded .deb, only what is asked for."""
    if Path(installed).exists():
        return Path(installed)
    root = cache_dir() / package
    target = root / installed.lstrip("/")
    wanted = ["." + installed + "/" + m for m in members] if members else ["." + installed]
    if all((root / w).exists() for w in wanted):
        return target
    root.mkdir(parents=True, exist_ok=True)
    debs = sorted(root.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", package], cwd=root, check=True, capture_output=True)
        debs = sorted(root.glob(f"{package}_*.deb"))
    # Streamed: the package's data is never held whole (megaglest-data unpacks to 400 MB).
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[-1])], stdout=subprocess.PIPE) as proc:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for info in tar:
                if info.name in wanted and info.isfile():
                    tar.extract(info, root, filter="data")
    return target


def load(recordings) -> dict[str, tuple[np.ndarray, int]]:
    """name -> (mono float64 audio, its rate)."""
    out = {}
    small = [r for r in recordings if r.package == "ufoai-sound"]
    if small:
        with zipfile.ZipFile(_unpacked(*UFOAI, [])) as pk3:
            for r in small:
                out[r.name] = _mono(pk3.read(r.path))
    large = [r for r in recordings if r.package == "megaglest-data"]
    if large:
        root = _unpacked(*MEGAGLEST, [r.path for r in large])
        for r in large:
            out[r.name] = _mono((root / r.path).read_bytes())
    return out


def _mono(data: bytes) -> tuple[np.ndarray, int]:
    x, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return x.mean(axis=1), rate


def model_band(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(the original at 48 kHz, its 16 kHz version brought back to 48 kHz by the chain's resampler)."""
    from soundscape.audio.resample import ResamplerState, StreamResampler

    full = resample_poly(x, FS // np.gcd(FS, rate), rate // np.gcd(FS, rate)) if rate != FS else x
    low = resample_poly(full, 1, 3).astype(np.float32)
    back, _ = StreamResampler(16000, FS).push(low, ResamplerState())
    return full[: len(back)], back.astype(np.float64)


def _band_energy(spectrum: np.ndarray, f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return spectrum[..., (f >= lo) & (f < hi)].sum(axis=-1)


def _edges(c: float) -> tuple[float, float]:
    return c * 2 ** (-1 / 6), c * 2 ** (1 / 6)


def measure(original: np.ndarray, enhanced: np.ndarray) -> dict:
    """The figures above for one recording; bands x does not hold are NaN."""
    n = len(original) // FS
    frames = np.stack([original[: n * FS].reshape(n, FS), enhanced[: n * FS].reshape(n, FS)])
    spec = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (2, seconds, bins)
    f = np.fft.rfftfreq(FS, 1 / FS)
    ref = _band_energy(spec[0], f, 5300, 7000).sum() / 1700.0
    holds = []
    for c in CENTRES:
        lo, hi = _edges(c)
        psd = _band_energy(spec[0], f, lo, hi).sum() / (hi - lo)
        low_half, high_half = _band_energy(spec[0], f, lo, c).sum(), _band_energy(spec[0], f, c, hi).sum()
        # Once a band is missing, the ones above are too (a low-pass); stray energy there is not the band.
        holds.append((not holds or holds[-1]) and 10 * np.log10(psd / ref) > -HOLD_DB
                     and 10 * np.log10(high_half / low_half * (c - lo) / (hi - c)) > -CUT_DB)
    level = 10 * np.log10(spec[0].sum(axis=-1) + 1e-30)
    loud = level >= np.median(level)
    result = {"seconds": n, "holds": np.array(holds)}
    for key, rows in (("all", slice(None)), ("loud", loud), ("quiet", ~loud)):
        err = []
        for c, held in zip(CENTRES, holds):
            lo, hi = _edges(c)
            e = _band_energy(spec[:, rows], f, lo, hi).sum(axis=-1)
            err.append(10 * np.log10(e[1] / e[0]) if held else np.nan)
        result[key] = np.array(err)
    burst, drop = [], []
    for c, held in zip(CENTRES, holds):
        lo, hi = _edges(c)
        e = _band_energy(spec, f, lo, hi) + 1e-30  # (2, seconds)
        ratio = 10 * np.log10(e[1] / e[0])
        present = 10 * np.log10(e[0] / e[0].max()) > -30
        burst.append(ratio.max() if held else np.nan)
        drop.append(-ratio[present].min() if held else np.nan)
    result["burst"], result["drop"] = np.array(burst), np.array(drop)
    return result


def run(recordings, air: float = 0.5, seed: int = 1) -> dict[str, dict]:
    from soundscape.audio.air import Air

    out = {}
    for name, (x, rate) in load(recordings).items():
        original, m = model_band(x, rate)
        y, _ = Air(FS, air, seed=seed).process(m.astype(np.float32), None)
        out[name] = measure(original, y.astype(np.float64))
    return out


def table(results: dict[str, dict], markdown: bool = False) -> str:
    head = ["recording", "s"] + [f"{c / 1000:g} kHz" for c in CENTRES] + ["loud (worst)", "quiet (worst)",
                                                                         "burst", "drop"]

    def fmt(v):
        return "-" if not np.isfinite(v) else f"{v:+.1f}"

    def worst(a):
        a = a[np.isfinite(a)]
        return a[np.argmax(np.abs(a))] if len(a) else np.nan

    rows = [[name, str(r["seconds"])] + [fmt(v) for v in r["all"]]
            + [fmt(worst(r["loud"])), fmt(worst(r["quiet"])), fmt(np.nanmax(r["burst"])), fmt(np.nanmax(r["drop"]))]
            for name, r in results.items()]
    errors = np.concatenate([r["all"] for r in results.values()])
    errors = errors[np.isfinite(errors)]
    footer = (f"median |error| {np.median(np.abs(errors)):.1f} dB, worst {np.abs(errors).max():.1f} dB over "
              f"{len(errors)} bands of {len(results)} recordings")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n\n" + footer
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in [head] + rows]
    return "\n".join(lines) + "\n" + footer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--megaglest", action="store_true", help="add rain, birds and wind from megaglest-data (242 MB)")
    p.add_argument("--air", type=float, default=0.5)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    recordings = SMALL + (LARGE if args.megaglest else ())
    print(table(run(recordings, args.air), args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
