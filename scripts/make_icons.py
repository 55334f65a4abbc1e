"""Draw serve's PNG and ICO icons from the same shapes as soundscape/serve/static/icon.svg (run once; the
files are committed): icon-192/512.png (rounded, transparent corners), icon-maskable-512.png (full bleed,
the wave inside the 80 % safe zone the maskable spec keeps), apple-touch-icon.png (180 px, opaque: iOS
rounds it) and favicon.ico (16, 32, 48). Needs Pillow."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

BACKGROUND, WAVE = (0x12, 0x1A, 0x22, 255), (0x6C, 0xC4, 0xB0, 255)
# icon.svg's path "M5 18c3 0 3-6 6-6s3 10 6 10 3-14 6-14 3 10 4 10" as absolute cubic segments (32-unit box)
SEGMENTS = [((5, 18), (8, 18), (8, 12), (11, 12)), ((11, 12), (14, 12), (14, 22), (17, 22)),
            ((17, 22), (20, 22), (20, 8), (23, 8)), ((23, 8), (26, 8), (26, 18), (27, 18))]
SUPER = 4  # drawn at 4x and scaled down: smooth edges without an anti-aliasing renderer


def _wave(steps: int = 400) -> list[tuple[float, float]]:
    points = []
    for p0, p1, p2, p3 in SEGMENTS:
        for i in range(steps + 1):
            t = i / steps
            a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3
            points.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return points


def draw(size: int, *, rounded: bool, wave_scale: float = 1.0) -> Image.Image:
    big = size * SUPER
    unit = big / 32
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(img)
    if rounded:
        pen.rounded_rectangle((0, 0, big - 1, big - 1), radius=8 * unit, fill=BACKGROUND)
    else:
        pen.rectangle((0, 0, big, big), fill=BACKGROUND)
    points = [((16 + (x - 16) * wave_scale) * unit, (16 + (y - 16) * wave_scale) * unit) for x, y in _wave()]
    r = 1.2 * wave_scale * unit  # half of the SVG's stroke-width 2.4
    # The stroke as discs along the curve, closer than a tenth of their radius: smooth edges and round caps
    # (a wide polyline's joints leave notches)
    for x, y in points:
        pen.ellipse((x - r, y - r, x + r, y + r), fill=WAVE)
    return img.resize((size, size), Image.LANCZOS)


def main(folder: Path) -> None:
    draw(192, rounded=True).save(folder / "icon-192.png", optimize=True)
    draw(512, rounded=True).save(folder / "icon-512.png", optimize=True)
    draw(512, rounded=False, wave_scale=0.72).save(folder / "icon-maskable-512.png", optimize=True)
    draw(180, rounded=False, wave_scale=0.8).convert("RGB").save(folder / "apple-touch-icon.png", optimize=True)
    draw(48, rounded=True).save(folder / "favicon.ico", sizes=[(16, 16), (32, 32), (48, 48)])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "soundscape/serve/static")
