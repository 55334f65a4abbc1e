"""The `soundscape` command: argument parsing and exit codes. The work lives in the modules it calls.

Exit codes: 0 ok, 1 internal error, 2 bad scene or argument, 3 model cannot be
loaded, 4 audio device problem, 5 no running player (of yours), 6 render output cannot be
written (disk full; --resume continues), 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import os

# Why: on a small CPU OpenMP's busy-waiting threads starve the audio and control threads
# (measured: a 3.5x slower UNet step on a busy 2-core machine, docs/benchmarks.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import sys
import warnings

from . import __version__, interrupts
from .errors import (EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, EXIT_WRITE, SceneError, SoundscapeError,
                     UsageError)
from .units import format_duration, parse_duration, parse_seed


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2, like ours
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _duration(what):
    def parse(text):
        try:
            return parse_duration(text, what=what)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    return parse


def _positive_int(what, hi):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = 0
        if not 1 <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {hi}, got {text!r}")
        return v
    return parse


def _port(text):
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535 (0: a free one), got {text!r}")
    return v


def _unit(name):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not 0.0 <= v <= 1.0:
            raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
        return v
    return parse


def _seed(text):
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _time_of_day(text):
    from .units import parse_time_of_day

    seconds = parse_time_of_day(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"expected a time of day like 21:30 or 06:45:30 (24-hour), got {text!r}")
    return seconds


def _add_model_args(p):
    g = p.add_argument_group("model")
    g.add_argument("--model", help="hub id or local diffusers folder (default: scene's `model:`, "
                                   "$SOUNDSCAPE_MODEL, then cvssp/audioldm2)")
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="auto: fp16 on GPUs, bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32")
    g.add_argument("--runtime", default="auto", choices=["auto", "torch", "openvino"],
                   help="what runs the UNet and vocoder: auto (default) = OpenVINO on a CPU (compiled for the "
                        "session's static shapes, faster than torch there; the first start converts and compiles, "
                        "later starts load the cache), torch on GPUs or where OpenVINO is missing or fails to "
                        "convert; torch = always torch; openvino = OpenVINO or an error (compare both on this machine: "
                        "`soundscape bench --compare-runtimes`)")
    g.add_argument("--quality", choices=["auto", "eco", "balanced", "best"],
                   help="preset for steps, guidance interval and chunk length (default: the scene's "
                        "generation.quality; auto = best on a GPU, balanced on a CPU); the scene's own values win")
    g.add_argument("--steps", type=_positive_int("--steps", 500), help="denoising steps per chunk, fixed (default: the quality preset's; play adapts within its range)")
    g.add_argument("--seed", type=_seed, help="scene seed override")
    g.add_argument("--keep-encoders", action="store_true",
                   help="keep the text encoders (CLAP, Flan-T5, GPT-2: 1.2 GB in bf16) loaded; by default they "
                        "load when a new prompt must be encoded and are released after, and prompts already "
                        "encoded come from the prompt cache (`soundscape cache`); serve keeps them until no new prompt "
                        "has come for 5 minutes")
    g.add_argument("--compile", nargs="?", const="default", choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile the UNet; reduce-overhead adds CUDA graphs (the first chunk pays the "
                        "compile; off by default: it did not pay on CPU; measure it here with `soundscape bench --compile`)")


def build_parser(bench: bool = True) -> argparse.ArgumentParser:
    p = _Parser(prog="soundscape", description="Endless, seamless AI soundscapes from scene files (AudioLDM2).")
    p.add_argument("--version", action="version", version=f"soundscape {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    play = sub.add_parser("play", help="stream a scene to the sound card until stopped",
                          description="Stream a scene to the sound card: endless, evolving, tweakable while it plays.")
    play.add_argument("scene", help="a scene file, or a shipped scene's name (e.g. forest; `soundscape scenes` "
                                    "lists them)")
    _add_model_args(play)
    play.add_argument("--output-device", dest="audio_device", help="output device name or index (see `soundscape devices`), or `null` to play silently")
    play.add_argument("--duration", type=_duration("--duration"), help="stop after this long, e.g. 20, 90s, 10m, 1h")
    play.add_argument("--sleep", type=_duration("--sleep"), help="sleep timer: fade out and stop after this long")
    play.add_argument("--fade-out", type=_duration("--fade-out"), default=None,
                      help="fade-out length for --sleep/--duration (default 30s for --sleep, 2s otherwise)")
    play.add_argument("--buffer", type=_duration("--buffer"), default=None,
                      help="audio buffered ahead (default: two chunks of new audio)")
    play.add_argument("--prefill", type=_duration("--prefill"), default=None,
                      help="audio to generate before sound starts (default: one chunk, or the whole run "
                           "when --duration is 60 s or less); on a slow machine a longer prefill means "
                           "fewer cover-ups later")
    play.add_argument("--timeline", help="write one JSON line per chunk to this file")
    play.add_argument("--control", help="control socket path (default: in $XDG_RUNTIME_DIR or a private temp folder)")
    play.add_argument("--quiet", action="store_true",
                      help="no status line (and no keys: in a terminal, space pauses and resumes, up/down "
                           "change the volume, q fades out and quits)")
    play.add_argument("--no-mpris", action="store_true",
                      help="do not offer the player to the desktop's media controls (MPRIS on the D-Bus session "
                           "bus: playerctl, media keys, the lock screen); without a session bus it is off anyway")
    night = play.add_argument_group("at night (see the README's \"At night\")")
    night.add_argument("--wake", metavar="TIME",
                       help="wake alarm: after the --sleep timer's fade (or at once, without --sleep) the player is "
                            "quiet and idle; at TIME, local wall-clock time (07:00, or 06:45:30), it fades the scene "
                            "in from silence. A time already past today means tomorrow. +DURATION (+8h, +20m) is a "
                            "delay from now instead")
    night.add_argument("--wake-fade", type=_duration("--wake-fade"), metavar="DURATION",
                       help="how long the wake-up rises from silence to the scene's level (default 10m)")
    night.add_argument("--wake-scene", metavar="SCENE",
                       help="wake to another scene (a file or a shipped name, e.g. forest): switched to while still "
                            "silent, generated ahead so its first seconds are ready at the wake time")
    web = play.add_argument_group("web mixer")
    web.add_argument("--web", action="store_true",
                     help="serve a mixer page on 127.0.0.1 (prints `web: URL`; the URL carries its access token)")
    web.add_argument("--web-port", type=_port, metavar="PORT", help="its port (default: a free one); implies --web")
    web.add_argument("--open", action="store_true", help="open the mixer in the default browser; implies --web")
    web.add_argument("--web-save-dir", nargs="?", const="", metavar="DIR",
                     help="\"Save as scene\" writes into DIR (beside the scene without DIR) instead of "
                          "downloading; implies --web")

    render = sub.add_parser("render", help="render a scene to a WAV/FLAC/OGG file of an exact length",
                            description="Render a scene to a file. Written as it goes: a stopped render leaves a "
                                        "valid file and can continue with --resume.")
    render.add_argument("scene", help="a scene file, or a shipped scene's name")
    render.add_argument("-o", "--output", required=True, help="output file (.wav, .flac or .ogg)")
    render.add_argument("--duration", required=True, type=_duration("--duration"), help="length, e.g. 90, 90s, 10m, 1h")
    _add_model_args(render)
    render.add_argument("--timeline", help="write one JSON line per chunk to this file")
    render.add_argument("--resume", action="store_true", help="continue a stopped render of the same -o file")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.add_argument("--loop", action="store_true",
                        help="a file that loops seamlessly: its end bridges back into its start, and the weights "
                             "ease back to the start's over the last chunk (the duration must be a multiple of 0.04 s)")
    render.add_argument("--workers", type=_positive_int("--workers", 256), metavar="N",
                        help="split the render into segments made by N local processes (with --ray: at most N "
                             "tasks at a time); the file is the same for any N, but not the plain render's")
    render.add_argument("--start-time", type=_time_of_day, metavar="HH:MM",
                        help="for a scene whose keyframes are times of day (at: \"21:30\"): the local time the "
                             "file starts at (default: now), so the same command makes the same file")
    render.add_argument("--ray", metavar="ADDRESS",
                        help="make the segments as tasks on a Ray cluster: host:port, or auto for the one this "
                             "machine belongs to (pip install \"soundscape[ray]\"; the README's \"Loops and segmented renders\")")

    enhance = sub.add_parser("enhance", help="give any audio file (e.g. 16 kHz mono) stereo width and air above 8 kHz",
                             description="Run an audio file through the output chain's air and width stages (the "
                                         "same code a render runs) and write it as stereo at --rate: one gain keeps "
                                         "the input's loudness and range, a true-peak limiter holds what air and "
                                         "width push over -1 dBTP. Streams any length; OUT is written to a "
                                         "temporary file beside it and renamed at the end. Meant for audio that "
                                         "ends at 8 kHz: another AudioLDM tool's, an old render.")
    enhance.add_argument("input", metavar="IN", help="an audio file (WAV, FLAC or Ogg, 8000 Hz or more; any channels are mixed to mono first)")
    enhance.add_argument("-o", "--output", required=True, help="output file (.wav, .flac or .ogg)")
    enhance.add_argument("--width", type=_unit("--width"), default=0.5,
                         help="stereo width 0..1 (0: the same signal in both channels; default 0.5, the scene default)")
    enhance.add_argument("--air", type=_unit("--air"), default=0.5,
                         help="air above 8 kHz 0..1 (0: off; 0.5, the default, is the level the extension "
                              "estimates; 1 is 6 dB brighter)")
    enhance.add_argument("--rate", type=int, default=48000, choices=[22050, 24000, 32000, 44100, 48000, 88200, 96000],
                         metavar="HZ", help="output sample rate (default 48000; air needs 22050 or more)")

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

    serve = sub.add_parser("serve", help="stream scenes over HTTP to many listeners from one model",
                           description="Serve every scene in a folder over HTTP: each listener gets an endless "
                                       "stream of their own (Ogg/Opus or MP3); all are generated in shared batches.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; any other needs --token)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: a free one)")
    serve.add_argument("--scenes", metavar="DIR", help="folder of scene files (default: the shipped scenes/)")
    serve.add_argument("--max-listeners", type=_positive_int("--max-listeners", 1024), default=8, metavar="K",
                       help="listeners at once, per replica (default 8; fewer when the measured batch cost "
                            "says so)")
    serve.add_argument("--token", help="access token every request must carry (?token=), 16+ characters, or `auto` "
                                       "to have one made up and printed; required for a --host other than loopback")
    _add_model_args(serve)
    serve.add_argument("--quiet", action="store_true", help="fewer messages")
    scale = serve.add_argument_group("Ray Serve (pip install \"soundscape[ray]\"; the README's \"Serving many listeners\")")
    scale.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                       help="run as a Ray Serve deployment: one model per replica (auto: the cluster this "
                            "machine belongs to, else a local one)")
    scale.add_argument("--min-replicas", type=_positive_int("--min-replicas", 1024), default=1, metavar="N")
    scale.add_argument("--max-replicas", type=_positive_int("--max-replicas", 1024), default=1, metavar="N")
    scale.add_argument("--gpus-per-replica", type=float, default=None, metavar="G",
                       help="GPUs each replica holds (default: 1 when the cluster has GPUs, else 0)")

    if bench:
        from .bench import add_bench_parser

        add_bench_parser(sub, _add_model_args)
    else:
        # bench.py imports torch (seconds); `play` must reach the sound card without it (play/instant.py).
        sub.add_parser("bench", help=BENCH_HELP, add_help=False)
    return p


BENCH_HELP = "measure generation speed (per stage, real-time factor, memory)"


def cmd_validate(args) -> int:
    from .scene import load_scene

    bad = broken = 0
    for path in args.scenes:  # every file is checked, whatever the ones before it held
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


def cmd_scenes(args) -> int:
    from .scene import load_scene
    from .scene.shipped import SHIPPED_DIR, shipped_scenes

    found = shipped_scenes()
    width = max(map(len, found), default=0)
    for name, path in found.items():
        scene = load_scene(path)
        print(f"{name:<{width}}  {scene.name}" + (f": {scene.description}" if scene.description else ""))
    print(f"\nplay one with `soundscape play NAME`; the files are in {SHIPPED_DIR}", file=sys.stderr)
    return 0


def cmd_cache(args) -> int:
    from . import caches

    code = 0
    for name in [args.name] if args.name else list(caches.CACHES):
        where, what = caches.folder(name), caches.CACHES[name][1]
        tally = caches.clear(name) if args.action == "clear" else caches.survey(name)
        done = "removed " if args.action == "clear" else ""
        print(f"{name:<9} {done}{tally.files} files, {tally.bytes / 2**20:.1f} MiB  {where}  ({what})")
        for problem in tally.problems[:3]:
            print(f"{'':<9} could not {'remove' if done else 'read'} {problem}", file=sys.stderr)
        if len(tally.problems) > 3:
            print(f"{'':<9} and {len(tally.problems) - 3} more", file=sys.stderr)
        code = EXIT_FAILURE if tally.problems and done else code
    return code


def cmd_devices(args) -> int:
    from .audio.output import list_output_devices

    for line in list_output_devices():
        print(line)
    return 0


def _stream_from_args(args, **kw):
    from .model.loading import choose_model, load_model
    from .scene import load_scene
    from .stream.scene_stream import SceneStream

    scene = load_scene(args.scene)
    model = load_model(choose_model(args.model, scene.model), device=args.device, dtype=args.dtype,
                       quiet=getattr(args, "quiet", False), compile_mode=args.compile, runtime=args.runtime,
                       keep_encoders=args.keep_encoders)
    interrupts.check()  # a signal swallowed while the model's objects were built and freed
    return SceneStream(model, scene, steps=args.steps, seed=args.seed, quality=args.quality, **kw)


def _held_and_resume(args, out) -> str:
    """What a stopped render leaves: `OUT holds N s of audio; continue with: soundscape render ... --resume`."""
    import soundfile as sf

    from .audio.files import RESUMABLE
    from .render.plain import state_path

    try:
        info = sf.info(str(out)) if out.exists() else None
    except RuntimeError:  # a file cut off mid-header
        info = None
    flags = "".join([" --loop" if args.loop else "", f" --workers {args.workers}" if args.workers else "",
                     f" --ray {args.ray}" if args.ray else ""])
    resumable = out.suffix.lower() in RESUMABLE
    resume = (f"continue with: soundscape render {args.scene} -o {out} --duration {args.duration:g}{flags} --resume"
              if state_path(out).exists() and resumable else "nothing to resume yet" if resumable
              else "an .ogg render cannot be resumed (.wav and .flac can)")
    held = info.frames / info.samplerate if info else 0.0
    return f"{out} holds {held:.1f} s of audio; {resume}"


def _cannot_write(exc: BaseException) -> bool:
    """A full disk or a file-size limit, as the OS (ENOSPC, EDQUOT, EFBIG) or libsndfile ("System error") says it."""
    import errno

    import soundfile as sf

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return isinstance(exc, sf.LibsndfileError)


def segmented_flags(args) -> bool:
    return bool(args.loop or args.workers or args.ray)


def cmd_render(args) -> int:
    from .audio.files import RESUMABLE, check_output_path
    from .render.plain import render, state_path
    from .stream.timeline import check_timeline_path

    out = check_output_path(args.output)
    resumable = out.suffix.lower() in RESUMABLE
    if args.resume and not resumable:
        raise UsageError(f"--resume: {out} is an Ogg Vorbis stream, which cannot be continued without "
                         f"re-encoding what it holds; render to .wav or .flac to be able to resume "
                         f"(and convert at the end)")
    check_timeline_path(args.timeline)
    if args.resume and not segmented_flags(args):
        from .render.plain import check_resume_clock

        check_resume_clock(state_path(out), args.start_time)
    if args.start_time is None and not (args.resume and not segmented_flags(args)):
        # A clock scene starts at the time it is rendered unless told otherwise (a resumed plain render: at
        # the time its first part started, kept in its state).
        import time

        from .units import time_of_day

        args.start_time = float(int(time_of_day(time.time())))
    segmented = args.loop or args.workers or args.ray
    if args.resume and state_path(out).exists():
        from .render.segmented import is_segmented_state

        if is_segmented_state(state_path(out)) and not segmented:
            raise UsageError(f"--resume: {out} was started with --loop, --workers or --ray; "
                             f"resume it with the same flags")
    try:
        if segmented:
            from .render.segmented import render_from_args

            result = render_from_args(args, out)
        else:
            stream = _stream_from_args(args, day_start=args.start_time)
            result = render(stream, out, args.duration, timeline=args.timeline, resume=args.resume, quiet=args.quiet)
    except KeyboardInterrupt:
        interrupts.clear()
        print(f"\ninterrupted: {_held_and_resume(args, out)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, RuntimeError) as exc:
        if not _cannot_write(exc):
            raise
        # Why not "internal error": the file is valid up to its last whole chunk and --resume continues it.
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).rstrip(".")
        print(f"\nsoundscape: cannot write the output ({why}: is the disk full?); make room, then "
              f"{_held_and_resume(args, out).replace('nothing to resume yet', 'render it again')}", file=sys.stderr)
        return EXIT_WRITE
    rtf = result.seconds_generated / max(result.wall_s, 1e-9)
    print(f"wrote {result.path}: {result.frames / result.rate:.2f} s at {result.rate} Hz "
          f"({rtf:.2f}x real time)", file=sys.stderr)
    m = result.loudness
    if m and m.get("integrated_lufs") is not None:
        lra = f", loudness range {m['lra_lu']:.1f} LU" if m.get("lra_lu") is not None else ""
        print(f"loudness {m['integrated_lufs']:.1f} LUFS integrated{lra}, true peak {m['true_peak_dbtp']:.1f} dBTP",
              file=sys.stderr)
    if result.stage_s is not None:
        print(_stage_cost(result.stage_s, result.frames / result.rate), file=sys.stderr)
    return 0


def cmd_enhance(args) -> int:
    from pathlib import Path

    from .audio.enhance import EnhanceOptions, enhance, summary

    result = enhance(EnhanceOptions(input=Path(args.input), output=Path(args.output), width=args.width, air=args.air,
                                    rate=args.rate, progress=True))
    for line in summary(result, args.width, args.air):
        print(line, file=sys.stderr)
    print(_stage_cost(result.stage_s, result.frames / result.rate), file=sys.stderr)
    return 0


def _stage_cost(stage_s: float, seconds: float) -> str:
    """The render/enhance summary's line for what air and width cost."""
    share = 100.0 * stage_s / seconds if seconds > 0 else 0.0
    return f"air + width: {stage_s:.2f} s of CPU for {seconds:.1f} s of audio ({share:.2f}% of real time)"


def cmd_play(args) -> int:
    from .play.engine import play

    return play(args, _stream_from_args)


def _reply_or_fail(reply: dict) -> dict:
    if not reply.get("ok"):
        raise UsageError(reply.get("error", "the player refused the request"))
    return reply


def cmd_set(args) -> int:
    from .play.control_socket import request

    from .scene.schema import bad_text

    if not args.weights and not args.prompt:
        raise UsageError("set: give LAYER=VALUE pairs (e.g. birds=0.2) or --prompt LAYER TEXT")
    for text in [*args.weights, *(args.prompt or ())]:
        if bad_text(text):
            # A byte that is not UTF-8 (a Latin-1 terminal's é) reaches us as a lone surrogate.
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise UsageError(f'set: "{shown}": {bad_text(text)}; is your terminal set to UTF-8?')
    if args.weights:
        weights = {}
        for pair in args.weights:
            name, sep, value = pair.partition("=")
            try:
                weights[name.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep or not name.strip():
                raise UsageError(f"set: expected LAYER=VALUE with a number from 0 to 1, got {pair!r}")
        applied = _reply_or_fail(request(args.control, {"cmd": "set", "weights": weights}))["applied"]
        print("set " + ", ".join(f"{k}={v:g}" for k, v in applied.items()) + " (easing in over the next chunks)")
    if args.prompt:
        layer, text = args.prompt
        applied = _reply_or_fail(request(args.control, {"cmd": "prompt", "layer": layer, "prompt": text}))["applied"]
        print(f"layer {applied['layer']}: {applied['prompt']!r} at weight {applied['weight']:g}")
    return 0


def cmd_pause(args) -> int:
    from .play.control_socket import request

    reply = _reply_or_fail(request(args.control, {"cmd": args.command}))
    print("paused" if reply["applied"]["paused"] else "playing")
    return 0


def cmd_status(args) -> int:
    from .play.control_socket import request
    import json

    status = _reply_or_fail(request(args.control, {"cmd": "status"}))["status"]
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    weights = " ".join(f"{k}={v:.2f}" for k, v in status["weights"].items())
    print(f"{status['scene']}: {status['elapsed_s']:.0f} s played, {status['buffered_s']:.1f} s buffered, "
          f"generating at {status['generator_rtf']:.2f}x real time, {status['steps']} steps a chunk "
          f"({status['quality']}: {status['steps_range'][0]}-{status['steps_range'][1]})\n  {weights}\n"
          f"  cover-ups {status['coverups']}, underruns {status['underruns']}")
    if status.get("paused"):
        print("  paused (soundscape resume)")
    sleep, wake = status.get("sleep"), status.get("wake")
    if sleep:
        print(f"  sleep timer: {format_duration(sleep['remaining_s'])} left" + (" (fading)" if sleep["fading"] else ""))
    if wake:
        print(f"  wake alarm: {wake['at']} on {wake['date']} (in {format_duration(wake['in_s'])}), fading in over "
              f"{format_duration(wake['fade_s'])}" + (f" into {wake['scene']!r}" if wake.get("scene") else ""))
    return 0


def cmd_serve(args) -> int:
    from .serve.main import serve

    if args.max_replicas < args.min_replicas:
        raise UsageError(f"--max-replicas: expected at least --min-replicas ({args.min_replicas}), "
                         f"got {args.max_replicas}")
    return serve(args)


def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


COMMANDS = {"enhance": cmd_enhance, "validate": cmd_validate, "scenes": cmd_scenes, "cache": cmd_cache, "devices": cmd_devices, "render": cmd_render, "play": cmd_play,
            "bench": cmd_bench, "set": cmd_set, "status": cmd_status, "serve": cmd_serve,
            "pause": cmd_pause, "resume": cmd_pause, "toggle": cmd_pause}


def main(argv: list[str] | None = None) -> int:
    # SIGTERM stops like Ctrl-C (files are finalised, the stream fades out), and so does SIGINT when a
    # shell script started us with it ignored; both from the first moment, building the parser included
    # (it imports torch, which takes a second).
    interrupts.install()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _pipe_closed()


# Commands that only print a listing: a reader that stops early (`| head`) is not a failure.
LISTING = ("scenes", "status", "cache", "devices", "validate")


def _pipe_closed() -> int:
    """The reader of our output went away (`soundscape scenes | head -1`): exit quietly."""
    # Python's own flush at exit would fail again and print its "Exception ignored" lines
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0 if _command in LISTING else EXIT_FAILURE


def _main(argv: list[str] | None) -> int:
    global _command
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(bench=bool(argv) and argv[0] == "bench")
    args = parser.parse_args(argv)
    _command = args.command
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from .scene.shipped import find_scene

    # A shipped scene's name stands for its file; a path that exists wins (scene/shipped.py).
    if getattr(args, "scene", None) is not None:
        args.scene = str(find_scene(args.scene))
    if getattr(args, "wake_scene", None) is not None:
        args.wake_scene = str(find_scene(args.wake_scene))
    if args.command == "validate":
        args.scenes = [str(find_scene(s)) for s in args.scenes]
    # Library chatter (deprecations, HF progress bars) is not for our users; our own messages are.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1") if getattr(args, "quiet", False) else None
    try:
        return COMMANDS[args.command](args)
    except SoundscapeError as exc:
        # Scene errors already start with the file name; the rest say who is speaking.
        print(exc if isinstance(exc, SceneError) else f"soundscape: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _pipe_closed()
    except Exception as exc:  # a bug, not a user mistake: one line, the traceback on request
        if interrupts.pending():  # a library turned our KeyboardInterrupt into its own error
            print("\ninterrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if os.environ.get("SOUNDSCAPE_DEBUG"):
            raise
        print(f"soundscape: internal error: {type(exc).__name__}: {exc} (run with SOUNDSCAPE_DEBUG=1 for "
              f"the traceback, and please report it)", file=sys.stderr)
        return EXIT_FAILURE


# Commands whose files and sockets are all closed by the time `main` returns (see `entry`).
FAST_EXIT = ("play", "serve")
_command: str | None = None


def entry() -> None:
    code = main()
    import threading

    chunk_running = any(t.name == "soundscape-generator" and t.is_alive() for t in threading.enumerate())
    if chunk_running or _command in FAST_EXIT:
        # A chunk still computing in the generator thread: torch's threads must not be torn down
        # under it at interpreter exit (that aborts). And after play/serve, finalising the
        # interpreter only tears down torch's modules and thread pools: 1.2-1.4 s measured after
        # Ctrl-C. Everything is flushed and closed; leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
