"""`soundscape play`: the threads that turn a scene stream into sound.

Threads and what each owns:
  main thread     the CLI. Owns the Playback (stream/playback.py: its feeder moves fresh segments, or
                  earlier material when the generator is late, into the ring buffer), the status
                  line, --duration, the transport's ticks (play/transport.py: the sleep timer, the
                  wake alarm), signals (Ctrl-C / SIGTERM arrive here as KeyboardInterrupt) and the
                  control socket. It may start the fade-out.
  generator       the GenerationLoop (stream/generation_loop.py, shared with serve) with one StreamSlot:
                  owns the SceneStream (model, conditioning, generator state). Produces one
                  Segment at a time into a queue of one; holds the next while the queue is full
                  (backpressure), so it runs at most one chunk ahead of what the buffer holds.
                  Writes the timeline. A failing chunk is logged and retried with backoff; a stream
                  that never made a usable first chunk gives up (stream/first_sound.py) and the
                  main thread stops with exit code 7.
  PortAudio       the callback (audio/output.Player) only reads the ring buffer.
  web (optional)  `play --web`: the mixer's server (play/web/). It hands requests to the main thread
                  and reads a status snapshot and a copy of the audio written to the ring; nothing
                  here waits for it.
  mpris (optional) the MPRIS player on the D-Bus session bus (play/mpris.py): desktop media keys,
                  `playerctl`, the lock screen. Hands requests to the main thread through the same
                  Bridge as the web mixer and reads its snapshot.
Night (play/transport.py, play/wake.py): pause fades the Player's pause glide to 0 and the callback stops
reading the ring, so the feeder idles, and holds the generator's slot, so it rests once its chunk in
flight is done (until the wake alarm's lead); the wake alarm and the terminal's keys (play/keys.py) are
polled on the main thread.
  loader (warm start only) loads the model while the main thread already plays the scene's recording
                  from its last run (play/instant.py); the generator starts once it is done.
Stopping: the main thread fades out (<= 1 s on a signal), waits for the fade to finish, closes
the stream and sets `stop`; the generator notices between chunks (it is a daemon thread, so a
chunk in progress never delays exit).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..audio.feeder import MARGIN_S
from ..audio.output import OutputConfig, Player
from .. import interrupts
from ..errors import AudioDeviceError
from ..stream.budget import Budget
from ..stream.playback import Playback
from ..units import format_duration

SIGNAL_FADE_S = 0.5
WARM_LATENCY_S = 1.0  # the device buffer of an instant start (see Engine.start_warm)
TICK_S = 0.01  # the main thread's pass: moves audio into the ring, answers requests, draws the status line
PAUSED_TICK_S = 0.1  # ... while paused: requests are answered within a tenth of a second


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


def _status_text(playback: Playback) -> str:
    feeder, gen, rate = playback.feeder, playback.slot, playback.rate
    weights = feeder.segments[-1].weights if feeder.segments else {}
    w = " ".join(f"{k}={v:.2f}" for k, v in weights.items())
    rtf = gen.stats.rtf
    text = (f"{format_duration(playback.played_s())}  ahead {playback.buffered_s():4.1f}s  gen {rtf:.2f}x  "
            f"steps {gen.stats.steps}  {w}  "
            f"cover-ups {feeder.coverups}  underruns {playback.player.underruns}  "
            f"fresh {round(100 * playback.fresh_share())} %")
    repeat = feeder.repeat_distance_s()
    if repeat is not None:
        text += f"  repeats {format_duration(repeat)} apart"
    # Slower than real time is news only when the steps cannot go lower, or earlier material plays: above the
    # preset's floor the step controller trades steps for speed itself (a 5-minute run at balanced read
    # "0.94x ... playing earlier material" at 16 steps, 20 s ahead, with no cover-up at all).
    floor = gen.stepper.lo if gen.stepper is not None else gen.stats.steps
    if rtf and rtf < 1.0 and (gen.stats.steps <= floor or feeder.covering):
        model = getattr(getattr(gen, "stream", None), "model", None)
        source = getattr(model, "source", None)
        probe = "soundscape bench --probe" + (f" --model {source}" if source else "")
        hint = (f"`{probe}` once (int8, about 3 minutes)" if getattr(model, "int8_unmeasured", False)
                else "--quality eco or a GPU")
        text += f"  (generating at {rtf:.2f}x real time; playing earlier material in between: try {hint})"
    elif feeder.warm:
        text += "  (playing the last run's recording until fresh audio is ready)"
    elif feeder.covering:
        text += "  (playing earlier material until fresh audio is ready)"
    encoder = getattr(gen.stream, "encoder", None)
    if encoder is not None and encoder.encoding:
        text += "  (encoding a new prompt)"
    return text


@dataclass
class PlayResult:
    frames_played: int
    coverups: int
    underruns: int
    chunks: int
    interrupted: bool


class Engine:
    """Wires stream -> generator thread -> Playback (feeder, ring buffer) -> Player for one `play` run."""

    def __init__(self, stream, config: OutputConfig, *, buffer_s: float | None = None, timeline: str | None = None,
                 quiet: bool = False, prefill_s: float | None = None, mixer: bool = False, hop_s: float | None = None,
                 on_fresh=None, capture: list | None = None, sink_speed: float = 1.0, budget: float | None = None):
        """`stream` may come later (`attach`), after a warm start (`start_warm`); `hop_s` sizes the buffer then.
        `mixer`: the web mixer's master volume and audio tap (audio/mixer.py); `on_fresh(segment)`: every
        fresh segment (play records them, play/instant.py). With the null device, `capture` keeps what was
        played and `sink_speed` > 1 fast-forwards its clock (tests, soak). `budget`: the generator's share of
        wall time in percent, at the lowest priority below 100 (stream/budget.py); None: the scene's
        `generation.budget` schedule (against play time), or 100 without one."""
        from ..audio.mixer import MixerPlayer

        self.prefill_s = prefill_s
        self.config = config
        self.timeline = timeline
        self.playback = Playback.build(config.rate, config.channels, config.name,
                                       stream.hop_s if stream is not None else hop_s, buffer_s=buffer_s,
                                       prefill_s=prefill_s, tapped=mixer,
                                       player=MixerPlayer if mixer else Player, on_fresh=on_fresh)
        self.capture, self.sink_speed = capture, sink_speed
        self.budget = Budget(100.0 if budget is None else budget)  # the generator's share and priority (status)
        self._scheduled = budget is None  # --budget wins over the scene's schedule
        self.status = StatusLine(quiet)
        self._early = None  # the device stream a warm start opened before the model loaded
        self._sound_t0: float | None = None  # when the device started playing
        self.loop = None
        if stream is not None:
            self.attach(stream)
        self.started_playing_after = 0.0  # seconds of buffering before sound started
        self._clock_warned = False

    # The playback's parts, by the names the engine's threads know them.
    @property
    def stream(self):
        return self.playback.stream

    @property
    def gen(self):
        return self.playback.slot

    @property
    def feeder(self):
        return self.playback.feeder

    @property
    def ring(self):
        return self.playback.ring

    @property
    def player(self) -> Player:
        return self.playback.player

    def attach(self, stream) -> None:
        """The scene stream, once its model is loaded: the generator's side of the engine."""
        # Imported here, not at the top: torch and diffusers take seconds to import, and an instant
        # start sounds before they are needed (play/instant.py).
        from ..stream.generation_loop import GenerationLoop

        if self._scheduled and stream.scene.generation.budget:
            # Against play time: the device's clock, which stops while paused.
            self.budget.follow(stream.scene.generation.budget_schedule(), self.playback.played_s)
        slot = self.playback.attach(stream, timeline=self.timeline, budget=self.budget)
        self.loop = GenerationLoop([slot], budget=self.budget)  # the loop serve runs, with a batch of one

    def start_warm(self, audio: np.ndarray, fade_in_s: float, load):
        """Instant start: play `audio` (the scene's last recording) now, and return `load()` (the stream,
        made on a thread meanwhile). Sound starts within the device's latency, not after the model."""
        rate = self.config.rate
        self.feeder.start_warm(audio, int(fade_in_s * rate))
        self.feeder.pump()
        self.feeder.prime(int((1.5 * WARM_LATENCY_S + MARGIN_S) * rate))  # the device's buffer, then the margin
        # A deep device buffer: the model loads on a thread, and its imports hold Python's lock for
        # stretches the callback must ride out (measured: underruns at the default 0.2 s).
        self._early = self.player.open_stream(self.config, capture=self.capture, speed=self.sink_speed,
                                              min_latency_s=WARM_LATENCY_S)
        self._early.__enter__()  # starts it
        self._sound_t0 = time.monotonic()
        self._keep_a_block()
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

    def _prefill(self, ticks) -> None:
        rate = self.config.rate
        wanted = self.prefill_s * rate if self.prefill_s else self.stream.hop_s * rate - self.feeder.xfade
        target = int(min(self.ring.capacity, wanted))
        started = time.monotonic()
        while self.ring.level() < target:
            interrupts.check()
            self.playback.pump()
            for tick in ticks:
                tick()
            if not self.loop.is_alive():
                raise RuntimeError("the generator thread stopped during buffering")
            self._check_sound()
            self.status.show(f"buffering {self.ring.level() / rate:4.1f}/{target / rate:.1f} s "
                             f"({time.monotonic() - started:.0f} s)", every=0.25)
            time.sleep(0.02)
        self._wait_for_headroom(ticks)

    def _wait_for_headroom(self, ticks) -> None:
        """Start sound only once the buffer will outlast the next chunk (no cover-up right after the first).

        The next chunk has been generating since the last one landed and should take about what the step
        controller predicts; sound starts when what is buffered, less the cover-up margin, covers the rest.
        Where even the fewest steps make a chunk slower than the audio it adds, the weave fills in from the
        first minute whatever happens: waiting would only delay the first sound by a whole chunk (13 s at
        balanced on a 2-core AMD EPYC: a new scene's first sound came 38.6 s after `play`), so sound starts.
        (The first chunk's time includes its shapes' compile or import: on a machine near real time this
        may start sound early, where the next chunk then comes in time anyway.)
        """
        rate, stepper = self.config.rate, self.gen.stepper
        if stepper is None or stepper.per_step is None or self.prefill_s:
            return
        if stepper.predict(stepper.lo) > self.stream.hop_s:
            return
        expected = stepper.predict(stepper.last)
        deadline = time.monotonic() + 2 * self.stream.hop_s
        while time.monotonic() < deadline and self.gen.stats.chunks < 2 and self.ring.level() < self.ring.capacity:
            self.feeder.pump()
            buffered = (self.ring.level() + self.feeder.buffered_fresh()) / rate - stepper.safety_s
            if buffered >= expected - (time.monotonic() - self.gen.stats.last_done):
                return
            for tick in ticks:
                tick()
            time.sleep(0.02)

    def run(self, duration: float | None = None, fade_out: float | None = None, *, ticks=(),
            night=None) -> PlayResult:
        """Play until the player is done: `duration` ends it with a `fade_out` (default 2 s); `ticks` run on
        every pass of the main thread (the doors, LiveControl); `night()` adds to the status line."""
        rate = self.config.rate
        stop_at = duration if duration is not None else float("inf")
        fade_len = fade_out if fade_out is not None else 2.0
        fade_len = min(fade_len, stop_at) if stop_at != float("inf") else fade_len
        interrupted = False
        run_started = time.monotonic()
        self.loop.start()
        try:
            if self._early is None:
                self._prefill(ticks)
                self.started_playing_after = time.monotonic() - run_started
            if stop_at != float("inf"):
                self.player.schedule_fade(int((stop_at - fade_len) * rate), fade_len)
            if self._early is not None:  # a warm start: the device plays already
                stream, self._early = self._early, None
            else:
                stream = self.player.open_stream(self.config, capture=self.capture, speed=self.sink_speed)
                stream.__enter__()
                self._sound_t0 = time.monotonic()
                self._keep_a_block()
            try:
                while not self.player.done:
                    interrupts.check()
                    self.playback.pump()
                    for tick in ticks:
                        tick()
                    self.status.show(_status_text(self.playback) + (night() if night else ""))
                    self._check_device_clock(time.monotonic() - self._sound_t0)
                    self._check_sound()
                    if not getattr(stream, "active", True) and not self.player.done:
                        raise AudioDeviceError(f"the audio device {self.config.name!r} stopped (unplugged, or taken "
                                               f"by another program?); see `soundscape devices` and start again")
                    # Paused (the fade over), the loop only answers requests: ten looks a second, not a hundred
                    # (measured: this loop was 1.8 % of a core of a paused player's 2.4 %).
                    time.sleep(PAUSED_TICK_S if self.player.paused else TICK_S)
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

    def _keep_a_block(self) -> None:
        """A live change keeps at least the device's latency of the old audio: the callback's block is read
        from the ring while the feeder cuts it (audio/feeder.SWITCH_KEEP_S; a warm start's device holds 1 s)."""
        self.feeder.switch_keep = max(self.feeder.switch_keep, self.player.latency_frames)

    def _check_sound(self) -> None:
        """The model made no usable first chunk within the bound (stream/first_sound.py): stop, exit code 7."""
        if self.gen.first.gave_up is not None:
            raise self.gen.first.gave_up

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
