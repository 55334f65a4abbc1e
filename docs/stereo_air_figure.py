"""Make docs/stereo-air.png: a synthetic rain with birds, band-limited to 16 kHz as the model delivers it,
before (what soundscape played until issue 25: 48 kHz, the same signal twice) and after air and width
at their defaults. Run from a checkout: python docs/stereo_air_figure.py (needs Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.signal import butter, coherence, resample_poly, sosfilt, stft

from soundscape.audio.air import Air
from soundscape.audio.resample import ResamplerState, StreamResampler
from soundscape.audio.width import Width

FS, SECONDS = 48000, 6.0
OUT = Path(__file__).with_name("stereo-air.png")


def texture(rng) -> np.ndarray:
    n = int(SECONDS * FS)
    x = 0.05 * sosfilt(butter(1, 400, "highpass", fs=FS, output="sos"), rng.standard_normal(n))
    drops = np.zeros(n)
    for a in rng.integers(0, n - 1000, int(400 * SECONDS)):
        length = rng.integers(100, 800)
        drops[a:a + length] += rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 5)) \
            * rng.uniform(0.05, 0.5)
    x += sosfilt(butter(1, 1000, "highpass", fs=FS, output="sos"), drops)
    for a in rng.integers(0, n - FS // 4, 10):  # birds: chirps with two harmonics
        length = rng.integers(FS // 20, FS // 6)
        t = np.arange(length) / FS
        phase = 2 * np.pi * np.cumsum(rng.uniform(2000, 4000) * (1 + 0.3 * np.sin(2 * np.pi * 9 * t))) / FS
        env = np.sin(np.pi * np.arange(length) / length) ** 2
        for h, g in ((1, 1.0), (2, 0.3), (3, 0.1)):
            x[a:a + length] += 0.4 * g * env * np.sin(h * phase)
    return x


def colour(v: np.ndarray) -> np.ndarray:
    """0..1 -> RGB, a dark-blue-to-yellow ramp."""
    stops = np.array([[8, 8, 24], [40, 20, 90], [150, 40, 110], [235, 110, 60], [250, 230, 140]], float)
    pos = np.clip(v, 0, 1) * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    f = (pos - i)[..., None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def panel(x: np.ndarray, title: str, width: int = 900, height: int = 260) -> Image.Image:
    f, _, z = stft(x, FS, nperseg=1024, noverlap=768)
    db = 20 * np.log10(np.abs(z) + 1e-9)
    top = db.max()
    img = colour((db - (top - 80)) / 80)[::-1]  # 80 dB of range, low frequencies at the bottom
    pic = Image.fromarray(img).resize((width, height), Image.BILINEAR)
    canvas = Image.new("RGB", (width + 70, height + 50), (255, 255, 255))
    canvas.paste(pic, (60, 25))
    d = ImageDraw.Draw(canvas)
    d.text((60, 6), title, fill=(0, 0, 0))
    for khz in (0, 4, 8, 12, 16, 20, 24):
        y = 25 + height - int(height * khz / 24)
        d.line([(54, y), (60, y)], fill=(0, 0, 0))
        d.text((18, y - 6), f"{khz}k", fill=(0, 0, 0))
    for s in range(int(SECONDS) + 1):
        xpos = 60 + int(width * s / SECONDS)
        d.line([(xpos, 25 + height), (xpos, 31 + height)], fill=(0, 0, 0))
        d.text((xpos - 4, 33 + height), f"{s}s", fill=(0, 0, 0))
    return canvas


def main() -> None:
    original = texture(np.random.default_rng(1))
    model, _ = StreamResampler(16000, FS).push(resample_poly(original, 1, 3).astype(np.float32), ResamplerState())
    air, _ = Air(FS, 0.5, seed=1).process(model, None)
    stereo, _ = Width(FS, 0.5).process(air, None)
    f, c = coherence(stereo[:, 0], stereo[:, 1], fs=FS, nperseg=4096)
    band = c[(f >= 500) & (f <= 8000)].mean()
    panels = [panel(model, "before: the model's 16 kHz audio at 48 kHz, the same in both channels (L = R)"),
              panel(stereo[:, 0], "after: air 0.5, width 0.5, left channel"),
              panel(stereo[:, 1], f"after: right channel (L/R coherence 0.5-8 kHz: {band:.2f}; before: 1.00)")]
    out = Image.new("RGB", (panels[0].width, sum(p.height for p in panels)), (255, 255, 255))
    y = 0
    for p in panels:
        out.paste(p, (0, y))
        y += p.height
    out.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
