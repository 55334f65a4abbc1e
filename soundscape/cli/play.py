"""`soundscape play` and the commands that talk to a running player: `set`, `status`, `pause`/`resume`/`toggle`."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..units import format_duration
from .flags import PORT, add_budget, add_model_args, duration, load_scene_arg, model_options


def add_parsers(sub) -> None:
    play = sub.add_parser("play", help="stream a scene to the sound card until stopped",
                          description="Stream a scene to the sound card: endless, evolving, tweakable while it plays.")
    play.add_argument("scene", help="a scene file, or a shipped scene's name (e.g. forest; `soundscape scenes` "
                                    "lists them)")
    add_model_args(play)
    play.add_argument("--output-device", dest="audio_device", help="output device name or index (see `soundscape devices`), or `null` to play silently")
    play.add_argument("--duration", type=duration("--duration"), help="stop after this long, e.g. 20, 90s, 10m, 1h")
    play.add_argument("--sleep", type=duration("--sleep"), help="sleep timer: fade out and stop after this long")
    play.add_argument("--fade-out", type=duration("--fade-out"), default=None,
                      help="fade-out length for --sleep/--duration (default 30s for --sleep, 2s otherwise)")
    play.add_argument("--buffer", type=duration("--buffer"), default=None,
                      help="audio buffered ahead (default: two chunks of new audio)")
    play.add_argument("--prefill", type=duration("--prefill"), default=None,
                      help="audio to generate before sound starts (default: one chunk, or the whole run "
                           "when --duration is 60 s or less); on a slow machine a longer prefill means "
                           "fewer cover-ups later")
    play.add_argument("--timeline", help="write one JSON line per chunk to this file")
    play.add_argument("--control", help="control socket path (default: in $XDG_RUNTIME_DIR or a private temp folder)")
    add_budget(play, scheduled=True)
    play.add_argument("--quiet", action="store_true",
                      help="no status line (and no keys: in a terminal, space pauses and resumes, up/down "
                           "change the volume, q fades out and quits)")
    play.add_argument("--no-mpris", action="store_true",
                      help="do not offer the player to the desktop's media controls (MPRIS on the D-Bus session "
                           "bus: playerctl, media keys, the lock screen); without a session bus it is off anyway")
    night = play.add_argument_group("at night (read more: soundscape docs at-night)")
    night.add_argument("--wake", metavar="TIME",
                       help="wake alarm: after the --sleep timer's fade (or at once, without --sleep) the player is "
                            "quiet and idle; at TIME, local wall-clock time (07:00, or 06:45:30), it fades the scene "
                            "in from silence. A time already past today means tomorrow. +DURATION (+8h, +20m) is a "
                            "delay from now instead")
    night.add_argument("--wake-fade", type=duration("--wake-fade"), metavar="DURATION",
                       help="how long the wake-up rises from silence to the scene's level (default 10m)")
    night.add_argument("--wake-scene", metavar="SCENE",
                       help="wake to another scene (a file or a shipped name, e.g. forest): switched to while still "
                            "silent, generated ahead so its first seconds are ready at the wake time")
    web = play.add_argument_group("web mixer")
    web.add_argument("--web", action="store_true",
                     help="serve a mixer page on 127.0.0.1 (prints `web: URL`; the URL carries its access token)")
    web.add_argument("--web-port", type=PORT, metavar="PORT", help="its port (default: a free one); implies --web")
    web.add_argument("--open", action="store_true", help="open the mixer in the default browser; implies --web")
    web.add_argument("--web-save-dir", nargs="?", const="", metavar="DIR",
                     help="\"Save as scene\" writes into DIR (beside the scene without DIR) instead of "
                          "downloading; implies --web")

    set_ = sub.add_parser("set", help="change a running player: LAYER=VALUE weights, or a layer's prompt",
                          description="Change a running `soundscape play`: weights take effect within one chunk "
                                      "and ease in over the scene's transition_seconds.")
    set_.add_argument("weights", nargs="*", metavar="LAYER=VALUE", help="layer weights from 0 to 1, e.g. birds=0.2")
    set_.add_argument("--prompt", nargs=2, metavar=("LAYER", "TEXT"), help="change a layer's prompt, or add a layer")
    set_.add_argument("--control", help="the player's control socket (default: the default player's)")

    for name, what in (("pause", "fade a running player out (about a second) and hold; the generator idles"),
                       ("resume", "fade a paused player back in from where it stopped"),
                       ("toggle", "pause a playing player, resume a paused one")):
        door = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        door.add_argument("--control", help="the player's control socket (default: the default player's)")

    status = sub.add_parser("status", help="show what a running player is doing",
                            description="Show a running player's state: elapsed, buffered, speed, weights.")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--control", help="the player's control socket")


def play_options(ns: argparse.Namespace):
    """The Namespace as PlayOptions: the scene (and the wake scene) loaded once, every value checked."""
    from ..play.options import PlayOptions, WakeOptions, WebOptions

    scene_path, scene = load_scene_arg(ns.scene)
    wake = None
    if ns.wake is not None:
        wake_path, wake_scene = load_scene_arg(ns.wake_scene) if ns.wake_scene is not None else (None, None)
        wake = WakeOptions(at=ns.wake, fade_s=ns.wake_fade, scene=wake_scene, scene_path=wake_path)
    else:
        for flag, value in (("--wake-fade", ns.wake_fade), ("--wake-scene", ns.wake_scene)):
            if value is not None:
                raise UsageError(f"{flag}: needs --wake TIME (e.g. --wake 07:00)")
    # --web-port, --open and --web-save-dir each imply --web.
    web = None
    if ns.web or ns.web_port is not None or ns.open or ns.web_save_dir is not None:
        web = WebOptions(port=ns.web_port or 0, open=ns.open, save_dir=ns.web_save_dir)
    return PlayOptions(scene=scene, scene_path=scene_path, model=model_options(ns), audio_device=ns.audio_device,
                       duration=ns.duration, sleep=ns.sleep, fade_out=ns.fade_out, buffer=ns.buffer,
                       prefill=ns.prefill, timeline=ns.timeline, control=ns.control, quiet=ns.quiet,
                       mpris=not ns.no_mpris, wake=wake, web=web, budget=ns.budget)


def cmd_play(ns) -> int:
    from ..play.session import play

    return play(play_options(ns))


def _reply_or_fail(reply: dict) -> dict:
    if not reply.get("ok"):
        raise UsageError(reply.get("error", "the player refused the request"))
    return reply


def cmd_set(ns) -> int:
    from ..play.control_socket import request
    from ..scene.schema import bad_text

    if not ns.weights and not ns.prompt:
        raise UsageError("set: give LAYER=VALUE pairs (e.g. birds=0.2) or --prompt LAYER TEXT")
    for text in [*ns.weights, *(ns.prompt or ())]:
        if bad_text(text):
            # A byte that is not UTF-8 (a Latin-1 terminal's é) reaches us as a lone surrogate.
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise UsageError(f'set: "{shown}": {bad_text(text)}; is your terminal set to UTF-8?')
    if ns.weights:
        weights = {}
        for pair in ns.weights:
            name, sep, value = pair.partition("=")
            try:
                weights[name.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep or not name.strip():
                raise UsageError(f"set: expected LAYER=VALUE with a number from 0 to 1, got {pair!r}")
        applied = _reply_or_fail(request(ns.control, {"cmd": "set", "weights": weights}))["applied"]
        print("set " + ", ".join(f"{k}={v:g}" for k, v in applied.items()) + " (easing in over the next chunks)")
    if ns.prompt:
        layer, text = ns.prompt
        applied = _reply_or_fail(request(ns.control, {"cmd": "prompt", "layer": layer, "prompt": text}))["applied"]
        print(f"layer {applied['layer']}: {applied['prompt']!r} at weight {applied['weight']:g}")
    return 0


def cmd_pause(ns) -> int:
    from ..play.control_socket import request

    reply = _reply_or_fail(request(ns.control, {"cmd": ns.command}))
    print("paused" if reply["applied"]["paused"] else "playing")
    return 0


def cmd_status(ns) -> int:
    import json

    from ..play.control_socket import request

    status = _reply_or_fail(request(ns.control, {"cmd": "status"}))["status"]
    if ns.json:
        print(json.dumps(status, indent=2))
        return 0
    weights = " ".join(f"{k}={v:.2f}" for k, v in status["weights"].items())
    print(f"{status['scene']}: {status['elapsed_s']:.0f} s played, {status['buffered_s']:.1f} s buffered, "
          f"generating at {status['generator_rtf']:.2f}x real time, {status['steps']} steps a chunk "
          f"({status['quality']}: {status['steps_range'][0]}-{status['steps_range'][1]})\n  {weights}\n"
          f"  cover-ups {status['coverups']}, underruns {status['underruns']}, fresh {status['fresh_percent']} %"
          + (f" (budget {status['budget_percent']:g} %, generator at {status['generator_priority']})"
             if status["budget_percent"] < 100 else "")
          + (f", repeats {format_duration(status['repeat_distance_s'])} apart"
             if status.get("repeat_distance_s") is not None else ""))
    if status.get("paused"):
        print("  paused (soundscape resume)")
    sleep, wake = status.get("sleep"), status.get("wake")
    if sleep:
        print(f"  sleep timer: {format_duration(sleep['remaining_s'])} left" + (" (fading)" if sleep["fading"] else ""))
    if wake:
        print(f"  wake alarm: {wake['at']} on {wake['date']} (in {format_duration(wake['in_s'])}), fading in over "
              f"{format_duration(wake['fade_s'])}" + (f" into {wake['scene']!r}" if wake.get("scene") else ""))
    return 0


COMMANDS = {"play": cmd_play, "set": cmd_set, "status": cmd_status,
            "pause": cmd_pause, "resume": cmd_pause, "toggle": cmd_pause}
