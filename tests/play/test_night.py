"""At night, without the model: the pause glide in the audio callback, the wake alarm's wall-clock
arithmetic (time zones, daylight saving, a suspended machine: the clock is injected), clock
keyframes, the new control requests and the terminal's keys (a real pseudo-terminal)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from soundscape.audio.output import Player
from soundscape.audio.ringbuffer import RingBuffer
from soundscape.cli import main
from soundscape.errors import SceneError, UsageError
from soundscape.play.wake import WakeAlarm, WakeTime, next_wake, parse_wake, wake_epoch
from soundscape.scene.load import parse_scene
from soundscape.stream import controller
from soundscape.stream.control_requests import parse_request
from soundscape.units import parse_time_of_day

RATE = 16000
BLOCK = 256


# --- The pause glide in the callback ---------------------------------------------------------------

def _sine(n: int, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + n)
    return (0.5 * np.sin(2 * np.pi * 220 * t / RATE)).astype(np.float32)[:, None]


def _play(player: Player, blocks: int) -> np.ndarray:
    out = []
    for _ in range(blocks):
        block = np.zeros((BLOCK, 1), np.float32)
        player.callback(block, BLOCK, None, None)
        out.append(block)
    return np.concatenate(out)[:, 0]


def test_pause_fades_out_holds_the_ring_and_resume_continues_from_the_same_sample():
    ring = RingBuffer(RATE * 4, 1)
    ring.write(_sine(RATE * 4))
    player = Player(ring, RATE)
    before = _play(player, 20)
    player.pause(0.25)
    fading = _play(player, int(0.25 * RATE / BLOCK) + 1)
    read_at_pause = ring.frames_read
    held = _play(player, 40)
    assert player.paused and not np.any(held), "silence while paused"
    assert ring.frames_read == read_at_pause, "nothing is read from the ring while paused"
    assert player.paused_blocks == 40
    frames = player.frames_played
    player.resume(0.25)
    back = _play(player, 40)
    assert not player.paused and player.frames_played == frames + 40 * BLOCK
    # The audio is the sine, unbroken: what played is the ring's samples, in order, times a gain from 1 down
    # to 0 and back, so no sample-to-sample step exceeds the sine's own largest step.
    heard = np.concatenate([before, fading, back])
    own = np.abs(np.diff(before)).max()
    assert np.abs(np.diff(heard)).max() <= own * 1.01
    assert abs(fading[-BLOCK:]).max() < 0.02 and abs(back[-BLOCK:]).max() > 0.45
    resumed_from = len(before) + len(fading)
    ref = _sine(resumed_from + len(back))[:, 0]
    gain = back[RATE // 2:] / np.where(ref[resumed_from + RATE // 2:] == 0, 1, ref[resumed_from + RATE // 2:])
    assert np.allclose(gain[np.abs(ref[resumed_from + RATE // 2:]) > 0.1], 1.0, atol=1e-4)


def test_a_fade_to_stop_while_paused_ends_the_player_at_once():
    ring = RingBuffer(RATE, 1)
    ring.write(_sine(RATE))
    player = Player(ring, RATE)
    player.pause(0.01)
    _play(player, 4)
    assert player.paused
    player.start_fade(2.0)
    assert player.done


# --- The wake alarm's clock --------------------------------------------------------------------------

@pytest.fixture()
def berlin():
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = saved
        time.tzset()


def _local(*fields) -> float:
    return time.mktime((*fields, 0, 0, -1))


def test_wake_aims_at_the_wall_clock_across_daylight_saving(berlin):
    # 31 March 2024: the clocks go from 02:00 to 03:00. From 00:30, 07:00 is 5.5 hours away, not 6.5.
    now = _local(2024, 3, 31, 0, 30, 0)
    at = WakeTime.from_text("07:00", now)
    assert at.day.isoformat() == "2024-03-31" and at.epoch() - now == 5.5 * 3600
    # 27 October 2024: back from 03:00 to 02:00. From 00:30, 07:00 is 7.5 hours away.
    now = _local(2024, 10, 27, 0, 30, 0)
    assert WakeTime.from_text("07:00", now).epoch() - now == 7.5 * 3600


def test_a_time_already_past_is_tomorrow_and_a_delay_is_from_now(berlin):
    now = _local(2024, 6, 1, 8, 0, 0)
    assert WakeTime.from_text("07:00", now).day.isoformat() == "2024-06-02"
    assert WakeTime.from_text("08:00", now).day.isoformat() == "2024-06-02"  # now is not "ahead"
    assert WakeTime.from_text("08:00:01", now).epoch() - now == 1.0
    assert WakeTime.from_text("+20m", now).epoch() - now == pytest.approx(1200.0)
    assert next_wake(now, 23 * 3600).isoformat() == "2024-06-01"
    assert wake_epoch(next_wake(now, 0.0), 0.0) - now == 16 * 3600  # midnight
    for bad in ("7", "25:00", "07:60", "seven", "+", "+2d"):
        with pytest.raises(UsageError):
            parse_wake(bad)
    assert parse_wake("6:45:30") == ("at", 6 * 3600 + 45 * 60 + 30)


def _paused_transport(calls: list):
    """play's transport over a real Player, paused (the night's silence), logging into `calls`."""
    from soundscape.audio.output import Player
    from soundscape.audio.ringbuffer import RingBuffer
    from soundscape.play.transport import Transport

    transport = Transport(Player(RingBuffer(1600, 1), 16000), 16000, lambda row: calls.append(row["event"]),
                          made_at=1.0)
    assert transport.pause(0.01)["ok"] and transport.paused
    return transport


def test_the_alarm_waits_for_the_wall_clock_switches_the_scene_ahead_and_rings_once():
    clock, calls = [1_000_000.0], []
    transport = _paused_transport(calls)
    dawn = SimpleNamespace(name="Dawn")
    alarm = WakeAlarm(transport, fade_s=1200, scene=dawn, scene_path="dawn.yaml", lead_s=lambda: 60.0,
                      clock=lambda: clock[0], quiet=True)
    tod = parse_time_of_day(time.strftime("%H:%M:%S", time.localtime(clock[0] + 3600)))
    assert alarm.set(time.strftime("%H:%M:%S", time.localtime(clock[0] + 3600)))["ok"]
    assert alarm.status()["in_s"] == pytest.approx(3600, abs=1) and alarm.at.tod == tod
    for step in (600, 1200, 1700):  # an hour of waiting, checked every so often: nothing yet
        clock[0] += step - (clock[0] - 1_000_000.0)
        alarm._next_check = 0
        assert alarm.tick() is None
    assert "wake" not in calls and transport.paused
    clock[0] = 1_000_000.0 + 3600 - 30  # inside the lead: the wake scene is made while silent
    alarm._next_check = 0
    assert alarm.tick() == (dawn, "dawn.yaml")  # LiveControl switches to it (it owns the scene)
    assert transport.paused and alarm.status()["scene"] == "Dawn"
    clock[0] += 4 * 3600  # the machine slept through the alarm: the first check after it rings, once
    alarm._next_check = 0
    assert alarm.tick() is None  # switched already: only the fade-in is left
    # The alarm's row, then the resume's (logged as why it resumed: "wake").
    assert calls[-2:] == ["wake", "wake"] and not transport.paused and not alarm.armed and alarm.rung == 1
    assert transport.player.pausing.target == 1.0
    alarm.tick()
    assert alarm.rung == 1


def test_the_transport_rests_the_generator_while_paused_and_wakes_it_in_the_alarm_s_lead():
    from soundscape.audio.output import Player
    from soundscape.audio.ringbuffer import RingBuffer
    from soundscape.play.transport import Transport

    clock, holds = [3_000_000.0], []
    transport = Transport(Player(RingBuffer(1600, 1), 16000), 16000, lambda row: None, made_at=1.0,
                          wake=dict(fade_s=60, lead_s=lambda: 120.0, clock=lambda: clock[0], quiet=True),
                          hold=holds.append)
    transport.tick()
    assert holds == []  # playing: never held
    assert transport.pause(0.01)["ok"] and holds == [True]
    assert transport.resume(0.01)["ok"] and holds == [True, False]
    assert transport.pause(0.01)["ok"] and holds == [True, False, True]
    transport.tick()
    assert holds[-1] is True and len(holds) == 3  # told once, not every tick
    assert transport.alarm.set(time.strftime("%H:%M:%S", time.localtime(clock[0] + 600)))["ok"]
    transport.tick()
    assert holds[-1] is True and not transport.alarm.preparing  # ten minutes away: still resting
    clock[0] += 500  # inside the two-minute lead: it works, while still silent
    transport.alarm._next_check = 0
    transport.tick()
    assert transport.alarm.preparing and transport.paused and holds[-1] is False
    clock[0] += 100  # the wake time: resumed (fading in), the generator working
    transport.alarm._next_check = 0
    transport.tick()
    assert not transport.paused and not transport.alarm.preparing and holds[-1] is False


def test_an_alarm_set_in_the_past_rings_tomorrow_not_now():
    clock, calls = [2_000_000.0], []
    transport = _paused_transport(calls)
    alarm = WakeAlarm(transport, clock=lambda: clock[0], quiet=True)
    past = time.strftime("%H:%M:%S", time.localtime(clock[0] - 60))
    assert alarm.set(past)["ok"]
    assert alarm.status()["in_s"] > 23 * 3600
    alarm.tick()
    assert transport.paused and alarm.armed
    assert not alarm.set("25:99")["ok"]


# --- Clock keyframes ------------------------------------------------------------------------------

CLOCK_SCENE = """\
name: Night by the clock
layers:
  crickets: {prompt: crickets, weight: 0.5}
  birds: {prompt: birds at dawn, weight: 0.0}
evolution:
  drift: {depth: 0}
  keyframes:
    - {at: "21:30", weights: {crickets: 0.9, birds: 0.0}}
    - {at: 06:30, weights: {crickets: 0.1, birds: 0.8}}
    - {at: "03:00", weights: {crickets: 0.3, birds: 0.0}}
"""


def test_clock_keyframes_hold_at_their_time_whatever_the_start_and_wrap_at_midnight():
    scene = parse_scene(CLOCK_SCENE)
    assert scene.evolution.follows_clock and scene.evolution.keyframes[1].at == "06:30"
    at = lambda hh, mm, start: controller.weights_at(scene, ((hh * 60 + mm) * 60 - start) % 86400,  # noqa: E731
                                                      day_start=start)
    for start in (0.0, 12 * 3600.0, 21 * 3600.0 + 1800, 23.9 * 3600):
        assert at(21, 30, start) == {"crickets": 0.9, "birds": 0.0}
        assert at(6, 30, start) == {"crickets": 0.1, "birds": 0.8}
        # Halfway from 21:30 to 03:00 is 00:15, across midnight: halfway between the two keyframes.
        assert at(0, 15, start)["crickets"] == pytest.approx(0.6)
    # From 06:30 the last keyframe of the day eases into 21:30's; just before 21:30 it is nearly there.
    assert 0.85 < at(21, 20, 0.0)["crickets"] < 0.9
    assert at(14, 0, 0.0)["crickets"] == pytest.approx(0.5)  # halfway 06:30 -> 21:30


@pytest.mark.parametrize("keys, line, key", [
    ('    - {at: "21:30", weights: {a: 0.1}}\n    - {at: 90, weights: {a: 0.9}}\n', 9, "evolution.keyframes.1.at"),
    ('    - {at: 10, weights: {a: 0.1}}\n    - {at: "07:00", weights: {a: 0.9}}\n', 9, "evolution.keyframes.1.at"),
])
def test_mixed_keyframe_kinds_exit_2_with_file_line_and_key(tmp_path, capsys, keys, line, key):
    path = tmp_path / "mixed.yaml"
    path.write_text("name: n\nlayers:\n  a: {prompt: x}\n\nevolution:\n  drift: {depth: 0}\n  keyframes:\n" + keys)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:{line}: {key}: expected") and "all times of day or all seconds" in err


def test_clock_scene_refuses_loop_seconds_and_a_time_twice():
    with pytest.raises(SceneError, match="loop_seconds"):
        parse_scene(CLOCK_SCENE.replace("  drift: {depth: 0}\n", "  drift: {depth: 0}\n  loop_seconds: 600\n"))
    with pytest.raises(SceneError, match=r"keyframes\.2\.at: expected a time of day no other keyframe has"):
        parse_scene(CLOCK_SCENE.replace('"03:00"', '"21:30:00"'))


# --- Requests and keys ------------------------------------------------------------------------------

def test_pause_and_wake_requests_are_checked():
    assert parse_request({"cmd": "toggle"}).fade_s == 1.0
    assert parse_request({"cmd": "wake", "at": "07:00", "fade_s": "20m"}).fade_s == 1200
    for bad in ({"cmd": "pause", "fade_s": -1}, {"cmd": "wake", "at": 7}, {"cmd": "pause", "now": True}):
        with pytest.raises(ValueError):
            parse_request(bad)


def test_keys_in_a_terminal_pause_change_the_volume_and_quit():
    from soundscape.play.keys import TerminalKeys

    sent = []
    live = SimpleNamespace(volume=0.5, handle=lambda r: sent.append(r) or {"ok": True})
    master, slave = os.openpty()
    try:
        tty = os.fdopen(slave, "rb", buffering=0)
        keys = TerminalKeys(live, stdin=tty, stderr=tty)
        assert keys.start()
        os.write(master, b" \x1b[A\x1b[Bxq")
        time.sleep(0.05)
        keys.tick()
        keys.close()
        assert sent == [{"cmd": "toggle"}, {"cmd": "volume", "volume": 0.55}, {"cmd": "volume", "volume": 0.45},
                        {"cmd": "stop", "fade_s": 2.0}]
    finally:
        os.close(master)
        tty.close()
    # Not a terminal (a pipe, /dev/null): the keys are left alone.
    with open(os.devnull, "rb") as null:
        assert not TerminalKeys(live, stdin=null, stderr=null).start()


def test_every_new_option_has_help():
    from soundscape.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices
    play_help = text["play"].format_help()
    for flag in ("--wake", "--wake-fade", "--wake-scene", "--no-mpris"):
        assert flag in play_help
    assert "--start-time" in text["render"].format_help()
    for cmd in ("pause", "resume", "toggle"):
        assert "--control" in text[cmd].format_help()
    assert Path(__file__).resolve().parents[2].joinpath("docs", "at-night.md").read_text().startswith("# At night")


def test_without_a_session_bus_the_media_controls_stay_off_with_one_debug_line(monkeypatch, capsys):
    from soundscape.play.mpris import MprisPlayer

    monkeypatch.setenv("SOUNDSCAPE_DEBUG", "1")
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    assert not MprisPlayer(bridge=None).start()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/soundscape-test-bus")
    assert not MprisPlayer(bridge=None).start()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("soundscape: mpris: ") for line in lines), lines
    monkeypatch.delenv("SOUNDSCAPE_DEBUG")
    assert not MprisPlayer(bridge=None).start()
    assert capsys.readouterr().err == ""  # not a word without SOUNDSCAPE_DEBUG


def test_render_start_time_makes_the_same_file_every_time(tiny_model_dir, tmp_path):
    import json

    scene = tmp_path / "clock.yaml"
    scene.write_text(CLOCK_SCENE + "generation: {chunk_seconds: 2.56, overlap_seconds: 0.64, steps: 2}\n"
                     "output: {sample_rate: 16000, channels: 1, fade_in_seconds: 0.1}\n")

    def render(name: str, start: str) -> tuple[bytes, list]:
        out, timeline = tmp_path / f"{name}.wav", tmp_path / f"{name}.jsonl"
        assert main(["render", str(scene), "-o", str(out), "--duration", "3", "--model", str(tiny_model_dir),
                     "--runtime", "torch", "--start-time", start, "--timeline", str(timeline), "--quiet"]) == 0
        rows = [json.loads(line) for line in timeline.read_text().splitlines()]
        return out.read_bytes(), [r["weights"] for r in rows if "chunk" in r]

    a, weights_a = render("a", "21:30")
    b, _ = render("b", "21:30")
    _, weights_c = render("c", "06:29")
    assert a == b, "the same --start-time made different files"
    assert weights_a[0]["crickets"] == pytest.approx(0.9, abs=0.01)  # the 21:30 keyframe, a second in
    assert weights_c[0]["birds"] == pytest.approx(0.8, abs=0.01)  # about 06:30


def test_play_takes_each_chunks_time_of_day_from_when_it_will_be_heard(tiny_model):
    from soundscape.stream.scene_stream import SceneStream

    scene = parse_scene(CLOCK_SCENE + "generation: {chunk_seconds: 2.56, overlap_seconds: 0.64, steps: 2}\n")
    stream = SceneStream(tiny_model, scene, out_rate=16000, channels=1, day_start=21.5 * 3600)
    assert stream._prepare().weights == {"crickets": 0.9, "birds": 0.0}  # render: counted from day_start
    lt = time.localtime()
    dawn = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 6, 30, 0, 0, 0, -1))
    t = stream.control_time(0)
    stream.heard_at = lambda scene_t: dawn + scene_t - t  # play: this chunk will be heard at 06:30 today
    assert stream._prepare().weights == {"crickets": 0.1, "birds": 0.8}


def test_a_resumed_render_keeps_the_start_time_it_began_with(tiny_model, tmp_path):
    from soundscape.stream.scene_stream import SceneStream

    scene = parse_scene(CLOCK_SCENE + "generation: {chunk_seconds: 2.56, overlap_seconds: 0.64, steps: 2}\n")
    first = SceneStream(tiny_model, scene, out_rate=16000, channels=1, day_start=3 * 3600.0)
    first.save_state(tmp_path / "state.npz")
    later = SceneStream(tiny_model, scene, out_rate=16000, channels=1)  # no --start-time: now
    later.load_state(tmp_path / "state.npz")
    assert later.day_start == 3 * 3600.0
    pinned = SceneStream(tiny_model, scene, out_rate=16000, channels=1, day_start=60.0)  # --start-time wins
    pinned.load_state(tmp_path / "state.npz")
    assert pinned.day_start == 60.0
