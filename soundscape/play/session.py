"""One `soundscape play` run, wired from its PlayOptions: engine, stream, transport, live control and the doors
(control socket, terminal keys, media controls, web mixer). Every part gets what it needs when it is built.

Order: checks that need no model (the model's source, the audio device) -> the engine, playing the scene's
last recording at once when there is one (play/instant.py) while the model loads -> the stream -> the
transport and LiveControl over the engine's Playback -> the doors -> `Engine.run` until the player is done.
"""

from __future__ import annotations

import sys
import time

from ..audio.output import resolve_output
from ..errors import EXIT_INTERRUPTED, UsageError
from ..stream.live import LiveControl
from ..stream.options import open_stream
from ..units import format_duration
from . import instant
from .engine import Engine
from .options import PlayOptions
from .transport import Transport
from .wake import MAX_LEAD_S, MIN_LEAD_S, WAKE_FADE_S


def play(opts: PlayOptions) -> int:
    from ..model.source import resolve_source

    scene = opts.scene
    folder = None
    if opts.web is not None:
        from .web import save_dir

        folder = save_dir(opts.web, opts.scene_path)  # a bad --web-save-dir fails before the model loads
    model_id = opts.model.model_id(scene.model)
    resolve_source(model_id)  # a bad --model fails before the audio device is touched
    config = resolve_output(opts.audio_device, scene.output.sample_rate, scene.output.channels)
    key = instant.key_for(scene, model_id, config.rate, config.channels)
    # A night start plays nothing until the alarm: no recording to bridge the model's loading.
    warm = None if opts.night_start else instant.cached_audio(key, config.rate, config.channels,
                                                              seconds=instant.START_S)
    recorder = instant.Recorder(key, config.rate, config.channels, skip_frames=0 if warm is not None
                                else int(scene.output.fade_in_seconds * config.rate))
    engine = Engine(None, config, buffer_s=opts.buffer, timeline=opts.timeline, quiet=opts.quiet, budget=opts.budget,
                    prefill_s=opts.prefill_s, mixer=opts.web is not None, hop_s=scene.generation.hop_seconds,
                    # Only the scene file's own sound is recorded: a live change (epoch > 0) ends the recording.
                    on_fresh=lambda seg: recorder.add(seg.audio) if seg.epoch == 0 else recorder.stop())
    player, rate = engine.player, config.rate
    # A clock scene (keyframes at times of day) takes each chunk's time of day from when it will be heard.
    stream_kw = dict(out_rate=rate, channels=config.channels, quiet=opts.quiet,
                     heard_at=lambda t: time.time() + t - player.frames_played / rate)
    if warm is not None:
        # The recording plays with the scene's fade-in; the stream then starts without one, so the
        # handover to fresh audio is one crossfade between two full-level signals.
        stream = engine.start_warm(warm, scene.output.fade_in_seconds,
                                   lambda: open_stream(scene, opts.model, fade_in=False, **stream_kw))
        warm = None  # the weave's pool holds its copy: this frame lives as long as the player
    else:
        stream = open_stream(scene, opts.model, **stream_kw)
    engine.attach(stream)
    return _run(opts, engine, recorder, folder)


def _wake_lead(engine: Engine) -> float:
    """How long before the wake time the wake scene is switched to: three chunks at the speed measured."""
    rtf = engine.gen.stats.rtf
    return min(MAX_LEAD_S, max(MIN_LEAD_S, 3 * engine.stream.hop_s / rtf if rtf > 0 else MAX_LEAD_S))


def _transport(opts: PlayOptions, engine: Engine) -> Transport:
    """Pause, volume, stop, the sleep timer (--sleep, so the web mixer can extend or cancel it) and the wake
    alarm (always there, unarmed without --wake: the web mixer and the control socket can set it later)."""
    wake = opts.wake
    playback = engine.playback
    transport = Transport(playback.player, playback.rate, playback.log, made_at=opts.scene.output.volume,
                          fade_s=opts.fade_out if opts.fade_out is not None else 30.0,
                          wake=dict(fade_s=(wake.fade_s if wake else None) or WAKE_FADE_S,
                                    scene=wake.scene if wake else None, scene_path=wake.scene_path if wake else None,
                                    lead_s=lambda: _wake_lead(engine), quiet=opts.quiet),
                          hold=playback.hold)
    if wake is not None:
        reply = transport.alarm.set(wake.at)
        if not reply["ok"]:
            raise UsageError(reply["error"])
        if opts.night_start:
            transport.pause(0.01)
    if opts.sleep is not None:
        transport.timer("set", opts.sleep)
    return transport


def _run(opts: PlayOptions, engine: Engine, recorder, folder) -> int:
    """`folder`: where the web mixer's "Save as scene" writes (None: it downloads)."""
    from .control_socket import ControlServer
    from .keys import HINT, TerminalKeys
    from .mpris import MprisPlayer
    from .web.bridge import Bridge

    transport = _transport(opts, engine)
    live = LiveControl(engine.playback, opts.scene_path, transport=transport)
    server = ControlServer(opts.control, live.handle)
    keys = TerminalKeys(live)
    # One door for the threads that serve pages and media keys: requests in, a status snapshot out.
    bridge = Bridge(live)
    ticks = [server.poll, live.tick] + ([keys.tick] if not opts.quiet and keys.start() else []) + [bridge.tick]
    if not opts.quiet:
        _announce(opts, engine, server.path, keys.fd is not None and HINT, transport.alarm)
    media = MprisPlayer(bridge) if opts.mpris else None
    if media is not None and media.start() and not opts.quiet:
        print(f"media controls: {media.name} on the session bus (playerctl -p soundscape play-pause)",
              file=sys.stderr)
    mixer = None
    if opts.web is not None:
        from . import web

        mixer = web.start(opts.web, opts.scene_path, engine.playback, bridge, folder)
    try:
        result = engine.run(duration=opts.duration, fade_out=opts.fade_out, ticks=ticks, night=transport.night_text)
    finally:
        keys.close()
        recorder.stop()
        server.close()
        if media is not None:
            media.close()
        if mixer is not None:
            mixer.close()
    if not opts.quiet:
        print(f"played {format_duration(result.frames_played / engine.config.rate)}; {result.chunks} chunks "
              f"generated, {result.coverups} cover-ups, {result.underruns} underruns", file=sys.stderr)
    return EXIT_INTERRUPTED if result.interrupted else 0


def _announce(opts: PlayOptions, engine: Engine, control_path, hint, alarm) -> None:
    config = engine.config
    print(f"playing {opts.scene.name!r} on {config.name} at {config.rate} Hz, {config.channels} ch "
          f"(Ctrl-C to stop; live control: soundscape set --control {control_path} LAYER=VALUE)", file=sys.stderr)
    if hint:
        print(hint, file=sys.stderr)
    if alarm.armed:
        wake_scene = opts.wake.scene if opts.wake else None
        print(f"wake: {alarm.describe()}, fading in over {format_duration(alarm.fade_s)}"
              + (f" into {wake_scene.name!r}" if wake_scene is not None else ""), file=sys.stderr)
