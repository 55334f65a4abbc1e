"""The `soundscape` command: argument parsing and exit codes. The work lives in the modules it calls.

One module here per command group (play.py, render.py, serve.py, bench.py, scenes.py) adds its subparsers
and turns its flags into the command folder's typed, frozen options (PlayOptions, RenderOptions,
ServeOptions, BenchOptions); flags.py reads every value (one `ranged` for every bounded number).
May import anything: it is the top. Nothing below it imports cli or reads an argparse Namespace.

Exit codes: 0 ok, 1 internal error, 2 bad scene or argument, 3 model cannot be
loaded, 4 audio device problem, 5 no running player (of yours), 6 render output cannot be
written (disk full; --resume continues), 7 the model made no usable sound (play, serve), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os

# Why: on a small CPU OpenMP's busy-waiting threads starve the audio and control threads
# (measured: a 3.5x slower UNet step on a busy 2-core machine, docs/benchmarks.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import sys
import warnings

from .. import __version__, interrupts
from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, SceneError, SoundscapeError
from . import bench, docs, play, render, scenes, serve
from .flags import Parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="soundscape", description="Endless, seamless AI soundscapes from scene files (AudioLDM2).",
               epilog="Start with `soundscape play forest`. The documentation is installed with the package: "
                      "`soundscape docs` lists its pages (getting-started, scenes, commands, at-night, mixer, "
                      "serving, troubleshooting, exit-codes, ...); the README names the same pages as a site.")
    p.add_argument("--version", action="version", version=f"soundscape {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    play.add_parsers(sub)
    render.add_parsers(sub)
    scenes.add_parsers(sub)
    serve.add_parsers(sub)
    bench.add_parsers(sub)  # its flags only: bench.py, which imports torch, loads when it runs
    docs.add_parsers(sub)
    return p


COMMANDS = {**play.COMMANDS, **render.COMMANDS, **scenes.COMMANDS, **serve.COMMANDS, **bench.COMMANDS,
            **docs.COMMANDS}


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
LISTING = ("scenes", "status", "cache", "devices", "validate", "docs")


def _pipe_closed() -> int:
    """The reader of our output went away (`soundscape scenes | head -1`): exit quietly."""
    # Python's own flush at exit would fail again and print its "Exception ignored" lines
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0 if _command in LISTING else EXIT_FAILURE


def _main(argv: list[str] | None) -> int:
    global _command
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    _command = args.command
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    # Library chatter (deprecations, HF progress bars) is not for our users; our own messages are.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    if "quiet" in args and args.quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        # Each command turns its flags into typed options (cli/play.py, render.py, ...); nothing below cli
        # sees the Namespace.
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
