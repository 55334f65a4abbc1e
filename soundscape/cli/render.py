"""`soundscape render` (plain or segmented: --loop, --workers, --ray) and `soundscape enhance`."""

from __future__ import annotations

import sys

from .. import interrupts
from ..errors import EXIT_INTERRUPTED, EXIT_WRITE, UsageError
from .flags import UNIT, add_model_args, duration, load_scene_arg, model_options, ranged, time_of_day


def add_parsers(sub) -> None:
    render = sub.add_parser("render", help="render a scene to a WAV/FLAC/OGG file of an exact length",
                            description="Render a scene to a file. Written as it goes: a stopped render leaves a "
                                        "valid file and can continue with --resume.")
    render.add_argument("scene", help="a scene file, or a shipped scene's name")
    render.add_argument("-o", "--output", required=True, help="output file (.wav, .flac or .ogg)")
    render.add_argument("--duration", required=True, type=duration("--duration"), help="length, e.g. 90, 90s, 10m, 1h")
    add_model_args(render)
    render.add_argument("--timeline", help="write one JSON line per chunk to this file")
    render.add_argument("--resume", action="store_true", help="continue a stopped render of the same -o file")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.add_argument("--loop", action="store_true",
                        help="a file that loops seamlessly: its end bridges back into its start, and the weights "
                             "ease back to the start's over the last chunk (the duration must be a multiple of 0.04 s)")
    render.add_argument("--workers", type=ranged(1, 256), metavar="N",
                        help="split the render into segments made by N local processes (with --ray: at most N "
                             "tasks at a time); the file is the same for any N, but not the plain render's")
    render.add_argument("--start-time", type=time_of_day, metavar="HH:MM",
                        help="for a scene whose keyframes are times of day (at: \"21:30\"): the local time the "
                             "file starts at (default: now), so the same command makes the same file")
    render.add_argument("--ray", metavar="ADDRESS",
                        help="make the segments as tasks on a Ray cluster: host:port, or auto for the one this "
                             "machine belongs to (pip install \"soundscape[ray]\"; soundscape docs files-and-loops)")

    enhance = sub.add_parser("enhance", help="give any audio file (e.g. 16 kHz mono) stereo width and air above 8 kHz",
                             description="Run an audio file through the output chain's air and width stages (the "
                                         "same code a render runs) and write it as stereo at --rate: one gain keeps "
                                         "the input's loudness and range, a true-peak limiter holds what air and "
                                         "width push over -1 dBTP. Streams any length; OUT is written to a "
                                         "temporary file beside it and renamed at the end. Meant for audio that "
                                         "ends at 8 kHz: another AudioLDM tool's, an old render.")
    enhance.add_argument("input", metavar="IN", help="an audio file (WAV, FLAC or Ogg, 8000 Hz or more; any channels are mixed to mono first)")
    enhance.add_argument("-o", "--output", required=True, help="output file (.wav, .flac or .ogg)")
    enhance.add_argument("--width", type=UNIT, default=0.5,
                         help="stereo width 0..1 (0: the same signal in both channels; default 0.5, the scene default)")
    enhance.add_argument("--air", type=UNIT, default=0.5,
                         help="air above 8 kHz 0..1 (0: off; 0.5, the default, is the level the extension "
                              "estimates; 1 is 6 dB brighter)")
    enhance.add_argument("--rate", type=int, default=48000, choices=[22050, 24000, 32000, 44100, 48000, 88200, 96000],
                         metavar="HZ", help="output sample rate (default 48000; air needs 22050 or more)")


def render_options(ns):
    """The Namespace as RenderOptions, checked: the output's format and --resume, the timeline, the start time."""
    from ..audio.files import RESUMABLE, check_output_path
    from ..render.options import RenderOptions
    from ..render.plain import state_path
    from ..stream.timeline import check_timeline_path

    scene_path, scene = load_scene_arg(ns.scene)
    out = check_output_path(ns.output)
    if ns.resume and out.suffix.lower() not in RESUMABLE:
        raise UsageError(f"--resume: {out} is an Ogg Vorbis stream, which cannot be continued without "
                         f"re-encoding what it holds; render to .wav or .flac to be able to resume "
                         f"(and convert at the end)")
    check_timeline_path(ns.timeline)
    segmented = bool(ns.loop or ns.workers or ns.ray)
    if ns.resume and not segmented:
        from ..render.plain import check_resume_clock

        check_resume_clock(state_path(out), ns.start_time)
    start_time = ns.start_time
    if start_time is None and not (ns.resume and not segmented):
        # A clock scene starts at the time it is rendered unless told otherwise (a resumed plain render: at
        # the time its first part started, kept in its state).
        import time

        from ..units import time_of_day as tod

        start_time = float(int(tod(time.time())))
    if ns.resume and state_path(out).exists():
        from ..render.segmented import is_segmented_state

        if is_segmented_state(state_path(out)) and not segmented:
            raise UsageError(f"--resume: {out} was started with --loop, --workers or --ray; "
                             f"resume it with the same flags")
    return RenderOptions(scene=scene, scene_path=scene_path, output=out, duration=ns.duration,
                         model=model_options(ns), timeline=ns.timeline, resume=ns.resume, quiet=ns.quiet,
                         loop=ns.loop, workers=ns.workers, start_time=start_time, ray=ns.ray)


def _held_and_resume(opts) -> str:
    """What a stopped render leaves: `OUT holds N s of audio; continue with: soundscape render ... --resume`."""
    import soundfile as sf

    from ..audio.files import RESUMABLE
    from ..render.plain import state_path

    out = opts.output
    try:
        info = sf.info(str(out)) if out.exists() else None
    except RuntimeError:  # a file cut off mid-header
        info = None
    resumable = out.suffix.lower() in RESUMABLE
    resume = (f"continue with: soundscape render {opts.scene_path} -o {out} --duration {opts.duration:g}"
              f"{opts.flags()} --resume"
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


def _render(opts):
    if opts.segmented:
        from ..render.segmented import render_with

        return render_with(opts)
    from ..render.plain import render
    from ..stream.options import open_stream

    stream = open_stream(opts.scene, opts.model, quiet=opts.quiet, day_start=opts.start_time)
    return render(stream, opts.output, opts.duration, timeline=opts.timeline, resume=opts.resume, quiet=opts.quiet)


def cmd_render(ns) -> int:
    opts = render_options(ns)
    try:
        result = _render(opts)
    except KeyboardInterrupt:
        interrupts.clear()
        print(f"\ninterrupted: {_held_and_resume(opts)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, RuntimeError) as exc:
        if not _cannot_write(exc):
            raise
        # Why not "internal error": the file is valid up to its last whole chunk and --resume continues it.
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).rstrip(".")
        print(f"\nsoundscape: cannot write the output ({why}: is the disk full?); make room, then "
              f"{_held_and_resume(opts).replace('nothing to resume yet', 'render it again')}", file=sys.stderr)
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


def cmd_enhance(ns) -> int:
    from pathlib import Path

    from ..audio.enhance import EnhanceOptions, enhance, summary

    result = enhance(EnhanceOptions(input=Path(ns.input), output=Path(ns.output), width=ns.width, air=ns.air,
                                    rate=ns.rate, progress=True))
    for line in summary(result, ns.width, ns.air):
        print(line, file=sys.stderr)
    print(_stage_cost(result.stage_s, result.frames / result.rate), file=sys.stderr)
    return 0


def _stage_cost(stage_s: float, seconds: float) -> str:
    """The render/enhance summary's line for what air and width cost."""
    share = 100.0 * stage_s / seconds if seconds > 0 else 0.0
    return f"air + width: {stage_s:.2f} s of CPU for {seconds:.1f} s of audio ({share:.2f}% of real time)"


COMMANDS = {"render": cmd_render, "enhance": cmd_enhance}
