"""Tweaks heard fast (issue 32): a change that needs new audio abandons the chunk in flight, the chunk is
remade with the new mix at once, and the timeline says so. Real parts throughout: the tiny model, the
generation loop on its thread, the Playback a listener's clock drains at real-time pace."""

import json
import time

import numpy as np

from one_stream import looped
from soundscape.audio.feeder import SWITCH_KEEP_S
from soundscape.stream.live import LiveControl
from soundscape.stream.playback import Playback

RATE = 16000
# Long chunks of many steps: a chunk takes long enough to be caught in flight, and hop >> a chunk's work.
SLOW = {"generation": {"chunk_seconds": 10.24, "overlap_seconds": 0.64, "steps": 12},
        "evolution": {"transition_seconds": 0}, "output": {"sample_rate": RATE, "channels": 1}}


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Listening:
    """Takes audio off the ring at real-time pace, as serve's listener does, and ticks the live control."""

    def __init__(self, playback: Playback, live: LiveControl):
        self.playback, self.live = playback, live
        self._block = np.zeros((RATE // 50, 1), np.float32)
        self._t = None

    def run(self, until, timeout: float = 120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.playback.pump()
            if self._t is None and self.playback.ring.level() >= RATE:
                self._t = time.monotonic()  # the clock starts once a second is buffered
            if self._t is not None:
                due = int((time.monotonic() - self._t) * RATE) - self.playback.player.frames_played
                while due >= len(self._block):
                    self.playback.player.underruns += bool(self.playback.ring.read_into(self._block))
                    self.playback.player.frames_played += len(self._block)
                    due -= len(self._block)
                    self.playback.pump()
            self.live.tick()
            result = until()
            if result:
                return result
            time.sleep(0.005)
        raise AssertionError("timed out")

    def keep_on(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.run(lambda: time.monotonic() >= end)


def test_a_tweak_abandons_the_chunk_in_flight_and_the_next_chunk_has_the_new_mix(tiny_model, tmp_path):
    timeline = tmp_path / "t.jsonl"
    stream, playback, slot, live, loop = looped(tiny_model, SLOW, timeline, RATE)
    loop.start()
    try:
        listening = Listening(playback, live)
        listening.run(lambda: slot.stats.chunks >= 2)
        gen_s = max(r["gen_s"] for r in rows(timeline) if "gen_s" in r)
        # The generator is at work once the feeder has taken the last segment; catch it a fifth of the way in.
        listening.run(lambda: playback.fresh.empty() and not slot.holding)
        listening.keep_on(0.2 * gen_s)
        assert live.handle({"cmd": "set", "weights": {"birds": 0.0}})["ok"]
        asked = time.monotonic()
        made = listening.run(lambda: [r for r in rows(timeline) if "gen_s" in r and r["weights"]["birds"] == 0.0])[0]
        made_after = time.monotonic() - asked
        heard = listening.run(lambda: [r for r in rows(timeline) if r.get("event") == "tweak_heard"])[0]
        after = listening.run(lambda: [r for r in rows(timeline) if r.get("chunk") == made["chunk"] + 1])[0]
    finally:
        loop.stop.set()
        loop.join(timeout=60)
    events = rows(timeline)
    order = [r.get("event", "chunk") for r in events]
    tweak_at = order.index("tweak")
    abandoned = events[order.index("abandoned")]
    assert order.index("abandoned") > tweak_at, order
    # The chunk in flight was given up before its end, and the same chunk was made again with the new mix.
    assert 0 <= abandoned["steps_done"] < 0.85 * abandoned["steps"], abandoned
    assert made["chunk"] == abandoned["chunk_index"], (made, abandoned)
    assert events.index(made) > order.index("abandoned")
    # It was short: half the chunk (5.12 s of 10.24 s, the 0.64 s overlap kept: 4.48 s new), then the length
    # returned to the scene's (9.6 s new), continuing where the short one ended.
    assert made["frames"] == stream.spec.short_frames == 128, made
    assert abs((made["end_s"] - made["start_s"]) - 4.48) < 1e-3, made
    assert "frames" not in after and abs((after["end_s"] - after["start_s"]) - stream.hop_s) < 1e-3, after
    assert after["start_s"] == made["end_s"], (made, after)
    # It was begun at once: from the tweak to its end took its own work, not the rest of the old one too.
    assert made_after < made["gen_s"] + 0.5 * gen_s, (made_after, made)
    # Heard sooner than a whole chunk later: what the switch keeps of the old audio (a quarter second, not
    # the weave's 1 s margin) plus one short chunk's work, well under a hop.
    hop = stream.hop_s
    assert heard["latency_s"] < min(hop, SWITCH_KEEP_S + made["gen_s"] + 0.5 * gen_s + 0.3), (heard, hop, made)
    assert playback.player.underruns == 0
    print(f"tweak heard after {heard['latency_s']} s; short remade chunk done {made_after:.2f} s after the tweak (its gen_s {made['gen_s']}); hop {hop} s")


def test_a_new_prompt_is_encoded_while_the_chunk_in_flight_runs(tiny_model, tmp_path):
    """The prompt is encoded on its own thread as the request arrives; the chunk in flight is given up only once
    the embeddings are ready (timeline: tweak, encoded, abandoned, each with its time t_s)."""
    timeline = tmp_path / "t.jsonl"
    stream, playback, slot, live, loop = looped(tiny_model, SLOW, timeline, RATE)
    loop.start()
    try:
        listening = Listening(playback, live)
        listening.run(lambda: slot.stats.chunks >= 1)
        listening.run(lambda: playback.fresh.empty() and not slot.holding)
        listening.keep_on(0.5)
        assert live.handle({"cmd": "prompt", "layer": "birds", "prompt": "an owl hooting far away"})["ok"]
        made = listening.run(lambda: [r for r in rows(timeline) if r.get("event") == "tweak_heard"])
    finally:
        loop.stop.set()
        loop.join(timeout=60)
    events = rows(timeline)
    tweak = next(r for r in events if r.get("event") == "tweak")
    encoded = next(r for r in events if r.get("event") == "encoded")
    abandoned = next(r for r in events if r.get("event") == "abandoned")
    assert encoded["epoch"] == tweak["epoch"] and encoded["prompts"] == 1, encoded  # only the new prompt
    # The chunk in flight ran on through the encoding: it was given up after the embeddings were ready.
    assert tweak["t_s"] <= encoded["t_s"] <= abandoned["t_s"], (tweak, encoded, abandoned)
    assert abandoned["steps_done"] >= 1, abandoned
    assert events.index(encoded) < events.index(abandoned) and made
    assert stream.encoder.has("an owl hooting far away")


FAST = {"generation": {"chunk_seconds": 2.56, "overlap_seconds": 0.64, "steps": 3},
        "evolution": {"transition_seconds": 0}, "output": {"sample_rate": RATE, "channels": 1}}


def test_the_buffer_stays_shallow_while_someone_is_changing_things_and_deepens_after(tiny_model, tmp_path):
    stream, playback, slot, live, loop = looped(tiny_model, FAST, tmp_path / "t.jsonl", RATE, changing_s=5.0)
    loop.start()

    def deepest(seconds: float) -> tuple[float, set]:
        seen, states, end = [], set(), time.monotonic() + seconds
        listening.run(lambda: seen.append(playback.ahead()) or states.add(playback.status()["buffer"])
                      or time.monotonic() >= end)
        return max(seen), states

    try:
        listening = Listening(playback, live)
        listening.run(lambda: slot.stats.chunks >= 3)
        deep, deep_states = deepest(3.0)
        assert live.handle({"cmd": "set", "weights": {"birds": 0.2}})["ok"]
        listening.keep_on(1.0)  # the change's chunk lands
        shallow, shallow_states = deepest(3.0)
        target = slot.shallow_s()
        listening.keep_on(1.5)  # past changing_s: deepens again
        again, again_states = deepest(3.0)
    finally:
        loop.stop.set()
        loop.join(timeout=60)
    hop = stream.hop_s
    # While changing, no chunk starts above the shallow depth: at most that plus the chunk that lands.
    assert shallow <= target + hop + 0.1 and shallow < deep - 1.0, (deep, shallow, target, hop)
    assert shallow_states == {"shallow"} and deep_states == {"deep"} and again_states == {"deep"}
    assert again > shallow + 1.0, (again, shallow)
    assert playback.player.underruns == 0
    print(f"ahead: deep {deep:.2f} s, while changing {shallow:.2f} s (target {target:.2f} s), after {again:.2f} s")
