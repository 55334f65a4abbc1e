"""`soundscape play`: the threads that turn a scene stream into sound.

Threads and what each owns:
  main thread     the CLI. Owns the Feeder (moves fresh segments, or earlier material when the
                  generator is late, into the ring buffer), the status line, the timers
                  (--duration, --sleep), signals (Ctrl-C / SIGTERM arrive here as
                  KeyboardInterrupt) and the control socket. It may start the fade-out.
  generator       the GenerationLoop (stream/generation_loop.py, shared with serve) with one StreamSlot:
                  owns the SceneStream (model, conditioning, generator state). Produces one
                  Segment at a time into a queue of one; holds the next while the queue is full
                  (backpressure), so it runs at most one chunk ahead of what the buffer holds.
                  Writes the timeline. A failing chunk is logged and retried with backoff.
  PortAudio       the callback (audio/output.Player) only reads the ring buffer.
  web (optional)  `play --web`: the mixer's server (play/web/). It hands requests to the main thread
                  and reads a status snapshot and a copy of the audio written to the ring; nothing
                  here waits for it.
  mpris (optional) the MPRIS player on the D-Bus session bus (play/mpris.py): desktop media keys,
                  `playerctl`, the lock screen. Hands requests to the main thread through the same
                  Bridge as the web mixer and reads its snapshot.
Night (play/wake.py, stream/live.py): pause fades the Player's pause glide to 0 and the callback stops
reading the ring, so the feeder and then the generator idle; the wake alarm and the terminal's keys
(play/keys.py) are polled on the main thread.
  loader (warm start only) loads the model while the main thread already plays the scene's recording
                  from its last run (play/instant.py); the generator starts once it is done.
Stopping: the main thread fades out (<= 1 s on a signal), waits for the fade to finish, closes
the stream and sets `stop`; the generator notices between chunks (it is a daemon thread, so a
chunk in progress never delays exit).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..audio.feeder import MARGIN_S, XFADE_S, Feeder
from ..audio.output import OutputConfig, Player, resolve_output
from ..audio.ringbuffer import RingBuffer
from .. import interrupts
from ..errors import EXIT_INTERRUPTED, AudioDeviceError, UsageError
from ..units import format_duration

if TYPE_CHECKING:
    from ..stream.generation_loop import StreamSlot

SIGNAL_FADE_S = 0.5
WARM_LATENCY_S = 1.0  # the device buffer of an instant start (see Engine.start_warm)


class StatusLine:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._width = 0

    def show(self, text: str, every: float = 0.5) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        # Not a terminal: plain lines, rarely, so logs stay readable.
        if now - self._last < (every if self.tty else 10.0):
            return
        self._last = now
        if self.tty:
            sys.stderr.write("\r" + text.ljust(self._width)[: 200])
            self._width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and not self.quiet and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _status_text(player: Player, feeder: Feeder, ring: RingBuffer, gen: StreamSlot, rate: int) -> str:
    ahead = (ring.level() + feeder.buffered_fresh()) / rate
    weights = feeder.segments[-1].weights if feeder.segments else {}
    w = " ".join(f"{k}={v:.2f}" for k, v in weights.items())
    rtf = gen.stats.rtf
    text = (f"{format_duration(player.frames_played / rate)}  ahead {ahead:4.1f}s  gen {rtf:.2f}x  "
            f"steps {gen.stats.steps}  {w}  "
            f"cover-ups {feeder.coverups}  underruns {player.underruns}")
    # Slower than real time is news only when the steps cannot go lower, or earlier material plays: above the
    # preset's floor the step controller trades steps for speed itself (a 5-minute run at balanced read
    # "0.94x ... playing earlier material" at 16 steps, 20 s ahead, with no cover-up at all).
    floor = gen.stepper.lo if gen.stepper is not None else gen.stats.steps
    if rtf and rtf < 1.0 and (gen.stats.steps <= floor or feeder.covering):
        text += f"  (generating at {rtf:.2f}x real time; playing earlier material in between: try --quality eco or a GPU)"
    elif feeder.warm:
        text += "  (playing the last run's recording until fresh audio is ready)"
    elif feeder.covering:
        text += "  (playing earlier material until fresh audio is ready)"
    encoder = getattr(gen.stream, "encoder", None)
    if encoder is not None and encoder.encoding:
        text += "  (encoding a new prompt)"
    return text


def _status_dict(engine) -> dict:
    rate = engine.config.rate
    feeder, player, gen = engine.feeder, engine.player, engine.gen
    return {
        "scene": engine.stream.scene.name,
        "elapsed_s": round(player.frames_played / rate, 2),
        "buffered_s": round((engine.ring.level() + feeder.buffered_fresh()) / rate, 2),
        "generator_rtf": round(gen.stats.rtf, 3),
        "chunks": gen.stats.chunks,
        "steps": gen.stats.steps,
        "steps_range": [engine.stream.resolved.min_steps, engine.stream.resolved.max_steps],
        "quality": engine.stream.resolved.preset,
        "weights": feeder.segments[-1].weights if feeder.segments else {},
        "layers": {k: v.prompt for k, v in engine.stream.scene.layers.items()},
        "coverups": feeder.coverups,
        "underruns": player.underruns,
        # What the listener hears and what the generator does (issue 23's start-up states).
        "audio": "recording" if feeder.warm else "earlier material" if feeder.covering else "fresh",
        "encoding": bool(getattr(engine.stream.encoder, "encoding", False)),
        "generator_errors": gen.stats.errors,
        "device": engine.config.name,
        "sample_rate": rate,
    }


@dataclass
class PlayResult:
    frames_played: int
    coverups: int
    underruns: int
    chunks: int
    interrupted: bool


class Engine:
    """Wires stream -> generator thread -> feeder -> ring buffer -> Player for one `play` run."""

    def __init__(self, stream, config: OutputConfig, *, buffer_s: float | None = None, timeline: str | None = None,
                 quiet: bool = False, prefill_s: float | None = None, mixer: bool = False, hop_s: float | None = None):
        """`stream` may come later (`attach`), after a warm start (`start_warm`); `hop_s` sizes the buffer then."""
        self.stream = stream
        self.prefill_s = prefill_s
        self.config = config
        self.timeline = timeline
        rate = config.rate
        hop_s = stream.hop_s if stream is not None else hop_s
        capacity = max(int(max(buffer_s or 2 * hop_s, prefill_s or 0) * rate), int(3 * MARGIN_S * rate))
        if mixer:  # the web mixer's master volume and audio tap (audio/mixer.py)
            from ..audio.mixer import MixerPlayer, TappedRing

            self.ring = TappedRing(capacity, config.channels, rate)
        else:
            self.ring = RingBuffer(capacity, config.channels)
        self.fresh: queue.Queue = queue.Queue(maxsize=1)
        self.feeder = Feeder(self.ring, self.fresh, xfade=int(XFADE_S * rate), margin=int(MARGIN_S * rate))
        self.player = MixerPlayer(self.ring, rate) if mixer else Player(self.ring, rate)
        self.status = StatusLine(quiet)
        self._early = None  # the device stream a warm start opened before the model loaded
        self._sound_t0: float | None = None  # when the device started playing
        if stream is not None:
            self.attach(stream)
        self.on_tick: list = []  # the control server's poll and the live-change checks, when present
        self.capture: list | None = None  # with the null device: keep what was played (tests, soak)
        self.sink_speed = 1.0  # with the null device: >1 fast-forwards the clock (tests, soak)
        self.started_playing_after = 0.0  # seconds of buffering before sound started
        self._clock_warned = False
        self.night = lambda: ""  # the status line's word on pause and the wake alarm (set by `play`)

    def attach(self, stream) -> None:
        """The scene stream, once its model is loaded: the generator's side of the engine."""
        # Imported here, not at the top: torch and diffusers take seconds to import, and an instant
        # start sounds before they are needed (play/instant.py).
        from ..stream.generation_loop import GenerationLoop, StreamSlot

        rate = self.config.rate
        self.stream = stream
        self.gen = StreamSlot(stream, self.fresh, self.timeline)
        self.loop = GenerationLoop([self.gen])  # the same loop serve runs, with a batch of one
        self.feeder._skip_pool = int(stream.chain.fade_in_s * rate)  # the fade-in is no cover material
        self.feeder.pool._rng = np.random.default_rng(stream.seed)
        self.gen.ahead = lambda: (self.ring.level() + self.feeder.buffered_fresh()) / rate + self.fresh.qsize() * stream.hop_s

    def start_warm(self, audio: np.ndarray, fade_in_s: float, load):
        """Instant start: play `audio` (the scene's last recording) now, and return `load()` (the stream,
        made on a thread meanwhile). Sound starts within the device's latency, not after the model."""
        rate = self.config.rate
        self.feeder.start_warm(audio, int(fade_in_s * rate), piece=max(len(audio) // 8, int(10 * rate)))
        self.feeder.pump()
        self.feeder.prime(int((1.5 * WARM_LATENCY_S + MARGIN_S) * rate))  # the device's buffer, then the margin
        # A deep device buffer: the model loads on a thread, and its imports hold Python's lock for
        # stretches the callback must ride out (measured: underruns at the default 0.2 s).
        self._early = self.player.open_stream(self.config, capture=self.capture, speed=self.sink_speed,
                                              min_latency_s=WARM_LATENCY_S)
        self._early.__enter__()  # starts it
        self._sound_t0 = time.monotonic()
        done: dict = {}

        def run():
            try:
                done["value"] = load()
            except BaseException as exc:  # handed to the main thread, which reports it
                done["error"] = exc

        loader = threading.Thread(target=run, name="soundscape-load", daemon=True)
        loader.start()
        try:
            while loader.is_alive():
                self.feeder.pump()
                self.status.show(f"{format_duration(self.player.frames_played / rate)}  playing the last run's "
                                 f"recording while the model loads", every=0.25)
                time.sleep(0.01)
        except KeyboardInterrupt:
            self._fade_and_close_after_signal()
            self._close_early()
            raise
        if "error" in done:
            self._close_early()
            raise done["error"]
        return done["value"]

    def _close_early(self) -> None:
        if self._early is not None:
            self._early.__exit__(None, None, None)
            self._early = None

    def status_dict(self) -> dict:
        return _status_dict(self)

    def _prefill(self) -> None:
        rate = self.config.rate
        wanted = self.prefill_s * rate if self.prefill_s else self.stream.hop_s * rate - self.feeder.xfade
        target = int(min(self.ring.capacity, wanted))
        started = time.monotonic()
        while self.ring.level() < target:
            interrupts.check()
            self.feeder.pump()
            for tick in self.on_tick:
                tick()
            if not self.loop.is_alive():
                raise RuntimeError("the generator thread stopped during buffering")
            self.status.show(f"buffering {self.ring.level() / rate:4.1f}/{target / rate:.1f} s "
                             f"({time.monotonic() - started:.0f} s)", every=0.25)
            time.sleep(0.02)
        self._wait_for_headroom()

    def _wait_for_headroom(self) -> None:
        """Start sound only once the buffer will outlast the next chunk (no cover-up right after the first).

        The next chunk has been generating since the last one landed and should take about what the step
        controller predicts; sound starts when what is buffered, less the cover-up margin, covers the rest.
        """
        rate, stepper = self.config.rate, self.gen.stepper
        if stepper is None or stepper.per_step is None or self.prefill_s:
            return
        expected = stepper.predict(stepper.last)
        deadline = time.monotonic() + 2 * self.stream.hop_s
        while time.monotonic() < deadline and self.gen.stats.chunks < 2 and self.ring.level() < self.ring.capacity:
            self.feeder.pump()
            buffered = (self.ring.level() + self.feeder.buffered_fresh()) / rate - stepper.safety_s
            if buffered >= expected - (time.monotonic() - self.gen.stats.last_done):
                return
            for tick in self.on_tick:
                tick()
            time.sleep(0.02)

    def run(self, duration: float | None = None, sleep: float | None = None, fade_out: float | None = None) -> PlayResult:
        rate = self.config.rate
        stop_at = min(x for x in (duration, sleep, float("inf")) if x is not None)
        fade_len = fade_out if fade_out is not None else (30.0 if sleep else 2.0)
        fade_len = min(fade_len, stop_at) if stop_at != float("inf") else fade_len
        interrupted = False
        run_started = time.monotonic()
        self.loop.start()
        try:
            if self._early is None:
                self._prefill()
                self.started_playing_after = time.monotonic() - run_started
            if stop_at != float("inf"):
                self.player.schedule_fade(int((stop_at - fade_len) * rate), fade_len)
            if self._early is not None:  # a warm start: the device plays already
                stream, self._early = self._early, None
            else:
                stream = self.player.open_stream(self.config, capture=self.capture, speed=self.sink_speed)
                stream.__enter__()
                self._sound_t0 = time.monotonic()
            try:
                while not self.player.done:
                    interrupts.check()
                    self.feeder.epoch_wanted = self.gen.epoch
                    self.feeder.pump()
                    for tick in self.on_tick:
                        tick()
                    self.status.show(_status_text(self.player, self.feeder, self.ring, self.gen, rate) + self.night())
                    self._check_device_clock(time.monotonic() - self._sound_t0)
                    if not getattr(stream, "active", True) and not self.player.done:
                        raise AudioDeviceError(f"the audio device {self.config.name!r} stopped (unplugged, or taken "
                                               f"by another program?); see `soundscape devices` and start again")
                    time.sleep(0.01)
            except KeyboardInterrupt:
                interrupted = True
                self._fade_and_close_after_signal()
            finally:
                stream.__exit__(None, None, None)
        except KeyboardInterrupt:
            interrupted = True
            interrupts.clear()
            self._fade_and_close_after_signal()
        finally:
            self.loop.stop.set()
            # The generator stops at its next denoising step; after a signal, don't wait for it.
            self.loop.join(timeout=0.0 if interrupted else 0.5)
            self.status.end()
        return PlayResult(self.player.frames_played, self.feeder.coverups, self.player.underruns,
                          self.gen.stats.chunks, interrupted)

    def _check_device_clock(self, wall: float) -> None:
        """Warn once when the device eats audio far faster than real time (a null or file device)."""
        if self._clock_warned or wall < 2.0:
            return
        ratio = self.player.frames_played / self.config.rate / wall
        if ratio > 3.0:
            self._clock_warned = True
            print(f"\nsoundscape: the audio device is taking audio {ratio:.0f}x faster than real time "
                  f"(a null or file device?); expect underruns, or use --prefill", file=sys.stderr)

    def _fade_and_close_after_signal(self) -> None:
        """Ctrl-C / SIGTERM: fade out within a second; leaving the `with` then closes the stream."""
        self.player.start_fade(SIGNAL_FADE_S)
        deadline = time.monotonic() + 1.5
        while not self.player.done and time.monotonic() < deadline:
            try:
                self.feeder.pump()
                time.sleep(0.01)
            except KeyboardInterrupt:  # a second Ctrl-C: stop now
                break


SHORT_RUN_S = 60.0
MAX_BUFFER_S = 600.0  # 10 minutes of 48 kHz stereo float32 is 220 MB: past that, a typo (`1000h`)


def check_args(args) -> None:
    """Values that would fail only once the model is loaded: refused now, exit 2, one line each."""
    from ..stream.timeline import check_timeline_path
    from .control_socket import check_socket_path

    for flag, value in (("--buffer", args.buffer), ("--prefill", args.prefill)):
        if value is not None and value > MAX_BUFFER_S:
            raise UsageError(f"{flag}: expected at most {MAX_BUFFER_S:g} s (10m), got {value:g} s")
    check_timeline_path(args.timeline)
    check_socket_path(args.control)
    if getattr(args, "wake", None) is not None:
        import time

        from .wake import WakeTime, check_fade

        WakeTime.from_text(args.wake, time.time())  # the socket's bounds, before the model loads
        if getattr(args, "wake_fade", None) is not None:
            check_fade(args.wake_fade, "--wake-fade")
    else:
        for flag, value in (("--wake-fade", getattr(args, "wake_fade", None)),
                            ("--wake-scene", getattr(args, "wake_scene", None))):
            if value is not None:
                raise UsageError(f"{flag}: needs --wake TIME (e.g. --wake 07:00)")


def _short_run_prefill(duration: float | None) -> float | None:
    """A --duration run that fits in a minute is generated whole before it starts: it never needs a cover-up."""
    return duration if duration is not None and duration <= SHORT_RUN_S else None


def _wake_lead(engine) -> float:
    """How long before the wake time the wake scene is switched to: three chunks at the speed measured."""
    from .wake import MAX_LEAD_S, MIN_LEAD_S

    rtf = engine.gen.stats.rtf
    return min(MAX_LEAD_S, max(MIN_LEAD_S, 3 * engine.stream.hop_s / rtf if rtf > 0 else MAX_LEAD_S))


def _night_text(live, alarm) -> str:
    """The status line's words on a pause and the alarm."""
    text = "  PAUSED" if live.paused else ""
    if alarm is not None and alarm.armed:
        text += f"  ({alarm.describe()})"
    return text


def play(args, make_stream) -> int:
    from ..scene import load_scene

    from ..model.source import choose_model, resolve_source

    scene = load_scene(args.scene)
    check_args(args)
    wake_scene = load_scene(args.wake_scene) if getattr(args, "wake_scene", None) else None
    # --wake without --sleep: quiet and idle from the start, until the wake time.
    night_start = getattr(args, "wake", None) is not None and args.sleep is None
    # --web-port, --open and --web-save-dir each imply --web.
    web = any(getattr(args, k, None) not in (None, False) for k in ("web", "web_port", "open", "web_save_dir"))
    if web:
        from . import web as web_mixer

        web_mixer.save_dir(args)  # a bad --web-save-dir fails before the model loads
    model_id = choose_model(args.model, scene.model)
    resolve_source(model_id)  # a bad --model fails before the audio device is touched
    config = resolve_output(args.audio_device, scene.output.sample_rate, scene.output.channels)
    from . import instant

    key = instant.key_for(scene, model_id, config.rate, config.channels)
    # A night start plays nothing until the alarm: no recording to bridge the model's loading.
    warm = instant.cached_audio(key, config.rate, config.channels, seconds=instant.START_S) if not night_start else None
    engine = Engine(None, config, buffer_s=args.buffer, timeline=args.timeline, quiet=args.quiet,
                    prefill_s=args.prefill if args.prefill is not None else _short_run_prefill(args.duration),
                    mixer=web, hop_s=scene.generation.chunk_seconds - scene.generation.overlap_seconds)
    if warm is not None:
        # The recording plays with the scene's fade-in; the stream then starts without one, so the
        # handover to fresh audio is one crossfade between two full-level signals.
        engine.prefill_s = None
        stream = engine.start_warm(warm, scene.output.fade_in_seconds, lambda: make_stream(
            args, out_rate=config.rate, channels=config.channels, fade_in=False))
    else:
        stream = make_stream(args, out_rate=config.rate, channels=config.channels)
    engine.attach(stream)
    # A clock scene (keyframes at times of day) takes each chunk's time of day from when it will be heard.
    rate = config.rate
    stream.heard_at = lambda t: time.time() + t - engine.player.frames_played / rate
    recorder = instant.Recorder(key, config.rate, config.channels,
                                skip_frames=0 if warm is not None else int(scene.output.fade_in_seconds * config.rate))
    # Only the scene file's own sound is recorded: a live change (epoch > 0) ends the recording.
    engine.feeder.on_fresh = lambda seg: recorder.add(seg.audio) if seg.epoch == 0 else recorder.stop()
    from .control_socket import ControlServer
    from .keys import HINT, TerminalKeys
    from ..stream.live import LiveControl

    # --sleep is the live sleep timer, so the web mixer (a control request) can extend or cancel it.
    live = LiveControl(engine, args.scene, fade_s=args.fade_out if args.fade_out is not None else 30.0)
    from .wake import WAKE_FADE_S, WakeAlarm

    # Always there, unarmed without --wake: the web mixer and the control socket can set it later.
    alarm = WakeAlarm(live, fade_s=getattr(args, "wake_fade", None) or WAKE_FADE_S, scene=wake_scene,
                      scene_path=getattr(args, "wake_scene", None), lead_s=lambda: _wake_lead(engine), quiet=args.quiet)
    live.alarm = alarm
    if getattr(args, "wake", None) is not None:
        reply = alarm.set(args.wake)
        if not reply["ok"]:
            raise UsageError(reply["error"])
        if night_start:
            live.pause(0.01)
    if args.sleep is not None:
        live.handle({"cmd": "timer", "action": "set", "seconds": args.sleep})
    server = ControlServer(args.control, live.handle)
    engine.on_tick = [server.poll, live.tick, alarm.tick]
    engine.night = lambda: _night_text(live, alarm)
    keys = TerminalKeys(live)
    if not args.quiet and keys.start():
        engine.on_tick.append(keys.tick)
    if not args.quiet:
        print(f"playing {scene.name!r} on {config.name} at {config.rate} Hz, {config.channels} ch "
              f"(Ctrl-C to stop; live control: soundscape set --control {server.path} LAYER=VALUE)", file=sys.stderr)
        if keys.fd is not None:
            print(HINT, file=sys.stderr)
        if alarm.armed:
            print(f"wake: {alarm.describe()}, fading in over {format_duration(alarm.fade_s)}"
                  + (f" into {wake_scene.name!r}" if wake_scene is not None else ""), file=sys.stderr)
    from .mpris import MprisPlayer
    from .web.bridge import Bridge

    # One door for the threads that serve pages and media keys: requests in, a status snapshot out.
    bridge = Bridge(live)
    engine.on_tick.append(bridge.tick)
    media = MprisPlayer(bridge) if not getattr(args, "no_mpris", False) else None
    if media is not None and media.start() and not args.quiet:
        print(f"media controls: {media.name} on the session bus (playerctl -p soundscape play-pause)",
              file=sys.stderr)
    mixer = web_mixer.start(args, engine, live, bridge) if web else None
    try:
        result = engine.run(duration=args.duration, fade_out=args.fade_out)
    finally:
        keys.close()
        recorder.stop()
        server.close()
        if media is not None:
            media.close()
        if mixer is not None:
            mixer.close()
    if not args.quiet:
        print(f"played {format_duration(result.frames_played / config.rate)}; {result.chunks} chunks generated, "
              f"{result.coverups} cover-ups, {result.underruns} underruns", file=sys.stderr)
    return EXIT_INTERRUPTED if result.interrupted else 0
