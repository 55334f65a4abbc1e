"""The sound card: device choice, and the PortAudio callback over the ring buffer.

The callback only copies: no locks, no allocation beyond numpy views, no I/O. It
always fills the whole block (zeros on underrun, counted), writes into `outdata`
in place (never rebinds it) and applies the fade-out from a curve computed on the
main thread, the master volume and the pause glide (audio/ramp.py).

Pause: the pause glide falls to 0 over about a second while the ring is still read; once it is
at 0 the callback writes zeros and reads nothing, so the ring stays full, the feeder stops, and
the generator (held back by the full queue) idles. Resume glides up again from the very frame
where the sound stopped. `frames_played` does not move while paused: timers counted in frames
(--duration, a scheduled fade) wait too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AudioDeviceError
from .ramp import GainRamp
from .ringbuffer import RingBuffer

VOLUME_GLIDE_S = 0.05  # a volume change glides over this long (no zipper noise)


def _sd():
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio missing
        raise AudioDeviceError(f"PortAudio is not available ({exc}); install it, e.g. "
                               f"`sudo apt-get install libportaudio2`") from None
    return sd


def list_output_devices() -> list[str]:
    sd = _sd()
    lines = []
    try:
        default = sd.default.device[1]
        for i, d in enumerate(sd.query_devices()):
            if d["max_output_channels"] > 0:
                mark = "*" if i == default else " "
                lines.append(f"{mark} {i:3d}  {d['name']}  ({d['max_output_channels']} ch, "
                             f"{d['default_samplerate']:.0f} Hz)")
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot list audio devices: {exc}") from None
    if not lines:
        raise AudioDeviceError("no audio output devices found; connect one, or use `soundscape render` "
                               "to write a file instead")
    return lines + ["(* = default; choose one with --output-device NAME or INDEX)"]


@dataclass(frozen=True)
class OutputConfig:
    device: int | None
    name: str
    rate: int
    channels: int


def resolve_output(device: str | None, want_rate: int, want_channels: int) -> OutputConfig:
    """Pick the device; prefer the scene's rate and channels where the device takes them."""
    if device is not None and device.strip().lower() == "null":
        return OutputConfig(device=NULL_DEVICE, name="null (no sound)", rate=want_rate, channels=want_channels)
    sd = _sd()
    try:
        devices = sd.query_devices()
        if device is None:
            index = sd.default.device[1]
            if index is None or index < 0:
                raise AudioDeviceError("no default audio output device; list them with `soundscape devices` "
                                       "and pass --output-device, or use `soundscape render`")
        elif device.strip().isdigit():
            index = int(device)
            if index >= len(devices) or devices[index]["max_output_channels"] < 1:
                raise AudioDeviceError(f"--output-device {device}: no output device with that index; "
                                       f"see `soundscape devices`")
        else:
            matches = [i for i, d in enumerate(devices)
                       if device.lower() in d["name"].lower() and d["max_output_channels"] > 0]
            if not matches:
                raise AudioDeviceError(f"--output-device {device!r}: no output device has that name; "
                                       f"see `soundscape devices`")
            index = matches[0]
        info = devices[index]
        channels = max(1, min(want_channels, int(info["max_output_channels"])))
        rate = want_rate
        try:
            sd.check_output_settings(device=index, samplerate=rate, channels=channels, dtype="float32")
        except sd.PortAudioError:
            rate = int(info["default_samplerate"])
        return OutputConfig(device=index, name=info["name"], rate=rate, channels=channels)
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"audio device problem: {exc}") from None


class Player:
    """The PortAudio callback and its counters. Counters are written only by the callback.

    Fades are sample-accurate: the callback starts one at an exact frame, so a --duration
    ends where it should however large the device's blocks are.
    """

    def __init__(self, ring: RingBuffer, rate: int):
        self.ring = ring
        self.rate = rate
        self.frames_played = 0
        self.latency_frames = 0  # frames between what the callback is handed and what is heard
        self.underruns = 0  # blocks the ring could not fill
        self.xruns = 0  # PortAudio reported an output underflow
        self.done = False  # a fade-out finished; the rest is silence
        self.paused_blocks = 0  # blocks of silence written while paused
        self._curve: np.ndarray | None = None
        self._fade_start = 0
        self.volume = GainRamp()  # master volume (play --web's slider, MPRIS, `volume` requests)
        self.pausing = GainRamp()  # 1 playing, 0 paused

    # Main thread ---------------------------------------------------------------------------------
    def set_gain(self, gain: float) -> None:
        """Glide from the master gain playing now to `gain`."""
        self.volume.glide(self.frames_played, gain, VOLUME_GLIDE_S * self.rate)

    def pause(self, seconds: float, start_frame: int | None = None) -> None:
        """Fade to silence over `seconds` (from `start_frame`, default now), then stop reading the ring."""
        self.pausing.glide(max(start_frame or 0, self.frames_played), 0.0, seconds * self.rate)

    def resume(self, seconds: float) -> None:
        """Fade back in over `seconds` from where the sound stopped (or from the gain a pause has reached)."""
        self.pausing.glide(self.frames_played, 1.0, seconds * self.rate)

    @property
    def paused(self) -> bool:
        """Silent and not reading: a pause's fade has ended (and no resume has begun)."""
        return self.pausing.target == 0.0 and self.frames_played >= self.pausing.ends_at()

    def schedule_fade(self, start_frame: int, seconds: float) -> None:
        """Main thread: fade to silence over `seconds` from `start_frame` (now, if already past).

        A fade already running is only ever shortened, continuing from its current gain. Paused, there is
        nothing to fade: the player is done at once.
        """
        if self.paused:
            self.done = True
            return
        start_frame = max(start_frame, self.frames_played)
        n = max(1, int(seconds * self.rate))
        gain = 1.0
        if self._curve is not None:
            if self._fade_start + len(self._curve) <= start_frame + n:
                return
            pos = start_frame - self._fade_start
            gain = float(self._curve[min(max(pos, 0), len(self._curve) - 1)]) if pos >= 0 else 1.0
        curve = (gain * (0.5 + 0.5 * np.cos(np.pi * np.arange(n) / n))).astype(np.float32)
        self._fade_start = start_frame
        self._curve = curve  # published last: the callback sees a complete curve and its start

    def start_fade(self, seconds: float) -> None:
        self.schedule_fade(self.frames_played, seconds)

    def _device_underrun(self) -> None:
        """ALSA recovered the device from an underrun (audio thread: alsa_log); the listener heard a gap."""
        self.underruns += 1

    def callback(self, outdata, frames, time_info, status) -> None:
        if status and status.output_underflow:
            self.xruns += 1
        if self.done:
            outdata.fill(0)
            return
        if self.paused:
            outdata.fill(0)
            self.paused_blocks += 1
            return
        first = self.frames_played
        if self.ring.read_into(outdata):
            self.underruns += 1
        curve = self._curve
        if curve is not None:
            start = self._fade_start
            s = max(start - self.frames_played, 0)  # where in this block the fade is
            if s < frames:
                pos = self.frames_played + s - start
                k = max(0, min(frames - s, len(curve) - pos))
                np.multiply(outdata[s:s + k], curve[pos:pos + k, None], out=outdata[s:s + k])
                if s + k < frames:
                    outdata[s + k:] = 0
                    self.done = True
        self.pausing.apply(outdata, first)
        self.volume.apply(outdata, first)
        self.frames_played += frames

    def open_stream(self, config: OutputConfig, capture: list | None = None, speed: float = 1.0,
                    min_latency_s: float = 0.0):
        if config.device == NULL_DEVICE:
            return ClockedSink(self, config, capture=capture, speed=speed)
        from . import alsa_log

        sd = _sd()
        # ALSA's "underrun occurred" lines: counted with ours, not printed under the status line
        alsa_log.capture(self._device_underrun)
        try:
            high = sd.query_devices(config.device)["default_high_output_latency"]
            stream = sd.OutputStream(device=config.device, samplerate=config.rate, channels=config.channels,
                                     dtype="float32", latency=max(MIN_LATENCY_S, high, min_latency_s),
                                     callback=self.callback)
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot open audio device {config.name!r}: {exc}; "
                                   f"choose another with --output-device (see `soundscape devices`)") from None
        self.latency_frames = int(stream.latency * config.rate)
        return stream


# PortAudio's "high" latency for ALSA's default device (PulseAudio, PipeWire) is 35 ms: on a busy
# 2-core machine the callback misses that (measured: 2 xruns, 10 s of audio took 15.4 s); 0.2 s: none.
MIN_LATENCY_S = 0.2


NULL_DEVICE = -1


class ClockedSink:
    """A sound card with no sound: calls the same callback from a thread, paced by the clock.

    `--output-device null` plays silently in real time (headless runs, logging a timeline);
    tests and the soak script use `speed` to fast-forward and `capture` to keep what was played.
    """

    def __init__(self, player: Player, config: OutputConfig, block: int = 1024, speed: float = 1.0,
                 capture: list | None = None):
        from ..periodic import Periodic

        self.player, self.capture = player, capture
        self._out = np.zeros((block, config.channels), np.float32)
        self._clock = Periodic(self._tick, block / config.rate / speed, "soundscape-null-sink")

    def _tick(self) -> None:
        self.player.callback(self._out, len(self._out), None, None)
        if self.capture is not None:
            self.capture.append(self._out.copy())

    def __enter__(self):
        self._clock.__enter__()
        return self

    def __exit__(self, *exc):
        self._clock.__exit__(*exc)
