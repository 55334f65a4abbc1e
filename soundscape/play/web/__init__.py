"""The web mixer (`soundscape play SCENE --web`): sliders, prompts, volume, sleep timer and live status in a browser.

bridge.py hands the page's requests to the player's main thread (the same LiveControl that serves
`soundscape set`); server.py is the Starlette app on its own uvicorn thread; the master volume and the tap the
meter and spectrogram read are audio classes (audio/mixer.py); static/ is the page (plain HTML, CSS, JS).
Nothing here imports Starlette or uvicorn until a mixer is started.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from ...errors import UsageError


def save_dir(web, scene_path: str) -> Path | None:
    """--web-save-dir DIR, or beside the scene when given without a folder; checked before the model loads."""
    if web is None or web.save_dir is None:
        return None
    from ...scene.shipped import SHIPPED_DIR

    folder = Path(web.save_dir) if web.save_dir else Path(scene_path).resolve().parent
    if not web.save_dir and folder == SHIPPED_DIR:
        folder = Path.cwd()  # a shipped scene lives inside the installed package: save where the user is
    if not folder.is_dir():
        raise UsageError(f"--web-save-dir {folder}: no such folder; create it or pass another")
    return folder


def start(web, scene_path: str, playback, bridge, folder: Path | None):
    """Start the mixer beside a playing engine and print its `web: URL` line. None if it cannot listen.

    `web`: the WebOptions; `bridge`: the one already ticking on the engine (shared with the media controls,
    play/mpris.py); `folder`: where "Save as scene" writes (`save_dir`), None to download."""
    from .server import WebMixer

    mixer = WebMixer(bridge, playback.ring, playback.player, playback.rate, port=web.port, save_dir=folder,
                     scene_path=scene_path)
    if not mixer.start():
        return None
    print(f"web: {mixer.url}", file=sys.stderr, flush=True)
    if web.open:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(mixer.url,), name="soundscape-open", daemon=True).start()
    return mixer
