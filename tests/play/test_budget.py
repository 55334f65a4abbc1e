"""`play --budget`: the generator works only its share of the time, at the lowest priority, while earlier
material fills the rest: never silent, and the fresh share is shown (stream/budget.py)."""

import os
import time

import numpy as np
import pytest

from conftest import SCENE_DATA, longest_silence, merged
from soundscape.audio.output import NULL_DEVICE, OutputConfig
from soundscape.play.engine import Engine, _status_text
from soundscape.scene import Scene
from soundscape.stream.budget import Budget
from soundscape.stream.scene_stream import SceneStream
from soundscape.units import format_duration

RATE = 16000
# Many steps: the tiny model then works most of the time to keep up, as the full one does on a CPU.
BUSY = {"generation": {"chunk_seconds": 2.56, "overlap_seconds": 0.64, "steps": 40},
        "output": {"sample_rate": RATE, "channels": 1}}


def idle_threads() -> set[int]:
    """The ids of this process's threads that run under SCHED_IDLE."""
    found = set()
    for name in os.listdir("/proc/self/task"):
        try:
            if os.sched_getscheduler(int(name)) == os.SCHED_IDLE:
                found.add(int(name))
        except OSError:
            pass  # gone meanwhile
    return found


def play_with_budget(tiny_model, budget: float, seconds: float):
    scene = Scene.model_validate(merged(SCENE_DATA, BUSY))
    stream = SceneStream(tiny_model, scene, out_rate=RATE, channels=1)
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", RATE, 1), quiet=True, capture=[], budget=budget)
    seen: set[int] = set()
    cpu, wall = time.process_time(), time.monotonic()
    result = engine.run(duration=seconds, fade_out=0.5, ticks=[lambda: seen.update(idle_threads())])
    share = (time.process_time() - cpu) / (time.monotonic() - wall)
    return engine, result, share, seen


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_a_budget_spends_less_cpu_never_goes_silent_and_shows_the_fresh_share(tiny_model):
    full, full_result, full_share, full_idle = play_with_budget(tiny_model, 100, 12.0)
    low, low_result, low_share, low_idle = play_with_budget(tiny_model, 30, 12.0)
    # The default changes nothing: no rest, no thread moved to the idle class.
    assert full.loop.budget.priority == "unchanged" and not full_idle
    # Under a budget the generator thread and the workers it made run under SCHED_IDLE.
    assert low.loop.budget.priority == "SCHED_IDLE" and low_idle
    # Generous bounds: the exact share is the benchmark's; here, well under the full run's.
    assert low_share < 0.7 * full_share, (low_share, full_share)
    # Never silent: earlier material covers what the generator no longer makes.
    played = np.concatenate(low.capture)
    assert low_result.underruns == 0
    assert len(played) > 10 * RATE
    assert longest_silence(played[int(0.1 * RATE): -int(0.6 * RATE)], RATE) < 0.05  # the fade-out aside
    status = low.playback.status()
    assert status["budget_percent"] == 30 and status["generator_priority"] == "SCHED_IDLE"
    assert 0 < status["fresh_percent"] < full.playback.status()["fresh_percent"], status
    assert f"fresh {status['fresh_percent']} %" in _status_text(low.playback)
    # In 12 s the weave's pool holds a few seconds: it repeats, and says how far apart (audio/weave.py).
    repeat = low.feeder.repeat_distance_s()
    assert repeat is not None and 0 < repeat < 12 and status["repeat_distance_s"] == round(repeat, 1), status
    assert f"repeats {format_duration(repeat)} apart" in _status_text(low.playback)
    print(f"CPU share (process time / wall): budget 100 {full_share:.2f}, budget 30 {low_share:.2f}; fresh "
          f"{full.playback.status()['fresh_percent']} % and {status['fresh_percent']} %")


def test_the_rest_pays_for_the_process_s_cpu_at_the_budget_s_share_and_a_cut_rest_is_still_owed():
    cpu = [0.0]  # the process's CPU seconds, as time.process_time would say (every thread of it)
    budget = Budget(25, cpu_clock=lambda: cpu[0], cores=2)  # 1 s of CPU is paid for by 2 s of wall
    budget.start()
    cpu[0] += 0.04  # a batch: 0.04 s of CPU
    budget.account()
    assert budget.resting()
    time.sleep(0.1)  # 0.08 s owed from the start
    assert not budget.resting()
    cpu[0] += 0.2
    budget.account()
    cpu[0] += 0.2  # work done while the rest was cut short (a live change) adds to what is owed
    budget.account()
    assert budget.resting()
    time.sleep(0.45)
    assert budget.resting()  # 0.8 s owed, not 0.4
    time.sleep(0.45)
    assert not budget.resting()
    # CPU spent while resting (the output chain, the weave) counts too: here more than the rest paid for.
    time.sleep(0.05)
    cpu[0] += 0.2  # owed 0.4 s of wall from the end of the last rest, 0.15 s ago
    budget.account()
    assert budget.resting()
    time.sleep(0.35)
    assert not budget.resting()
    # Idle time before the last account is not credit: a long pause does not buy a burst after it.
    time.sleep(0.3)
    budget.account()
    cpu[0] += 0.2
    budget.account()
    assert budget.resting()
    assert not Budget(100).limited and Budget(100).lower_priority() == "unchanged"
    with pytest.raises(ValueError, match="got 0"):
        Budget(0)


SCHEDULED = {"generation": {"budget": [{"until": 3, "percent": 100}, {"percent": 20}]}}


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_scene_s_budget_schedule_switches_at_its_play_time_and_budget_wins(tiny_model):
    """generation.budget: 100 % for the first 3 s of play, then 20 %; against play time (the device's clock)."""
    scene = Scene.model_validate(merged(merged(SCENE_DATA, BUSY), SCHEDULED))
    stream = SceneStream(tiny_model, scene, out_rate=RATE, channels=1)
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", RATE, 1), quiet=True, capture=[])
    seen: list[tuple[float, float]] = []  # (play time, the budget's percent) each tick
    engine.run(duration=6.0, fade_out=0.5,
               ticks=[lambda: seen.append((engine.playback.played_s(), engine.playback.status()["budget_percent"]))])
    before = {p for t, p in seen if t < 2.9}
    after = {p for t, p in seen if t > 3.1}
    assert before == {100.0} and after == {20.0}, seen[::20]
    # A schedule with a low step lowers the generator from the start: its OpenMP workers are made then.
    assert engine.loop.budget.priority == "SCHED_IDLE"
    # --budget wins over the schedule.
    given = Engine(SceneStream(tiny_model, scene, out_rate=RATE, channels=1),
                   OutputConfig(NULL_DEVICE, "null", RATE, 1), quiet=True, capture=[], budget=50)
    assert given.budget.percent == 50 and given.playback.status()["budget_percent"] == 50


def test_a_budget_schedule_follows_the_clock_it_is_given():
    played = [0.0]
    budget = Budget()
    budget.follow(((10.0, 100.0), (20.0, 40.0), (None, 15.0)), lambda: played[0])
    assert budget.percent == 100 and budget.limited  # limited: a later step is below 100
    played[0] = 10.0
    assert budget.percent == 40
    played[0] = 1e6
    assert budget.percent == 15
    with pytest.raises(ValueError, match="got 0"):
        Budget().follow(((None, 0.0),), lambda: 0.0)
