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


def save_dir(args) -> Path | None:
    """--web-save-dir DIR, or beside the scene when given without a folder; checked before the model loads."""
    if getattr(args, "web_save_dir", None) is None:
        return None
    from ...scene.shipped import SHIPPED_DIR

    folder = Path(args.web_save_dir) if args.web_save_dir else Path(args.scene).resolve().parent
    if not args.web_save_dir and folder == SHIPPED_DIR:
        folder = Path.cwd()  # a shipped scene lives inside the installed package: save where the user is
    if not folder.is_dir():
        raise UsageError(f"--web-save-dir {folder}: no such folder; create it or pass another")
    return folder


def start(args, engine, live, bridge=None):
    """Start the mixer beside a playing engine and print its `web: URL` line. None if it cannot listen.

    `bridge`: one already ticking on the engine (shared with the media controls, play/mpris.py)."""
    from .bridge import Bridge
    from .server import WebMixer

    shared = bridge is not None
    bridge = bridge or Bridge(live)
    mixer = WebMixer(bridge, engine.ring, engine.player, engine.config.rate,
                     port=getattr(args, "web_port", None) or 0, save_dir=save_dir(args), scene_path=args.scene)
    if not mixer.start():
        return None
    if not shared:
        engine.on_tick.append(bridge.tick)
    print(f"web: {mixer.url}", file=sys.stderr, flush=True)
    if getattr(args, "open", False):
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(mixer.url,), name="soundscape-open", daemon=True).start()
    return mixer
