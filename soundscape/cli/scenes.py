"""`soundscape validate`, `scenes`, `cache` and `devices`: the commands that need no model."""

from __future__ import annotations

import os
import sys

from ..errors import EXIT_FAILURE, EXIT_USAGE, SoundscapeError


def add_parsers(sub) -> None:
    validate = sub.add_parser("validate", help="check scene files; exit 0 if all are valid, 2 if not",
                              description="Check scene files and report every problem as FILE:LINE: KEY: message.")
    validate.add_argument("scenes", nargs="+", metavar="SCENE")

    sub.add_parser("scenes", help="list the shipped scenes (play them by name: soundscape play forest)",
                   description="List the scenes that ship with soundscape, with their descriptions.")

    sub.add_parser("devices", help="list audio output devices", description="List audio output devices.")

    cache = sub.add_parser("cache", help="show what soundscape's caches hold; `cache clear [NAME]` empties them",
                           description="The caches under $XDG_CACHE_HOME/soundscape (~/.cache/soundscape): "
                                       "prompts (encoded prompts), openvino (OpenVINO's converted models), "
                                       "prepared (which OpenVINO entry each model's stage became) and audio "
                                       "(instant-start recordings). Each is rebuilt when needed.")
    cache.add_argument("action", nargs="?", choices=["list", "clear"], default="list")
    cache.add_argument("name", nargs="?", choices=["prompts", "openvino", "prepared", "audio"],
                       help="one cache (default: all)")


def cmd_validate(ns) -> int:
    from ..scene import load_scene
    from ..scene.shipped import find_scene

    bad = broken = 0
    for path in [str(find_scene(s)) for s in ns.scenes]:  # every file is checked, whatever the ones before it held
        try:
            scene = load_scene(path)
            print(f"{path}: ok ({scene.name}: {len(scene.layers)} layers)")
        except SoundscapeError as exc:
            print(exc, file=sys.stderr)
            bad += 1
        except Exception as exc:  # a bug in the reader: say so for this file, and go on to the next
            print(f"{path}: internal error: {type(exc).__name__} (run with SOUNDSCAPE_DEBUG=1 for the traceback, "
                  f"and please report it)", file=sys.stderr)
            if os.environ.get("SOUNDSCAPE_DEBUG"):
                raise
            broken += 1
    return EXIT_FAILURE if broken else EXIT_USAGE if bad else 0


def cmd_scenes(ns) -> int:
    from ..scene import load_scene
    from ..scene.shipped import SHIPPED_DIR, shipped_scenes

    found = shipped_scenes()
    width = max(map(len, found), default=0)
    for name, path in found.items():
        scene = load_scene(path)
        print(f"{name:<{width}}  {scene.name}" + (f": {scene.description}" if scene.description else ""))
    print(f"\nplay one with `soundscape play NAME`; the files are in {SHIPPED_DIR}", file=sys.stderr)
    return 0


def cmd_cache(ns) -> int:
    from .. import caches

    code = 0
    for name in [ns.name] if ns.name else list(caches.CACHES):
        where, what = caches.folder(name), caches.CACHES[name][1]
        tally = caches.clear(name) if ns.action == "clear" else caches.survey(name)
        done = "removed " if ns.action == "clear" else ""
        print(f"{name:<9} {done}{tally.files} files, {tally.bytes / 2**20:.1f} MiB  {where}  ({what})")
        for problem in tally.problems[:3]:
            print(f"{'':<9} could not {'remove' if done else 'read'} {problem}", file=sys.stderr)
        if len(tally.problems) > 3:
            print(f"{'':<9} and {len(tally.problems) - 3} more", file=sys.stderr)
        code = EXIT_FAILURE if tally.problems and done else code
    return code


def cmd_devices(ns) -> int:
    from ..audio.output import list_output_devices

    for line in list_output_devices():
        print(line)
    return 0


COMMANDS = {"validate": cmd_validate, "scenes": cmd_scenes, "cache": cmd_cache, "devices": cmd_devices}
